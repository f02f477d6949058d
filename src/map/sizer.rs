//! The chunk sizing of the chunked path: [`Sizer`].

use std::time::Duration;

/// Largest automatic chunk.
pub(super) const MAX_CHUNK: usize = 1 << 13;

/// Chooses chunk sizes: fixed, or adapted to the measured time per item.
///
/// Automatic sizing starts with one single-item probe chunk per worker and keeps only one
/// chunk per worker in flight until the size has converged: a window full of tiny chunks
/// would cost a wake-up per chunk, and a window of big chunks would serialise expensive
/// items. Each observation may grow the size at most 16x (a single fast item is weak
/// evidence), or shrink it at once; the size has converged when an observation was not
/// limited by that cap.
#[derive(Debug)]
pub(super) struct Sizer {
    fixed: Option<usize>,
    size: usize,
    target: Duration,
    pub(super) workers: usize,
    pub(super) converged: bool,
}

impl Sizer {
    pub(super) fn new(fixed: Option<usize>, target: Duration, workers: usize) -> Self {
        Sizer {
            fixed,
            size: 1,
            target,
            workers: workers.max(1),
            converged: false,
        }
    }

    /// How many chunks may be in flight now: the full window once sizes are known.
    pub(super) fn limit(&self, window: usize) -> usize {
        if self.fixed.is_some() || self.converged {
            window
        } else {
            self.workers.min(window)
        }
    }

    /// Size of the next chunk; `remaining` is a lower bound of the items left.
    pub(super) fn next(&self, remaining: usize) -> usize {
        if let Some(n) = self.fixed {
            return n;
        }
        // Near the end, split what is left fairly so no worker gets a long tail, but not
        // below an eighth of the target size (more tiny chunks cost more than they balance).
        let fair = remaining
            .div_ceil(2 * self.workers)
            .max(self.size / 8)
            .max(1);
        if remaining > 0 {
            self.size.min(fair)
        } else {
            self.size
        }
    }

    /// Learns from a finished chunk of `len` items that ran for `elapsed`.
    pub(super) fn observe(&mut self, len: usize, elapsed: Duration) {
        if self.fixed.is_some() || len == 0 {
            return;
        }
        let per_item = (elapsed.as_nanos() / len as u128).max(1);
        let ideal = (self.target.as_nanos() / per_item).clamp(1, MAX_CHUNK as u128) as usize;
        let cap = len.saturating_mul(16);
        self.converged |= ideal <= cap;
        self.size = ideal.min(cap).max(1);
    }
}
