//! The iterators behind [`Executor::map`] and [`Executor::map_unordered`]: lazy, bounded,
//! adaptively chunked, cancelling what has not started when dropped.

use std::collections::VecDeque;
use std::fmt;
use std::iter::Fuse;
use std::time::{Duration, Instant};

use crate::error::TaskError;
use crate::executor::{Chunk, Executor, Payload};
use crate::future::Future;
use crate::thread::block::{Block, Cursor, Step, VecSource};
use crate::wait::WaitSet;
use std::sync::Arc;

/// Options of [`Executor::map_with`]: Python's `chunksize`, `timeout` and `buffersize`.
///
/// ```
/// use concurrent_futures::MapOptions;
/// use std::time::Duration;
/// let opts = MapOptions::new().chunksize(64).timeout(Duration::from_secs(5)).buffersize(8);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MapOptions {
    chunksize: Option<usize>,
    timeout: Option<Duration>,
    buffersize: Option<usize>,
}

impl MapOptions {
    /// Default options: automatic chunk size, no timeout, a window of 64 chunks (16 per
    /// worker on machines with more than four).
    ///
    /// ```
    /// let opts = concurrent_futures::MapOptions::new();
    /// # let _ = opts;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Items per task, fixed (0 counts as 1). Without it the size adapts so that a chunk
    /// runs about [`Executor::chunk_target`].
    ///
    /// ```
    /// let opts = concurrent_futures::MapOptions::new().chunksize(100);
    /// # let _ = opts;
    /// ```
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n.max(1));
        self
    }

    /// Time limit for the whole iteration, counted from the `map` call. When it passes, the
    /// iterator yields [`TaskError::Timeout`] once, cancels the rest, and ends.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let opts = concurrent_futures::MapOptions::new().timeout(Duration::from_secs(1));
    /// # let _ = opts;
    /// ```
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Maximum number of chunks submitted and not yet consumed (0 counts as 1).
    ///
    /// ```
    /// let opts = concurrent_futures::MapOptions::new().buffersize(2);
    /// # let _ = opts;
    /// ```
    pub fn buffersize(mut self, n: usize) -> Self {
        self.buffersize = Some(n.max(1));
        self
    }
}

/// Chunks in flight by default (at least; 16 per worker on bigger machines). A small window
/// starves the workers: chunks that finish behind a slow head chunk hold their slots until
/// the consumer reaches them.
const DEFAULT_WINDOW: usize = 64;

/// Largest automatic chunk.
const MAX_CHUNK: usize = 1 << 13;

/// Chooses chunk sizes: fixed, or adapted to the measured time per item.
///
/// Automatic sizing starts with one single-item probe chunk per worker and keeps only one
/// chunk per worker in flight until the size has converged: a window full of tiny chunks
/// would cost a wake-up per chunk, and a window of big chunks would serialise expensive
/// items. Each observation may grow the size at most 16x (a single fast item is weak
/// evidence), or shrink it at once; the size has converged when an observation was not
/// limited by that cap.
#[derive(Debug)]
struct Sizer {
    fixed: Option<usize>,
    size: usize,
    target: Duration,
    workers: usize,
    converged: bool,
}

impl Sizer {
    fn new(fixed: Option<usize>, target: Duration, workers: usize) -> Self {
        Sizer {
            fixed,
            size: 1,
            target,
            workers: workers.max(1),
            converged: false,
        }
    }

    /// How many chunks may be in flight now: the full window once sizes are known.
    fn limit(&self, window: usize) -> usize {
        if self.fixed.is_some() || self.converged {
            window
        } else {
            self.workers.min(window)
        }
    }

    /// Size of the next chunk; `remaining` is a lower bound of the items left.
    fn next(&self, remaining: usize) -> usize {
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
    fn observe(&mut self, len: usize, elapsed: Duration) {
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

/// Yields the results of one finished chunk, in order.
struct Drain<R> {
    values: std::vec::IntoIter<R>,
    errors: std::vec::IntoIter<(u32, TaskError)>,
    /// Position of the next item and of the next failed item (`u32::MAX`: none).
    pos: u32,
    next_error_at: u32,
    next_error: Option<TaskError>,
    /// Error repeated for every item when the whole chunk failed.
    whole: Option<(TaskError, usize)>,
}

impl<R> Drain<R> {
    /// Items not yet yielded.
    fn remaining(&self) -> usize {
        match &self.whole {
            Some((_, n)) => *n,
            None => self.values.len() + self.errors.len() + usize::from(self.next_error.is_some()),
        }
    }

    fn empty() -> Self {
        Drain {
            values: Vec::new().into_iter(),
            errors: Vec::new().into_iter(),
            pos: 0,
            next_error_at: u32::MAX,
            next_error: None,
            whole: None,
        }
    }

    fn of(chunk: Chunk<R>) -> Self {
        let mut d = Drain {
            values: chunk.values.into_iter(),
            errors: chunk.errors.into_iter(),
            ..Drain::empty()
        };
        d.load_next_error();
        d
    }

    fn failed(err: TaskError, len: usize) -> Self {
        Drain {
            whole: Some((err, len)),
            ..Drain::empty()
        }
    }

    fn load_next_error(&mut self) {
        match self.errors.next() {
            Some((i, e)) => {
                self.next_error_at = i;
                self.next_error = Some(e);
            }
            None => self.next_error_at = u32::MAX,
        }
    }

    /// The common case, kept small so that it inlines into the caller's loop.
    #[inline]
    fn next(&mut self) -> Option<Result<R, TaskError>> {
        if self.pos != self.next_error_at
            && let Some(v) = self.values.next()
        {
            self.pos += 1;
            return Some(Ok(v));
        }
        self.next_slow()
    }

    /// Feeds every remaining result to `f`; a chunk without failures goes straight over its
    /// values (no per-item `Option` shuffling).
    #[inline]
    fn fold_into<B>(&mut self, mut acc: B, f: &mut impl FnMut(B, Result<R, TaskError>) -> B) -> B {
        if self.whole.is_none() && self.next_error_at == u32::MAX {
            for v in self.values.by_ref() {
                acc = f(acc, Ok(v));
            }
            return acc;
        }
        while let Some(r) = self.next() {
            acc = f(acc, r);
        }
        acc
    }

    #[inline(never)]
    fn next_slow(&mut self) -> Option<Result<R, TaskError>> {
        if let Some((err, left)) = &mut self.whole {
            if *left == 0 {
                return None;
            }
            *left -= 1;
            return Some(Err(err.clone()));
        }
        if self.pos == self.next_error_at {
            let e = self.next_error.take()?;
            self.pos += 1;
            self.load_next_error();
            return Some(Err(e));
        }
        None
    }
}

/// What both map iterators share: the input, the sizer, and submission.
struct Feed<'a, E, I, A, R> {
    exec: &'a E,
    f: fn(A) -> R,
    items: Fuse<I>,
    sizer: Sizer,
    window: usize,
    deadline: Option<Instant>,
    /// Set after a submission failed or the deadline passed: take no more input.
    stopped: bool,
}

impl<E, I: Iterator, A, R> Feed<'_, E, I, A, R> {
    /// Bounds on the items not yet submitted.
    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.stopped {
            (0, Some(0))
        } else {
            self.items.size_hint()
        }
    }
}

/// Adds `known` items to an input's size hint.
fn plus(known: usize, (lo, hi): (usize, Option<usize>)) -> (usize, Option<usize>) {
    (
        lo.saturating_add(known),
        hi.and_then(|h| h.checked_add(known)),
    )
}

impl<'a, E: Executor, I: Iterator<Item = A>, A: Payload, R: Payload> Feed<'a, E, I, A, R> {
    fn new(exec: &'a E, f: fn(A) -> R, items: I, opts: MapOptions) -> Self {
        let workers = exec.max_workers();
        let window = opts.buffersize.unwrap_or(DEFAULT_WINDOW.max(16 * workers));
        let mut sizer = Sizer::new(opts.chunksize, exec.chunk_target(), workers);
        // An input known to fit in the window is submitted whole, one item per task, at
        // once (as Python's eager `map` does): probing would only delay it.
        if items.size_hint().1.is_some_and(|n| n <= window) {
            sizer.converged = true;
        }
        Feed {
            exec,
            f,
            items: items.fuse(),
            sizer,
            window,
            deadline: opts.timeout.and_then(|t| Instant::now().checked_add(t)),
            stopped: false,
        }
    }

    /// Submits the next chunk, if there is input left. A refused submission becomes a
    /// finished future carrying the error (yielded once), and input stops.
    fn submit_next(&mut self) -> Option<(Future<Chunk<R>>, usize)> {
        if self.stopped {
            return None;
        }
        let n = self.sizer.next(self.items.size_hint().0);
        let chunk: Vec<A> = self.items.by_ref().take(n).collect();
        if chunk.is_empty() {
            return None;
        }
        let len = chunk.len();
        match self.exec.submit_chunk(self.f, chunk) {
            Ok(fut) => Some((fut, len)),
            Err(e) => {
                self.stopped = true;
                Some((Future::ready(Err(TaskError::Submit(e))), 1))
            }
        }
    }

    /// Waits for a chunk future within the deadline and turns it into a drain.
    fn collect(&mut self, fut: Future<Chunk<R>>, len: usize) -> Result<Drain<R>, ()> {
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
                Drain::of(chunk)
            }
            Err(e) => Drain::failed(e, len),
        })
    }
}

/// Iterator returned by [`Executor::map`]: results in input order.
///
/// On a [`ThreadPoolExecutor`](crate::ThreadPoolExecutor) the input is taken in blocks that
/// the workers and the calling thread split among themselves, with results written in place
/// and yielded straight from there (with the default options, items that cost less than
/// their trip to a worker and back, a few nanoseconds, run on the calling thread alone,
/// block by block, as the results are asked for); on other backends items travel in
/// chunks, one task each.
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// fn neg(x: i32) -> i32 { -x }
/// let pool = ThreadPoolExecutor::new(2);
/// let mut it = pool.map(neg, 1..4);
/// assert_eq!(it.next(), Some(Ok(-1)));
/// assert_eq!(it.collect::<Result<Vec<_>, _>>(), Ok(vec![-2, -3]));
/// ```
pub struct Map<'a, E, I, A, R> {
    mode: Mode<'a, E, I, A, R>,
}

enum Mode<'a, E, I, A, R> {
    Chunks(Chunked<'a, E, I, A, R>),
    Blocks(Blocks<'a, I, A, R>),
}

impl<'a, E, I, A, R> Map<'a, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    pub(crate) fn new(exec: &'a E, f: fn(A) -> R, items: I, opts: MapOptions) -> Self {
        let mode = match exec.as_thread_pool() {
            Some(pool) => Mode::Blocks(Blocks::new(pool, f, items, opts)),
            None => Mode::Chunks(Chunked::new(exec, f, items, opts)),
        };
        Map { mode }
    }
}

impl<E, I, A, R> Iterator for Map<'_, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    type Item = Result<R, TaskError>;

    /// Only the commonest case inline (a result ready in the current block), so that a
    /// consumer's loop (`collect` into a `Result`) inlines this whole and keeps its
    /// per-item work to a few instructions; the rest is `next_slow`.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if let Mode::Blocks(b) = &mut self.mode {
            // SAFETY: the cursor was last advanced in the front block, which `queue` holds.
            if let Some(v) = unsafe { b.cursor.next_ready() } {
                return Some(Ok(v));
            }
        }
        self.next_slow()
    }

    /// Exact when the input's length is known: every item yields one result.
    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.mode {
            Mode::Blocks(b) => b.size_hint(),
            Mode::Chunks(c) => c.size_hint(),
        }
    }

    fn fold<B, F>(self, init: B, f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
    {
        match self.mode {
            Mode::Blocks(b) => b.fold(init, f),
            Mode::Chunks(c) => c.fold(init, f),
        }
    }
}

impl<E, I, A, R> Map<'_, E, I, A, R>
where
    E: Executor,
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    /// Past the ready results of a block; every step of the chunked path.
    #[inline(never)]
    fn next_slow(&mut self) -> Option<Result<R, TaskError>> {
        match &mut self.mode {
            Mode::Blocks(b) => b.advance(),
            Mode::Chunks(c) => c.next(),
        }
    }
}

impl<E, I, A, R> fmt::Debug for Map<'_, E, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mode {
            Mode::Blocks(b) => b.fmt(f),
            Mode::Chunks(c) => c.fmt(f),
        }
    }
}

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

/// Items cheaper than this (nanoseconds each, as the workers measured them: moving items
/// between threads included) cost less to run than to hand to another thread and back: the
/// caller runs the next blocks itself (see `Blocks`).
const INLINE_ENTER_NS: f64 = 4.0;

/// The caller hands its block to the workers when a piece of it took longer than this per
/// item (timed by the caller: nothing crosses threads, hence below `INLINE_ENTER_NS`).
const INLINE_LEAVE_NS: f64 = 2.5;

/// Items of the first block the caller runs itself, and of the largest (the sizes double),
/// and of each of their pieces: the caller times every piece, and when items turn out
/// dearer, the workers take the block's remaining pieces.
const INLINE_FIRST: usize = 1024;
const INLINE_MAX: usize = 4096;
const INLINE_PIECE: usize = 1024;

/// A block of a thread-pool `map`: items moved in from the input, a function pointer.
type MapBlock<A, R> = Block<VecSource<A>, fn(A) -> R, R>;

/// `map` on the thread pool: blocks of items split among the workers and the caller (see
/// `thread/block.rs`), results yielded in place.
///
/// Items that cost less than their trip to a worker and back (`INLINE_ENTER_NS`) are not
/// handed to the workers: the caller runs each block itself, piece by piece, when it
/// reaches it (the map then costs about what a plain loop does). Only with the default
/// options and `caller_runs`: an explicit `chunksize`, `buffersize` or `timeout` keeps the
/// workers on every block. The caller's blocks are small and their pieces timed; when items
/// turn out dearer (`INLINE_LEAVE_NS`), the block is launched (the workers take its
/// remaining pieces from the back) and the next blocks go to the workers again. A block
/// the caller would run is refused as a launched one is once the pool is shut down.
struct Blocks<'a, I, A, R> {
    pool: &'a crate::ThreadPoolExecutor,
    f: fn(A) -> R,
    items: Fuse<I>,
    /// Launched blocks in input order; the consumer drains the front one.
    queue: VecDeque<Arc<MapBlock<A, R>>>,
    /// Buffers of a drained block, for the next one (fresh ones would cost page faults).
    spare: Option<(Vec<A>, Vec<std::mem::MaybeUninit<R>>)>,
    /// The consumer's position in the front block.
    cursor: Cursor<R>,
    /// Error to yield once after the launched blocks (a refused launch).
    last_error: Option<TaskError>,
    fixed_piece: Option<usize>,
    max_pieces: Option<usize>,
    ns_per_item: Option<f64>,
    block_len: usize,
    help: bool,
    deadline: Option<Instant>,
    /// No more input will be taken (it ended, a launch was refused, or the deadline passed).
    stopped: bool,
    started: bool,
    /// The input's length was known at the start.
    exact_input: bool,
    /// The caller runs the next blocks itself, without launching them (see above); their
    /// size.
    inline: bool,
    inline_len: usize,
    /// `INLINE_LEAVE_NS` (infinite in the tests that keep the caller on its blocks).
    leave_ns: f64,
}

impl<'a, I, A, R> Blocks<'a, I, A, R>
where
    I: Iterator<Item = A>,
    A: Payload,
    R: Payload,
{
    fn new(pool: &'a crate::ThreadPoolExecutor, f: fn(A) -> R, items: I, opts: MapOptions) -> Self {
        let help = pool.caller_runs() && opts.timeout.is_none();
        let exact_input = matches!(items.size_hint(), (lo, Some(hi)) if lo == hi);
        let mut map = Blocks {
            pool,
            f,
            items: items.fuse(),
            queue: VecDeque::new(),
            spare: None,
            cursor: Cursor::new(),
            last_error: None,
            fixed_piece: opts.chunksize,
            max_pieces: opts.buffersize,
            ns_per_item: None,
            block_len: PROBE_BLOCK,
            help,
            deadline: opts.timeout.and_then(|t| Instant::now().checked_add(t)),
            stopped: false,
            started: false,
            exact_input,
            inline: false,
            inline_len: INLINE_FIRST,
            leave_ns: INLINE_LEAVE_NS,
        };
        map.fill();
        map
    }

    /// Whether the caller may run blocks alone: default options on a pool whose callers
    /// run tasks (`help` is off with a timeout).
    fn may_inline(&self) -> bool {
        self.help && self.fixed_piece.is_none() && self.max_pieces.is_none()
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

    /// Launches blocks until `BLOCKS_AHEAD` are in flight or the input ends. With a
    /// `buffersize`, one block of at most that many pieces: the bound holds exactly. When
    /// the caller runs the blocks itself, one block, not launched.
    fn fill(&mut self) {
        let ahead = if self.max_pieces.is_some() || self.inline {
            1
        } else {
            BLOCKS_AHEAD
        };
        while self.queue.len() < ahead && !self.stopped {
            let fixed_len = self
                .fixed_piece
                .map(|p| p.saturating_mul(self.max_pieces.unwrap_or(PROBE_BLOCK)));
            let mut n = fixed_len.unwrap_or(self.block_len).max(1);
            if let Some(m) = self.max_pieces {
                n = n.min(m.saturating_mul(self.piece_len(n)));
            }
            if self.inline {
                n = self.inline_len;
            }
            let (mut items, output) = self.spare.take().unwrap_or_default();
            items.reserve(n.min(self.items.size_hint().1.unwrap_or(n)).min(MAX_BLOCK));
            items.extend(self.items.by_ref().take(n));
            if items.is_empty() {
                self.stopped = true;
                break;
            }
            let piece = if self.inline {
                INLINE_PIECE
            } else {
                self.piece_len(items.len())
            };
            let mut block = Block::new(
                self.f,
                VecSource::new(items),
                output,
                piece,
                self.pool.registry(),
            )
            .workers_from_back(self.help);
            if self.inline {
                block = block.by_caller();
            }
            let block = Arc::new(block);
            let refused = if self.inline {
                self.pool
                    .refusal()
                    .inspect(|e| block.close(TaskError::Submit(e.clone())))
            } else {
                block.launch(self.pool).err()
            };
            if let Some(e) = refused {
                self.stopped = true;
                self.last_error = Some(TaskError::Submit(e));
                break;
            }
            self.queue.push_back(block);
        }
    }

    /// Past the ready run: the next failure, the next pieces, or the next block.
    #[inline(never)]
    fn advance(&mut self) -> Option<Result<R, TaskError>> {
        self.started = true;
        loop {
            let Some(block) = self.queue.front().cloned() else {
                return self.last_error.take().map(Err);
            };
            match self.cursor.advance(&*block, self.help, self.deadline) {
                Step::Item(r) => {
                    if self.inline {
                        self.check_inline(&block);
                    }
                    return Some(r);
                }
                Step::End => self.next_block(),
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

    /// After the caller ran a piece of its own block: if the items turned out dearer than
    /// `leave_ns`, the workers get the block's remaining pieces, and the next blocks.
    fn check_inline(&mut self, block: &Arc<MapBlock<A, R>>) {
        if !block.is_by_caller() || block.ns_per_item().is_none_or(|ns| ns <= self.leave_ns) {
            return;
        }
        self.inline = false;
        self.inline_len = INLINE_FIRST;
        if block.has_unclaimed() && !block.launched() && self.pool.refusal().is_none() {
            // A refusal racing this closes the block: its remaining items fail with it, as
            // those of a block refused at launch.
            let _ = block.launch(self.pool);
        }
    }

    /// Leaves the drained front block: learns from it, launches more.
    fn next_block(&mut self) {
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
            if done.is_by_caller() {
                // Timed by the caller (`check_inline` left if it was too slow).
                if self.inline {
                    self.inline_len = (self.inline_len * 2).min(INLINE_MAX);
                }
            } else if !self.inline
                && ns < INLINE_ENTER_NS
                && done.piece_len() > 1
                && self.may_inline()
            {
                // Measured by the workers over pieces of several items (with one item per
                // piece, as in the first block, the clock's own cost dominates).
                self.inline = true;
            }
        }
        self.spare = Block::recycle(done);
        self.cursor.reset();
        self.fill();
    }

    /// Stops every launched block from starting more pieces.
    fn cancel_all(&mut self) {
        for b in &self.queue {
            b.close(TaskError::Cancelled);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let mut known: usize = self.queue.iter().map(|b| b.len()).sum();
        if !self.queue.is_empty() {
            known -= self.cursor.consumed();
        }
        known += usize::from(self.last_error.is_some());
        let (lo, hi) = if self.stopped {
            (known, Some(known))
        } else {
            plus(known, self.items.size_hint())
        };
        // An input of unknown length keeps an unknown length, even once it was all taken
        // (as the chunked path reports it: progress bars show a spinner for it).
        if !self.exact_input && hi == Some(lo) {
            (lo, None)
        } else {
            (lo, hi)
        }
    }

    fn fold<B, F>(mut self, init: B, mut f: F) -> B
    where
        F: FnMut(B, Result<R, TaskError>) -> B,
    {
        let mut acc = init;
        loop {
            // SAFETY: as in `next`.
            while let Some(v) = unsafe { self.cursor.next_ready() } {
                acc = f(acc, Ok(v));
            }
            match self.advance() {
                Some(r) => acc = f(acc, r),
                None => return acc,
            }
        }
    }
}

impl<I, A, R> Drop for Blocks<'_, I, A, R> {
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

impl<I, A, R> fmt::Debug for Blocks<'_, I, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("blocks_in_flight", &self.queue.len())
            .field("finished", &(self.stopped && self.queue.is_empty()))
            .finish_non_exhaustive()
    }
}

/// `map` by chunks submitted as tasks: the path of every backend but the thread pool.
struct Chunked<'a, E, I, A, R> {
    feed: Feed<'a, E, I, A, R>,
    inflight: VecDeque<(Future<Chunk<R>>, usize)>,
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
    fn new(exec: &'a E, f: fn(A) -> R, items: I, opts: MapOptions) -> Self {
        let mut map = Chunked {
            feed: Feed::new(exec, f, items, opts),
            inflight: VecDeque::new(),
            current: Drain::empty(),
            finished: false,
            started: false,
        };
        map.fill();
        map
    }

    fn fill(&mut self) {
        while self.inflight.len() < self.feed.sizer.limit(self.feed.window) {
            match self.feed.submit_next() {
                Some(job) => self.inflight.push_back(job),
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
            self.fill();
            let Some((fut, len)) = self.inflight.pop_front() else {
                self.finished = true;
                return None;
            };
            match self.feed.collect(fut, len) {
                Ok(drain) => self.current = drain,
                Err(()) => {
                    self.finished = true;
                    self.cancel_all();
                    return Some(Err(TaskError::Timeout));
                }
            }
            // Keep the workers busy while the caller drains this chunk.
            self.fill();
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
    pub(crate) fn new(exec: &'a E, f: fn(A) -> R, items: I, opts: MapOptions) -> Self {
        let mut map = MapUnordered {
            feed: Feed::new(exec, f, items, opts),
            slots: Vec::new(),
            free: Vec::new(),
            inflight: 0,
            set: WaitSet::new(),
            current: Drain::empty(),
            finished: false,
            started: false,
        };
        map.fill();
        map
    }

    fn fill(&mut self) {
        while self.inflight < self.feed.sizer.limit(self.feed.window) {
            let Some((fut, len)) = self.feed.submit_next() else {
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

/// The thread-pool path with the caller running every block alone (`Blocks::inline`),
/// forced on whatever the items cost (the switch itself depends on timings).
#[cfg(all(test, not(loom)))]
mod inline_tests {
    use super::*;
    use crate::ThreadPoolExecutor;
    use crate::error::SubmitError;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;

    const LONG: Duration = Duration::from_secs(30);

    /// The probe blocks the map launches before its first `next` (items `..PROBED`): they
    /// may run on the workers.
    const PROBED: u64 = 2 * PROBE_BLOCK as u64;

    type PoolMap<'a, I, A, R> = Map<'a, ThreadPoolExecutor, I, A, R>;

    fn blocks<'m, 'a, I, A, R>(m: &'m mut PoolMap<'a, I, A, R>) -> &'m mut Blocks<'a, I, A, R> {
        match &mut m.mode {
            Mode::Blocks(b) => b,
            Mode::Chunks(_) => panic!("a thread pool maps by blocks"),
        }
    }

    /// `pool.map(f, items)`, the caller running every block after the probes alone.
    fn inline_map<I: Iterator<Item = A>, A: Payload, R: Payload>(
        pool: &ThreadPoolExecutor,
        f: fn(A) -> R,
        items: I,
    ) -> PoolMap<'_, I, A, R> {
        let mut m = pool.map(f, items);
        let b = blocks(&mut m);
        b.inline = true;
        b.leave_ns = f64::INFINITY;
        m
    }

    fn on_worker() -> bool {
        std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("ThreadPoolExecutor"))
    }

    static WORKER_RAN: AtomicUsize = AtomicUsize::new(0);

    /// Doubles; counts the items after the probes that a worker ran (one test's only).
    fn double_noting_worker(x: u64) -> u64 {
        if x >= PROBED && on_worker() {
            WORKER_RAN.fetch_add(1, SeqCst);
        }
        x * 2
    }

    fn double(x: u64) -> u64 {
        x * 2
    }

    #[test]
    fn results_in_order_all_on_the_caller() {
        let pool = ThreadPoolExecutor::new(2);
        const N: u64 = 100_000;
        let out: Vec<u64> = inline_map(&pool, double_noting_worker, 0..N)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(out, (0..N).map(|x| x * 2).collect::<Vec<_>>());
        // The fold path, and an input of unknown length.
        let odd = (0..N).filter(|x| x % 3 != 0);
        let it = inline_map(&pool, double, odd.clone());
        let sum: u64 = it.map(Result::unwrap).sum();
        assert_eq!(sum, odd.map(|x| x * 2).sum::<u64>());
        assert_eq!(WORKER_RAN.load(SeqCst), 0, "a worker ran an item");
    }

    static PULLED: AtomicUsize = AtomicUsize::new(0);

    #[test]
    fn an_endless_input_is_taken_one_block_ahead() {
        let pool = ThreadPoolExecutor::new(2);
        let endless = (0u64..).inspect(|_| {
            PULLED.fetch_add(1, SeqCst);
        });
        let mut it = inline_map(&pool, double, endless);
        for i in 0..50_000u64 {
            assert_eq!(it.next(), Some(Ok(i * 2)));
            let ahead = PULLED.load(SeqCst) - (i as usize + 1);
            assert!(ahead <= INLINE_MAX, "{ahead} items taken ahead after {i}");
        }
        assert!(blocks(&mut it).inline);
    }

    fn fails_on_7s(x: u64) -> u64 {
        assert!(x % 1000 != 7, "item {x} fails");
        x
    }

    #[test]
    fn a_panicking_item_fails_alone() {
        let pool = ThreadPoolExecutor::new(2);
        let mut failed = 0;
        for (i, r) in inline_map(&pool, fails_on_7s, 0..20_000u64).enumerate() {
            if i % 1000 == 7 {
                let e = r.expect_err("item should fail");
                let p = e.panic().expect("a panic");
                assert_eq!(p.message(), format!("item {i} fails"));
                assert!(p.location().is_some_and(|l| l.contains("map.rs")));
                failed += 1;
            } else {
                assert_eq!(r, Ok(i as u64));
            }
        }
        assert_eq!(failed, 20);
    }

    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static RAN: AtomicUsize = AtomicUsize::new(0);

    /// A value that counts its drops.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Tracked(u64);

    impl Tracked {
        fn new(v: u64) -> Tracked {
            LIVE.fetch_add(1, SeqCst);
            Tracked(v)
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, SeqCst);
        }
    }

    fn tracked_double(t: Tracked) -> Tracked {
        RAN.fetch_add(1, SeqCst);
        assert!(t.0 % 5000 != 4999, "item {} fails", t.0);
        Tracked::new(t.0 * 2)
    }

    /// Waits (bounded, no sleeping) until `cond` holds.
    fn eventually(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + LONG;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn dropping_midway_runs_nothing_more_and_drops_everything_once() {
        let pool = ThreadPoolExecutor::new(2);
        // (An iterator dropped unused lets its probe blocks run, as documented: not here.)
        for stop in [200, 5_000, 10_001, 29_999] {
            let items: Vec<Tracked> = (0..30_000u64).map(Tracked::new).collect();
            RAN.store(0, SeqCst);
            let mut it = inline_map(&pool, tracked_double, items.into_iter());
            for i in 0..stop {
                match it.next() {
                    Some(Ok(t)) => assert_eq!(t.0, 2 * i),
                    Some(Err(e)) => assert_eq!(i % 5000, 4999, "item {i}: {e}"),
                    None => panic!("ended at {i}"),
                }
            }
            drop(it);
            // The caller's block not yet run was cancelled with the map: only the items up
            // to the end of the block being consumed ran.
            let ran = RAN.load(SeqCst);
            assert!(
                ran <= (stop as usize).max(PROBED as usize) + INLINE_MAX,
                "{ran} items ran, {stop} results taken"
            );
            eventually("every item and result is dropped", || {
                LIVE.load(SeqCst) == 0
            });
            assert_eq!(RAN.load(SeqCst), ran, "items ran after the map was dropped");
        }
    }

    #[test]
    fn a_shut_down_pool_refuses_the_next_block() {
        let pool = ThreadPoolExecutor::new(2);
        let mut it = inline_map(&pool, double, 0u64..);
        for i in 0..10_000u64 {
            assert_eq!(it.next(), Some(Ok(i * 2)));
        }
        pool.shutdown(true);
        // The block being consumed finishes; the next one is refused, once.
        let mut i = 10_000u64;
        loop {
            match it.next() {
                Some(Ok(v)) => assert_eq!(v, 2 * i),
                Some(Err(e)) => {
                    assert_eq!(e, TaskError::Submit(SubmitError::Shutdown));
                    break;
                }
                None => panic!("ended without an error"),
            }
            i += 1;
            assert!(i <= 10_000 + INLINE_MAX as u64, "ran on after the shutdown");
        }
        assert_eq!(it.next(), None);
    }

    #[test]
    fn dearer_items_go_back_to_the_workers_in_order() {
        let pool = ThreadPoolExecutor::new(2);
        let mut it = pool.map(double, 0..200_000u64);
        let b = blocks(&mut it);
        b.inline = true;
        b.leave_ns = -1.0; // every block the caller runs is too slow
        for i in 0..200_000u64 {
            assert_eq!(it.next(), Some(Ok(i * 2)));
            if i == PROBED + 100 {
                // The caller ran its first block (one piece): too slow, so the next blocks
                // go to the workers (they may come back to the caller later).
                assert!(!blocks(&mut it).inline, "still on the caller");
            }
        }
        assert_eq!(it.next(), None);
    }

    /// The caller's blocks after the probes: `[128, 1152)`, `[1152, 3200)`, then
    /// `[3200, 7296)` in four pieces.
    const BIG: std::ops::Range<u64> = 3200..7296;

    static WORKER_TOOK: (std::sync::Mutex<usize>, std::sync::Condvar) =
        (std::sync::Mutex::new(0), std::sync::Condvar::new());

    /// Items of the big block after its first piece: on a worker, they note it; on the
    /// caller, they wait (bounded) until a worker took one.
    fn waits_for_a_worker(x: u64) -> u64 {
        if BIG.contains(&x) && x >= BIG.start + INLINE_PIECE as u64 {
            let (took, cv) = &WORKER_TOOK;
            let mut n = took.lock().unwrap();
            if on_worker() {
                *n += 1;
                cv.notify_all();
            } else {
                let (g, t) = cv.wait_timeout_while(n, LONG, |n| *n == 0).unwrap();
                assert!(!t.timed_out(), "no worker took a piece of the block");
                n = g;
            }
            drop(n);
        }
        x * 2
    }

    #[test]
    fn a_piece_found_dearer_hands_the_rest_of_the_block_to_the_workers() {
        let pool = ThreadPoolExecutor::new(2);
        let mut it = inline_map(&pool, waits_for_a_worker, 0..10_000u64);
        for i in 0..10_000u64 {
            if i == BIG.start {
                // The caller's next piece, the big block's first, will be too slow.
                blocks(&mut it).leave_ns = -1.0;
            }
            assert_eq!(it.next(), Some(Ok(i * 2)));
        }
        assert_eq!(it.next(), None);
        assert!(*WORKER_TOOK.0.lock().unwrap() > 0);
    }

    #[test]
    fn explicit_options_keep_the_workers() {
        let pool = ThreadPoolExecutor::new(2);
        let never = ThreadPoolExecutor::builder()
            .max_workers(2)
            .caller_runs(false)
            .build()
            .unwrap();
        let cases = [
            (&pool, MapOptions::new(), true),
            (&pool, MapOptions::new().chunksize(10), false),
            (&pool, MapOptions::new().buffersize(4), false),
            (&pool, MapOptions::new().timeout(LONG), false),
            (&never, MapOptions::new(), false),
        ];
        for (p, opts, may) in cases {
            let mut it = p.map_with(double, 0..1000u64, opts);
            assert_eq!(blocks(&mut it).may_inline(), may, "{opts:?}");
            let out: Vec<u64> = it.map(Result::unwrap).collect();
            assert_eq!(out, (0..1000).map(|x| x * 2).collect::<Vec<_>>());
        }
    }
}
