//! [`InOrder`]: the window of `map`'s chunk mode: chunks read in input order.

use std::collections::VecDeque;

use super::chunked::{Next, Order, Window};
use super::feed::Feed;
use crate::chunk::Chunk;
use crate::executor::Executor;
use crate::future::Future;
use crate::task::Payload;

/// The chunks in flight of `map`'s chunk mode, read in input order (the head first).
pub(super) struct InOrder<R> {
    inflight: VecDeque<(Future<Chunk<R>>, usize)>,
}

impl<R> InOrder<R> {
    /// Tops the window up, taking input. `head` is the chunk the consumer is about to wait
    /// for (or yield from). While the input comes quickly (or with a `buffersize`: Python's
    /// eager top-up), the window is filled. Once taking a chunk's items took longer than
    /// the chunk target (a slow input, whose `next` may block: it runs on this thread),
    /// input is taken only while the head is not ready and fewer than two chunks per
    /// worker are unfinished (the head included), and never while a result is ready: the
    /// workers have nothing better to do, and a ready result waits at most for the one
    /// `next` of the input in progress.
    fn top_up<E, I, A>(
        &mut self,
        feed: &mut Feed<'_, E, I, A, R>,
        held: usize,
        head: Option<&Future<Chunk<R>>>,
    ) where
        E: Executor,
        I: Iterator<Item = A>,
        A: Payload,
        R: Payload,
    {
        let careful = !feed.eager && feed.slow;
        let mut unfinished = 0;
        if careful {
            if head.is_some_and(Future::done) {
                return;
            }
            unfinished = usize::from(head.is_some())
                + self.inflight.iter().filter(|(f, _)| !f.done()).count();
        }
        let most = 2 * feed.sizer.workers;
        loop {
            let careful = !feed.eager && feed.slow;
            if careful && (unfinished >= most || head.is_some_and(Future::done)) {
                break;
            }
            if !feed.room(self.inflight.len(), held) {
                break;
            }
            match feed.submit_next() {
                Some(job) => {
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

impl<R> Window for InOrder<R> {
    const NAME: &'static str = "Chunked";

    fn new() -> Self {
        InOrder {
            inflight: VecDeque::new(),
        }
    }

    fn len(&self) -> usize {
        self.inflight.len()
    }

    /// Cancels the rest now: the map is over.
    fn timed_out(&mut self) {
        self.cancel_all();
    }

    fn stop(&mut self, started: bool) {
        if started {
            self.cancel_all();
        }
    }
}

impl<E, I, A, R> Order<E, I, A, R> for InOrder<R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    fn fill(&mut self, feed: &mut Feed<'_, E, I, A, R>, held: usize) {
        self.top_up(feed, held, None);
    }

    /// The head, once the window is topped up: with a `buffersize`, always (Python submits
    /// one more per step); otherwise only if the head is not ready (see `top_up`).
    fn next_chunk(&mut self, feed: &mut Feed<'_, E, I, A, R>, held: usize) -> Next<R> {
        if self.inflight.is_empty() {
            self.top_up(feed, held, None);
        }
        let Some((fut, len)) = self.inflight.pop_front() else {
            return Next::End;
        };
        feed.taken(len);
        self.top_up(feed, held, Some(&fut));
        Next::Chunk(fut, len)
    }
}
