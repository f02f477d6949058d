//! [`Feed`]: what both chunked iterators share (the input, the sizer, submission, the items
//! in flight).

use std::iter::Fuse;
use std::time::{Duration, Instant};

use super::drain::Drain;
use super::options::{DEFAULT_BUFFER_BYTES, DEFAULT_WINDOW, MapOptions};
use super::sizer::{MAX_CHUNK, Sizer};
use crate::chunk::Chunk;
use crate::error::TaskError;
use crate::executor::Executor;
use crate::future::Future;
use crate::task::Payload;
use crate::task::TaskHandle;

/// What both map iterators share: the input, the sizer, submission, and the count of items
/// in flight.
pub(super) struct Feed<'a, E, I, A, R> {
    exec: &'a E,
    /// The task, type-erased once per map (its captures encoded once for remote pools).
    task: TaskHandle<A, R>,
    items: Fuse<I>,
    pub(super) sizer: Sizer,
    window: usize,
    pub(super) deadline: Option<Instant>,
    /// Items of the chunks submitted and not yet taken for reading ([`Feed::taken`]).
    ahead: usize,
    /// Set after a submission failed or the deadline passed: take no more input.
    stopped: bool,
    /// Bound on the bytes of results held ahead of the consumer (`buffer_bytes`).
    max_bytes: usize,
    /// Python's `buffersize` in items (`buffersize × chunksize`), if given: then each step
    /// tops the window up before it yields, as Python's `map` does (`eager`; also for an
    /// input that fits in the window, submitted whole at once).
    max_items: Option<usize>,
    pub(super) eager: bool,
    /// Building a chunk stops once taking its items took this long (an input slower than
    /// the work: its items are sent as they come rather than held for a full chunk).
    cut_after: Duration,
    /// Taking the last chunk's items took longer than `cut_after` (a slow input).
    pub(super) slow: bool,
    /// Encoded bytes and items of the chunks collected so far: what an item's result costs.
    seen_bytes: u64,
    seen_items: u64,
}

impl<E, I: Iterator, A, R> Feed<'_, E, I, A, R> {
    /// Bounds on the items not yet submitted.
    pub(super) fn size_hint(&self) -> (usize, Option<usize>) {
        if self.stopped {
            (0, Some(0))
        } else {
            self.items.size_hint()
        }
    }

    /// Items of the chunks in flight (submitted, not yet taken for reading).
    pub(super) fn ahead(&self) -> usize {
        self.ahead
    }

    /// A chunk of `len` items left the window to be read.
    pub(super) fn taken(&mut self, len: usize) {
        self.ahead -= len;
    }
}

/// Adds `known` items to an input's size hint.
pub(crate) fn plus(known: usize, (lo, hi): (usize, Option<usize>)) -> (usize, Option<usize>) {
    (
        lo.saturating_add(known),
        hi.and_then(|h| h.checked_add(known)),
    )
}

impl<'a, E: Executor, I: Iterator<Item = A>, A: Payload, R: Payload> Feed<'a, E, I, A, R> {
    pub(super) fn new(exec: &'a E, task: TaskHandle<A, R>, items: I, opts: MapOptions) -> Self {
        let workers = exec.max_workers();
        let window = opts.buffersize.unwrap_or(DEFAULT_WINDOW.max(16 * workers));
        let mut sizer = Sizer::new(opts.chunksize, exec.chunk_target(), workers);
        // An input known to fit in the window is submitted whole, one item per task, at
        // once (as Python's eager `map` does): probing would only delay it. A `buffersize`
        // is submitted whole at once too, as in Python.
        let whole = items.size_hint().1.is_some_and(|n| n <= window);
        if whole || opts.buffersize.is_some() {
            sizer.converged = true;
        }
        Feed {
            exec,
            task,
            items: items.fuse(),
            sizer,
            window,
            deadline: opts.timeout.and_then(|t| Instant::now().checked_add(t)),
            ahead: 0,
            stopped: false,
            max_bytes: opts.buffer_bytes.unwrap_or(DEFAULT_BUFFER_BYTES),
            max_items: opts
                .buffersize
                .map(|b| b.saturating_mul(opts.chunksize.unwrap_or(1))),
            eager: whole || opts.buffersize.is_some(),
            cut_after: exec.chunk_target(),
            slow: false,
            seen_bytes: 0,
            seen_items: 0,
        }
    }

    /// True if one more chunk may be submitted with `chunks` chunks in flight and `held`
    /// results received and not consumed: the window has room (in chunks, and in items with
    /// a `buffersize`), and the bytes of those results and of the items in flight (at the
    /// size per item seen so far) are under the bound. With nothing in flight, always
    /// (progress is guaranteed).
    pub(super) fn room(&self, chunks: usize, held: usize) -> bool {
        if chunks == 0 {
            return !self.stopped;
        }
        let ahead = self.ahead;
        chunks < self.sizer.limit(self.window)
            && self.max_items.is_none_or(|max| ahead < max)
            && ((ahead + held) as u128) * u128::from(self.seen_bytes)
                < (self.max_bytes as u128) * u128::from(self.seen_items.max(1))
    }

    /// Submits the next chunk, if there is input left, and counts its items in flight. A
    /// refused submission becomes a finished future carrying the error (yielded once, counted
    /// as one item), and input stops.
    pub(super) fn submit_next(&mut self) -> Option<(Future<Chunk<R>>, usize)> {
        if self.stopped {
            return None;
        }
        let mut n = self.sizer.next(self.items.size_hint().0);
        if let Some(max) = self.max_items {
            n = n.min(max.saturating_sub(self.ahead).max(1));
        }
        let mut chunk: Vec<A> = Vec::with_capacity(n.min(MAX_CHUNK));
        let start = Instant::now();
        while chunk.len() < n {
            let Some(item) = self.items.next() else {
                break;
            };
            chunk.push(item);
            // (The clock is read after 1, 2, 4, 8... items: a slow input is noticed after
            // its first slow item, at a cost of a few clock reads per chunk.)
            if chunk.len().is_power_of_two() && start.elapsed() > self.cut_after {
                break;
            }
        }
        self.slow = start.elapsed() > self.cut_after;
        if chunk.is_empty() {
            return None;
        }
        let len = chunk.len();
        let job = match self.exec.submit_chunk(self.task.clone(), chunk) {
            Ok(fut) => (fut, len),
            Err(e) => {
                self.stopped = true;
                (Future::ready(Err(TaskError::Submit(e))), 1)
            }
        };
        self.ahead += job.1;
        Some(job)
    }

    /// Waits for a chunk future within the deadline and turns it into a drain.
    pub(super) fn collect(&mut self, fut: Future<Chunk<R>>, len: usize) -> Result<Drain<R>, ()> {
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if !fut.wait_timeout(left) {
                fut.cancel();
                return Err(());
            }
        }
        Ok(match fut.into_result_no_help() {
            Ok(chunk) => {
                self.sizer.observe(chunk.len(), chunk.elapsed);
                self.seen_bytes += chunk.bytes as u64;
                self.seen_items += chunk.len() as u64;
                Drain::of(chunk)
            }
            Err(e) => Drain::failed(e, len),
        })
    }
}
