//! Reading a [`Future`]'s outcome: blocking waits (with a deadline, running the task inline
//! where the pool allows it), the result cloned, borrowed or moved, the exception, and
//! `.await`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{CANCELLED, Future, INLINE, NOTIFIED, STATE_MASK, TAKEN, is_done};
use crate::error::TaskError;

impl<T> Future<T> {
    /// Blocks until the result is known, then clones it. Python's `result()`.
    ///
    /// If the task has not started and the pool allows it, the calling thread runs the task
    /// itself instead of sleeping (the task runs exactly once either way; see
    /// [`ThreadPoolBuilder::caller_runs`](crate::ThreadPoolBuilder::caller_runs)).
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new(1);
    /// let fut = pool.spawn(|| String::from("value"));
    /// assert_eq!(fut.result().unwrap(), "value");
    /// assert_eq!(fut.result().unwrap(), "value");
    /// ```
    pub fn result(&self) -> Result<T, TaskError>
    where
        T: Clone,
    {
        self.result_ref().cloned()
    }

    /// Like [`result`](Future::result), giving up after `timeout` with
    /// [`TaskError::Timeout`]; the future is unchanged by a timeout. A zero timeout only
    /// looks. Python's `result(timeout)`.
    ///
    /// ```
    /// use concurrent_futures::{Future, TaskError};
    /// use std::time::Duration;
    /// let fut: Future<u8> = Future::new();
    /// assert_eq!(fut.result_timeout(Duration::from_millis(5)), Err(TaskError::Timeout));
    /// fut.set_result(3).unwrap();
    /// assert_eq!(fut.result_timeout(Duration::ZERO), Ok(3));
    /// ```
    pub fn result_timeout(&self, timeout: Duration) -> Result<T, TaskError>
    where
        T: Clone,
    {
        self.result_ref_timeout(timeout).cloned()
    }

    /// Blocks until the result is known and borrows it (no `Clone` needed).
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new(1);
    /// let fut = pool.spawn(|| vec![1, 2, 3]);
    /// assert_eq!(fut.result_ref().unwrap().len(), 3);
    /// ```
    pub fn result_ref(&self) -> Result<&T, TaskError> {
        self.wait();
        self.peek()
    }

    /// [`result_ref`](Future::result_ref) with a timeout.
    ///
    /// ```
    /// # use concurrent_futures::{Future, TaskError};
    /// # use std::time::Duration;
    /// let fut: Future<Vec<u8>> = Future::new();
    /// assert_eq!(fut.result_ref_timeout(Duration::ZERO), Err(TaskError::Timeout));
    /// ```
    pub fn result_ref_timeout(&self, timeout: Duration) -> Result<&T, TaskError> {
        if !self.wait_timeout(timeout) {
            return Err(TaskError::Timeout);
        }
        self.peek()
    }

    /// Blocks until the result is known and moves it out, consuming the future.
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new(1);
    /// let big = pool.spawn(|| vec![0u8; 1 << 20]);
    /// let bytes: Vec<u8> = big.into_result().unwrap(); // no copy
    /// assert_eq!(bytes.len(), 1 << 20);
    /// ```
    pub fn into_result(self) -> Result<T, TaskError> {
        self.wait_until(|s| s & NOTIFIED != 0, None, true);
        self.take()
    }

    /// `into_result` without running the task inline: for `map`, whose consumer must stay
    /// free to keep the workers fed (running a chunk itself would starve them).
    pub(crate) fn into_result_no_help(self) -> Result<T, TaskError> {
        self.wait_until(|s| s & NOTIFIED != 0, None, false);
        self.take()
    }

    /// The error of a finished task: `Ok(None)` if it succeeded, `Ok(Some(e))` if it failed,
    /// `Err(TaskError::Cancelled)` if it was cancelled. Blocks until done. Python's
    /// `exception()`, where the `Err` side is what Python raises.
    ///
    /// ```
    /// use concurrent_futures::{ThreadPoolExecutor, TaskError};
    /// let pool = ThreadPoolExecutor::new(1);
    /// assert_eq!(pool.spawn(|| 1).exception(), Ok(None));
    /// let failed = pool.spawn(|| -> u8 { panic!("x") }).exception().unwrap();
    /// assert!(matches!(failed, Some(TaskError::Panicked(_))));
    /// ```
    pub fn exception(&self) -> Result<Option<TaskError>, TaskError> {
        self.wait();
        self.peek_exception()
    }

    /// [`exception`](Future::exception) with a timeout: `Err(TaskError::Timeout)` if the
    /// future is not done in time.
    ///
    /// ```
    /// # use concurrent_futures::{Future, TaskError};
    /// # use std::time::Duration;
    /// let fut: Future<u8> = Future::new();
    /// assert_eq!(fut.exception_timeout(Duration::ZERO), Err(TaskError::Timeout));
    /// ```
    pub fn exception_timeout(&self, timeout: Duration) -> Result<Option<TaskError>, TaskError> {
        if !self.wait_timeout(timeout) {
            return Err(TaskError::Timeout);
        }
        self.peek_exception()
    }

    /// Blocks until the future is done (finished or cancelled).
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new(1);
    /// let fut = pool.spawn(|| ());
    /// fut.wait();
    /// assert!(fut.done());
    /// ```
    pub fn wait(&self) {
        self.wait_until(is_done, None, true);
    }

    /// Blocks until the future is done or `timeout` passes; returns whether it is done.
    ///
    /// ```
    /// # use concurrent_futures::Future;
    /// # use std::time::Duration;
    /// let fut: Future<()> = Future::new();
    /// assert!(!fut.wait_timeout(Duration::from_millis(1)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(is_done, Some(Instant::now() + timeout), true)
    }

    /// Waits for `ready`, running the task inline (if `help`, the task has not started and
    /// its pool allows it) or spinning briefly before sleeping. A timed wait never runs the
    /// task: the task could outlast the timeout.
    fn wait_until(&self, ready: fn(u32) -> bool, deadline: Option<Instant>, help: bool) -> bool {
        let core = self.core();
        let s = core.load();
        if ready(s) {
            return true;
        }
        if help && s & INLINE != 0 && !is_done(s) {
            match deadline {
                None => self.cell.help(self),
                Some(d) => self.cell.help_until(d),
            }
        }
        // A short spin catches tasks that are about to finish without a sleep and a
        // wake-up (omitted under loom, where it only multiplies the interleavings).
        #[cfg(not(loom))]
        {
            let backoff = crossbeam_utils::Backoff::new();
            while !backoff.is_completed() {
                if ready(core.load()) {
                    return true;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
                backoff.snooze();
            }
        }
        core.block_until(ready, deadline)
    }

    /// The result of a future known to be done.
    fn peek(&self) -> Result<&T, TaskError> {
        match self.core().value() {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(e.clone()),
            None => Err(TaskError::Cancelled),
        }
    }

    fn peek_exception(&self) -> Result<Option<TaskError>, TaskError> {
        match self.core().value() {
            Some(Ok(_)) => Ok(None),
            Some(Err(e)) => Ok(Some(e.clone())),
            None => Err(TaskError::Cancelled),
        }
    }

    /// Moves the value out of a NOTIFIED future.
    fn take(&self) -> Result<T, TaskError> {
        if self.core().load() & STATE_MASK == CANCELLED {
            return Err(TaskError::Cancelled);
        }
        // SAFETY: `self` is the unique user handle (futures are not `Clone`, and the crate's
        // internal handles never read the value), it is borrowed mutably or owned by our
        // callers (`into_result`, `poll`), and NOTIFIED was observed, so no callback borrows
        // the value either.
        match unsafe { self.core().take() } {
            Some(v) => v,
            // Only reachable by polling again after `Ready`, which `poll` prevents.
            None => Err(TaskError::Cancelled),
        }
    }
}

impl<T> std::future::Future for Future<T> {
    type Output = Result<T, TaskError>;

    /// Resolves once the task is done and its callbacks have run, moving the value out.
    /// After it has returned `Ready`, polling again returns `Pending` (the future is fused)
    /// and the blocking accessors report [`TaskError::Cancelled`]: the value is gone.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let core = this.core();
        let s = core.load();
        if s & TAKEN != 0 {
            return Poll::Pending;
        }
        if s & NOTIFIED != 0 || !core.register_waker(cx.waker()) {
            let out = this.take();
            this.core().mark_taken();
            return Poll::Ready(out);
        }
        Poll::Pending
    }
}
