//! [`wait`] and [`as_completed`]: waiting on many futures at once, as Python's module
//! functions do.
//!
//! Both register one `WaitSet` (the future's fan-in listener, `future/wait_set.rs`) on every
//! future that is not done yet; a completing future pushes its index into the set and wakes
//! the waiter. Nothing polls. The registrations are
//! removed when the wait ends (or the [`AsCompleted`] iterator is dropped), so waiting many
//! times on a long-lived future does not accumulate listeners.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::error::TimeoutError;
use crate::future::{Future, Outcome, WaitSet};
use std::sync::Arc;

/// When [`wait`] should return. Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION` and
/// `ALL_COMPLETED`.
///
/// ```
/// use concurrent_futures::ReturnWhen;
/// assert_eq!(ReturnWhen::default(), ReturnWhen::AllCompleted);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnWhen {
    /// As soon as any future finishes or is cancelled.
    FirstCompleted,
    /// As soon as any future finishes with an error; else when all are done.
    FirstException,
    /// When every future is done.
    #[default]
    AllCompleted,
}

/// Python's `FIRST_COMPLETED`.
pub const FIRST_COMPLETED: ReturnWhen = ReturnWhen::FirstCompleted;
/// Python's `FIRST_EXCEPTION`.
pub const FIRST_EXCEPTION: ReturnWhen = ReturnWhen::FirstException;
/// Python's `ALL_COMPLETED`.
pub const ALL_COMPLETED: ReturnWhen = ReturnWhen::AllCompleted;

/// What [`wait`] returns: Python's `DoneAndNotDoneFutures(done, not_done)`.
///
/// Each list holds distinct futures (duplicates in the input appear once), in the order of
/// their first appearance in the input.
///
/// ```
/// use concurrent_futures::{wait, Future, ReturnWhen};
/// use std::time::Duration;
/// let (a, b) = (Future::new(), Future::new());
/// a.set_result(1).unwrap();
/// let res = wait([&a, &b], Some(Duration::ZERO), ReturnWhen::AllCompleted);
/// assert_eq!((res.done, res.not_done), (vec![&a], vec![&b]));
/// ```
#[derive(Debug)]
pub struct DoneAndNotDone<'a, T> {
    /// Futures finished or cancelled when `wait` returned.
    pub done: Vec<&'a Future<T>>,
    /// The others.
    pub not_done: Vec<&'a Future<T>>,
}

/// How a done future ended.
pub(crate) fn outcome_of<T: Send + Sync + 'static>(f: &Future<T>) -> Outcome {
    match f.core().value() {
        Some(Ok(_)) => Outcome::Success,
        Some(Err(_)) => Outcome::Failed,
        None => Outcome::Cancelled,
    }
}

fn dedup<'a, T>(fs: impl IntoIterator<Item = &'a Future<T>>) -> Vec<&'a Future<T>> {
    let mut seen = HashSet::new();
    fs.into_iter().filter(|f| seen.insert(*f)).collect()
}

/// Registers `set` on every future of `fs` that is not done, reporting the done ones at
/// once; returns nothing, the set holds the completions.
fn register<T: Send + Sync + 'static>(set: &Arc<WaitSet>, fs: &[&Future<T>]) {
    for (i, f) in fs.iter().enumerate() {
        if !f.core().add_waiter(set, i) {
            set.notify(i, outcome_of(f));
        }
    }
}

fn unregister<T: Send + Sync + 'static>(set: &Arc<WaitSet>, fs: &[&Future<T>]) {
    for f in fs {
        f.core().remove_waiter(set);
    }
}

/// Waits for the futures in `fs` to complete, as Python's `concurrent.futures.wait`.
///
/// Returns when `return_when` is satisfied or `timeout` passes (`None`: no limit), with the
/// futures split into done and not done. A timeout is not an error here: check `not_done`.
/// The futures may come from different executors. Nothing polls: the calling thread sleeps
/// until a future completes.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{wait, Executor, ReturnWhen, ThreadPoolExecutor};
///
/// fn inc(x: u32) -> u32 { x + 1 }
///
/// let pool = ThreadPoolExecutor::new(2);
/// let futures: Vec<_> = (0..4).map(|i| pool.submit(inc, i)).collect();
/// let res = wait(&futures, None, ReturnWhen::AllCompleted);
/// assert_eq!(res.done.len(), 4);
/// assert!(res.not_done.is_empty());
/// ```
pub fn wait<'a, T, I>(
    fs: I,
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> DoneAndNotDone<'a, T>
where
    T: Send + Sync + 'static,
    I: IntoIterator<Item = &'a Future<T>>,
{
    let deadline = timeout.map(|t| Instant::now() + t);
    let fs = dedup(fs);
    let split = |fs: &[&'a Future<T>]| {
        let (done, not_done): (Vec<_>, Vec<_>) = fs.iter().partition(|f| f.done());
        DoneAndNotDone { done, not_done }
    };
    let first = split(&fs);
    let satisfied = match return_when {
        ReturnWhen::FirstCompleted => !first.done.is_empty(),
        ReturnWhen::FirstException => first.done.iter().any(|f| outcome_of(f) == Outcome::Failed),
        ReturnWhen::AllCompleted => false,
    };
    if satisfied || first.not_done.is_empty() {
        return first;
    }
    let pending = first.not_done;
    let n = pending.len();
    let set = WaitSet::new();
    register(&set, &pending);
    set.wait_for(
        |i| match return_when {
            ReturnWhen::FirstCompleted => i.completed > 0,
            ReturnWhen::FirstException => i.failed || i.completed == n,
            ReturnWhen::AllCompleted => i.completed == n,
        },
        deadline,
    );
    unregister(&set, &pending);
    split(&fs)
}

/// Iterates over the futures in `fs` as they complete, as Python's
/// `concurrent.futures.as_completed`.
///
/// Futures already done come first (in input order), then the others in completion
/// order. Duplicates are yielded once. If `timeout` (counted from this call) passes before
/// all are done, the iterator yields one [`TimeoutError`] telling how many are unfinished,
/// then ends.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{as_completed, Executor, ThreadPoolExecutor};
///
/// fn len(s: String) -> usize { s.len() }
///
/// let pool = ThreadPoolExecutor::new(2);
/// let futures: Vec<_> = ["a", "bb", "ccc"].iter().map(|s| pool.submit(len, s.to_string())).collect();
/// let mut total = 0;
/// for fut in as_completed(&futures, None) {
///     total += fut.unwrap().result().unwrap();
/// }
/// assert_eq!(total, 6);
/// ```
pub fn as_completed<'a, T, I>(fs: I, timeout: Option<Duration>) -> AsCompleted<'a, T>
where
    T: Send + Sync + 'static,
    I: IntoIterator<Item = &'a Future<T>>,
{
    let deadline = timeout.map(|t| Instant::now() + t);
    let all = dedup(fs);
    let total = all.len();
    let (finished, pending): (Vec<_>, Vec<_>) = all.into_iter().partition(|f| f.done());
    let set = WaitSet::new();
    register(&set, &pending);
    AsCompleted {
        finished: finished.into(),
        remaining: pending.len(),
        pending,
        set,
        deadline,
        total,
        timed_out: false,
    }
}

/// Iterator returned by [`as_completed`].
///
/// ```
/// use concurrent_futures::{as_completed, Future};
/// let f = Future::new();
/// f.set_result("done").unwrap();
/// let mut it = as_completed([&f], None);
/// assert_eq!(it.next().unwrap().unwrap().result(), Ok("done"));
/// assert!(it.next().is_none());
/// ```
#[derive(Debug)]
pub struct AsCompleted<'a, T: Send + Sync + 'static> {
    finished: VecDeque<&'a Future<T>>,
    pending: Vec<&'a Future<T>>,
    remaining: usize,
    set: Arc<WaitSet>,
    deadline: Option<Instant>,
    total: usize,
    timed_out: bool,
}

impl<'a, T: Send + Sync + 'static> Iterator for AsCompleted<'a, T> {
    type Item = Result<&'a Future<T>, TimeoutError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(f) = self.finished.pop_front() {
            return Some(Ok(f));
        }
        if self.remaining == 0 || self.timed_out {
            return None;
        }
        match self.set.next(self.deadline) {
            Some(i) => {
                self.remaining -= 1;
                Some(Ok(self.pending[i]))
            }
            None => {
                self.timed_out = true;
                Some(Err(TimeoutError {
                    unfinished: self.remaining,
                    total: self.total,
                }))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.finished.len() + self.remaining;
        (0, Some(n + 1))
    }
}

impl<T: Send + Sync + 'static> Drop for AsCompleted<'_, T> {
    fn drop(&mut self) {
        if self.remaining > 0 {
            unregister(&self.set, &self.pending);
        }
    }
}
