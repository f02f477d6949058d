//! [`ThreadPoolExecutor::map_indexed`]: a `map` over an input addressed by position (ranges,
//! vectors), split among the workers and the calling thread as rayon splits it, with results
//! written in place.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use super::ThreadPoolExecutor;
use super::map_block::{MapBlock, Pieces};
use super::map_cursor::{Cursor, Step};
use super::map_source::{Source, VecSource};
use crate::error::TaskError;

/// An input [`ThreadPoolExecutor::map_indexed`] can split by position, with no iterator
/// handing items through the calling thread: a `Vec` (its items are moved out where they
/// lie) or a range of integers (each worker computes its items).
///
/// Implemented for `Vec<T>` and for `Range` of every primitive integer type; not
/// implementable outside the crate.
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
/// let pool = ThreadPoolExecutor::new(2);
/// let from_range = pool.map_indexed(|x: u32| x + 1, 0..4u32).into_vec();
/// let from_vec = pool.map_indexed(|s: String| s.len(), vec![String::from("ab")]).into_vec();
/// assert_eq!(from_range, Ok(vec![1, 2, 3, 4]));
/// assert_eq!(from_vec, Ok(vec![2]));
/// ```
#[allow(private_bounds)]
pub trait IndexedInput<T>: IntoSource<Item = T> + Send + 'static {}

/// How an input becomes a block's source (crate-private, so `IndexedInput` is sealed).
pub(crate) trait IntoSource {
    type Item;
    type Src: Source<Item = Self::Item> + Send + Sync + 'static;
    fn into_source(self) -> Self::Src;
}

impl<T: Send + 'static> IntoSource for Vec<T> {
    type Item = T;
    type Src = VecSource<T>;
    fn into_source(self) -> VecSource<T> {
        VecSource::new(self)
    }
}

impl<T: Send + 'static> IndexedInput<T> for Vec<T> {}

/// A range's items, computed from their position.
pub(crate) struct RangeSource<T> {
    start: T,
    len: usize,
}

macro_rules! ranges {
    ($($t:ty),*) => {$(
        impl IntoSource for Range<$t> {
            type Item = $t;
            type Src = RangeSource<$t>;
            fn into_source(self) -> RangeSource<$t> {
                let len = if self.end > self.start {
                    // The difference of two values of the type always fits its unsigned
                    // twin; `usize` holds it on 64-bit targets (and ranges longer than
                    // memory are not mapped in one go anyway).
                    (self.end as i128 - self.start as i128) as usize
                } else {
                    0
                };
                RangeSource { start: self.start, len }
            }
        }

        impl IndexedInput<$t> for Range<$t> {}

        impl Source for RangeSource<$t> {
            type Item = $t;
            fn len(&self) -> usize {
                self.len
            }
            unsafe fn take(&self, i: usize) -> $t {
                // `i < len`, so the sum is in the range: wrapping arithmetic is exact (and
                // keeps the loop over a piece simple enough to vectorise).
                self.start.wrapping_add(i as $t)
            }
            unsafe fn drop_untaken(&mut self, _: usize) {}
        }
    )*};
}

ranges!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

/// Pieces per participating thread: enough for the threads to even out, few enough that
/// claiming one stays cheap beside running it.
const PIECES_PER_THREAD: usize = 64;

impl ThreadPoolExecutor {
    /// Applies `f` to every item of an input addressed by position (a range of integers, a
    /// `Vec`), splitting it among the workers and the calling thread as rayon's `par_iter`
    /// does: no iterator hands items through the caller, results are written in place, and
    /// [`into_vec`](MapIndexed::into_vec) hands the results over as one vector, without a copy.
    ///
    /// Work starts at once. Iterating yields each item's own `Result`, in input order, as
    /// the pieces holding them complete (the calling thread runs the next piece itself when
    /// no worker has taken it yet, unless [`caller_runs`](crate::ThreadPoolBuilder::caller_runs)
    /// is off); a panic in one item fails that item only. Dropping the iterator after
    /// iteration began cancels the pieces not started; dropping it unused lets them run.
    ///
    /// `f` may capture (threads share memory): unlike [`Executor::map`](crate::Executor::map),
    /// it is not limited to `fn` pointers, so it is inlined into the loop over each piece.
    ///
    /// The results of the whole input have their slots from the start (one vector, as
    /// rayon's `collect`); for an input whose results would not fit in memory, use
    /// [`Executor::map`](crate::Executor::map), which keeps a bounded window.
    ///
    /// # Panics
    ///
    /// As `Vec::with_capacity` does, if the result slots of the input cannot be allocated
    /// (more than `isize::MAX` bytes).
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new(2);
    /// let squares = pool.map_indexed(|x: u64| x * x, 0..1000u64).into_vec().unwrap();
    /// assert_eq!(squares[999], 998_001);
    /// let mut it = pool.map_indexed(|x: i32| 10 / x, vec![5, 0, 2]);
    /// assert_eq!(it.next(), Some(Ok(2)));
    /// assert!(it.next().unwrap().is_err()); // division by zero: that item only
    /// assert_eq!(it.next(), Some(Ok(5)));
    /// ```
    pub fn map_indexed<S, T, F, R>(&self, f: F, input: S) -> MapIndexed<R>
    where
        S: IndexedInput<T>,
        F: Fn(T) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        let source = input.into_source();
        let len = source.len();
        let help = self.caller_runs();
        let threads = self.registry.num_workers() + usize::from(help);
        let piece = len.div_ceil(PIECES_PER_THREAD * threads).max(1);
        let block = Arc::new(
            MapBlock::new(f, source, Vec::new(), piece, self.registry())
                .untimed()
                .workers_from_back(help),
        );
        let failed = if len > 0 {
            block.launch(self).err()
        } else {
            None
        };
        MapIndexed {
            block,
            cursor: Cursor::new(),
            help,
            refused: failed.map(TaskError::Submit),
            started: false,
            finished: false,
        }
    }
}

/// Iterator returned by [`ThreadPoolExecutor::map_indexed`]: each item's result, in input
/// order; [`into_vec`](MapIndexed::into_vec) takes them all at once.
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
/// let pool = ThreadPoolExecutor::new(2);
/// let total: u64 = pool.map_indexed(|x: u64| x * 2, 0..100u64).map(Result::unwrap).sum();
/// assert_eq!(total, 9900);
/// ```
pub struct MapIndexed<R> {
    block: Arc<dyn Pieces<R>>,
    cursor: Cursor<R>,
    help: bool,
    /// The pool refused the work: yielded once, instead of any result.
    refused: Option<TaskError>,
    started: bool,
    finished: bool,
}

impl<R> MapIndexed<R> {
    /// Waits for every result and returns them in input order as one vector (the buffer the
    /// workers wrote into, when iteration has not begun), or the error of the first item
    /// that failed. The calling thread runs pieces too while it waits (if the pool lets
    /// callers run tasks).
    ///
    /// ```
    /// use concurrent_futures::{ThreadPoolExecutor, TaskError};
    /// let pool = ThreadPoolExecutor::new(2);
    /// assert_eq!(pool.map_indexed(|x: u8| x, vec![3, 4]).into_vec(), Ok(vec![3, 4]));
    /// let failed = pool.map_indexed(|x: u8| { assert!(x < 4, "too big"); x }, 0..8u8).into_vec();
    /// assert!(matches!(failed, Err(TaskError::Panicked(_))));
    /// ```
    pub fn into_vec(mut self) -> Result<Vec<R>, TaskError> {
        if let Some(e) = self.refused.take() {
            return Err(e);
        }
        if self.started {
            return self.collect();
        }
        self.started = true;
        if self.help {
            self.block.run_all();
        }
        let pieces = self.block.len().div_ceil(self.block.piece_len());
        let mut first_error: Option<(usize, TaskError)> = None;
        for j in 0..pieces {
            match self.block.wait_piece(j, false, None) {
                super::map_block::Ready::Done => {
                    if first_error.is_none() && self.block.has_errors(j) {
                        first_error = self.block.errors_of(j).into_iter().next();
                    }
                }
                super::map_block::Ready::Closed(e) => {
                    if first_error.is_none() {
                        first_error = Some((j * self.block.piece_len(), e));
                    }
                }
                super::map_block::Ready::TimedOut => {}
            }
        }
        if let Some((_, e)) = first_error {
            return Err(e);
        }
        self.finished = true;
        // SAFETY: every piece is done with no failed item (checked above), and nothing was
        // consumed (iteration had not begun).
        Ok(unsafe { self.block.take_results() })
    }
}

impl<R> Iterator for MapIndexed<R> {
    type Item = Result<R, TaskError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        // SAFETY: the cursor only ever advances in `block`, which `self` holds.
        match unsafe { self.cursor.next_ready() } {
            Some(v) => Some(Ok(v)),
            None => self.advance(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = if self.refused.is_some() {
            1
        } else if self.finished {
            0
        } else {
            self.block.len() - self.cursor.consumed()
        };
        (n, Some(n))
    }

    fn fold<B, F>(mut self, init: B, mut f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
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

impl<R> ExactSizeIterator for MapIndexed<R> {}

impl<R> MapIndexed<R> {
    #[inline(never)]
    fn advance(&mut self) -> Option<Result<R, TaskError>> {
        self.started = true;
        if let Some(e) = self.refused.take() {
            self.finished = true;
            return Some(Err(e));
        }
        if self.finished {
            return None;
        }
        match self.cursor.advance(&*self.block, self.help, None) {
            Step::Item(r) => Some(r),
            Step::End | Step::TimedOut => {
                self.finished = true;
                None
            }
        }
    }
}

impl<R> Drop for MapIndexed<R> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.block.set_consumed(self.cursor.consumed());
        if self.started {
            self.block.close(TaskError::Cancelled);
        }
    }
}

impl<R> fmt::Debug for MapIndexed<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapIndexed")
            .field("len", &self.block.len())
            .field("consumed", &self.cursor.consumed())
            .finish_non_exhaustive()
    }
}
