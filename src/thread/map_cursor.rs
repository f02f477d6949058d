//! [`Cursor`]: a consumer's in-order read of a [`MapBlock`](super::map_block::MapBlock)'s
//! results, straight from its slots (a [`ReadyRun`]), past failures and a closed block.

use std::collections::VecDeque;
use std::time::Instant;

use super::map_block::{Pieces, Ready};
use crate::error::TaskError;
use crate::map::ReadyRun;

/// What the cursor found past its ready run.
pub(crate) enum Step<R> {
    /// The next result in order.
    Item(Result<R, TaskError>),
    /// The block is consumed.
    End,
    /// The deadline passed while waiting.
    TimedOut,
}

/// A consumer's position in one block: results are moved out of the block's slots, in order.
pub(crate) struct Cursor<R> {
    /// Ready results (pieces seen done, no failed item among them), read in place.
    run: ReadyRun<R>,
    /// Index of the first item after the ready run.
    pos: usize,
    /// Failed items at or after `pos`, in order (of the last piece examined).
    errors: VecDeque<(usize, TaskError)>,
    /// Items from this index on fail with this error (the block was closed).
    closed: Option<(usize, TaskError)>,
}

impl<R> Cursor<R> {
    pub(crate) fn new() -> Self {
        Cursor {
            run: ReadyRun::empty(),
            pos: 0,
            errors: VecDeque::new(),
            closed: None,
        }
    }

    /// The next ready result, if the run has one.
    ///
    /// # Safety
    ///
    /// The block this cursor was last advanced in is alive.
    #[inline]
    pub(crate) unsafe fn next_ready(&mut self) -> Option<R> {
        // (The read is `ReadyRun`'s; its memory is the block's, alive by the contract.)
        self.run.next()
    }

    /// Hands the ready run out to a consumer that reads it inline; the cursor's own run is
    /// empty until [`take_back_run`](Self::take_back_run).
    ///
    /// # Safety
    ///
    /// The block this cursor was last advanced in stays alive, and no other result of it is
    /// moved out, until the run comes back through `take_back_run` (or is dropped unread).
    pub(crate) unsafe fn lend_run(&mut self) -> ReadyRun<R> {
        std::mem::replace(&mut self.run, ReadyRun::empty())
    }

    /// Takes back what is left of the run [`lend_run`](Self::lend_run) handed out: the
    /// consumer moved its first results out, in order, and gives back the rest. (Nothing
    /// left, or nothing lent: an empty run, which changes nothing.)
    pub(crate) fn take_back_run(&mut self, run: &mut ReadyRun<R>) {
        let run = std::mem::replace(run, ReadyRun::empty());
        if !run.is_empty() {
            self.run = run;
        }
    }

    /// Results moved out so far (all of the block's items before this index are gone).
    pub(crate) fn consumed(&self) -> usize {
        self.pos - self.run.len()
    }

    /// Back to the start, for a new block.
    pub(crate) fn reset(&mut self) {
        *self = Cursor::new();
    }

    /// Moves past the ready run: yields the next failure, or waits for the next pieces.
    /// Call when `next_ready` gave nothing, always with the same block until `End`.
    pub(crate) fn advance(
        &mut self,
        block: &dyn Pieces<R>,
        help: bool,
        deadline: Option<Instant>,
    ) -> Step<R> {
        loop {
            let pos = self.pos;
            if self.errors.front().is_some_and(|(i, _)| *i == pos) {
                self.pos += 1;
                if let Some((_, e)) = self.errors.pop_front() {
                    return Step::Item(Err(e));
                }
            }
            if pos == block.len() {
                block.set_consumed(pos);
                return Step::End;
            }
            if let Some((from, e)) = &self.closed
                && pos >= *from
            {
                self.pos += 1;
                return Step::Item(Err(e.clone()));
            }
            if let Some(&(failed, _)) = self.errors.front() {
                // The items up to the next failure are in a piece already seen done.
                self.ready(block, failed);
            } else {
                let j = pos / block.piece_len();
                match block.wait_piece(j, help, deadline) {
                    Ready::Done => self.take_run(block, j),
                    Ready::Closed(e) => self.closed = Some((pos, e)),
                    Ready::TimedOut => {
                        block.set_consumed(pos);
                        return Step::TimedOut;
                    }
                }
            }
            // SAFETY: the run was just taken from `block`, which the caller holds.
            if let Some(v) = unsafe { self.next_ready() } {
                return Step::Item(Ok(v));
            }
        }
    }

    /// Makes the results from `pos` on ready, up to the first failure, over piece `j` (done)
    /// and the done pieces right after it. Called with no failure pending.
    fn take_run(&mut self, block: &dyn Pieces<R>, mut j: usize) {
        let piece = block.piece_len();
        let len = block.len();
        let pieces = len.div_ceil(piece);
        let start = self.pos;
        let mut end;
        loop {
            end = ((j + 1) * piece).min(len);
            if block.has_errors(j) {
                self.errors
                    .extend(block.errors_of(j).into_iter().filter(|(i, _)| *i >= start));
                break;
            }
            j += 1;
            if j == pieces || !block.is_done(j) {
                break;
            }
        }
        let run_end = self.errors.front().map_or(end, |(i, _)| *i);
        self.ready(block, run_end);
    }

    /// Makes the results from `pos` to `end` the ready run, and moves `pos` to `end`. Called
    /// with the run empty, over pieces seen done and no failed item before `end`.
    fn ready(&mut self, block: &dyn Pieces<R>, end: usize) {
        // SAFETY: results `pos..end` lie in pieces this cursor saw done with `Acquire` (the
        // callers' contract), with no failed item among them, so each result slot was written
        // by the claimer of its piece; none was moved out (the cursor is the block's one
        // consumer, and moves past each result once: `pos` only grows). They are moved out
        // only through this run; the block keeps them (its drop skips the first `consumed`)
        // and is alive whenever the run is read: `next_ready` and `lend_run` require it.
        self.run = unsafe { ReadyRun::new(block.result_ptr(self.pos), end - self.pos) };
        self.pos = end;
    }
}
