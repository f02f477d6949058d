//! Python's `multiprocessing` toolkit: [`Process`], [`Queue`], [`Pipe`], [`Lock`],
//! [`Semaphore`], [`Event`], [`Condition`], [`Barrier`], [`Value`], [`Array`], [`Pool`] and
//! [`SharedMemory`], with Python's names, working across processes (and threads). Linux
//! only.
//!
//! ```
//! use concurrent_futures::multiprocessing::{Lock, Process, Queue, Value};
//!
//! fn worker((id, lock, results, total): (u32, Lock, Queue<String>, Value<u64>)) {
//!     let _held = lock.acquire().unwrap();         // with lock:
//!     results.put(format!("worker {id}")).unwrap();
//!     *total.get_lock().unwrap() += u64::from(id);  // with total.get_lock(): total.value += id
//! }
//!
//! let (lock, results, total) = (Lock::new(), Queue::new(0), Value::new(0u64));
//! let workers: Vec<_> = (1..=3)
//!     .map(|id| Process::new(worker, (id, lock.clone(), results.clone(), total.clone())))
//!     .collect();
//! for p in &workers { p.start().unwrap(); }
//! for p in &workers { assert_eq!(p.join(), Ok(0)); }
//! assert_eq!(total.get(), 6);
//! assert_eq!(results.qsize(), 3);
//! ```
//!
//! # Sharing between processes
//!
//! A child gets its argument through a channel that carries file descriptors: the
//! primitives in it (everything in this module except [`Pool`]) arrive shared — the same
//! lock, the same queue — while plain data arrives as a copy. That is Python's
//! "inheritance"; as in Python, primitives cannot be put into a [`Queue`] or sent as a pool
//! task's argument (they fail to encode, with an error saying so). They can be sent through
//! a [`Pipe`].
//!
//! Locks, semaphores, events, conditions, barriers, values and arrays live in shared memory:
//! robust, process-shared pthread mutexes, and waits that sleep in the kernel on a futex
//! word. A process that dies holding a lock does not block the others forever (the next
//! acquirer gets [`OwnerDied`]), and a process killed anywhere else (waiting, notifying,
//! putting, getting) costs the others nothing beyond what it held: no notify waits for a
//! dead waiter, and every timeout is honoured.
//!
//! What a killed process takes with it is what Python loses too: a [`Semaphore`] permit it
//! held; the items its [`Queue::put`] accepted and its feeder thread had not written yet
//! (still counted by `qsize`, and by `maxsize` for a bounded queue, as they hold CPython's
//! semaphore); an item it had taken out of a queue; an item of a [`JoinableQueue`] it took
//! and did not mark done ([`join`](JoinableQueue::join) waits for it: use
//! [`join_timeout`](JoinableQueue::join_timeout) or call `task_done` for it); the round of a
//! [`Barrier`] whose action it ran (the barrier breaks). A party killed while it waits at a
//! barrier still counts as arrived, as in Python.
//!
//! # From Python
//!
//! | Python `multiprocessing` | here |
//! |---|---|
//! | `Process(target=f, args=(a, b), name=, daemon=)` | [`Process::new(f, (a, b))`](Process::new), [`with_name`](Process::with_name), [`with_daemon`](Process::with_daemon) |
//! | `p.start()`, `p.join()`, `p.join(t)` | [`start`](Process::start), [`join`](Process::join), [`join_timeout`](Process::join_timeout) |
//! | `p.pid`, `p.name`, `p.daemon`, `p.exitcode`, `p.is_alive()` | methods of the same names |
//! | `p.terminate()`, `p.kill()` | [`terminate`](Process::terminate) (SIGTERM), [`kill`](Process::kill) (SIGKILL) |
//! | `active_children()`, `current_process()`, `cpu_count()` | [`active_children`], [`current_process`], [`cpu_count`] |
//! | `Queue(maxsize)`, `JoinableQueue`, `SimpleQueue` | [`Queue::new(maxsize)`](Queue::new), [`JoinableQueue`], [`SimpleQueue`] |
//! | `q.put(x)`, `q.put(x, timeout=t)`, `q.put_nowait(x)` | [`put`](Queue::put), [`put_timeout`](Queue::put_timeout), [`put_nowait`](Queue::put_nowait) |
//! | `q.get()`, `q.get(timeout=t)`, `q.get_nowait()` | [`get`](Queue::get), [`get_timeout`](Queue::get_timeout), [`get_nowait`](Queue::get_nowait) |
//! | `queue.Full`, `queue.Empty` | [`PutError::Full`], [`GetError::Empty`] |
//! | `Pipe(duplex)`, `conn.send/recv/poll/close` | [`Pipe::new(duplex)`](Pipe::new), [`Connection`] |
//! | `EOFError` from `recv` | [`ConnectionError::Eof`] |
//! | `Lock()`, `RLock()`, `with lock:` | [`Lock`], [`RLock`]: `let _g = lock.acquire()?;` |
//! | `lock.acquire(False)`, `lock.acquire(timeout=t)` | [`try_acquire`](Lock::try_acquire), [`acquire_timeout`](Lock::acquire_timeout) |
//! | `Semaphore(n)`, `BoundedSemaphore(n)` | [`Semaphore`], [`BoundedSemaphore`] |
//! | `Event()`: `set`, `clear`, `is_set`, `wait(t)` | [`Event`]: same, [`wait_timeout`](Event::wait_timeout) |
//! | `Condition()`: `wait`, `wait_for`, `notify`, `notify_all` | [`Condition`]: methods of its guard |
//! | `Barrier(n)`: `wait`, `abort`, `reset`, `BrokenBarrierError` | [`Barrier`], [`BrokenBarrierError`] |
//! | `Barrier(n, action=f)` | [`Barrier::with_action(n, f)`](Barrier::with_action) |
//! | `shared_memory.SharedMemory(name, create, size)`: `name`, `size`, `buf`, `close`, `unlink` | [`SharedMemory::create`], [`SharedMemory::attach`]: same names |
//! | `Value('i', 0)`, `Array('d', 10)`, `get_lock()` | [`Value::new(0i32)`](Value::new), [`Array::zeroed(10)`](Array::zeroed), [`get_lock`](Value::get_lock) |
//! | `Pool(n, initializer, maxtasksperchild)` | [`Pool::new(n)`](Pool::new), [`Pool::with_options`] |
//! | `apply`, `apply_async(f, args, callback=, error_callback=)` | [`apply`](Pool::apply), [`apply_async`](Pool::apply_async)`(f, args).callback(..).error_callback(..)` |
//! | `map`, `map_async`, `imap`, `imap_unordered`, `starmap` | same names on [`Pool`] |
//! | `close`, `join`, `terminate`; `AsyncResult.get/wait/ready/successful` | same names; [`AsyncResult`] |

mod async_result;
mod error;
mod pipe;
mod pool;
pub(crate) mod process;
mod queue;
mod shared_memory;
mod shm;
mod sync;
mod value;

pub use async_result::AsyncResult;
pub use error::{
    BrokenBarrierError, ConnectionError, GetError, LockResult, OsError, OwnerDied, PoolError,
    ProcessError, PutError, ReleasedTooManyTimes, SharedMemoryError, TaskDoneTooManyTimes,
    TryAcquireError,
};
pub use pipe::{Connection, Pipe};
pub use pool::Pool;
pub use process::{CurrentProcess, Process, active_children, cpu_count, current_process};
pub use queue::{JoinableQueue, Queue, SimpleQueue};
pub use shared_memory::SharedMemory;
pub use sync::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, Event, Lock, LockGuard, RLock,
    RLockGuard, Semaphore, SemaphoreGuard,
};
pub use value::{Array, ArrayGuard, Value, ValueGuard};

/// Plain data that [`Value`] and [`Array`] hold (re-exported from `bytemuck`; derive it
/// with `#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]` on a `#[repr(C)]`
/// struct).
pub use bytemuck::Pod;
