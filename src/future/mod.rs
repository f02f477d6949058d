//! [`Future`]: the handle to a task's eventual result, with Python's `concurrent.futures.Future`
//! behaviour.
//!
//! One concept per file: the handle, its state queries, cancellation, callbacks and setters
//! (here); reading its outcome, by waiting or `.await` (`result.rs`); [`State`] and
//! [`InvalidStateError`] (`state.rs`); [`TaskCell`], what a future is made of
//! (`task_cell.rs`); the cell itself (`cell.rs`); [`WaitSet`] (`wait_set.rs`).

mod cell;
mod result;
mod state;
mod task_cell;
mod wait_set;

use std::fmt;
use std::hash::{Hash, Hasher};

// (`RUNNING` and the two constructors below serve the process and MPI pools: Linux only.)
#[cfg_attr(not(target_os = "linux"), allow(unused_imports))]
pub(crate) use cell::{
    CANCELLED, COOPERATIVE, Callback, Core, Deferred, FAILED, FINISHED, FnCell, INLINE, NOTIFIED,
    RUNNING, STATE_MASK, STOPPED, TAKEN, current_task_stop_seen, is_done,
};

pub(crate) use state::Outcome;
pub use state::{InvalidStateError, State};
pub(crate) use task_cell::TaskCell;
pub(crate) use wait_set::WaitSet;

use crate::error::TaskError;
use std::sync::Arc;

/// The eventual result of a task: Python's `concurrent.futures.Future`.
///
/// Returned by [`Executor::submit`](crate::Executor::submit) and
/// [`ThreadPoolExecutor::spawn`](crate::ThreadPoolExecutor::spawn); also creatable with
/// [`Future::new`] for code that implements an executor (or tests), as in Python.
///
/// # States
///
/// `Pending → Running → Finished`, or `Pending → Cancelled`. [`cancel`](Future::cancel)
/// succeeds only while pending; a cancelled task never runs.
///
/// # Getting the result: borrowed, cloned, or moved
///
/// * [`result`](Future::result) clones the value (`T: Clone`); call it as often as you like,
///   from any thread holding a reference, as in Python.
/// * [`result_ref`](Future::result_ref) borrows it: no `Clone` needed.
/// * [`into_result`](Future::into_result) and `.await` consume the future and move the value
///   out: no clone, no `Clone` bound.
///
/// Errors are a [`TaskError`]: cancelled, panicked (with the message), worker died, ….
///
/// # One handle
///
/// A `Future` is not `Clone`: it is the single owner of the result, which is what lets
/// `into_result` move the value out. Share it by reference (`&Future<T>` is `Send + Sync`);
/// [`wait`](crate::wait) and [`as_completed`](crate::as_completed) take and return references.
/// Dropping a future does not cancel the task (as in Python). Two futures compare equal only
/// if they are the same future, and hash by identity, so they can key a `HashMap` as in the
/// Python idiom `{executor.submit(f, x): x for x in xs}`.
///
/// # Waiting without blocking
///
/// `Future<T>` implements [`std::future::Future`] with `Output = Result<T, TaskError>`, so
/// async code can `.await` it without blocking an executor thread. Blocking waits, callbacks
/// and awaiting all share the task's single allocation: there is no channel per task.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = ThreadPoolExecutor::new(2);
/// let fut = pool.submit(square, 12);
/// fut.add_done_callback(|f| println!("done: {:?}", f.result()));
/// assert_eq!(fut.result(), Ok(144));      // clone, repeatable
/// assert_eq!(fut.result_ref(), Ok(&144)); // borrow
/// assert_eq!(fut.into_result(), Ok(144)); // move
/// ```
pub struct Future<T> {
    cell: Arc<dyn TaskCell<T>>,
}

impl<T: Send + Sync + 'static> Default for Future<T> {
    fn default() -> Self {
        Future::new()
    }
}

impl<T: Send + Sync + 'static> Future<T> {
    /// A new pending future not attached to any executor: drive it with
    /// [`set_running_or_notify_cancel`](Future::set_running_or_notify_cancel),
    /// [`set_result`](Future::set_result) and [`set_exception`](Future::set_exception), as a
    /// Python executor does.
    ///
    /// ```
    /// use concurrent_futures::Future;
    /// let fut = Future::new();
    /// assert!(!fut.done());
    /// fut.set_result("hi").unwrap();
    /// assert_eq!(fut.result(), Ok("hi"));
    /// ```
    pub fn new() -> Self {
        Future {
            cell: Arc::new(Core::new(0)),
        }
    }

    /// A future that is already finished with `value`.
    pub(crate) fn ready(value: Result<T, TaskError>) -> Self {
        Future {
            cell: Arc::new(Core::finished(value)),
        }
    }

    /// A future whose task is the closure `f`, in one allocation; `inline` lets a thread
    /// that blocks on it run it. Returns the future and the runnable cell.
    pub(crate) fn with_task<F>(f: F, inline: bool) -> (Self, Arc<FnCell<F, T>>)
    where
        F: FnOnce() -> T + Send + 'static,
    {
        let flags = COOPERATIVE | if inline { INLINE } else { 0 };
        let cell = Arc::new(FnCell::new(f, flags));
        let fut = Future { cell: cell.clone() };
        (fut, cell)
    }

    /// A future made of a backend's own cell (one that can `help` a waiting thread).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn from_task_cell(cell: Arc<dyn TaskCell<T>>) -> Self {
        Future { cell }
    }

    /// Wraps a cell handed out by `with_task` (for running it and calling callbacks).
    pub(crate) fn from_cell<F>(cell: Arc<FnCell<F, T>>) -> Self
    where
        F: FnOnce() -> T + Send + 'static,
    {
        Future { cell }
    }
}

impl<T> Future<T> {
    /// A second handle on the same state, for the crate's own bookkeeping (the completer
    /// of a non-thread-pool executor). Never given to users: the handle a user holds must
    /// stay unique (see `into_result`).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn handle(&self) -> Self {
        Future {
            cell: self.cell.clone(),
        }
    }

    pub(crate) fn core(&self) -> &Core<T> {
        self.cell.core()
    }

    /// Runs the task here if it is still pending (a worker executing its job); true if it
    /// ran here.
    pub(crate) fn run_here(&self) -> bool {
        self.cell.run_task(self)
    }

    /// The current state.
    ///
    /// ```
    /// # use concurrent_futures::{Future, State};
    /// let fut: Future<()> = Future::new();
    /// assert_eq!(fut.state(), State::Pending);
    /// ```
    pub fn state(&self) -> State {
        self.core().state()
    }

    /// True if the future is finished or cancelled. Python's `done()`.
    ///
    /// ```
    /// # use concurrent_futures::Future;
    /// let fut = Future::new();
    /// assert!(!fut.done());
    /// fut.set_result(()).unwrap();
    /// assert!(fut.done());
    /// ```
    pub fn done(&self) -> bool {
        is_done(self.core().load())
    }

    /// True while the task is executing. Python's `running()`.
    ///
    /// ```
    /// # use concurrent_futures::Future;
    /// let fut: Future<()> = Future::new();
    /// assert!(fut.set_running_or_notify_cancel().unwrap());
    /// assert!(fut.running());
    /// ```
    pub fn running(&self) -> bool {
        self.state() == State::Running
    }

    /// True if the future was cancelled. Python's `cancelled()`.
    ///
    /// ```
    /// # use concurrent_futures::Future;
    /// let fut: Future<()> = Future::new();
    /// assert!(fut.cancel());
    /// assert!(fut.cancelled());
    /// ```
    pub fn cancelled(&self) -> bool {
        self.state() == State::Cancelled
    }

    /// Cancels the task if it has not started. Returns true if the future is cancelled
    /// (now or before), false if it is running or finished. Callbacks run at once, on this
    /// thread. Python's `cancel()`.
    ///
    /// ```
    /// # use concurrent_futures::{Future, TaskError};
    /// let fut: Future<u32> = Future::new();
    /// assert!(fut.cancel());
    /// assert!(fut.cancel()); // still true
    /// assert_eq!(fut.result(), Err(TaskError::Cancelled));
    /// ```
    pub fn cancel(&self) -> bool {
        self.core().cancel(self)
    }

    /// Cancels the task, even if it is running: a pending task is cancelled as by
    /// [`cancel`](Self::cancel); a running task is stopped where its backend can stop it. A
    /// task stopped this way fails with [`TaskError::Cancelled`]; its state is then
    /// `Finished`, not `Cancelled`, because it had started.
    ///
    /// | backend | a running task | returns |
    /// |---|---|---|
    /// | thread pool (and `spawn`) | asked to stop: it stops when it next calls [`cancelled`](crate::cancelled) (a thread cannot be killed: a task that never looks runs to the end) | true |
    /// | process pool | its worker process is killed (SIGKILL) and replaced; the future fails with `Cancelled` once the worker is gone | true |
    /// | MPI pool | left to run: a rank of a static job cannot be killed alone, and a worker rank reads no request while its task runs | false |
    /// | [`Future::new`], rayon | no request can reach it | false |
    ///
    /// On the process pool, the request goes to the task's worker, which answers at once,
    /// deciding under the lock of its queue: a task it has not started is dropped (the
    /// worker lives on); the task it runs is stopped by the worker killing itself. The
    /// future fails with `Cancelled` when the answer (or the death) is read, within
    /// moments: from then on the task cannot run any more. A worker that cannot answer (a
    /// process stopped by SIGSTOP or a debugger, or starved) is killed by the pool after
    /// one second, to the same effect. Only the cancelled task is lost:
    /// the tasks its worker held and had not started run elsewhere, once each. A task of a
    /// `map` is a chunk of items: cancelling a chunk's future stops the whole chunk. The
    /// pool's statistics count the task as cancelled (and `running` until then), and a
    /// killed worker as a death and a restart (as a worker killed for a time limit). A task
    /// racing to its end has exactly one outcome: if this returns true, the future fails
    /// with `Cancelled` and a value the task may have produced is discarded; if false, the
    /// task's own outcome stands. The MPI pool's local fallback (a program started without
    /// `mpirun`) is a process pool.
    ///
    /// Returns true if the future is cancelled or the running task is being stopped (a
    /// thread-pool task: will see the request; a process-pool task: its worker was asked);
    /// false if it is already finished (by an earlier `cancel_running` too), or runs where
    /// no request can reach it.
    ///
    /// ```
    /// use concurrent_futures::{TaskError, ThreadPoolExecutor};
    /// use std::time::Duration;
    ///
    /// let pool = ThreadPoolExecutor::new(1);
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let running = pool.spawn(move || {
    ///     tx.send(()).unwrap();
    ///     while !concurrent_futures::cancelled() {
    ///         std::thread::yield_now();
    ///     }
    /// });
    /// let queued = pool.spawn(|| 1);
    /// rx.recv_timeout(Duration::from_secs(10)).unwrap();
    /// assert!(queued.cancel_running()); // not started: cancelled as by cancel()
    /// assert!(running.cancel_running()); // running: asked to stop
    /// assert_eq!(running.result_timeout(Duration::from_secs(10)), Err(TaskError::Cancelled));
    /// assert_eq!(queued.result(), Err(TaskError::Cancelled));
    /// assert!(!running.cancel_running()); // finished
    /// ```
    ///
    /// On the process pool:
    ///
    /// ```
    /// use concurrent_futures::{Executor, ProcessPoolExecutor, State, TaskError};
    /// use std::time::Duration;
    ///
    /// fn forever(_: ()) -> u8 { loop { std::thread::park() } }
    /// fn double(x: u64) -> u64 { 2 * x }
    ///
    /// let pool = ProcessPoolExecutor::new(1);
    /// let stuck = pool.submit(forever, ());
    /// let behind = pool.submit(double, 21); // queued behind it
    /// while stuck.state() != State::Running { std::thread::yield_now() } // sent to the worker
    /// assert!(!stuck.cancel()); // Python's cancel() refuses a task sent to a worker
    /// assert!(stuck.cancel_running()); // this stops it (killing the worker if it started)
    /// assert_eq!(stuck.result(), Err(TaskError::Cancelled));
    /// assert_eq!(behind.result_timeout(Duration::from_secs(30)), Ok(42)); // not lost
    /// assert!(!stuck.cancel_running()); // finished
    /// ```
    pub fn cancel_running(&self) -> bool {
        self.cancel() || self.cell.stop_running()
    }

    /// Attaches `callback`, called with this future once it is done. Python's
    /// `add_done_callback`.
    ///
    /// Every callback runs exactly once, in the order added. If the future is already done
    /// the callback runs at once on this thread; otherwise on the thread that completes (or
    /// cancels) the future, except on a process pool, whose callbacks run on threads of
    /// their own (never on a thread that reads results: a callback may wait on the pool).
    /// A panicking callback is reported on stderr and does not stop the other callbacks or
    /// harm the worker.
    ///
    /// ```
    /// use concurrent_futures::Future;
    /// use std::sync::mpsc;
    /// let fut = Future::new();
    /// let (tx, rx) = mpsc::channel();
    /// fut.add_done_callback(move |f| tx.send(f.result().unwrap()).unwrap());
    /// fut.set_result(7).unwrap();
    /// assert_eq!(rx.recv().unwrap(), 7);
    /// ```
    pub fn add_done_callback<F>(&self, callback: F)
    where
        F: FnOnce(&Future<T>) + Send + 'static,
    {
        if let Some(cb) = self.core().add_callback(Box::new(callback)) {
            crate::unwind::run_callback(|| cb(self));
        }
    }

    /// Marks the future running, or reports that it was cancelled. For executor
    /// implementations, as in Python: returns `Ok(true)` if the task should run, `Ok(false)`
    /// if it was cancelled (it must not run), and an error if the future was already running
    /// or done.
    ///
    /// ```
    /// # use concurrent_futures::Future;
    /// let fut: Future<()> = Future::new();
    /// assert_eq!(fut.set_running_or_notify_cancel(), Ok(true));
    /// assert!(!fut.cancel()); // too late
    /// assert!(fut.set_running_or_notify_cancel().is_err());
    /// ```
    pub fn set_running_or_notify_cancel(&self) -> Result<bool, InvalidStateError> {
        self.core().set_running_or_notify_cancel()
    }

    /// Completes the future with a value, waking waiters and running callbacks. Fails if it is
    /// already finished, cancelled, or being completed. Python's `set_result`.
    ///
    /// ```
    /// # use concurrent_futures::Future;
    /// let fut = Future::new();
    /// fut.set_result(5).unwrap();
    /// assert!(fut.set_result(6).is_err());
    /// assert_eq!(fut.result(), Ok(5));
    /// ```
    pub fn set_result(&self, value: T) -> Result<(), InvalidStateError> {
        self.core().try_set(Ok(value), self)
    }

    /// Completes the future with an error. Python's `set_exception`.
    ///
    /// ```
    /// # use concurrent_futures::{Future, TaskError};
    /// let fut: Future<u8> = Future::new();
    /// fut.set_exception(TaskError::Broken("gone".into())).unwrap();
    /// assert_eq!(fut.exception(), Ok(Some(TaskError::Broken("gone".into()))));
    /// ```
    pub fn set_exception(&self, error: TaskError) -> Result<(), InvalidStateError> {
        self.core().try_set(Err(error), self)
    }

    /// Completes a future whose slot this thread already owns (a crate executor that
    /// called `claim`). Used by backends that finish tasks off-thread.
    pub(crate) fn finish_claimed(&self, value: Result<T, TaskError>) {
        self.core().finish(value, self);
    }

    /// As `finish_claimed`, leaving the callbacks to the caller to run elsewhere (see
    /// `Core::finish_deferring`).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn finish_claimed_deferring(&self, value: Result<T, TaskError>) -> Option<Deferred>
    where
        T: Send + Sync + 'static,
    {
        self.core().finish_deferring(value, self)
    }
}

impl<T> PartialEq for Future<T> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.cell), Arc::as_ptr(&other.cell))
    }
}

impl<T> Eq for Future<T> {}

impl<T> Hash for Future<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.cell) as *const () as usize).hash(state);
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = State::from_bits(self.cell.core().load());
        f.debug_struct("Future")
            .field("at", &(Arc::as_ptr(&self.cell) as *const ()))
            .field("state", &state)
            .finish()
    }
}
