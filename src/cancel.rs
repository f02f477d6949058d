//! Cooperative cancellation of a running thread-pool task: [`cancelled`], set by
//! [`Future::cancel_running`](crate::Future::cancel_running).
//!
//! A thread cannot be killed safely (it may hold a lock, or be halfway through writing
//! shared memory), so a running task stops only if it looks: it calls [`cancelled`] at
//! points where stopping is safe and returns when it answers `true`. Its future then fails
//! with [`TaskError::Cancelled`](crate::TaskError::Cancelled), whatever the task returned.

/// Whether the task running on this thread was asked to stop by
/// [`Future::cancel_running`](crate::Future::cancel_running).
///
/// A long thread-pool task calls it between steps and returns early when it is `true`. Once
/// it has answered `true`, the task's future fails with
/// [`TaskError::Cancelled`](crate::TaskError::Cancelled) whatever the task returns, so
/// the task may return any value. Outside a task spawned on a thread pool (in a `map`
/// item, in a process-pool worker, on a thread running no task) it is always `false`.
///
/// The check is one thread-local read and one atomic load.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{TaskError, ThreadPoolExecutor};
/// use std::sync::mpsc;
/// use std::time::Duration;
///
/// let pool = ThreadPoolExecutor::new(1);
/// let (started, is_started) = mpsc::channel();
/// let fut = pool.spawn(move || {
///     started.send(()).unwrap();
///     let mut steps = 0u64;
///     while !concurrent_futures::cancelled() {
///         steps += 1; // one step of a long computation
///         std::hint::spin_loop();
///     }
///     steps
/// });
/// is_started.recv_timeout(Duration::from_secs(10)).unwrap();
/// assert!(!fut.cancel()); // Python's cancel() refuses a running task...
/// assert!(fut.cancel_running()); // ...this asks it to stop
/// assert_eq!(fut.result_timeout(Duration::from_secs(10)), Err(TaskError::Cancelled));
/// assert!(!concurrent_futures::cancelled()); // not inside a task
/// ```
pub fn cancelled() -> bool {
    crate::future::current_task_stop_seen()
}
