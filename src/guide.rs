//! Guides: how to use the crate well, beyond the reference of each item. Nothing here is
//! code; each page is a module of documentation.
//!
//! * [`choosing_a_backend`]: threads, processes, MPI or rayon; choosing at run time.
//! * [`your_own_types`]: what a task may take and return, and how to share state.
//! * [`async_code`]: futures in `async` code; what blocks and what does not.
//! * [`platforms`]: what is available where.

/// # Choosing a backend
///
/// Every backend implements [`Executor`](crate::Executor), so code written once over
/// `E: Executor` runs on any of them; choosing is one line.
///
/// | backend | pick it for | costs |
/// |---|---|---|
/// | [`ThreadPoolExecutor`](crate::ThreadPoolExecutor) | almost everything: CPU-bound work (no GIL here), I/O waits (more threads than CPUs), tasks down to a microsecond | a panic is caught, but a crash (abort, segfault) ends the program |
/// | `ProcessPoolExecutor` (Linux) | isolation: code that may crash, leak or call `exit`; a per-task time limit that can really stop a task (`task_timeout`) | ~1 µs of throughput and ~20 µs of latency per task; arguments are copied (large ones through shared memory) |
/// | `MpiPoolExecutor` (feature `mpi`) | work that outgrows one machine: the ranks of `mpirun`/`srun` | the network's latency; every rank runs the same build |
/// | `rayon::ThreadPool` (feature `rayon`) | sharing one pool with code that already uses rayon | no shutdown; a blocking wait does not run queued tasks |
///
/// Sizes default to Python's: `ThreadPoolExecutor::default()` has `min(32, cpus + 4)`
/// threads (the extra threads overlap I/O waits), `ProcessPoolExecutor::default()` one
/// process per CPU. For purely CPU-bound work on threads, `ThreadPoolExecutor::new(cpus)`
/// avoids oversubscription. `cargo run --release --example compare` measures every backend
/// on six workloads on your machine and says which wins where.
///
/// ## At run time
///
/// [`Executor`](crate::Executor) has generic methods, so `Box<dyn Executor>` does not
/// exist; [`AnyExecutor`](crate::AnyExecutor) is the run-time choice instead, parsed from a
/// spec:
///
/// ```
/// use concurrent_futures::{AnyExecutor, Executor, SpecError};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// fn main() -> Result<(), SpecError> {
///     for spec in ["threads:2", "processes:2", "rayon:2"] {
///         # if !cfg!(target_os = "linux") && spec.starts_with("processes") { continue }
///         let pool: AnyExecutor = spec.parse()?;
///         let sum: u64 = pool.map(square, 0..100).map(Result::unwrap).sum();
///         assert_eq!(sum, 328_350);
///     }
///     // A backend this build lacks is an error that names the cargo feature:
///     # #[cfg(not(feature = "mpi"))]
///     assert!(matches!("mpi".parse::<AnyExecutor>(), Err(SpecError::NotBuilt { feature: "mpi", .. })));
///     Ok(())
/// }
/// ```
///
/// [`AnyExecutor::from_env`](crate::AnyExecutor::from_env) reads a spec from an environment
/// variable (`CF_EXECUTOR` for `from_default_env`).
pub mod choosing_a_backend {}

/// # Your own types
///
/// A task given through [`Executor`](crate::Executor) is a function of **one** argument,
/// `fn(A) -> R`, where `A` and `R` are [`Payload`](crate::Payload)s: serde types that are
/// `Send + Sync + 'static`. Derive serde's traits on your types, and pass several arguments
/// as one tuple:
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum Shape { Square(f64), Rect { w: f64, h: f64 } }
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Report { shapes: usize, area: f64 }
///
/// fn measure((shapes, scale): (Vec<Shape>, f64)) -> Report {
///     let area = shapes.iter().map(|s| match s {
///         Shape::Square(a) => a * a,
///         Shape::Rect { w, h } => w * h,
///     }).sum::<f64>() * scale;
///     Report { shapes: shapes.len(), area }
/// }
///
/// let pool = ThreadPoolExecutor::new(2);
/// let shapes = vec![Shape::Square(2.0), Shape::Rect { w: 1.0, h: 3.0 }];
/// let report = pool.submit(measure, (shapes, 10.0)).into_result().unwrap(); // moves it out
/// assert_eq!(report, Report { shapes: 2, area: 70.0 });
/// ```
///
/// * A closure that captures nothing is a `fn` too: `pool.submit(|x: u32| x + 1, 1)`.
/// * A closure that captures is not: give it to
///   [`ThreadPoolExecutor::spawn`](crate::ThreadPoolExecutor::spawn) (threads share
///   memory), which takes any `FnOnce() -> R + Send + 'static`.
/// * A type without serde gets a compile error that says to derive it; so do extra
///   arguments (`pool.submit(f, a, b)`: write `pool.submit(f, (a, b))`).
/// * Large byte buffers: [`Bytes`](crate::Bytes) crosses to a worker process as one block.
/// * Errors are values: a task returning `Result<T, MyError>` (with `MyError` a serde type)
///   delivers it as its result; a panic becomes [`TaskError::Panicked`](crate::TaskError::Panicked).
///
/// ## Shared state
///
/// Shared state is not an argument: `Arc`, `Rc` and references are not `Payload`s (an
/// `Arc<Mutex<u64>>` copied into each worker process would count in each copy, silently).
/// Prefer returning values and combining them; see [`Payload`](crate::Payload) for each
/// backend's way to share. On threads:
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
///
/// fn cost(x: u64) -> u64 { x * 3 }
///
/// let pool = ThreadPoolExecutor::new(2);
/// // the portable way: results, combined by the caller (works on every backend)
/// let total: u64 = pool.map(cost, 0..10).map(Result::unwrap).sum();
///
/// // the threads-only way: a capturing closure through `spawn`
/// let counter = Arc::new(AtomicU64::new(0));
/// let futs: Vec<_> = (0..10).map(|x| {
///     let counter = counter.clone();
///     pool.spawn(move || counter.fetch_add(cost(x), Ordering::Relaxed))
/// }).collect();
/// for f in futs { f.result().unwrap(); }
/// assert_eq!(counter.load(Ordering::Relaxed), total);
/// ```
pub mod your_own_types {}

/// # Async code
///
/// A [`Future`](crate::Future) is also a `std::future::Future`: `.await` it in any runtime
/// (tokio, async-std, smol, a hand-written executor). Awaiting does not block the thread:
/// the pool wakes the task when the result is ready.
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
///
/// fn fib(n: u64) -> u64 { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }
///
/// async fn two(pool: &ThreadPoolExecutor) -> u64 {
///     let a = pool.submit(fib, 20);
///     let b = pool.submit(fib, 21);
///     a.await.unwrap() + b.await.unwrap()
/// }
///
/// let pool = ThreadPoolExecutor::new(2);
/// // any runtime's block_on; here tokio's
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert_eq!(rt.block_on(two(&pool)), 6765 + 10946);
/// ```
///
/// What **blocks** the calling thread, and so must not be called on a runtime's thread
/// (it would stall every task of a single-threaded runtime): [`Future::result`](crate::Future::result)
/// and the other blocking accessors, [`wait`](crate::wait), [`as_completed`](crate::as_completed),
/// iterating [`Executor::map`](crate::Executor::map) /
/// [`map_unordered`](crate::Executor::map_unordered), and `shutdown(true)` (or dropping a
/// pool with work left). In async code, `.await` the futures; with the `stream` feature,
/// `map_stream`, `map_unordered_stream` and `as_completed_stream` are the `Stream`
/// versions of `map`, `map_unordered` and `as_completed`. Or move the blocking call to a
/// blocking thread (`tokio::task::spawn_blocking`).
///
/// Submitting never blocks: `submit` only queues the task.
pub mod async_code {}

/// # Platforms
///
/// | item | Linux | macOS, Windows, other |
/// |---|---|---|
/// | [`ThreadPoolExecutor`](crate::ThreadPoolExecutor), [`Future`](crate::Future), [`wait`](crate::wait), [`as_completed`](crate::as_completed), `map` | yes | yes |
/// | [`AnyExecutor`](crate::AnyExecutor) | every backend | `threads`, `rayon`; `processes` and `mpi` are refused with a [`SpecError`](crate::SpecError) |
/// | `rayon::ThreadPool` as an executor (feature `rayon`), progress bars (feature `progress`) | yes | yes |
/// | `ProcessPoolExecutor`, `multiprocessing` | yes | no |
/// | `MpiPoolExecutor` (feature `mpi`, needs an MPI library and libclang to build) | yes | no |
///
/// Naming a Linux-only item elsewhere is a compile error that says it is available on Linux
/// only. The process pool and `multiprocessing` start workers by re-executing the program (a
/// constructor that runs before `main` turns such a process into a worker), pass file
/// descriptors over Unix sockets, and share memory with process-shared, robust pthread
/// objects: Linux interfaces. Code written over `E: Executor` compiles everywhere; pick
/// `AnyExecutor` specs at run time to degrade to threads where processes are not
/// available.
pub mod platforms {}
