//! [`MapUnordered`]: the iterator of [`Executor::map_unordered`], results as chunks
//! complete.

use std::fmt;
use std::sync::Arc;

use super::drain::Drain;
use super::feed::{Feed, plus};
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
    feed: Feed<'a, E, I, A, R>,
    /// Chunks in flight, by slot; the wait set reports slots as they complete.
    slots: Vec<Option<(Future<Chunk<R>>, usize)>>,
    free: Vec<usize>,
    inflight: usize,
    /// Items of the chunks in flight.
    inflight_items: usize,
    set: Arc<WaitSet>,
    current: Drain<R>,
    finished: bool,
    /// As in `Map`: only a started iteration cancels on drop.
    started: bool,
}

impl<'a, E, I, A, R> MapUnordered<'a, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    pub(crate) fn new<T: Task<A, R>>(exec: &'a E, task: T, items: I, opts: MapOptions) -> Self {
        let mut map = MapUnordered {
            feed: Feed::new(exec, TaskHandle::new(task), items, opts),
            slots: Vec::new(),
            free: Vec::new(),
            inflight: 0,
            inflight_items: 0,
            set: WaitSet::new(),
            current: Drain::empty(),
            finished: false,
            started: false,
        };
        map.fill();
        map
    }

    fn fill(&mut self) {
        while self
            .feed
            .room(self.inflight, self.inflight_items, self.current.remaining())
        {
            let Some((fut, len)) = self.feed.submit_next(self.inflight_items) else {
                break;
            };
            self.inflight_items += len;
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
        match self.current.next() {
            Some(r) => Some(r),
            None => self.advance(),
        }
    }

    /// Exact when the input's length is known: every item yields one result.
    fn size_hint(&self) -> (usize, Option<usize>) {
        let inflight: usize = self.slots.iter().flatten().map(|(_, n)| n).sum();
        plus(self.current.remaining() + inflight, self.feed.size_hint())
    }

    fn fold<B, F>(mut self, init: B, mut f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
    {
        let mut acc = init;
        loop {
            acc = self.current.fold_into(acc, &mut f);
            match self.advance() {
                Some(r) => acc = f(acc, r),
                None => return acc,
            }
        }
    }
}

impl<E, I, A, R> MapUnordered<'_, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    /// Takes the next completed chunk (waiting for one) and yields its first result.
    #[inline(never)]
    fn advance(&mut self) -> Option<Result<R, TaskError>> {
        self.started = true;
        loop {
            if let Some(r) = self.current.next() {
                return Some(r);
            }
            if self.finished {
                return None;
            }
            self.fill();
            if self.inflight == 0 {
                self.finished = true;
                return None;
            }
            let Some(slot) = self.set.next(self.feed.deadline) else {
                self.finished = true;
                return Some(Err(TaskError::Timeout));
            };
            let Some((fut, len)) = self.slots.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            self.free.push(slot);
            self.inflight -= 1;
            self.inflight_items -= len;
            match self.feed.collect(fut, len) {
                Ok(drain) => self.current = drain,
                Err(()) => {
                    self.finished = true;
                    return Some(Err(TaskError::Timeout));
                }
            }
            self.fill();
        }
    }
}

impl<E, I, A, R> Drop for MapUnordered<'_, E, I, A, R> {
    fn drop(&mut self) {
        for (fut, _) in self.slots.iter_mut().filter_map(Option::take) {
            if self.started {
                fut.cancel();
            }
            fut.core().remove_waiter(&self.set);
        }
    }
}

impl<E, I, A, R> fmt::Debug for MapUnordered<'_, E, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapUnordered")
            .field("inflight", &self.inflight)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
