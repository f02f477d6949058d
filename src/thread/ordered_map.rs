//! `map` on the thread pool, its own way ([`Executor::ordered_map`]): blocks of items split
//! among the workers and the caller (see `map_block.rs`), results yielded in place. The input
//! is taken through [`MapInput`] (one call per block), the results through [`OrderedMap`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ThreadPoolExecutor;
use super::map_block::MapBlock;
use super::map_cursor::{Cursor, Step};
use super::map_source::VecSource;
use crate::error::TaskError;
use crate::executor::Executor;
use crate::map::{MapInput, MapOptions, OrderedMap, ReadyRun, plus};
use crate::task::Payload;

/// Blocks launched ahead of the consumer (the one being drained included): while the
/// consumer drains one, the workers run the next.
const BLOCKS_AHEAD: usize = 2;

/// Largest block, in items (its inputs and results stay in cache while they cross threads).
const MAX_BLOCK: usize = 1 << 14;

/// First block when the cost of an item is unknown: items of one piece each, so that slow
/// items spread over the workers at once, and few enough to bound the work done ahead.
const PROBE_BLOCK: usize = 64;

/// A block should run about this long (in nanoseconds of one thread's work), a piece about
/// `PIECE_NS`: long enough to amortise claiming, short enough to balance.
const BLOCK_NS: f64 = 2_000_000.0;
const PIECE_NS: f64 = 20_000.0;

/// Taking a block's items from the input stops after this long (a block of a known cost
/// runs about `BLOCK_NS`; an input slower than that is the bottleneck, and its items are
/// better sent on as they come).
const INPUT_CUT: Duration = Duration::from_nanos(BLOCK_NS as u64);

/// A block of a thread-pool `map`: items moved in from the input, the task (a closure that
/// calls the map's `TaskHandle`).
type VecBlock<A, R, F> = MapBlock<VecSource<A>, F, R>;

/// `map` on the thread pool: blocks of items split among the workers and the caller (see
/// `thread/map_block.rs`), results yielded in place.
pub(super) struct ThreadOrderedMap<'a, A, R, F: Fn(A) -> R> {
    pool: &'a ThreadPoolExecutor,
    f: F,
    /// Launched blocks in input order; the consumer drains the front one.
    queue: VecDeque<Arc<VecBlock<A, R, F>>>,
    /// Buffers of a drained block, for the next one (fresh ones would cost page faults).
    spare: Option<(Vec<A>, Vec<std::mem::MaybeUninit<R>>)>,
    /// The consumer's position in the front block.
    cursor: Cursor<R>,
    /// Error to yield once after the launched blocks (a refused launch).
    last_error: Option<TaskError>,
    fixed_piece: Option<usize>,
    ns_per_item: Option<f64>,
    block_len: usize,
    help: bool,
    deadline: Option<Instant>,
    /// No more input will be taken (it ended, a launch was refused, or the deadline passed).
    stopped: bool,
    started: bool,
    /// The input's length was known at the start.
    exact_input: bool,
}

impl<'a, A, R, F> ThreadOrderedMap<'a, A, R, F>
where
    A: Payload,
    R: Payload,
    F: Fn(A) -> R + Clone + Send + Sync + 'static,
{
    pub(super) fn new(pool: &'a ThreadPoolExecutor, f: F, opts: MapOptions) -> Self {
        let help = pool.caller_runs() && opts.timeout.is_none();
        ThreadOrderedMap {
            pool,
            f,
            queue: VecDeque::new(),
            spare: None,
            cursor: Cursor::new(),
            last_error: None,
            fixed_piece: opts.chunksize,
            ns_per_item: None,
            block_len: PROBE_BLOCK,
            help,
            deadline: opts.timeout.and_then(|t| Instant::now().checked_add(t)),
            stopped: false,
            started: false,
            exact_input: false,
        }
    }

    /// Threads that run pieces: the workers, and the caller if it may.
    fn participants(&self) -> usize {
        self.pool.max_workers() + usize::from(self.help)
    }

    /// Items per piece for a block of `len` items.
    fn piece_len(&self, len: usize) -> usize {
        if let Some(n) = self.fixed_piece {
            return n;
        }
        match self.ns_per_item {
            None => 1,
            Some(ns) => {
                let ideal = (PIECE_NS / ns.max(0.01)) as usize;
                // At least four pieces per participant, so a slow piece does not hold the
                // block back.
                let fair = len.div_ceil(4 * self.participants());
                ideal.min(fair).max(1)
            }
        }
    }

    /// Launches blocks until `BLOCKS_AHEAD` are in flight or the input ends. (A
    /// `buffersize` takes the chunked path instead: see `Map::new`.)
    fn fill(&mut self, input: &mut dyn MapInput<A>) {
        while self.queue.len() < BLOCKS_AHEAD && !self.stopped {
            let fixed_len = self.fixed_piece.map(|p| p.saturating_mul(PROBE_BLOCK));
            let n = fixed_len.unwrap_or(self.block_len).max(1);
            let (mut items, output) = self.spare.take().unwrap_or_default();
            items.reserve(n.min(input.items_left().1.unwrap_or(n)).min(MAX_BLOCK));
            input.take_into(&mut items, n, INPUT_CUT);
            if items.is_empty() {
                self.stopped = true;
                break;
            }
            let piece = self.piece_len(items.len());
            let block = Arc::new(
                MapBlock::new(
                    self.f.clone(),
                    VecSource::new(items),
                    output,
                    piece,
                    self.pool.registry(),
                )
                .workers_from_back(self.help),
            );
            if let Err(e) = block.launch(self.pool) {
                self.stopped = true;
                self.last_error = Some(TaskError::Submit(e));
                break;
            }
            self.queue.push_back(block);
        }
    }

    /// Past the ready run: the next failure, the next pieces, or the next block.
    #[inline(never)]
    fn advance(&mut self, input: &mut dyn MapInput<A>) -> Option<Result<R, TaskError>> {
        self.started = true;
        loop {
            let Some(block) = self.queue.front().cloned() else {
                return self.last_error.take().map(Err);
            };
            match self.cursor.advance(&*block, self.help, self.deadline) {
                Step::Item(r) => return Some(r),
                Step::End => self.next_block(input),
                Step::TimedOut => {
                    self.cancel_all();
                    self.queue.clear();
                    self.stopped = true;
                    self.last_error = None;
                    return Some(Err(TaskError::Timeout));
                }
            }
        }
    }

    /// Leaves the drained front block: learns from it, launches more.
    fn next_block(&mut self, input: &mut dyn MapInput<A>) {
        let Some(done) = self.queue.pop_front() else {
            return;
        };
        if self.fixed_piece.is_none()
            && let Some(ns) = done.ns_per_item()
        {
            self.ns_per_item = Some(ns);
            let ideal = (BLOCK_NS / ns.max(0.01)) as usize;
            self.block_len = ideal
                .min(self.block_len.saturating_mul(16))
                .clamp(1, MAX_BLOCK);
        }
        self.spare = MapBlock::recycle(done);
        self.cursor.reset();
        self.fill(input);
    }

    /// Stops every launched block from starting more pieces.
    fn cancel_all(&mut self) {
        for b in &self.queue {
            b.close(TaskError::Cancelled);
        }
    }
}

impl<A: Payload, R: Payload, F> OrderedMap<A, R> for ThreadOrderedMap<'_, A, R, F>
where
    F: Fn(A) -> R + Clone + Send + Sync + 'static,
{
    fn start(&mut self, input: &mut dyn MapInput<A>) {
        self.exact_input = matches!(input.items_left(), (lo, Some(hi)) if lo == hi);
        self.fill(input);
    }

    /// Past the run lent before (empty by now): the next failure, pieces or block; the
    /// ready results after it are lent to the consumer, who reads them inline.
    fn next(
        &mut self,
        input: &mut dyn MapInput<A>,
        run: &mut ReadyRun<R>,
    ) -> Option<Result<R, TaskError>> {
        self.cursor.take_back_run(run);
        let next = self.advance(input);
        // SAFETY: the cursor was last advanced in the front block, which stays in `queue`
        // (alive, no other result of it moved out) until the run comes back: `next` and
        // `stop` take it back before anything else, and the map is not dropped before `stop`
        // (`Own`'s drop).
        *run = unsafe { self.cursor.lend_run() };
        next
    }

    fn size_hint(
        &self,
        run: &ReadyRun<R>,
        input: (usize, Option<usize>),
    ) -> (usize, Option<usize>) {
        let mut known: usize = self.queue.iter().map(|b| b.len()).sum();
        if !self.queue.is_empty() {
            // (The lent run is counted as consumed by the cursor; it is not yet.)
            known -= self.cursor.consumed() - run.len();
        }
        known += usize::from(self.last_error.is_some());
        let (lo, hi) = if self.stopped {
            (known, Some(known))
        } else {
            plus(known, input)
        };
        // An input of unknown length keeps an unknown length, even once it was all taken
        // (as the chunked path reports it: progress bars show a spinner for it).
        if !self.exact_input && hi == Some(lo) {
            (lo, None)
        } else {
            (lo, hi)
        }
    }

    fn stop(&mut self, run: &mut ReadyRun<R>) {
        self.cursor.take_back_run(run);
    }
}

impl<A, R, F: Fn(A) -> R> Drop for ThreadOrderedMap<'_, A, R, F> {
    fn drop(&mut self) {
        if let Some(front) = self.queue.front() {
            front.set_consumed(self.cursor.consumed());
        }
        if self.started {
            for b in &self.queue {
                b.close(TaskError::Cancelled);
            }
        }
    }
}

impl<A, R, F: Fn(A) -> R> fmt::Debug for ThreadOrderedMap<'_, A, R, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("blocks_in_flight", &self.queue.len())
            .field("finished", &(self.stopped && self.queue.is_empty()))
            .finish_non_exhaustive()
    }
}
