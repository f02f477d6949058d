//! Guides: how to use the crate well, beyond the reference of each item. Nothing here is
//! code; each page is a module of documentation.
//!
//! * [`choosing_a_backend`]: threads, processes, MPI or rayon; choosing at run time.
//! * [`your_own_types`]: what a task may take and return, and how to share state.
//! * [`async_code`]: futures in `async` code; what blocks and what does not.
//! * [`platforms`]: what is available where.
//! * [`observing`]: the spans and events of the `tracing` feature.
//! * [`common_compile_errors`]: the compiler's messages a first task runs into, and the fix
//!   for each.

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
/// avoids oversubscription. `cargo run --release -p compare` (in a clone of the crate's
/// repository) measures every backend on six workloads on your machine and says which wins
/// where.
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
/// `A -> R` (a [`Task`](crate::Task)), where `A` and `R` are [`Payload`](crate::Payload)s:
/// serde types that are `Send + Sync + 'static`. Derive serde's traits on your types, and
/// pass several arguments as one tuple:
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
/// * A closure that captures nothing is a task too: `pool.submit(|x: u32| x + 1, 1)` (write
///   the argument's type).
/// * A task that needs values besides its argument (settings, a table) captures them with
///   [`task!`](crate::task!): `task!([settings, table] |x: u32| score(settings, table, x))`.
///   The captures are `Payload`s too; they cross to a worker process with the task, once per
///   task and once per chunk of a `map`, and on threads they are lent by reference. The same
///   task value runs on every backend (clone it to use it again: the clones share the
///   captures).
/// * A closure that captures `Copy` values (`move |x: u32| x * k`) runs on threads; the
///   process and MPI pools refuse it with
///   [`SubmitError::CapturingClosure`](crate::SubmitError::CapturingClosure), since what it
///   captured cannot reach a worker process: write it with `task!`. A closure that captures
///   anything else is not a task: use `task!`, or give it to
///   [`ThreadPoolExecutor::spawn`](crate::ThreadPoolExecutor::spawn) (threads share
///   memory), which takes any `FnOnce() -> R + Send + 'static`.
/// * A type without serde, alone or inside a tuple, a `Vec` or a field, gets a compile error
///   that says to derive it. Extra arguments (`pool.submit(f, a, b)`) get rustc's "remove
///   the extra argument": write `pool.submit(f, (a, b))`. See
///   [`common_compile_errors`].
/// * Large byte buffers: [`Bytes`](crate::Bytes) crosses to a worker process as one block.
/// * Errors are values: a task returning `Result<T, MyError>` (with `MyError` a serde type)
///   delivers it as its result; a panic becomes [`TaskError::Panicked`](crate::TaskError::Panicked).
///   In a program built with `panic = "abort"` nothing can catch a panic: the task's
///   message and location are printed on stderr (with a line saying a task panicked), then
///   the process aborts; on a process pool that process is the worker, and the task fails
///   with [`TaskError::WorkerDied`](crate::TaskError::WorkerDied).
///
/// ## Shared state
///
/// Shared state is not an argument: an `Arc<Mutex<u64>>` copied into each worker process
/// would count in each copy, silently. `Rc` and references are never `Payload`s, nor is
/// `Arc` while serde's `rc` feature is off. But `Mutex`, `RwLock`, the atomics (and, once
/// any crate of the program turns on `rc`, `Arc`) are serde types, and compile: the process
/// and MPI pools then refuse them at submission, anywhere in the argument's or result's
/// type (a tuple, a `Vec`, a generic struct), with
/// [`SubmitError::SharedState`](crate::SubmitError::SharedState). The check reads the
/// type's name, which does not show the fields of a struct of your own: a lock in a field
/// of a `#[derive(Serialize)]` struct is copied without a word, so keep it out (or
/// `#[serde(skip)]` it). `Cell` and `RefCell` are not `Sync`, so not `Payload`s alone, and
/// are refused inside a `Mutex`. (A compile-time refusal of every nesting would need a
/// negative trait bound or an auto trait, which stable Rust does not have.)
///
/// | backend | shares without copying | gives each worker a value once |
/// |---|---|---|
/// | threads | a closure that captures an `Arc` through [`ThreadPoolExecutor::spawn`](crate::ThreadPoolExecutor::spawn); a `static` | [`ThreadPoolBuilder::initializer_with`](crate::ThreadPoolBuilder::initializer_with) (a clone per thread; pass an `Arc` to share one) |
/// | processes | [`Shared`](crate::Shared) (read-only: mapped once per worker); the `multiprocessing` toolkit's `Value`, `Array`, `Queue`, `SharedMemory` | `ProcessPoolBuilder::initializer_with`, into a `static` the tasks read |
/// | MPI | [`Shared`](crate::Shared) (read-only: copied once to each rank, which may be on another machine) | `MpiPoolBuilder::initializer_with` |
/// | any | results, combined by the caller; `Shared` for read-only data | `AnyExecutorBuilder::initializer_with` |
///
/// A read-only value that tasks need (settings, a small table) can also be captured with
/// [`task!`](crate::task!) on any backend: on threads it is shared, and a worker process
/// gets a copy with each task, or once per chunk of a `map` (so it costs its encoding per
/// chunk).
///
/// A large read-only table (`T: Pod` numbers, bytes) goes in a [`Shared`](crate::Shared),
/// passed with the tasks that read it: an `Arc` on threads; on a process pool, written once
/// to a sealed shared memory file that each worker maps read-only, with the first task
/// that needs it, and keeps for the next ones (which carry only its id). Dropping the last
/// handle frees it in every worker. No `unsafe`, no `static`, and the task is the same on
/// every backend:
///
/// ```
/// use concurrent_futures::{Executor, ProcessPoolExecutor, Shared, ThreadPoolExecutor};
///
/// fn score((table, key): (Shared<[u32]>, u32)) -> u64 {
///     table.iter().map(|&x| u64::from(x ^ key) >> 28).sum()
/// }
///
/// let table: Shared<[u32]> = Shared::new((0..1_000_000).collect());
/// let args = || (0..8).map(|k| (table.clone(), k));
/// let on_threads: Vec<_> = ThreadPoolExecutor::new(2).map(score, args()).collect();
/// let on_processes: Vec<_> = ProcessPoolExecutor::new(2).map(score, args()).collect();
/// assert_eq!(on_threads, on_processes);
/// ```
///
/// A value of any other type (a model, a configuration) is given to every worker once with
/// `initializer_with`, not with every task: the process pool encodes it once and writes it
/// to one shared memory file that each worker (and each replacement) decodes from:
///
/// ```
/// use concurrent_futures::{Executor, ProcessPoolExecutor};
/// use std::sync::OnceLock;
///
/// static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
/// fn load(table: Vec<u8>) { TABLE.set(table).unwrap() }
/// fn at(i: usize) -> u8 { TABLE.get().unwrap()[i] }
///
/// let table: Vec<u8> = (0..1_000_000).map(|i| (i % 251) as u8).collect();
/// let pool = ProcessPoolExecutor::builder().max_workers(2).initializer_with(load, table).build().unwrap();
/// assert_eq!(pool.submit(at, 999_999).result(), Ok((999_999 % 251) as u8));
/// ```
///
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

// The page is `docs/OBSERVING.md`, whose example runs as a doc test here.
#[doc = include_str!("../docs/OBSERVING.md")]
pub mod observing {}

/// # Common compile errors
///
/// The messages below are rustc's own (Rust 1.95), for the mistakes a first task makes;
/// each comes with its fix. Paths and the lines that point into the crate are left out.
///
/// ## E0277: a closure that captures a value that is not `Copy`
///
/// ```compile_fail,E0277
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// let pool = ThreadPoolExecutor::new(2);
/// let name = String::from("abc");
/// let fut = pool.submit(move |n: usize| name.len() + n, 1);
/// ```
///
/// ```text
/// error[E0277]: `{closure@src/main.rs:5:27: 5:42}` is not a task of one argument `usize` returning `usize`
///    --> src/main.rs:5:27
///     |
///   5 |     let fut = pool.submit(move |n: usize| name.len() + n, 1);
///     |                           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ not a `Task<usize, usize>`
///     |
///     = help: the trait `Task<usize, usize>` is not implemented for closure `{closure@src/main.rs:5:27: 5:42}`
///     = note: a task is a `fn` item or a closure of one argument, whose argument and result are `Payload`s, or a value built by `task!`
///     = note: a closure that captures values must be written `task!([captured, values] |arg: A| ...)`, whose captures are `Payload`s (a closure that captures only `Copy` values is a task as it is, on threads only)
///     = note: a task takes one argument: pass several as one tuple, `|(a, b): (u32, u32)| ...`
/// ```
///
/// A process pool names a task in another process, where captured variables do not exist
/// unless they are sent along: write the task with [`task!`](crate::task!), whose captures
/// (each a [`Payload`](crate::Payload)) cross with it, `task!([name] |n: usize| name.len() + n)`
/// (in the closure, `name` is a `&String`). A closure that captures only `Copy` values
/// (`move |x: u64| x + offset`) compiles and runs on threads; the process and MPI pools
/// refuse it when it is submitted, with
/// [`SubmitError::CapturingClosure`](crate::SubmitError::CapturingClosure). On threads only,
/// [`ThreadPoolExecutor::spawn`](crate::ThreadPoolExecutor::spawn) takes any
/// `FnOnce() -> R + Send + 'static`.
///
/// Inside `task!`, the closure may use its captures and nothing else: a variable of the
/// surroundings that is not in the list gets rustc's E0308, "closures can only be coerced to
/// `fn` types if they do not capture any variables", pointing at the variable (`other`
/// captured here): add it to the list. A capture that is not a `Payload` gets "`Settings`
/// cannot be captured by a task: it is not a `Payload`", with the same advice as below.
///
/// ## E0277: a type without serde (alone or inside a tuple)
///
/// ```compile_fail,E0277
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// struct Job { id: u64 }
/// fn run((job, factor): (Job, u64)) -> u64 { job.id * factor }
/// let pool = ThreadPoolExecutor::new(2);
/// pool.submit(run, (Job { id: 1 }, 2));
/// ```
///
/// ```text
/// error[E0277]: `(Job, u64)` cannot be a task's argument or result: it is not a `Payload`
///   --> src/main.rs:13:40
///    |
/// 13 |     println!("{:?}", pool.submit(run, (Job { id: 1 }, 2)).result());
///    |                                        ^^^^^^^^^^^^^ not a `Payload`
///    |
///    = help: the trait `Payload` is not implemented for `(Job, u64)`
///    = note: a task's argument and result, and every type inside them (a tuple's members, a `Vec`'s items, fields), must implement serde's `Serialize` and `Deserialize` and be `Send + Sync + 'static`; for your own types, add `#[derive(serde::Serialize, serde::Deserialize)]`
///    = note: a task is a function of one argument: pass several arguments as one tuple, `pool.submit(f, (a, b))` with `fn f((a, b): (A, B)) -> R`; values a task needs besides its argument are captured with `task!([a, b] |x: A| ...)`
///    = note: shared state (`Arc`, `Rc`, references) cannot be an argument: see the `Payload` docs for how to share state on each backend
/// ```
///
/// (It comes after an error that says the function `fn((Job, u64)) -> u64 {run}` "is not a
/// task of one argument `(Job, u64)` returning `u64`": a function is a task only when its
/// argument and result are `Payload`s.) The same message names `Job` itself when `Job` is the whole argument, and `Vec<Job>` for
/// a vector of them. Add `#[derive(serde::Serialize, serde::Deserialize)]` to `Job` (serde
/// with its `derive` feature in your `Cargo.toml`); for a type of another crate, look for
/// its `serde` feature, or convert it to one of yours.
///
/// (Without the crate's `#[diagnostic::do_not_recommend]` on its blanket `Payload` impl,
/// rustc would report the innermost unmet bound, `` the trait bound `Job: serde::Serialize`
/// is not satisfied ``, twice, with serde's hint instead of this one: it looks through the
/// impl to the first bound that fails.)
///
/// ## E0277: `Rc`, `Arc` (shared state) as an argument
///
/// ```compile_fail,E0277
/// use std::rc::Rc;
/// use std::sync::Mutex;
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// fn add_one(total: Rc<Mutex<u64>>) { *total.lock().unwrap() += 1; }
/// let pool = ThreadPoolExecutor::new(2);
/// let total = Rc::new(Mutex::new(0));
/// pool.submit(add_one, total.clone());
/// ```
///
/// ```text
/// error[E0277]: `Rc<std::sync::Mutex<u64>>` cannot be a task's argument or result: it is not a `Payload`
///   --> src/main.rs:13:10
///    |
/// 13 |     pool.submit(add_one, total.clone());
///    |          ^^^^^^ not a `Payload`
///    |
///    = help: the trait `Payload` is not implemented for `Rc<std::sync::Mutex<u64>>`
/// ```
///
/// (followed by the same three notes.) `Arc<Mutex<u64>>` gets the same message as long as
/// serde's `rc` feature is off. Any crate of your program may turn it on, and then an `Arc`
/// compiles: the process and MPI pools refuse it when it is submitted, with
/// [`SubmitError::SharedState`](crate::SubmitError::SharedState), and so they refuse a
/// `Mutex`, an `RwLock`, a `Cell`, a `RefCell` or an atomic (which serde always encodes)
/// anywhere in the argument's or result's type. A worker process would get a copy, and
/// count in it, silently: shared state is not an argument. Return values and combine them
/// in the caller, which works on every backend; on threads, give a closure that captures
/// the `Arc` to [`ThreadPoolExecutor::spawn`](crate::ThreadPoolExecutor::spawn). The
/// [`Payload`](crate::Payload) docs list each backend's way to share.
///
/// ## E0061: several arguments
///
/// ```compile_fail,E0061
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// fn add(a: u64, b: u64) -> u64 { a + b }
/// let pool = ThreadPoolExecutor::new(2);
/// pool.submit(add, 1, 2);
/// ```
///
/// ```text
/// error[E0593]: function is expected to take 1 argument, but it takes 2 arguments
///  --> src/main.rs:9:34
///   |
/// 2 | fn add(a: u64, b: u64) -> u64 { a + b }
///   | ----------------------------- takes 2 arguments
/// ...
/// 9 |     println!("{:?}", pool.submit(add, 1, 2).result());
///   |                           ------ ^^^ expected function that takes 1 argument
///   |                           |
///   |                           required by a bound introduced by this call
///   |
///   = note: required for `fn(u64, u64) -> u64 {add}` to implement `Task<_, _>`
///
/// error[E0061]: this method takes 2 arguments but 3 arguments were supplied
///  --> src/main.rs:9:27
///   |
/// 9 |     println!("{:?}", pool.submit(add, 1, 2).result());
///   |                           ^^^^^^         - unexpected argument #3 of type `{integer}`
///   |
/// help: remove the extra argument
///   |
/// 9 -     println!("{:?}", pool.submit(add, 1, 2).result());
/// 9 +     println!("{:?}", pool.submit(add, 1).result());
///   |
/// ```
///
/// rustc's suggestion is not the fix, and a crate has no way to add a note to this error
/// (`#[diagnostic::on_unimplemented]` applies to unmet trait bounds only, and this one is
/// checked before any bound). A task takes **one** argument: make it a tuple, on both sides.
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// fn add((a, b): (u64, u64)) -> u64 { a + b }
/// let pool = ThreadPoolExecutor::new(2);
/// assert_eq!(pool.submit(add, (1, 2)).result(), Ok(3));
/// ```
pub mod common_compile_errors {}
