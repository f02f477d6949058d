//! The toolkit's errors: one small error per operation, as crossbeam does, each matchable,
//! none a string.

use std::fmt;

pub use crate::error::OsError;
use crate::error::StartFailure;

/// A lock was acquired from a holder that died (its process exited or was killed while it
/// held the lock). The caller holds the lock now, through the guard inside; the data the
/// lock protects may be half-updated. Like `std`'s `PoisonError`, but across processes.
///
/// The lock itself is repaired by this acquisition: later acquirers succeed normally.
///
/// ```
/// use concurrent_futures::multiprocessing::Lock;
/// let lock = Lock::new();
/// // A lock nobody died in: `acquire` succeeds.
/// let guard = lock.acquire().unwrap_or_else(|died| died.into_inner());
/// drop(guard);
/// ```
pub struct OwnerDied<G> {
    pub(crate) guard: G,
}

impl<G> OwnerDied<G> {
    /// The guard: the lock is held.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// A reference to the guard.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// A mutable reference to the guard.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnerDied { .. }")
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the previous holder of the lock died while holding it")
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// Why a non-blocking or timed acquisition did not simply succeed.
///
/// ```
/// use concurrent_futures::multiprocessing::{Lock, TryAcquireError};
/// let lock = Lock::new();
/// let held = lock.acquire().unwrap();
/// assert!(matches!(lock.try_acquire(), Err(TryAcquireError::WouldBlock)));
/// drop(held);
/// assert!(lock.try_acquire().is_ok());
/// ```
pub enum TryAcquireError<G> {
    /// Someone else holds the lock (for the whole timeout, if there was one).
    WouldBlock,
    /// Acquired, from a holder that died: see [`OwnerDied`].
    OwnerDied(OwnerDied<G>),
}

impl<G> fmt::Debug for TryAcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::WouldBlock => f.write_str("WouldBlock"),
            TryAcquireError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
        }
    }
}

impl<G> fmt::Display for TryAcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::WouldBlock => f.write_str("the lock is held by someone else"),
            TryAcquireError::OwnerDied(e) => e.fmt(f),
        }
    }
}

impl<G> std::error::Error for TryAcquireError<G> {}

/// The result of a blocking acquisition: the guard, or the guard wrapped in [`OwnerDied`].
pub type LockResult<G> = Result<G, OwnerDied<G>>;

/// A [`BoundedSemaphore`](super::BoundedSemaphore) was released more times than it was
/// acquired (Python's `ValueError: Semaphore released too many times`).
///
/// ```
/// use concurrent_futures::multiprocessing::BoundedSemaphore;
/// let s = BoundedSemaphore::new(1);
/// assert!(s.release().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("semaphore released too many times")]
pub struct ReleasedTooManyTimes;

/// A [`Barrier`](super::Barrier) was broken (aborted, reset, or a wait timed out) while or
/// before this party waited. Python's `BrokenBarrierError`.
///
/// ```
/// use concurrent_futures::multiprocessing::Barrier;
/// let b = Barrier::new(2);
/// b.abort();
/// assert!(b.wait().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the barrier is broken")]
pub struct BrokenBarrierError;

/// A [`JoinableQueue::task_done`](super::JoinableQueue::task_done) without a matching item
/// (Python's `ValueError: task_done() called too many times`).
///
/// ```
/// use concurrent_futures::multiprocessing::JoinableQueue;
/// let q = JoinableQueue::<u8>::new(0);
/// assert!(q.task_done().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called too many times")]
pub struct TaskDoneTooManyTimes;

/// Why [`Queue::put`](super::Queue::put) (and its variants) did not put the item; the item
/// comes back.
///
/// ```
/// use concurrent_futures::multiprocessing::{Queue, PutError};
/// let q = Queue::new(1);
/// q.put_nowait(1).unwrap();
/// assert!(matches!(q.put_nowait(2), Err(PutError::Full(2)))); // Python's queue.Full
/// ```
#[derive(PartialEq, Eq, thiserror::Error)]
pub enum PutError<T> {
    /// The queue holds `maxsize` items (for the whole timeout, if there was one). Python's
    /// `queue.Full`.
    #[error("the queue is full")]
    Full(T),
    /// This handle was closed with [`Queue::close`](super::Queue::close).
    #[error("the queue is closed")]
    Closed(T),
    /// The item could not be encoded.
    #[error("the item could not be encoded: {1}")]
    Encode(T, String),
}

impl<T> PutError<T> {
    /// The item that was not put.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Queue;
    /// let q = Queue::new(1);
    /// q.put(1).unwrap();
    /// assert_eq!(q.put_nowait(2).unwrap_err().into_inner(), 2);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(t) | PutError::Closed(t) | PutError::Encode(t, _) => t,
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::Encode(_, e) => write!(f, "Encode(.., {e:?})"),
        }
    }
}

/// Why [`Queue::get`](super::Queue::get) (and its variants) returned no item.
///
/// ```
/// use concurrent_futures::multiprocessing::{Queue, GetError};
/// let q = Queue::<u8>::new(0);
/// assert_eq!(q.get_nowait(), Err(GetError::Empty)); // Python's queue.Empty
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    /// No item came (within the timeout, if there was one). Python's `queue.Empty`.
    #[error("the queue is empty")]
    Empty,
    /// This handle was closed with [`Queue::close`](super::Queue::close).
    #[error("the queue is closed")]
    Closed,
    /// An item was taken but could not be decoded (it is lost; the queue goes on).
    #[error("an item could not be decoded: {0}")]
    Decode(String),
}

/// Why a [`Connection`](super::Connection) operation failed.
///
/// ```
/// use concurrent_futures::multiprocessing::{Pipe, ConnectionError};
/// let (a, b) = Pipe::new::<u32>(true).unwrap();
/// drop(b);
/// assert_eq!(a.recv(), Err(ConnectionError::Eof)); // Python's EOFError
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// The other end is closed and everything it sent was received. Python's `EOFError`.
    #[error("the other end of the pipe is closed (EOF)")]
    Eof,
    /// The other end is closed: a send has nobody to reach. Python's `BrokenPipeError`.
    #[error("the other end of the pipe is closed (broken pipe)")]
    BrokenPipe,
    /// This end was closed with [`Connection::close`](super::Connection::close).
    #[error("the connection is closed")]
    Closed,
    /// A `send` on the receiving end of a one-way pipe.
    #[error("the connection is read-only")]
    ReadOnly,
    /// A `recv` or `poll` on the sending end of a one-way pipe.
    #[error("the connection is write-only")]
    WriteOnly,
    /// A value could not be encoded or decoded.
    #[error("a message could not be encoded or decoded: {0}")]
    Codec(String),
    /// The operating system refused (creating the pipe, or a transfer); its
    /// [`std::io::Error`] is reachable through `source()`.
    #[error("pipe error: {0}")]
    Os(#[source] OsError),
}

/// Why a [`Process`](super::Process) operation failed.
///
/// ```
/// use concurrent_futures::multiprocessing::{Process, ProcessError};
/// fn noop(_: ()) {}
/// let p = Process::new(noop, ());
/// assert_eq!(p.join(), Err(ProcessError::NotStarted)); // Python: "can only join a started process"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// `start` was called twice (Python: "cannot start a process twice").
    #[error("the process was already started")]
    AlreadyStarted,
    /// `join` (or a setting that needs it) on a process that was not started.
    #[error("the process was not started")]
    NotStarted,
    /// The target cannot be called in another process (it is not in the executable).
    #[error("the target cannot run in another process: {0}")]
    Unsendable(String),
    /// The arguments could not be encoded for the child.
    #[error("the arguments could not be encoded: {0}")]
    Codec(String),
    /// The child process could not be started or did not connect (the failure says why;
    /// its `source()` is the operating system's error where there is one).
    #[error("the child process could not be started: {0}")]
    Spawn(#[source] StartFailure),
}

/// Why [`Pool::join`](super::Pool::join) refused.
///
/// ```
/// use concurrent_futures::multiprocessing::{Pool, PoolError};
/// let pool = Pool::new(1);
/// assert_eq!(pool.join(), Err(PoolError::StillRunning)); // close() or terminate() first
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// `join` before `close` or `terminate` (Python's `ValueError: Pool is still running`).
    #[error("the pool is still running: call close() or terminate() before join()")]
    StillRunning,
}

/// What went wrong with a [`SharedMemory`](super::SharedMemory) block.
///
/// ```
/// use concurrent_futures::multiprocessing::{SharedMemory, SharedMemoryError};
/// assert!(matches!(SharedMemory::create(None, 0), Err(SharedMemoryError::ZeroSize)));
/// assert!(matches!(SharedMemory::attach("a/b"), Err(SharedMemoryError::InvalidName(_))));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedMemoryError {
    /// A block with this name exists already (Python's `FileExistsError`).
    #[error("a shared memory block named {0:?} exists already")]
    Exists(String),
    /// No block has this name (Python's `FileNotFoundError`).
    #[error("no shared memory block is named {0:?}")]
    NotFound(String),
    /// The name is empty, too long, or holds a `/` after its first character or a NUL.
    #[error("{0:?} cannot name a shared memory block")]
    InvalidName(String),
    /// A new block needs at least one byte (Python's `ValueError`).
    #[error("a new shared memory block needs a size above zero")]
    ZeroSize,
    /// `len` bytes at `offset` do not fit in the block's `size`.
    #[error("{len} bytes at offset {offset} do not fit in a block of {size} bytes")]
    OutOfRange {
        /// Where the access started.
        offset: usize,
        /// How many bytes it covered.
        len: usize,
        /// The block's size.
        size: usize,
    },
    /// The system refused (permissions, no memory, too many open files, …).
    #[error("shared memory {op} failed: {source}")]
    Os {
        /// What was attempted: `create`, `attach` or `unlink`.
        op: &'static str,
        /// The system's error.
        source: std::io::Error,
    },
}
