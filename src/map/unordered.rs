//! [`MapUnordered`]: the iterator of [`Executor::map_unordered`], results as chunks
//! complete.

use std::fmt;
use std::sync::Arc;

use super::chunked::{Chunked, Next, Order, Window};
use super::feed::Feed;
use super::options::MapOptions;
use crate::chunk::Chunk;
use crate::error::TaskError;
use crate::executor::Executor;
use crate::future::{Future, WaitSet};
use crate::task::Payload;
use crate::task::{Task, TaskHandle};

/// Iterator returned by [`Executor::map_unordered`]: results as chunks complete.
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// fn neg(x: i32) -> i32 { -x }
/// let pool = ThreadPoolExecutor::new(2);
/// let sum: i32 = pool.map_unordered(neg, 1..4).map(Result::unwrap).sum();
/// assert_eq!(sum, -6);
/// ```
pub struct MapUnordered<'a, E, I, A, R> {
    chunks: Chunked<'a, E, I, A, R, AsCompleted<R>>,
}

impl<'a, E, I, A, R> MapUnordered<'a, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    pub(crate) fn new<T: Task<A, R>>(exec: &'a E, task: T, items: I, opts: MapOptions) -> Self {
        MapUnordered {
            chunks: Chunked::new(exec, TaskHandle::new(task), items, opts),
        }
    }
}

impl<E, I, A, R> Iterator for MapUnordered<'_, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    type Item = Result<R, TaskError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.chunks.next()
    }

    /// Exact when the input's length is known: every item yields one result.
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }

    fn fold<B, F>(self, init: B, f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
    {
        self.chunks.fold(init, f)
    }
}

impl<E, I, A, R> fmt::Debug for MapUnordered<'_, E, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.chunks.fmt(f)
    }
}

/// The chunks in flight of [`MapUnordered`], read as they complete: each in a slot, and a
/// wait set that reports slots as they complete.
pub(super) struct AsCompleted<R> {
    slots: Vec<Option<(Future<Chunk<R>>, usize)>>,
    free: Vec<usize>,
    inflight: usize,
    set: Arc<WaitSet>,
}

impl<R> AsCompleted<R> {
    /// Tops the window up: submits while `feed` has room, each chunk in a free slot.
    fn top_up<E, I, A>(&mut self, feed: &mut Feed<'_, E, I, A, R>, held: usize)
    where
        E: Executor,
        I: Iterator<Item = A>,
        A: Payload,
        R: Payload,
    {
        while feed.room(self.inflight, held) {
            let Some((fut, len)) = feed.submit_next() else {
                break;
            };
            let slot = self.free.pop().unwrap_or_else(|| {
                self.slots.push(None);
                self.slots.len() - 1
            });
            if !fut.core().add_waiter(&self.set, slot) {
                self.set.notify(slot, crate::wait::outcome_of(&fut));
            }
            self.slots[slot] = Some((fut, len));
            self.inflight += 1;
        }
    }
}

impl<R> Window for AsCompleted<R> {
    const NAME: &'static str = "MapUnordered";

    fn new() -> Self {
        AsCompleted {
            slots: Vec::new(),
            free: Vec::new(),
            inflight: 0,
            set: WaitSet::new(),
        }
    }

    fn len(&self) -> usize {
        self.inflight
    }

    fn stop(&mut self, started: bool) {
        for (fut, _) in self.slots.iter_mut().filter_map(Option::take) {
            if started {
                fut.cancel();
            }
            fut.core().remove_waiter(&self.set);
        }
    }
}

impl<E, I, A, R> Order<E, I, A, R> for AsCompleted<R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    fn fill(&mut self, feed: &mut Feed<'_, E, I, A, R>, held: usize) {
        self.top_up(feed, held);
    }

    /// The first chunk to complete, once the window is topped up.
    fn next_chunk(&mut self, feed: &mut Feed<'_, E, I, A, R>, held: usize) -> Next<R> {
        self.top_up(feed, held);
        if self.inflight == 0 {
            return Next::End;
        }
        let Some(slot) = self.set.next(feed.deadline) else {
            return Next::Timeout;
        };
        let Some((fut, len)) = self.slots.get_mut(slot).and_then(Option::take) else {
            return Next::Retry;
        };
        self.free.push(slot);
        self.inflight -= 1;
        feed.taken(len);
        Next::Chunk(fut, len)
    }

    /// Tops the window up again: a slot is free.
    fn collected(&mut self, feed: &mut Feed<'_, E, I, A, R>, held: usize) {
        self.top_up(feed, held);
    }
}
