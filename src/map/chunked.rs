//! [`Chunked`]: `map` by chunks submitted as tasks, the iterator both chunked maps are (the
//! ordered [`Map`]'s chunk mode and [`MapUnordered`]). [`Feed`] takes the input and submits
//! it as the window allows, a finished chunk is read through a [`Drain`]; what differs
//! between the two is the [`Window`] and its [`Order`]: which finished chunk is read next,
//! and when input is taken ([`InOrder`], `in_order.rs`; [`AsCompleted`], `unordered.rs`).
//!
//! [`Map`]: super::Map
//! [`MapUnordered`]: super::MapUnordered
//! [`InOrder`]: super::in_order::InOrder
//! [`AsCompleted`]: super::unordered::AsCompleted

use std::fmt;

use super::drain::Drain;
use super::feed::{Feed, plus};
use super::options::MapOptions;
use crate::chunk::Chunk;
use crate::error::TaskError;
use crate::executor::Executor;
use crate::future::Future;
use crate::task::Payload;
use crate::task::TaskHandle;

/// What [`Order::next_chunk`] found.
pub(super) enum Next<R> {
    /// A chunk to read: its future (taken out of the window) and its items.
    Chunk(Future<Chunk<R>>, usize),
    /// Nothing to read this time; ask again.
    Retry,
    /// Nothing in flight and no input left: the map is over.
    End,
    /// The deadline passed while waiting for a chunk.
    Timeout,
}

/// The chunks in flight of a [`Chunked`] iterator (what it holds and lets go of); how they
/// are read is its [`Order`].
pub(super) trait Window {
    /// The name the iterator's `Debug` shows.
    const NAME: &'static str;

    fn new() -> Self;

    /// Chunks in flight.
    fn len(&self) -> usize;

    /// The deadline passed while a taken chunk was waited for: the map ends here.
    fn timed_out(&mut self) {}

    /// The iterator is dropped: cancels what is in flight if the iteration `started`, and
    /// lets go of every future.
    fn stop(&mut self, started: bool);
}

/// A [`Window`]'s policy over `feed`: which finished chunk is read next, and when input is
/// taken. Called once per chunk, never per item.
pub(super) trait Order<E, I, A, R>: Window {
    /// Tops the window up, with no chunk about to be read (at the start). `held`: results
    /// received and not consumed.
    fn fill(&mut self, feed: &mut Feed<'_, E, I, A, R>, held: usize);

    /// Takes the next chunk to read out of the window (waiting for it, or for any, as the
    /// window reads), telling `feed` it was [taken](Feed::taken), and tops the window up
    /// where this order does so before the chunk is read.
    fn next_chunk(&mut self, feed: &mut Feed<'_, E, I, A, R>, held: usize) -> Next<R>;

    /// A chunk was read (its results are `held`): tops the window up where this order does
    /// so after reading.
    fn collected(&mut self, _feed: &mut Feed<'_, E, I, A, R>, _held: usize) {}
}

/// `map` by chunks submitted as tasks: the path of every backend but the thread pool's own
/// ordered map, in the order `W` reads.
pub(super) struct Chunked<'a, E, I, A, R, W: Window> {
    feed: Feed<'a, E, I, A, R>,
    window: W,
    current: Drain<R>,
    finished: bool,
    /// Set by the first `next`: only an iteration that started cancels on drop (as Python's
    /// result generator, whose `finally` runs only once it has started).
    started: bool,
}

impl<'a, E, I, A, R, W> Chunked<'a, E, I, A, R, W>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
    W: Order<E, I, A, R>,
{
    pub(super) fn new(exec: &'a E, task: TaskHandle<A, R>, items: I, opts: MapOptions) -> Self {
        let mut map = Chunked {
            feed: Feed::new(exec, task, items, opts),
            window: W::new(),
            current: Drain::empty(),
            finished: false,
            started: false,
        };
        map.window.fill(&mut map.feed, map.current.remaining());
        map
    }

    /// Moves to the next chunk the window gives (waiting for it) and yields its first
    /// result.
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
            let (fut, len) = match self
                .window
                .next_chunk(&mut self.feed, self.current.remaining())
            {
                Next::Chunk(fut, len) => (fut, len),
                Next::Retry => continue,
                Next::End => {
                    self.finished = true;
                    return None;
                }
                Next::Timeout => {
                    self.finished = true;
                    return Some(Err(TaskError::Timeout));
                }
            };
            match self.feed.collect(fut, len) {
                Ok(drain) => self.current = drain,
                Err(()) => {
                    self.finished = true;
                    self.window.timed_out();
                    return Some(Err(TaskError::Timeout));
                }
            }
            self.window
                .collected(&mut self.feed, self.current.remaining());
        }
    }
}

impl<E, I, A, R, W> Iterator for Chunked<'_, E, I, A, R, W>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
    W: Order<E, I, A, R>,
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
        plus(
            self.current.remaining() + self.feed.ahead(),
            self.feed.size_hint(),
        )
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

impl<E, I, A, R, W: Window> Drop for Chunked<'_, E, I, A, R, W> {
    fn drop(&mut self) {
        self.window.stop(self.started);
    }
}

impl<E, I, A, R, W: Window> fmt::Debug for Chunked<'_, E, I, A, R, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(W::NAME)
            .field("inflight", &self.window.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
