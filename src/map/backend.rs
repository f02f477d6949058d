//! A backend's own ordered `map` ([`Executor::ordered_map`]): the [`OrderedMap`] hook it
//! implements and the [`MapInput`] it takes its items from.

use std::fmt;
use std::iter::Fuse;
use std::time::{Duration, Instant};

use super::ready_run::ReadyRun;
use crate::error::TaskError;
#[cfg(doc)]
use crate::executor::Executor;

/// A backend's own way to run an ordered `map` (see [`Executor::ordered_map`]): it takes
/// its input from the [`MapInput`] it is given at each step and yields the results in
/// input order, either one at a time or as a [`ReadyRun`] that the consumer reads inline.
/// Stopped (or dropped), it cancels what has not started.
///
/// ```
/// use concurrent_futures::{Executor, MapOptions, ReadyRun, ThreadPoolExecutor};
/// fn neg(x: i32) -> i32 { -x }
/// let pool = ThreadPoolExecutor::new(2);
/// let mut state = pool.ordered_map(neg, MapOptions::new()).unwrap();
/// let mut input = (1..=3).fuse();
/// state.start(&mut input);
/// let mut run = ReadyRun::empty();
/// let mut out = Vec::new();
/// loop {
///     out.extend(run.by_ref().map(Ok));
///     match state.next(&mut input, &mut run) {
///         Some(r) => out.push(r),
///         None => break,
///     }
/// }
/// state.stop(&mut run);
/// assert_eq!(out, vec![Ok(-1), Ok(-2), Ok(-3)]);
/// ```
#[doc(hidden)]
pub trait OrderedMap<A, R>: fmt::Debug + Send + Sync {
    /// Starts the first work (called once, before any `next`).
    fn start(&mut self, input: &mut dyn MapInput<A>);

    /// The next result in input order, or `None` at the end. Called only once `run` (the
    /// run this map lent before, if any) is empty; it may lend a new one.
    fn next(
        &mut self,
        input: &mut dyn MapInput<A>,
        run: &mut ReadyRun<R>,
    ) -> Option<Result<R, TaskError>>;

    /// Results still to come (`run` included), given what the input has left.
    fn size_hint(&self, run: &ReadyRun<R>, input: (usize, Option<usize>))
    -> (usize, Option<usize>);

    /// The consumer is done: takes back what is left of `run` (called once, last).
    fn stop(&mut self, run: &mut ReadyRun<R>);
}

/// The input of an [`OrderedMap`]: items taken in bulk, so that a backend pays one call
/// per batch, not per item.
///
/// ```
/// use concurrent_futures::MapInput;
/// use std::time::Duration;
/// let mut input = (0..10).fuse();
/// let mut items = Vec::new();
/// input.take_into(&mut items, 4, Duration::from_secs(1));
/// assert_eq!(items, [0, 1, 2, 3]);
/// ```
#[doc(hidden)]
pub trait MapInput<A> {
    /// Takes up to `n` items into `items`, in runs of 1, 1, 2, 4, 8... items (`extend`
    /// keeps its fast path), and stops early once taking them took longer than `cut`: an
    /// input slower than the work is sent on as it comes, not held for a full batch (whose
    /// results would all wait for its last item).
    fn take_into(&mut self, items: &mut Vec<A>, n: usize, cut: Duration);

    /// The input's size hint.
    fn items_left(&self) -> (usize, Option<usize>);
}

impl<I: Iterator> MapInput<I::Item> for Fuse<I> {
    fn take_into(&mut self, items: &mut Vec<I::Item>, n: usize, cut: Duration) {
        let start = Instant::now();
        let mut run = 1;
        loop {
            let want = (n - items.len()).min(run);
            let before = items.len();
            items.extend(self.by_ref().take(want));
            if items.len() - before < want || items.len() >= n || start.elapsed() > cut {
                return;
            }
            run = (run * 2).min(n);
        }
    }

    fn items_left(&self) -> (usize, Option<usize>) {
        self.size_hint()
    }
}
