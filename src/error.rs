//! Error types: one for a task ([`TaskError`]), one for a submission ([`SubmitError`]),
//! and small ones for building a pool, misusing a future's setters, and timeouts of
//! [`as_completed`](crate::as_completed).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a task produced no value.
///
/// Returned by [`Future::result`](crate::Future::result) and its relatives. Match on it to
/// tell apart a task that was cancelled, one that panicked, one whose worker died, and a wait
/// that timed out (the only variant after which the future may still complete).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{TaskError, ThreadPoolExecutor};
///
/// let pool = ThreadPoolExecutor::new(1);
/// let fut = pool.spawn(|| -> u32 { panic!("boom") });
/// match fut.result() {
///     Err(TaskError::Panicked(p)) => assert_eq!(p.message(), "boom"),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TaskError {
    /// The future was cancelled before its task started; the task never ran.
    /// Python's `CancelledError`.
    #[error("the task was cancelled before it started")]
    Cancelled,
    /// A timed wait (`result_timeout`, `exception_timeout`, a `map` timeout) elapsed first.
    /// The future is unchanged and may still complete. Python's `TimeoutError`.
    #[error("timed out waiting for the task")]
    Timeout,
    /// The task panicked; the message and location are kept. The worker survived.
    ///
    /// Needs `panic = "unwind"` (the default). Built with `panic = "abort"`, a panic cannot
    /// be caught: the task's message and location are printed on stderr, then the process
    /// aborts: the program on a thread pool, the worker on a process pool (the task fails
    /// with [`WorkerDied`](TaskError::WorkerDied)).
    #[error("{0}")]
    Panicked(Panic),
    /// The worker process running the task died (process backends only). Only the task it
    /// was running fails this way (and any it had just finished whose result died with
    /// it); the tasks it had not started run elsewhere, and the pool replaces the worker.
    #[error("worker process {pid} died while running the task ({status})")]
    WorkerDied {
        /// Process id of the dead worker.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// The task ran longer than the pool's per-task time limit; its worker was stopped.
    #[error("the task exceeded its time limit of {0:?}")]
    TimeLimit(Duration),
    /// The pool became unusable before the task could run (an initializer failed).
    /// Python's `BrokenThreadPool` / `BrokenProcessPool`.
    #[error("the pool is broken: {0}")]
    Broken(#[serde(with = "crate::serde_arc::arc_str")] Arc<str>),
    /// The task was never accepted; see the [`SubmitError`].
    #[error("the task was not submitted: {0}")]
    Submit(#[from] SubmitError),
    /// The result could not be encoded or decoded at a process boundary.
    #[error("the result could not cross the process boundary: {0}")]
    Codec(#[serde(with = "crate::serde_arc::arc_str")] Arc<str>),
    /// The task ran, but this process was short of a system resource when its result
    /// arrived, and the result was lost (process pool: a large result travels as a shared
    /// memory file, and the kernel drops a file it cannot give a process that has as many
    /// open as `RLIMIT_NOFILE` allows). Transient: the worker is not blamed and goes on, no
    /// other task is affected, and the same task submitted again succeeds once descriptors
    /// are free.
    ///
    /// ```
    /// use concurrent_futures::{Shortage, TaskError};
    /// let e = TaskError::Shortage(Shortage::Descriptors);
    /// assert!(e.to_string().contains("EMFILE"));
    /// ```
    #[error("the task ran, but its result was lost: {0}")]
    Shortage(Shortage),
}

/// A system resource this process ran short of (see [`TaskError::Shortage`]).
///
/// ```
/// use concurrent_futures::Shortage;
/// assert_eq!(Shortage::from_errno(libc::ENFILE), Shortage::SystemDescriptors);
/// assert_eq!(Shortage::Descriptors.errno(), libc::EMFILE);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Shortage {
    /// This process has as many open descriptors as its `RLIMIT_NOFILE` soft limit allows
    /// (`EMFILE`).
    #[error(
        "this process has as many open files as its limit allows \
         (EMFILE: too many open files; see RLIMIT_NOFILE, `ulimit -n`)"
    )]
    Descriptors,
    /// The system's table of open files is full (`ENFILE`).
    #[error("the system's table of open files is full (ENFILE)")]
    SystemDescriptors,
    /// The kernel could not allocate memory for the descriptor (`ENOMEM`).
    #[error("the kernel is out of memory (ENOMEM)")]
    KernelMemory,
}

impl Shortage {
    /// The shortage an OS error number names (`EMFILE`, `ENFILE`, `ENOMEM`); any other
    /// number counts as `Descriptors`.
    pub fn from_errno(errno: i32) -> Shortage {
        match errno {
            libc::ENFILE => Shortage::SystemDescriptors,
            libc::ENOMEM => Shortage::KernelMemory,
            _ => Shortage::Descriptors,
        }
    }

    /// The OS error number of this shortage, e.g. for
    /// [`std::io::Error::from_raw_os_error`].
    pub fn errno(self) -> i32 {
        match self {
            Shortage::Descriptors => libc::EMFILE,
            Shortage::SystemDescriptors => libc::ENFILE,
            Shortage::KernelMemory => libc::ENOMEM,
        }
    }
}

impl TaskError {
    /// True for [`TaskError::Cancelled`].
    ///
    /// ```
    /// assert!(concurrent_futures::TaskError::Cancelled.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }

    /// True for [`TaskError::Timeout`] (a wait elapsed; the future may still complete).
    ///
    /// ```
    /// assert!(concurrent_futures::TaskError::Timeout.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, TaskError::Timeout)
    }

    /// The panic, if the task panicked.
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    /// let pool = ThreadPoolExecutor::new(1);
    /// let err = pool.spawn(|| -> () { panic!("no") }).result().unwrap_err();
    /// assert_eq!(err.panic().unwrap().message(), "no");
    /// ```
    pub fn panic(&self) -> Option<&Panic> {
        match self {
            TaskError::Panicked(p) => Some(p),
            _ => None,
        }
    }
}

/// A panic caught inside a task: its message and where it happened.
///
/// The original payload is not kept (it may be neither `Sync` nor serializable); the
/// message is the payload's `&str` or `String`, as the default panic hook prints it.
///
/// A task's panic is not printed: it is delivered as this value. In a program built with
/// `panic = "abort"` there is no value to deliver: the crate's panic hook prints the message
/// and location (as the default hook does, plus a line saying a task panicked) before the
/// process aborts.
///
/// # Examples
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
/// let pool = ThreadPoolExecutor::new(1);
/// let err = pool.spawn(|| -> () { panic!("bad input {}", 7) }).result().unwrap_err();
/// let panic = err.panic().unwrap();
/// assert_eq!(panic.message(), "bad input 7");
/// assert!(panic.location().is_some()); // file:line:column of the `panic!`
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Panic(Box<PanicData>);

impl fmt::Debug for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Panic")
            .field("message", &self.0.message)
            .field("location", &self.0.location)
            .finish()
    }
}

/// Boxed so that `Result<T, TaskError>` stays small (it is moved for every item of a `map`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PanicData {
    message: String,
    location: Option<String>,
}

impl Panic {
    pub(crate) fn new(message: String, location: Option<String>) -> Self {
        Panic(Box::new(PanicData { message, location }))
    }
}

impl Panic {
    /// The panic message.
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// # let pool = ThreadPoolExecutor::new(1);
    /// let err = pool.spawn(|| -> () { panic!("boom") }).result().unwrap_err();
    /// assert_eq!(err.panic().unwrap().message(), "boom");
    /// ```
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// `file:line:column` of the panic, when the crate's panic hook could record it.
    ///
    /// ```
    /// # use concurrent_futures::ThreadPoolExecutor;
    /// # let pool = ThreadPoolExecutor::new(1);
    /// let err = pool.spawn(|| -> () { panic!("boom") }).result().unwrap_err();
    /// assert!(err.panic().unwrap().location().is_some());
    /// ```
    pub fn location(&self) -> Option<&str> {
        self.0.location.as_deref()
    }
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the task panicked: {}", self.0.message)?;
        if let Some(loc) = &self.0.location {
            write!(f, " (at {loc})")?;
        }
        Ok(())
    }
}

/// How a worker process ended.
///
/// ```
/// use concurrent_futures::ExitStatus;
/// assert_eq!(ExitStatus::Signal(9).to_string(), "killed by signal 9");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// It is gone, and how could not be learned.
    Unknown,
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
            ExitStatus::Unknown => f.write_str("exit status unknown"),
        }
    }
}

/// Why an executor refused a task.
///
/// [`Executor::try_submit`](crate::Executor::try_submit) returns it;
/// [`Executor::submit`](crate::Executor::submit) puts it in the returned future as
/// [`TaskError::Submit`].
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Executor, SubmitError, ThreadPoolExecutor};
///
/// fn double(x: u32) -> u32 { x * 2 }
/// let pool = ThreadPoolExecutor::new(1);
/// pool.shutdown(true);
/// assert_eq!(pool.try_submit(double, 1).unwrap_err(), SubmitError::Shutdown);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SubmitError {
    /// `shutdown` was called; no new work is accepted. Python's
    /// `RuntimeError('cannot schedule new futures after shutdown')`.
    #[error("cannot schedule new futures after shutdown")]
    Shutdown,
    /// The pool is broken (an initializer failed) and accepts no work.
    #[error("the pool is broken: {0}")]
    Broken(#[serde(with = "crate::serde_arc::arc_str")] Arc<str>),
    /// The argument could not be encoded for a worker process.
    #[error("the argument could not be encoded: {0}")]
    Codec(#[serde(with = "crate::serde_arc::arc_str")] Arc<str>),
    /// The function cannot be sent to a worker process (for example it lives in a
    /// dynamically loaded library).
    #[error("the function cannot be sent to a worker: {0}")]
    Unsendable(#[serde(with = "crate::serde_arc::arc_str")] Arc<str>),
    /// The argument or result type holds shared state (`Arc`, `Rc`, `Cell`, `RefCell`, a
    /// `Mutex`, an `RwLock`, an atomic): a worker process would get a copy of it, and what
    /// the task does to it would be lost. The process and MPI pools refuse it at
    /// submission (it can only be a `Payload` at all because serde encodes it: see
    /// [`Payload`](crate::Payload) for how to share state on each backend).
    ///
    /// ```
    /// use concurrent_futures::{Executor, ProcessPoolExecutor, SubmitError};
    /// use std::sync::Mutex;
    /// fn add_one(total: Mutex<u64>) -> u64 { *total.lock().unwrap() + 1 }
    /// let pool = ProcessPoolExecutor::new(1);
    /// let err = pool.try_submit(add_one, Mutex::new(0)).unwrap_err();
    /// assert!(matches!(err, SubmitError::SharedState { .. }));
    /// ```
    #[error(
        "`{type_name}` holds shared state (`{shared}`), which a worker process would only get \
         a copy of: pass plain values and combine the results, give every worker a value \
         once with the pool's `initializer_with`, or share memory with the multiprocessing \
         toolkit (`Value`, `Array`, `Queue`)"
    )]
    SharedState {
        /// The argument's or result's type, as `std::any::type_name` spells it.
        #[serde(with = "crate::serde_arc::arc_str")]
        type_name: Arc<str>,
        /// The shared-state type found in it (`"Arc"`, `"Mutex"`, `"AtomicU64"`...).
        #[serde(with = "crate::serde_arc::arc_str")]
        shared: Arc<str>,
    },
    /// The task is a closure that captures values (it is not zero-sized): it runs on
    /// threads, but a worker process (the process and MPI pools) cannot receive what it
    /// captured. Write it with [`task!`](crate::task!), whose captures are encoded and sent
    /// with the task.
    ///
    /// ```
    /// # #[cfg(target_os = "linux")] {
    /// use concurrent_futures::{Executor, ProcessPoolExecutor, SubmitError, task};
    /// let k = 3u32;
    /// let pool = ProcessPoolExecutor::new(1);
    /// let err = pool.try_submit(move |x: u32| x * k, 2).unwrap_err();
    /// assert!(matches!(err, SubmitError::CapturingClosure { .. }));
    /// assert_eq!(pool.submit(task!([k] |x: u32| x * k), 2).result(), Ok(6));
    /// # }
    /// ```
    #[error(
        "`{type_name}` is a closure that captures values, which a worker process cannot \
         receive: write it with `task!([captured, values] |arg: A| ...)`, whose captures are \
         sent with the task, or run it on a thread pool"
    )]
    CapturingClosure {
        /// The closure's type, as `std::any::type_name` spells it.
        #[serde(with = "crate::serde_arc::arc_str")]
        type_name: Arc<str>,
    },
}

/// A pool could not be built.
///
/// ```
/// use concurrent_futures::{BuildError, ThreadPoolExecutor};
/// let err = ThreadPoolExecutor::builder().max_workers(0).build().unwrap_err();
/// assert!(matches!(err, BuildError::ZeroWorkers));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `max_workers` was zero. Python's `ValueError("max_workers must be greater than 0")`.
    #[error("max_workers must be greater than 0")]
    ZeroWorkers,
    /// `max_tasks_per_child` was zero. Python's
    /// `ValueError("max_tasks_per_child must be >= 1")`.
    #[error("max_tasks_per_child must be >= 1")]
    ZeroTasksPerChild,
    /// The operating system refused to start a worker.
    #[error("could not start a worker: {0}")]
    Spawn(#[from] std::io::Error),
    /// A worker process could not be started or did not connect (the failure says why;
    /// its `source()` is the operating system's error where there is one).
    #[error("could not start a worker process: {0}")]
    Worker(#[source] StartFailure),
    /// An MPI pool could not start (feature `mpi`): MPI failed to initialize, a rank runs
    /// another executable or never reached `start`, or there are no worker ranks.
    #[error("could not start the MPI pool: {0}")]
    Mpi(#[source] StartFailure),
    /// The initializer cannot be sent to the workers: its argument could not be encoded
    /// ([`SubmitError::Codec`]) or holds shared state ([`SubmitError::SharedState`]), or
    /// the function is not in the executable ([`SubmitError::Unsendable`]).
    ///
    /// ```
    /// use concurrent_futures::{BuildError, ProcessPoolExecutor, SubmitError};
    /// use std::sync::atomic::AtomicU64;
    /// fn init(_: AtomicU64) {}
    /// let err = ProcessPoolExecutor::builder()
    ///     .initializer_with(init, AtomicU64::new(0))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, BuildError::Initializer(SubmitError::SharedState { .. })));
    /// ```
    #[error("the initializer cannot be sent to the workers: {0}")]
    Initializer(#[source] SubmitError),
}

/// Why a worker process or an MPI pool could not start: its message is the reason, and its
/// [`source`](std::error::Error::source) the typed cause beneath it where there is one (the
/// operating system's [`std::io::Error`] when a process could not be spawned, or when this
/// process was short of descriptors or memory). Carried by [`BuildError::Worker`] and
/// [`BuildError::Mpi`].
///
/// ```
/// use concurrent_futures::{BuildError, ProcessPoolExecutor};
/// use std::error::Error;
/// # fn f() -> Result<(), BuildError> {
/// match ProcessPoolExecutor::builder().max_workers(2).build() {
///     Ok(pool) => drop(pool),
///     Err(BuildError::Worker(failure)) => {
///         // e.g. "cannot start a process now: Too many open files (os error 24)"
///         let os: Option<&std::io::Error> = failure.source().and_then(|s| s.downcast_ref());
///         eprintln!("{failure} (os error: {:?})", os.and_then(|e| e.raw_os_error()));
///     }
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// # f().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct StartFailure {
    cause: Arc<dyn std::error::Error + Send + Sync>,
}

impl StartFailure {
    /// A failure caused by `cause`: this failure shows its message, and `source()` is what
    /// lies beneath it.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn new(cause: impl std::error::Error + Send + Sync + 'static) -> StartFailure {
        StartFailure {
            cause: Arc::new(cause),
        }
    }

    /// A failure with only a message (nothing beneath it). (The MPI pool's.)
    #[cfg_attr(not(all(feature = "mpi", target_os = "linux")), allow(dead_code))]
    pub(crate) fn message(message: impl Into<String>) -> StartFailure {
        StartFailure::new(Message(message.into()))
    }
}

/// Two failures are equal when they are one failure (or clones of it): the operating
/// system's errors beneath them have no equality of their own.
impl PartialEq for StartFailure {
    fn eq(&self, other: &StartFailure) -> bool {
        Arc::ptr_eq(&self.cause, &other.cause)
    }
}

impl Eq for StartFailure {}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.cause.fmt(f)
    }
}

impl std::error::Error for StartFailure {
    /// The cause beneath the message (the message is the cause's own, so it is not repeated).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.source()
    }
}

/// An error of the operating system, kept whole (the cause of
/// [`multiprocessing::ConnectionError::Os`](crate::multiprocessing::ConnectionError::Os)):
/// the [`std::io::Error`] is this error's [`source`](std::error::Error::source), and its
/// message is this one's. Unlike `std::io::Error` it is `Clone` (shared) and comparable: two
/// are equal when they have the same kind, code and message.
///
/// ```
/// use concurrent_futures::multiprocessing::OsError;
/// use std::error::Error;
/// let e = OsError::from(std::io::Error::from_raw_os_error(24));
/// assert_eq!(e.raw_os_error(), Some(24));
/// assert_eq!(e, e.clone());
/// let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()).unwrap();
/// assert_eq!(io.raw_os_error(), Some(24));
/// ```
#[derive(Debug, Clone)]
#[cfg(target_os = "linux")]
pub struct OsError(Arc<std::io::Error>);

#[cfg(target_os = "linux")]
impl OsError {
    /// The operating system's error code (`errno`), if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.0.raw_os_error()
    }

    /// The kind of error.
    pub fn kind(&self) -> std::io::ErrorKind {
        self.0.kind()
    }
}

#[cfg(target_os = "linux")]
impl From<std::io::Error> for OsError {
    fn from(e: std::io::Error) -> OsError {
        OsError(Arc::new(e))
    }
}

#[cfg(target_os = "linux")]
impl PartialEq for OsError {
    fn eq(&self, other: &OsError) -> bool {
        self.kind() == other.kind()
            && self.raw_os_error() == other.raw_os_error()
            && self.0.to_string() == other.0.to_string()
    }
}

#[cfg(target_os = "linux")]
impl Eq for OsError {}

#[cfg(target_os = "linux")]
impl std::fmt::Display for OsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(target_os = "linux")]
impl std::error::Error for OsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A reason that is only a message.
#[derive(Debug)]
#[cfg_attr(not(all(feature = "mpi", target_os = "linux")), allow(dead_code))]
struct Message(String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// [`as_completed`](crate::as_completed) ran out of time. Python's
/// `TimeoutError("3 (of 10) futures unfinished")`.
///
/// ```
/// use concurrent_futures::{as_completed, Future};
/// use std::time::Duration;
/// let pending: Future<u32> = Future::new();
/// let mut it = as_completed([&pending], Some(Duration::from_millis(1)));
/// let err = it.next().unwrap().unwrap_err();
/// assert_eq!((err.unfinished, err.total), (1, 1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{unfinished} (of {total}) futures unfinished")]
pub struct TimeoutError {
    /// Futures not yet done when the time ran out.
    pub unfinished: usize,
    /// Distinct futures given.
    pub total: usize,
}

impl From<TimeoutError> for TaskError {
    fn from(_: TimeoutError) -> Self {
        TaskError::Timeout
    }
}
