//! Python's `concurrent.futures` for Rust: one [`Executor`] trait, Python-faithful
//! [`Future`]s, [`wait`] and [`as_completed`], a work-stealing [`ThreadPoolExecutor`], and
//! (on Linux) a `ProcessPoolExecutor` whose workers are separate processes.
//!
//! ```
//! use concurrent_futures::{Executor, ThreadPoolExecutor, as_completed, wait, ReturnWhen};
//!
//! fn fib(n: u64) -> u64 { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }
//!
//! fn run<E: Executor>(pool: &E) -> Vec<u64> {
//!     let fut = pool.submit(fib, 25);
//!     fut.add_done_callback(|f| println!("fib(25) done: {:?}", f.result()));
//!     assert_eq!(fut.result().unwrap(), 75025);
//!     pool.map(fib, 0..30).collect::<Result<Vec<_>, _>>().unwrap()
//! }
//!
//! let pool = ThreadPoolExecutor::new(4);   // or ThreadPoolExecutor::builder()...build()
//! let fibs = run(&pool);
//! assert_eq!(fibs[29], 514229);
//!
//! let futures: Vec<_> = (20..25).map(|n| pool.submit(fib, n)).collect();
//! let done = wait(&futures, None, ReturnWhen::AllCompleted);
//! assert_eq!(done.not_done.len(), 0);
//! for f in as_completed(&futures, None) {
//!     println!("{}", f.unwrap().result().unwrap());
//! }
//! pool.shutdown(true);
//! ```
//!
//! The same `run` works on a process pool, unchanged (Linux):
//!
//! ```
//! # use concurrent_futures::Executor;
//! # fn fib(n: u64) -> u64 { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }
//! # fn run<E: Executor>(pool: &E) -> Vec<u64> { pool.map(fib, 0..30).collect::<Result<Vec<_>, _>>().unwrap() }
//! # #[cfg(target_os = "linux")] {
//! let pool = concurrent_futures::ProcessPoolExecutor::new(4);
//! assert_eq!(run(&pool)[29], 514229);
//! # }
//! ```
//!
//! To choose the backend at run time, parse an [`AnyExecutor`] from a spec such as
//! `"threads:8"`, `"processes:4"`, `"mpi"` or `"rayon"` (`Box<dyn Executor>` is not
//! possible: the trait's methods are generic):
//!
//! ```
//! # use concurrent_futures::Executor;
//! # fn fib(n: u64) -> u64 { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }
//! # fn run<E: Executor>(pool: &E) -> Vec<u64> { pool.map(fib, 0..30).collect::<Result<Vec<_>, _>>().unwrap() }
//! let pool: concurrent_futures::AnyExecutor = "threads:2".parse().unwrap();
//! assert_eq!(run(&pool)[29], 514229);
//! ```
//!
//! The [`guide`] has pages on choosing a backend, your own types, async code and platforms.
//!
//! # From Python
//!
//! | Python | here |
//! |---|---|
//! | `ThreadPoolExecutor(max_workers=4)`, `ThreadPoolExecutor()` | [`ThreadPoolExecutor::new(4)`](ThreadPoolExecutor::new), [`ThreadPoolExecutor::builder`], [`ThreadPoolExecutor::default`] (`min(32, cpus + 4)`) |
//! | `ProcessPoolExecutor(max_workers=4, initializer=, max_tasks_per_child=)` | `ProcessPoolExecutor::new(4)`, `ProcessPoolExecutor::builder()`, `ProcessPoolExecutor::default()` (Linux) |
//! | a module-global executor, waited for at interpreter exit | a pool in a `static` is waited for when the program ends: [`set_exit_timeout`] |
//! | `executor.submit(fn, arg)` | [`Executor::submit`] (`fn` items, [`task!`] for captured values; several arguments as a tuple), [`ThreadPoolExecutor::spawn`] for closures |
//! | `executor.map(fn, it, timeout=, chunksize=, buffersize=)` | [`Executor::map`], [`Executor::map_with`] + [`MapOptions`], [`Executor::map_unordered`] |
//! | `executor.shutdown(wait, cancel_futures=)` | [`Executor::shutdown`], [`Executor::shutdown_with`]; `Drop` is `shutdown(true)` |
//! | `future.result(timeout)` | [`Future::result`], [`Future::result_timeout`], [`Future::result_ref`], [`Future::into_result`], `.await` |
//! | `future.exception(timeout)` | [`Future::exception`], [`Future::exception_timeout`] |
//! | `done()`, `running()`, `cancel()`, `cancelled()` | same names |
//! | `add_done_callback(fn)` | [`Future::add_done_callback`] |
//! | `wait(fs, timeout, return_when)` | [`wait`] with [`ReturnWhen`] (or [`FIRST_COMPLETED`], …) |
//! | `as_completed(fs, timeout)` | [`as_completed`] |
//! | `CancelledError`, `TimeoutError`, `BrokenExecutor` | [`TaskError::Cancelled`], [`TaskError::Timeout`], [`TaskError::Broken`] |
//! | a worker process that died (`BrokenProcessPool` for every task) | [`TaskError::WorkerDied`] for the task it ran only |
//! | an exception raised by the task | [`TaskError::Panicked`] with the message and location |
//!
//! Python's `multiprocessing` toolkit (`Process`, `Queue`, `Pipe`, `Lock`, `Semaphore`,
//! `Event`, `Value`, `Pool` with `apply_async`, …) is in [`multiprocessing`] (Linux), with its
//! own table.
//!
//! # Panics
//!
//! A panic inside a task is caught and becomes that task's [`TaskError::Panicked`]; the
//! worker lives on. Such panics are not printed (as Python does not print a task's
//! exception): the crate installs a panic hook, once, that records where a task panicked
//! and defers to the previous hook for every panic outside a task.
//!
//! # Features
//!
//! * `rayon`: implements [`Executor`] for `rayon::ThreadPool`.
//! * `progress`: `.progress()` on `map` iterators (and any iterator), a progress bar built on
//!   `indicatif`: `ProgressExt`.
//! * `mpi`: `MpiPoolExecutor`, the same [`Executor`] on the ranks of an MPI job (`mpirun -n 4
//!   app`), over rsmpi; building it needs an MPI library and libclang.
//! * `stream`: `Stream` versions of `map`, `map_unordered` and `as_completed` for async
//!   code (futures-core): `ExecutorStreamExt::map_stream`, `map_unordered_stream`, and
//!   `as_completed_stream`.
//! * `tracing`: spans and events for the [`tracing`](https://docs.rs/tracing) ecosystem: a
//!   span per task (`queued`, `started`, `finished` with its outcome), worker start, death
//!   and restart, steals; any subscriber (`tracing-subscriber`, `tracing-chrome`) sees
//!   them. Off, the hooks compile to nothing. See the guide's
//!   [observing](crate::guide::observing) page.

#![deny(missing_docs)]
// `doc(cfg)` badges need a nightly rustdoc: docs.rs passes `--cfg docsrs_nightly` (see
// Cargo.toml), while `--cfg docsrs` alone builds on stable.
#![cfg_attr(docsrs_nightly, feature(doc_cfg))]
#![warn(unreachable_pub, unsafe_op_in_unsafe_fn)]

mod any;
mod bytes;
mod cancel;
mod chunk;
#[cfg(target_os = "linux")]
mod entry;
mod error;
mod executor;
mod exit;
mod future;
pub mod guide;
// Elsewhere, the Linux-only names exist only to fail to compile with a message that says so.
#[cfg(not(target_os = "linux"))]
#[doc(hidden)]
pub mod linux_only;
mod map;
#[cfg(all(feature = "mpi", target_os = "linux"))]
mod mpi;
#[cfg(target_os = "linux")]
#[cfg_attr(docsrs_nightly, doc(cfg(target_os = "linux")))]
pub mod multiprocessing;
#[cfg(target_os = "linux")]
mod os;
#[cfg(target_os = "linux")]
mod process;
#[cfg(feature = "progress")]
mod progress;
#[cfg(feature = "rayon")]
mod rayon;
#[cfg(target_os = "linux")]
mod remote;
mod serde_arc;
mod shared;
mod stats;
#[cfg(feature = "stream")]
mod stream;
mod sync;
mod task;
mod thread;
mod timeline;
mod trace;
mod unwind;
mod wait;

#[cfg(all(test, loom))]
mod loom_tests;

/// The README's code, compiled and run by `cargo test` (doc tests only).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The code of the pages in `docs/`, compiled and run by `cargo test` (doc tests only).
#[cfg(doctest)]
#[doc = include_str!("../docs/BEHAVIOUR.md")]
#[doc = include_str!("../docs/PROCESS_POOL.md")]
#[doc = include_str!("../docs/MPI.md")]
#[doc = include_str!("../docs/MULTIPROCESSING.md")]
#[doc = include_str!("../docs/BENCHMARKS.md")]
pub struct DocsDoctests;

/// The number of CPUs this process may use: [`std::thread::available_parallelism`], which
/// on Linux counts the CPU affinity mask and a cgroup (v1 or v2) CPU quota, rounded down;
/// at least 1.
pub(crate) fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

pub use any::{
    AnyExecutor, AnyExecutorBuilder, Backend, EXECUTOR_ENV_VAR, ExecutorSpec, SpecError,
};
pub use bytes::Bytes;
pub use cancel::cancelled;
pub use chunk::{Chunk, run_chunk};
#[cfg(target_os = "linux")]
#[cfg_attr(docsrs_nightly, doc(cfg(target_os = "linux")))]
pub use entry::init;
pub use error::{
    BuildError, ExitStatus, Panic, Shortage, StartFailure, SubmitError, TaskError, TimeoutError,
};
pub use executor::Executor;
pub use exit::set_exit_timeout;
pub use future::{Future, InvalidStateError, State};
/// The progress bar library behind [`ProgressExt`] (feature `progress`).
#[cfg(feature = "progress")]
#[cfg_attr(docsrs_nightly, doc(cfg(feature = "progress")))]
pub use indicatif;
#[cfg(all(feature = "mpi", not(target_os = "linux")))]
#[doc(hidden)]
pub use linux_only::{MpiPoolBuilder, MpiPoolExecutor, MpiRank};
#[cfg(not(target_os = "linux"))]
#[doc(hidden)]
pub use linux_only::{ProcessPoolBuilder, ProcessPoolExecutor, init, multiprocessing};
pub use map::{Map, MapOptions, MapUnordered};
/// The hook behind [`Executor::ordered_map`] (for backends).
#[doc(hidden)]
pub use map::{MapInput, OrderedMap, ReadyRun};
#[cfg(all(feature = "mpi", target_os = "linux"))]
#[cfg_attr(docsrs_nightly, doc(cfg(all(feature = "mpi", target_os = "linux"))))]
pub use mpi::{MpiPoolBuilder, MpiPoolExecutor, MpiRank};
#[cfg(target_os = "linux")]
#[cfg_attr(docsrs_nightly, doc(cfg(target_os = "linux")))]
pub use process::{ProcessPoolBuilder, ProcessPoolExecutor};
#[cfg(feature = "progress")]
#[cfg_attr(docsrs_nightly, doc(cfg(feature = "progress")))]
pub use progress::{Progress, ProgressExt};
pub use shared::Shared;
#[doc(hidden)]
pub use shared::tables_here as __shared_tables_here;
pub use stats::{PoolStats, WorkerStats};
#[cfg(feature = "stream")]
#[cfg_attr(docsrs_nightly, doc(cfg(feature = "stream")))]
pub use stream::{AsCompletedStream, ExecutorStreamExt, MapStream, as_completed_stream};
pub use task::{Captured, Payload, Task};
#[doc(hidden)]
pub use task::{RemoteTask, Shape, TaskHandle, capture as __task_capture};
pub use thread::{IndexedInput, MapIndexed, ThreadPoolBuilder, ThreadPoolExecutor};
pub use timeline::{Mark, MarkKind, Steal, TaskOutcome, TaskSpan, Timeline};
pub use wait::{
    ALL_COMPLETED, AsCompleted, DoneAndNotDone, FIRST_COMPLETED, FIRST_EXCEPTION, ReturnWhen,
    as_completed, wait,
};
