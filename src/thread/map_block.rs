//! Blocks of a thread-pool `map`: items split among the workers and the caller, results
//! written in place.
//!
//! A [`MapBlock`] holds a run of input items and a slot for each result. It is cut into
//! *pieces* of a fixed number of items. The unclaimed pieces are always one range
//! `front..back`, both ends in one atomic word: the consumer (and `into_vec`) claims at the
//! front, in input order; workers claim at the back when the consumer helps (so the
//! consumer meets a piece a worker holds at most once per block, where the two ends meet,
//! instead of waiting behind every piece a preempted worker took), else at the front (so
//! results still arrive in order). The claimer owns the piece's input and result slots
//! until it marks the piece done. A block is queued on the
//! pool as a job (a *helper*) once; a worker that runs it queues one more helper if the block
//! has pieces to spare (waking a sibling costs the worker, not the caller), then claims pieces
//! until none is left. The consumer (the thread iterating the map) takes results piece by
//! piece, in order, straight from the result slots; if the piece it needs next has not been
//! claimed, it claims and runs it itself (when the pool allows callers to run tasks), so a
//! map of cheap items never waits for a worker to wake up.
//!
//! # Ownership of the slots
//!
//! * Input slot `i` is initialised from construction until the claimer of its piece reads
//!   it (exactly once), or until the block is dropped if its piece is never claimed.
//! * Result slot `i` is written by the claimer of its piece, unless the item panicked (then
//!   the piece's error list has an entry for `i`); the piece's `done` flag is stored with
//!   `Release` after every write. The consumer reads slot `i` only after an `Acquire` load of
//!   that flag, and moves each result out at most once, advancing `consumed`.
//! * Closing a block (cancelled, pool broken) empties the unclaimed range in one step and
//!   records it: those pieces never run.
//!
//! Dropping the last handle drops what is left: inputs of pieces never claimed, results not
//! consumed. Claimed pieces always finish before their claimer lets go of its handle.
//!
//! A block's items come from a [`Source`] (`map_source.rs`); the consumer reads its results
//! through a [`Cursor`](super::map_cursor::Cursor) (`map_cursor.rs`), over [`Pieces`].

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::ThreadPoolExecutor;
use super::job::{Job, Shared};
use super::map_source::{Source, VecSource, cast_vec};
use super::registry::Registry;
use crate::error::{SubmitError, TaskError};
use crate::stats::{Outcome, Settled};
use crate::sync::{self, AtomicU32, AtomicUsize, Condvar, Mutex, fence, lock};

/// A piece's `done` states.
const NOT_DONE: u32 = 0;
const DONE: u32 = 1;
/// Done, and at least one item of the piece panicked (see `errors`).
const DONE_WITH_ERRORS: u32 = 2;

/// `front` and `back` share one word: half of it each (so a block has at most `HALF_MAX`
/// pieces; `MapBlock::new` makes pieces larger if needed).
const HALF: u32 = usize::BITS / 2;
const HALF_MAX: usize = (1 << HALF) - 1;

fn pack(front: usize, back: usize) -> usize {
    front | (back << HALF)
}

fn unpack(word: usize) -> (usize, usize) {
    (word & HALF_MAX, word >> HALF)
}

/// What waiting for a piece gave.
pub(crate) enum Ready {
    /// The piece is done: its results may be read.
    Done,
    /// The piece will never run: every item of it fails with this error.
    Closed(TaskError),
    /// The deadline passed first.
    TimedOut,
}

/// One block of a `map` on the thread pool (see the module docs).
pub(crate) struct MapBlock<S: Source, F, R> {
    f: F,
    len: usize,
    piece: usize,
    pieces: usize,
    input: S,
    /// The result slots. The vector itself is replaced only by `take_results`, once every
    /// piece is done and can no longer be claimed.
    output: UnsafeCell<Vec<UnsafeCell<MaybeUninit<R>>>>,
    /// The unclaimed pieces, `front..back` (`pack`ed).
    unclaimed: AtomicUsize,
    /// Workers claim at the back (see the module docs).
    workers_from_back: bool,
    /// The pieces that will never run, once closed (`pack`ed range; empty before).
    closed: AtomicUsize,
    close_reason: OnceLock<TaskError>,
    done: Box<[AtomicU32]>,
    /// Failed items of the pieces marked `DONE_WITH_ERRORS`, by index in the block.
    errors: Mutex<Vec<(usize, TaskError)>>,
    /// Results moved out by the consumer: slots `..consumed` hold nothing.
    consumed: AtomicUsize,
    /// Time spent and items run, over the pieces that ran (the map sizes later blocks by it),
    /// if `timed`.
    timed: bool,
    busy_ns: AtomicUsize,
    busy_items: AtomicUsize,
    /// Helpers queued so far, and at most how many.
    helpers: AtomicUsize,
    max_helpers: usize,
    registry: Arc<Registry>,
    /// The consumer is (about to be) blocked on `wake`.
    waiting: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: the result slots are `UnsafeCell`s whose access is partitioned as the module docs
// say: a slot is touched by one thread at a time (the claimer of its piece, then, after the
// `Release`/`Acquire` pair on the piece's `done` flag, the consumer; or the destructor, which
// has exclusive access). Results move between threads, hence `R: Send`; no `&R` is ever
// shared. The source and the function are shared by the claimers: `S: Sync` (its own
// contract) and `F: Sync`.
unsafe impl<S: Source + Sync, F: Sync, R: Send> Sync for MapBlock<S, F, R> {}

impl<S: Source, F: Fn(S::Item) -> R, R> MapBlock<S, F, R> {
    /// A block over `input`, cut into pieces of `piece` items (at least 1). `output` is an
    /// empty buffer to write the results into (from [`MapBlock::recycle`], or new).
    pub(crate) fn new(
        f: F,
        input: S,
        output: Vec<MaybeUninit<R>>,
        piece: usize,
        registry: Arc<Registry>,
    ) -> Self {
        let len = input.len();
        let piece = piece.max(1).max(len.div_ceil(HALF_MAX));
        let pieces = len.div_ceil(piece);
        let mut output = cast_vec::<MaybeUninit<R>, UnsafeCell<MaybeUninit<R>>>(output);
        output.clear();
        output.reserve_exact(len);
        // SAFETY: the capacity is at least `len`, and an `UnsafeCell<MaybeUninit<R>>` needs
        // no initialisation.
        unsafe { output.set_len(len) };
        let workers = registry.num_workers();
        MapBlock {
            f,
            len,
            piece,
            pieces,
            input,
            output: UnsafeCell::new(output),
            unclaimed: AtomicUsize::new(pack(0, pieces)),
            workers_from_back: false,
            closed: AtomicUsize::new(0),
            close_reason: OnceLock::new(),
            done: (0..pieces).map(|_| AtomicU32::new(NOT_DONE)).collect(),
            errors: Mutex::new(Vec::new()),
            consumed: AtomicUsize::new(0),
            timed: true,
            busy_ns: AtomicUsize::new(0),
            busy_items: AtomicUsize::new(0),
            helpers: AtomicUsize::new(0),
            max_helpers: workers.min(pieces),
            registry,
            waiting: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// Lets workers claim at the back: for a consumer that claims at the front itself.
    pub(crate) fn workers_from_back(mut self, on: bool) -> Self {
        self.workers_from_back = on;
        self
    }

    /// Does not time its pieces (nobody sizes anything by them).
    pub(crate) fn untimed(mut self) -> Self {
        self.timed = false;
        self
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn piece_len(&self) -> usize {
        self.piece
    }

    /// Items of piece `j`.
    fn range(&self, j: usize) -> std::ops::Range<usize> {
        let start = j * self.piece;
        start..(start + self.piece).min(self.len)
    }

    /// Nanoseconds per item over the pieces that ran so far, if any ran.
    pub(crate) fn ns_per_item(&self) -> Option<f64> {
        let items = self.busy_items.load(Relaxed);
        (items > 0).then(|| self.busy_ns.load(Relaxed) as f64 / items as f64)
    }

    /// Runs piece `j`, which this thread claimed, then marks it done.
    fn run_piece(&self, j: usize) {
        let range = self.range(j);
        let t0 = self.timed.then(Instant::now);
        // SAFETY: the output vector is replaced only once no piece can be claimed any more
        // (see the field), and this thread holds a claim; its header is only read here.
        let output = unsafe { &(&*self.output.get())[range.clone()] };
        let f = &self.f;
        let mut i = 0;
        let mut errors = Vec::new();
        let _scope = crate::unwind::TaskScope::enter();
        // One unwind guard for the piece; after a panic, resume with the next item.
        while i < output.len() {
            let run = catch_unwind(AssertUnwindSafe(|| {
                for out in &output[i..] {
                    let k = range.start + i;
                    i += 1;
                    // SAFETY: this thread claimed piece `j`, so it alone takes the items of
                    // `range`, each once (`i` moved past `k` first, so a panic in `f` does not
                    // take it again).
                    let item = unsafe { self.input.take(k) };
                    let value = f(item);
                    // SAFETY: the result slot belongs to this thread until the `Release`
                    // store of the piece's `done` flag below.
                    unsafe { (*out.get()).write(value) };
                }
            }));
            if let Err(payload) = run {
                errors.push((range.start + i - 1, crate::unwind::panic_error(payload)));
            }
        }
        let state = if errors.is_empty() {
            DONE
        } else {
            lock(&self.errors).extend(errors);
            DONE_WITH_ERRORS
        };
        if let Some(t0) = t0 {
            self.busy_ns
                .fetch_add(t0.elapsed().as_nanos() as usize, Relaxed);
            self.busy_items.fetch_add(range.len(), Relaxed);
        }
        self.done[j].store(state, Release);
        self.wake_consumer();
    }

    /// Wakes the consumer if it sleeps. The consumer sets `waiting`, fences, then checks the
    /// flags it waits for; we store a flag, fence, then read `waiting`: one of the two sees
    /// the other (the `SeqCst` fence rule), and the consumer checks under `lock`, which we
    /// take before notifying, so the notification cannot fall between its check and its wait.
    fn wake_consumer(&self) {
        fence(SeqCst);
        if self.waiting.load(Relaxed) != 0 {
            drop(lock(&self.lock));
            self.wake.notify_all();
        }
    }

    /// Claims an unclaimed piece at the front (`at_back`: at the back), if any is left.
    fn claim(&self, at_back: bool) -> Option<usize> {
        let mut word = self.unclaimed.load(Relaxed);
        loop {
            let (front, back) = unpack(word);
            if front >= back {
                return None;
            }
            let (next, j) = if at_back {
                (pack(front, back - 1), back - 1)
            } else {
                (pack(front + 1, back), front)
            };
            match self
                .unclaimed
                .compare_exchange_weak(word, next, AcqRel, Relaxed)
            {
                Ok(_) => return Some(j),
                Err(now) => word = now,
            }
        }
    }

    /// Claims piece `j` only if it is the first unclaimed one.
    fn claim_exactly(&self, j: usize) -> bool {
        let mut word = self.unclaimed.load(Relaxed);
        loop {
            let (front, back) = unpack(word);
            if front != j || front >= back {
                return false;
            }
            match self
                .unclaimed
                .compare_exchange_weak(word, pack(front + 1, back), AcqRel, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => word = now,
            }
        }
    }

    /// Claims and runs pieces as a worker does, until none is left.
    pub(crate) fn run_as_worker(&self) {
        while let Some(j) = self.claim(self.workers_from_back) {
            self.run_piece(j);
        }
    }

    /// Unclaimed pieces left.
    fn unclaimed_count(&self) -> usize {
        let (front, back) = unpack(self.unclaimed.load(Relaxed));
        back.saturating_sub(front)
    }

    /// Refuses every piece not yet claimed; they will fail with `reason`.
    pub(crate) fn close(&self, reason: TaskError) {
        let _ = self.close_reason.set(reason);
        let mut word = self.unclaimed.load(Relaxed);
        loop {
            let (front, back) = unpack(word);
            if front >= back {
                break;
            }
            match self
                .unclaimed
                .compare_exchange_weak(word, pack(back, back), AcqRel, Relaxed)
            {
                Ok(_) => {
                    self.closed.store(pack(front, back), SeqCst);
                    break;
                }
                Err(now) => word = now,
            }
        }
        self.wake_consumer();
    }

    /// The state of piece `j` as the consumer sees it, without waiting.
    fn poll(&self, j: usize) -> Option<Ready> {
        if self.done[j].load(Acquire) != NOT_DONE {
            return Some(Ready::Done);
        }
        let (from, to) = unpack(self.closed.load(Acquire));
        if (from..to).contains(&j) {
            let reason = self
                .close_reason
                .get()
                .cloned()
                .unwrap_or(TaskError::Cancelled);
            return Some(Ready::Closed(reason));
        }
        None
    }

    /// Waits until piece `j` is done or will never run. With `help`, runs it here if nobody
    /// has claimed it. Consumer only.
    pub(crate) fn wait_piece(&self, j: usize, help: bool, deadline: Option<Instant>) -> Ready {
        if let Some(r) = self.poll(j) {
            return r;
        }
        if help && self.claim_exactly(j) {
            self.run_piece(j);
            return Ready::Done;
        }
        // A short spin catches pieces about to finish (omitted under loom, where it only
        // multiplies the interleavings).
        #[cfg(not(loom))]
        {
            let backoff = crossbeam_utils::Backoff::new();
            while !backoff.is_completed() {
                if let Some(r) = self.poll(j) {
                    return r;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ready::TimedOut;
                }
                backoff.snooze();
            }
        }
        let mut guard = lock(&self.lock);
        self.waiting.store(1, Relaxed);
        fence(SeqCst);
        let ready = loop {
            if let Some(r) = self.poll(j) {
                break r;
            }
            match deadline {
                None => guard = sync::wait(&self.wake, guard),
                Some(d) => {
                    let (g, timed_out) = sync::wait_until(&self.wake, guard, d);
                    guard = g;
                    if timed_out {
                        break self.poll(j).unwrap_or(Ready::TimedOut);
                    }
                }
            }
        };
        self.waiting.store(0, Relaxed);
        drop(guard);
        ready
    }

    /// Whether piece `j` is done (no waiting). Consumer only.
    pub(crate) fn is_done(&self, j: usize) -> bool {
        self.done[j].load(Acquire) != NOT_DONE
    }

    /// Whether piece `j`, known to be done, has failed items.
    pub(crate) fn has_errors(&self, j: usize) -> bool {
        self.done[j].load(Acquire) == DONE_WITH_ERRORS
    }

    /// The failed items of done piece `j`, in order. (They stay listed: the destructor
    /// needs them to know which result slots are empty.)
    pub(crate) fn errors_of(&self, j: usize) -> Vec<(usize, TaskError)> {
        let range = self.range(j);
        let mut mine: Vec<(usize, TaskError)> = lock(&self.errors)
            .iter()
            .filter(|(i, _)| range.contains(i))
            .cloned()
            .collect();
        mine.sort_unstable_by_key(|(i, _)| *i);
        mine
    }

    /// Pointer to result slot `i` (`i <= len`), for the consumer's cursor.
    pub(crate) fn result_ptr(&self, i: usize) -> *mut R {
        debug_assert!(i <= self.len);
        // `UnsafeCell<MaybeUninit<R>>` has the layout of `R`; the pointer is only
        // dereferenced under the rules of the module docs.
        // SAFETY: only the vector's header is read; see `run_piece`.
        unsafe { (*self.output.get()).as_ptr().wrapping_add(i) as *mut R }
    }

    /// Records that the consumer moved out results `..upto` (it does so in order).
    pub(crate) fn set_consumed(&self, upto: usize) {
        self.consumed.store(upto, Relaxed);
    }
}

impl<S, F, R> MapBlock<S, F, R>
where
    S: Source + Send + Sync + 'static,
    F: Fn(S::Item) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    /// Queues the first helper of this block on `pool`. A refused block is closed.
    pub(crate) fn launch(self: &Arc<Self>, pool: &ThreadPoolExecutor) -> Result<(), SubmitError> {
        self.helpers.store(1, Relaxed);
        match pool.registry.push(self.clone()) {
            Ok(false) => Ok(()),
            Ok(true) => {
                // A shutdown raced the push: the workers may have exited already.
                self.close(TaskError::Submit(SubmitError::Shutdown));
                Err(SubmitError::Shutdown)
            }
            Err(e) => {
                self.close(TaskError::Submit(e.clone()));
                Err(e)
            }
        }
    }
}

impl<S, F, R> Job for MapBlock<S, F, R>
where
    S: Source + Send + Sync + 'static,
    F: Fn(S::Item) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    fn execute(self: Arc<Self>, _shared: &Shared) -> Settled {
        // Another helper, if pieces are left for one: a sibling takes it (this worker pays
        // for waking it, not the consumer).
        if self.unclaimed_count() >= 2 {
            let h = self.helpers.load(Relaxed);
            if h < self.max_helpers
                && self
                    .helpers
                    .compare_exchange(h, h + 1, Relaxed, Relaxed)
                    .is_ok()
                && self.registry.push(self.clone()).is_err()
            {
                // Shut down or broken meanwhile: the queued helpers finish the block.
            }
        }
        let _span = crate::trace::map_helper(self.len, self.piece);
        self.run_as_worker();
        // Items fail one by one (the consumer sees each error); the helper itself ran.
        Settled::Ran(Outcome::Ok)
    }

    fn cancel(self: Arc<Self>, _shared: &Shared) -> Settled {
        self.close(TaskError::Cancelled);
        Settled::Was(Outcome::Cancelled)
    }

    fn fail(self: Arc<Self>, error: TaskError, _shared: &Shared) -> Settled {
        self.close(error);
        Settled::Was(Outcome::Failed)
    }

    fn name(&self) -> &'static str {
        "map"
    }
}

impl<S: Source, F, R> MapBlock<S, F, R> {
    /// Drops what the block still holds: inputs of pieces never claimed, results not
    /// consumed. Leaves the block empty (so this runs once).
    fn drop_contents(&mut self) {
        let consumed = self.consumed.load(Relaxed);
        let mut failed: Vec<usize> = lock(&self.errors).iter().map(|(i, _)| *i).collect();
        failed.sort_unstable();
        let output = self.output.get_mut();
        for j in 0..self.pieces {
            let start = j * self.piece;
            let range = start..(start + self.piece).min(self.len);
            if self.done[j].load(Relaxed) == NOT_DONE {
                for i in range {
                    // SAFETY: `&mut self`: no other thread holds the block. A piece not done
                    // at this point was never claimed (a claimer finishes its piece before
                    // releasing its handle), so none of its items was taken.
                    unsafe { self.input.drop_untaken(i) };
                }
            } else {
                for i in range.start.max(consumed)..range.end.min(output.len()) {
                    if failed.binary_search(&i).is_err() {
                        // SAFETY: `&mut self`; the piece is done, so result slot `i` was
                        // written (it did not fail) and, being at or after `consumed`, was
                        // not moved out by the consumer.
                        unsafe { output[i].get_mut().assume_init_drop() };
                    }
                }
            }
        }
        self.pieces = 0;
        self.len = 0;
        // SAFETY: every result slot is now logically uninitialised; shrinking the length
        // only forgets them.
        unsafe { output.set_len(0) };
    }
}

/// A block on a registry of its own, for the loom models (no pool, no workers).
#[cfg(all(test, loom))]
impl<A, R> MapBlock<VecSource<A>, fn(A) -> R, R> {
    pub(crate) fn for_model(f: fn(A) -> R, items: Vec<A>, piece: usize, from_back: bool) -> Self {
        let (registry, _deques) = Registry::new(1, true);
        MapBlock::new(
            f,
            VecSource::new(items),
            Vec::new(),
            piece,
            Arc::new(registry),
        )
        .workers_from_back(from_back)
    }
}

impl<A, F, R> MapBlock<VecSource<A>, F, R> {
    /// The block's buffers, emptied, for the next block, if this was the last handle on it.
    pub(crate) fn recycle(this: Arc<Self>) -> Option<(Vec<A>, Vec<MaybeUninit<R>>)> {
        let mut block = Arc::into_inner(this)?;
        block.drop_contents();
        let input = std::mem::replace(&mut block.input, VecSource::new(Vec::new()));
        let output = cast_vec(std::mem::take(block.output.get_mut()));
        Some((input.into_empty_vec(), output))
    }
}

impl<S: Source, F, R> Drop for MapBlock<S, F, R> {
    fn drop(&mut self) {
        self.drop_contents();
    }
}

impl ThreadPoolExecutor {
    /// The pool's shared state, for blocks to queue helpers on.
    pub(crate) fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Whether a thread waiting on this pool may run its tasks (`caller_runs`).
    pub(crate) fn caller_runs(&self) -> bool {
        self.registry.inline
    }
}

/// What a consumer needs of a block, whatever its source and function.
pub(crate) trait Pieces<R>: Send + Sync {
    fn len(&self) -> usize;
    fn piece_len(&self) -> usize;
    fn wait_piece(&self, j: usize, help: bool, deadline: Option<Instant>) -> Ready;
    fn is_done(&self, j: usize) -> bool;
    fn has_errors(&self, j: usize) -> bool;
    fn errors_of(&self, j: usize) -> Vec<(usize, TaskError)>;
    fn result_ptr(&self, i: usize) -> *mut R;
    fn set_consumed(&self, upto: usize);
    fn close(&self, reason: TaskError);
    /// Claims and runs pieces on this thread until none is left to claim.
    fn run_all(&self);
    /// Moves every result out, as one vector.
    ///
    /// # Safety
    ///
    /// Every piece is done, none has a failed item, and no result was consumed.
    unsafe fn take_results(&self) -> Vec<R>;
}

impl<S, F, R> Pieces<R> for MapBlock<S, F, R>
where
    S: Source + Send + Sync,
    F: Fn(S::Item) -> R + Send + Sync,
    R: Send,
{
    fn len(&self) -> usize {
        MapBlock::len(self)
    }
    fn piece_len(&self) -> usize {
        MapBlock::piece_len(self)
    }
    fn wait_piece(&self, j: usize, help: bool, deadline: Option<Instant>) -> Ready {
        MapBlock::wait_piece(self, j, help, deadline)
    }
    fn is_done(&self, j: usize) -> bool {
        MapBlock::is_done(self, j)
    }
    fn has_errors(&self, j: usize) -> bool {
        MapBlock::has_errors(self, j)
    }
    fn errors_of(&self, j: usize) -> Vec<(usize, TaskError)> {
        MapBlock::errors_of(self, j)
    }
    fn result_ptr(&self, i: usize) -> *mut R {
        MapBlock::result_ptr(self, i)
    }
    fn set_consumed(&self, upto: usize) {
        MapBlock::set_consumed(self, upto)
    }
    fn close(&self, reason: TaskError) {
        MapBlock::close(self, reason)
    }
    fn run_all(&self) {
        while let Some(j) = self.claim(false) {
            self.run_piece(j);
        }
    }
    unsafe fn take_results(&self) -> Vec<R> {
        self.consumed.store(self.len, Relaxed);
        // SAFETY: no piece can be claimed any more and every piece is done (the caller's
        // contract), so no other thread reads the vector's header again; the consumer is
        // this thread. Every slot was written (no failed item) and none was moved out, so
        // the vector of `MaybeUninit` slots is a vector of initialised `R`s; `consumed`
        // now tells the destructor that the block owns none of them.
        let slots = unsafe { std::mem::take(&mut *self.output.get()) };
        cast_vec(slots)
    }
}
