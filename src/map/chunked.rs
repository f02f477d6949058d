//! [`Chunked`]: `map` by chunks submitted as tasks, results in input order.

use std::collections::VecDeque;
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

/// `map` by chunks submitted as tasks: the path of every backend but the thread pool.
pub(super) struct Chunked<'a, E, I, A, R> {
    feed: Feed<'a, E, I, A, R>,
    inflight: VecDeque<(Future<Chunk<R>>, usize)>,
    /// Items of the chunks in `inflight`.
    inflight_items: usize,
    current: Drain<R>,
    finished: bool,
    /// Set by the first `next`: only an iteration that started cancels on drop (as Python's
    /// result generator, whose `finally` runs only once it has started).
    started: bool,
}

impl<'a, E, I, A, R> Chunked<'a, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    pub(super) fn new(exec: &'a E, task: TaskHandle<A, R>, items: I, opts: MapOptions) -> Self {
        let mut map = Chunked {
            feed: Feed::new(exec, task, items, opts),
            inflight: VecDeque::new(),
            inflight_items: 0,
            current: Drain::empty(),
            finished: false,
            started: false,
        };
        map.fill(None);
        map
    }

    /// Tops the window up, taking input. `head` is the chunk the consumer is about to wait
    /// for (or yield from). While the input comes quickly (or with a `buffersize`: Python's
    /// eager top-up), the window is filled. Once taking a chunk's items took longer than
    /// the chunk target (a slow input, whose `next` may block: it runs on this thread),
    /// input is taken only while the head is not ready and fewer than two chunks per
    /// worker are unfinished (the head included), and never while a result is ready: the
    /// workers have nothing better to do, and a ready result waits at most for the one
    /// `next` of the input in progress.
    fn fill(&mut self, head: Option<&Future<Chunk<R>>>) {
        let careful = !self.feed.eager && self.feed.slow;
        let mut unfinished = 0;
        if careful {
            if head.is_some_and(Future::done) {
                return;
            }
            unfinished = usize::from(head.is_some())
                + self.inflight.iter().filter(|(f, _)| !f.done()).count();
        }
        let most = 2 * self.feed.sizer.workers;
        loop {
            let careful = !self.feed.eager && self.feed.slow;
            if careful && (unfinished >= most || head.is_some_and(Future::done)) {
                break;
            }
            if !self.feed.room(
                self.inflight.len(),
                self.inflight_items,
                self.current.remaining(),
            ) {
                break;
            }
            match self.feed.submit_next(self.inflight_items) {
                Some(job) => {
                    self.inflight_items += job.1;
                    self.inflight.push_back(job);
                    unfinished += 1;
                }
                None => break,
            }
        }
    }

    fn cancel_all(&mut self) {
        for (fut, _) in self.inflight.drain(..) {
            fut.cancel();
        }
    }
}

impl<E, I, A, R> Iterator for Chunked<'_, E, I, A, R>
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
        let known = self.current.remaining() + self.inflight.iter().map(|(_, n)| n).sum::<usize>();
        plus(known, self.feed.size_hint())
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

impl<E, I, A, R> Chunked<'_, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    /// Moves to the next chunk (waiting for it) and yields its first result.
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
            if self.inflight.is_empty() {
                self.fill(None);
            }
            let Some((fut, len)) = self.inflight.pop_front() else {
                self.finished = true;
                return None;
            };
            self.inflight_items -= len;
            // Top up before waiting: with a `buffersize`, always (Python submits one more per
            // step); otherwise only if the head is not ready (see `fill`).
            self.fill(Some(&fut));
            match self.feed.collect(fut, len) {
                Ok(drain) => self.current = drain,
                Err(()) => {
                    self.finished = true;
                    self.cancel_all();
                    return Some(Err(TaskError::Timeout));
                }
            }
        }
    }
}

impl<E, I, A, R> Drop for Chunked<'_, E, I, A, R> {
    fn drop(&mut self) {
        if self.started {
            for (fut, _) in self.inflight.drain(..) {
                fut.cancel();
            }
        }
    }
}

impl<E, I, A, R> fmt::Debug for Chunked<'_, E, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunked")
            .field("inflight", &self.inflight.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
