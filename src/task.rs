//! [`Task`]: what an [`Executor`](crate::Executor) runs, a function of one argument that may
//! carry captured values ([`task!`](crate::task!), [`Captured`]).

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Serialize, de::DeserializeOwned};

use crate::error::SubmitError;

/// What may cross into a task and back through the [`Executor`](crate::Executor) trait: a value that can be
/// sent to another thread, shared by reference, and encoded for another process (serde).
///
/// Implemented for every type with those properties; you never implement it by hand. For
/// your own types, derive serde's traits (serde with its `derive` feature):
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Job { id: u32, words: Vec<String> }
///
/// fn count((job, min_len): (Job, usize)) -> usize {
///     job.words.iter().filter(|w| w.len() >= min_len).count()
/// }
///
/// let pool = ThreadPoolExecutor::new(1);
/// let job = Job { id: 1, words: vec!["a".into(), "bcd".into()] };
/// assert_eq!(pool.submit(count, (job, 2)).result(), Ok(1)); // two arguments: one tuple
/// ```
///
/// A type without serde's traits is refused at compile time, with a message that says to
/// derive them:
///
/// ```compile_fail,E0277
/// # use concurrent_futures::{Executor, ThreadPoolExecutor};
/// struct Job { id: u32 }
/// fn work(job: Job) -> u32 { job.id }
/// let pool = ThreadPoolExecutor::new(1);
/// pool.submit(work, Job { id: 1 }); // error: `Job` is not a `Payload` ... derive ...
/// ```
///
/// # Tasks are functions of one argument
///
/// A task takes one `Payload` argument; give several as one tuple (as above), not as extra
/// arguments:
///
/// ```compile_fail,E0061
/// # use concurrent_futures::{Executor, ThreadPoolExecutor};
/// fn add((a, b): (u32, u32)) -> u32 { a + b }
/// let pool = ThreadPoolExecutor::new(1);
/// pool.submit(add, 10, 3); // error: write `pool.submit(add, (10, 3))`
/// ```
///
/// # Shared state does not cross
///
/// An argument is moved (and, on the process and MPI backends, copied into another
/// process), so shared state cannot be one: a lock or a counter copied into each worker
/// would silently diverge. `Rc` and references are never `Payload`s, and `Arc` is not one
/// while serde's `rc` feature is off:
///
/// ```compile_fail,E0277
/// # use concurrent_futures::{Executor, ThreadPoolExecutor};
/// use std::rc::Rc;
/// fn len(s: Rc<String>) -> usize { s.len() }
/// let pool = ThreadPoolExecutor::new(1);
/// pool.submit(len, Rc::new(String::new())); // error: `Rc<String>` is not a `Payload`
/// ```
///
/// serde encodes `Mutex`, `RwLock`, `Cell`, `RefCell` and the atomics, though, and any crate
/// of a program may turn on serde's `rc` feature (then `Arc<Mutex<u64>>` compiles). So the
/// process and MPI pools also check at submission (and at build, for an initializer's
/// argument): an argument or result whose type names one of them, at any depth of its type
/// (tuples, `Vec`, `Option`, generic structs), is refused with
/// [`SubmitError::SharedState`](crate::SubmitError::SharedState). The check is on the
/// type's name, computed once per pair of types; it cannot see the fields of a struct of
/// your own, so keep locks out of those. A compile-time check of every nesting is not
/// possible on stable Rust (it would need an auto trait or negative bounds). The thread
/// pool does not check: there an `Arc` given as an argument is moved, still shared, not
/// copied (yet it is a `Payload` only with `rc` on; capture it in
/// [`ThreadPoolExecutor::spawn`](crate::ThreadPoolExecutor::spawn) instead).
///
/// ```
/// # #[cfg(target_os = "linux")] {
/// use concurrent_futures::{Executor, ProcessPoolExecutor, SubmitError};
/// use std::sync::Mutex;
/// fn add_one(total: (u8, Mutex<u64>)) -> u64 { *total.1.lock().unwrap() + 1 }
/// let pool = ProcessPoolExecutor::new(1);
/// let err = pool.try_submit(add_one, (0, Mutex::new(0))).unwrap_err();
/// assert!(matches!(err, SubmitError::SharedState { .. }));
/// # }
/// ```
///
/// How to share state instead, by backend:
///
/// * **Any backend**: return values and combine them in the caller (`map(...).sum()`,
///   a `fold` over [`as_completed`](crate::as_completed)): the portable way, and Python's.
///   Read-only values a task needs (settings, a table) are captured with
///   [`task!`](crate::task!): on threads they are shared, to a worker process they are
///   copied once per task (once per chunk of a `map`).
/// * **Any backend, large read-only data** (a table, a slice of numbers, bytes): put it in
///   a [`Shared`](crate::Shared) and pass clones of it in the arguments. On threads it is
///   an `Arc`; a process pool writes it once to a sealed shared memory file that each
///   worker maps read-only once, and later tasks carry only its id; an MPI pool sends its
///   bytes once to each rank, which keeps a copy for later tasks.
/// * **Threads** ([`ThreadPoolExecutor`](crate::ThreadPoolExecutor), rayon): capture an
///   `Arc<Mutex<_>>` or an atomic in a closure given to
///   [`ThreadPoolExecutor::spawn`](crate::ThreadPoolExecutor::spawn) (or rayon's own
///   `spawn`/`install`), outside the `Executor` trait; or use a `static`.
/// * **Processes** (`ProcessPoolExecutor`): workers share no memory; a `static` has one
///   copy per worker. Give every worker a read-only value once (a large table, a
///   configuration) with `Shared` or with `ProcessPoolBuilder::initializer_with` into a
///   `static`; use
///   results, files or a database, or the `multiprocessing` toolkit's shared memory
///   (`Value`, `Array`, `Queue`, `Lock`) with its `Process`/`Pool`, for state that changes.
/// * **MPI** (`MpiPoolExecutor`): ranks may run on other machines; share through results
///   (or files on a shared file system), and give every rank a value once with
///   `MpiPoolBuilder::initializer_with`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a task's argument or result: it is not a `Payload`",
    label = "not a `Payload`",
    note = "a task's argument and result, and every type inside them (a tuple's members, a \
            `Vec`'s items, fields), must implement serde's `Serialize` and `Deserialize` and be \
            `Send + Sync + 'static`; for your own types, add \
            `#[derive(serde::Serialize, serde::Deserialize)]`",
    note = "a task is a function of one argument: pass several arguments as one tuple, \
            `pool.submit(f, (a, b))` with `fn f((a, b): (A, B)) -> R`; values a task needs \
            besides its argument are captured with `task!([a, b] |x: A| ...)`",
    note = "shared state (`Arc`, `Rc`, references) cannot be an argument: see the `Payload` \
            docs for how to share state on each backend"
)]
pub trait Payload: Serialize + DeserializeOwned + Send + Sync + 'static {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Payload for T {}

/// A function of one argument that every backend can run: what
/// [`submit`](crate::Executor::submit), [`map`](crate::Executor::map) and the rest of the
/// [`Executor`](crate::Executor) trait take.
///
/// Implemented by:
///
/// * every `fn` item, and every closure that captures nothing (`pool.submit(fib, 20)`,
///   `pool.map(|x: u32| x + 1, 0..n)`), and `fn(A) -> R` pointers: they run on every
///   backend, and a worker process calls them by name;
/// * [`Captured`], the task with captured values that [`task!`](crate::task!) builds: its
///   captures are [`Payload`]s, encoded once per task (once per chunk of a `map`) for a
///   worker process, and lent by reference on threads;
/// * a closure that captures `Copy` values (`move |x: u32| x * k`): it runs on threads
///   (the thread pool, rayon), but a worker process cannot receive what it captured, so the
///   process and MPI pools refuse it with [`SubmitError::CapturingClosure`]; write it with
///   `task!` instead.
///
/// A task is `Send + Sync + 'static`: the same value may run on several threads at once.
///
/// You may implement it by hand for a type of your own; such a task runs on threads (the
/// thread pool, rayon), and the process and MPI pools refuse it with
/// [`SubmitError::Unsendable`] (they can only name the tasks above in another process):
///
/// ```
/// use concurrent_futures::{Executor, Task, ThreadPoolExecutor};
/// use std::sync::Arc;
/// struct Lookup(Arc<Vec<u32>>);
/// impl Task<usize, u32> for Lookup {
///     fn call(&self, i: usize) -> u32 { self.0[i] }
/// }
/// let pool = ThreadPoolExecutor::new(1);
/// assert_eq!(pool.submit(Lookup(Arc::new(vec![5, 6])), 1).result(), Ok(6));
/// ```
///
/// # Examples
///
/// One task written once, with its settings captured, run on threads and on processes
/// (chosen from a string):
///
/// ```
/// use concurrent_futures::{AnyExecutor, Executor, task};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Settings { scale: u64, offset: u64 }
///
/// let settings = Settings { scale: 3, offset: 1 };
/// let table: Vec<u64> = (0..100).collect();
/// let score = task!([settings, table] |i: usize| -> u64 {
///     table[i] * settings.scale + settings.offset
/// });
/// # #[cfg(target_os = "linux")]
/// # let backends = ["threads:2", "processes:2"];
/// # #[cfg(not(target_os = "linux"))]
/// # let backends = ["threads:2"];
/// for spec in backends {
///     let pool: AnyExecutor = spec.parse().unwrap();
///     assert_eq!(pool.submit(score.clone(), 10).result(), Ok(31));
///     let total: u64 = pool.map(score.clone(), 0..100).map(Result::unwrap).sum();
///     assert_eq!(total, 3 * 4950 + 100);
/// }
/// ```
///
/// A closure that captures a value that is not `Copy` is not a task: write it with `task!`.
///
/// ```compile_fail,E0277
/// use concurrent_futures::{Executor, ThreadPoolExecutor};
/// let pool = ThreadPoolExecutor::new(1);
/// let name = String::from("abc");
/// pool.submit(move |n: usize| name.len() + n, 1); // error: ... is not a task ... `task!`
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task of one argument `{A}` returning `{R}`",
    label = "not a `Task<{A}, {R}>`",
    note = "a task is a `fn` item or a closure of one argument, whose argument and result are \
            `Payload`s, or a value built by `task!`",
    note = "a closure that captures values must be written \
            `task!([captured, values] |arg: A| ...)`, whose captures are `Payload`s (a closure \
            that captures only `Copy` values is a task as it is, on threads only)",
    note = "a task takes one argument: pass several as one tuple, `|(a, b): (u32, u32)| ...`"
)]
pub trait Task<A, R>: Send + Sync + 'static {
    /// Runs the task on this thread.
    ///
    /// ```
    /// use concurrent_futures::{Task, task};
    /// let k = 3u32;
    /// let triple = task!([k] |x: u32| x * k);
    /// assert_eq!(triple.call(5), 15);
    /// assert_eq!(Task::call(&u32::count_ones, 7), 3);
    /// ```
    fn call(&self, arg: A) -> R;

    /// What a pool whose workers are other processes sends for this task: the function
    /// (named as `remote::naming` does) and the encoded captures, if any. A task type
    /// implemented by hand cannot be named in another process: the process and MPI pools
    /// refuse it with [`SubmitError::Unsendable`].
    #[doc(hidden)]
    fn remote(&self, shape: Shape) -> Result<RemoteTask, SubmitError> {
        let _ = shape;
        Err(SubmitError::Unsendable(
            format!(
                "`{}` implements `Task` by hand, which runs on threads only: write the task \
                 with `task!` to run it in a worker process",
                std::any::type_name::<Self>()
            )
            .into(),
        ))
    }
}

/// Whether a remote task is one call or a chunk of a `map` (the trampolines differ).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    One,
    Chunk,
}

/// What a process or MPI pool sends for a task: the function to call and its encoded
/// captures. Built only inside this crate.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct RemoteTask {
    #[cfg(target_os = "linux")]
    pub(crate) target: crate::remote::FnRef,
    #[cfg(target_os = "linux")]
    pub(crate) captures: Option<Arc<[u8]>>,
    /// The shared tables the captures name by id (encoded for a process or MPI pool).
    #[cfg(target_os = "linux")]
    pub(crate) tables: Vec<crate::shared::TableRef>,
}

// Not recommended in errors: a closure that is not a task (it captures a value that is not
// `Copy`) gets the trait's own message, which says to use `task!`, rather than "`String:
// Copy` is not satisfied".
#[diagnostic::do_not_recommend]
impl<F, A, R> Task<A, R> for F
where
    F: Fn(A) -> R + Copy + Send + Sync + 'static,
    A: Payload,
    R: Payload,
{
    #[inline]
    fn call(&self, arg: A) -> R {
        self(arg)
    }

    fn remote(&self, shape: Shape) -> Result<RemoteTask, SubmitError> {
        #[cfg(target_os = "linux")]
        {
            use crate::remote::naming;
            let func: fn(A) -> R =
                if let Some(ptr) = (self as &dyn std::any::Any).downcast_ref::<fn(A) -> R>() {
                    // A function pointer: named by its value.
                    *ptr
                } else if size_of::<F>() == 0 {
                    // A `fn` item or a closure without captures: its one value is conjured
                    // in the worker by the shim (see `zst_shim`).
                    zst_shim::<F, A, R>
                } else {
                    return Err(SubmitError::CapturingClosure {
                        type_name: Arc::from(std::any::type_name::<F>()),
                    });
                };
            let target = match shape {
                Shape::One => naming::target_of(func)?,
                Shape::Chunk => naming::chunk_target_of(func)?,
            };
            Ok(RemoteTask {
                target,
                captures: None,
                tables: Vec::new(),
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = shape;
            Err(SubmitError::Unsendable(
                "no worker processes on this platform".into(),
            ))
        }
    }
}

/// Calls the zero-sized `F` that the parent held: the function a worker process runs for a
/// `fn` item or a closure without captures, named as a plain `fn(A) -> R`.
#[cfg(target_os = "linux")]
fn zst_shim<F: Fn(A) -> R + Copy + 'static, A, R>(arg: A) -> R {
    // Checked where the shim is named (`Task::remote`, the only place); a shim for a type
    // of another size is never called.
    assert!(size_of::<F>() == 0, "only a zero-sized task is conjured");
    // SAFETY: reading a value of `F` from a dangling pointer creates it out of nothing:
    // (1) `F` is zero-sized (asserted above), so the read touches no memory, and a
    //     well-aligned non-null dangling pointer is valid for it;
    // (2) every value of a zero-sized type is the same value (it has no bytes), and `F` is
    //     inhabited: the parent held one when it named this shim (`Task::remote` takes
    //     `&self`), and the worker runs the same executable, so the same type;
    // (3) `F: Copy`, so duplicating its value takes no ownership from anyone and has no
    //     `Drop` to run twice; a `Fn` type is a `fn` item or a closure (no user code can
    //     implement `Fn` on stable Rust), whose zero-sized values carry no invariant beyond
    //     their existence.
    let f: F = unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() };
    f(arg)
}

/// A task with captured values: what [`task!`](crate::task!) builds. It holds the captures
/// (`C`, a [`Payload`], behind an `Arc`) and a function that receives them by reference
/// with the argument.
///
/// On threads the function is called with a reference to the captures; for a worker
/// process (the process and MPI pools) the captures are encoded once per task, and once per
/// `map` (the encoding is sent with each chunk and decoded once per chunk, never per item).
/// Cloning shares the captures. A capture type that holds shared state (`Arc`, `Mutex`,
/// atomics...) is refused by the process and MPI pools with
/// [`SubmitError::SharedState`], as an argument would be.
///
/// ```
/// use concurrent_futures::{Captured, Executor, ThreadPoolExecutor};
/// let task = Captured::new((2u64, String::from("ab")), |(k, s), x: u64| x * k + s.len() as u64);
/// let pool = ThreadPoolExecutor::new(1);
/// assert_eq!(pool.submit(task, 10).result(), Ok(22));
/// ```
pub struct Captured<C, A, R> {
    captures: Arc<C>,
    f: fn(&C, A) -> R,
}

impl<C, A, R> Captured<C, A, R> {
    /// A task that calls `f(&captures, arg)`. `f` captures nothing itself (it is a `fn`);
    /// [`task!`](crate::task!) writes this call for you.
    ///
    /// ```
    /// use concurrent_futures::{Captured, Task};
    /// let add = Captured::new(5u32, |k, x: u32| x + k);
    /// assert_eq!(add.call(1), 6);
    /// ```
    pub fn new(captures: C, f: fn(&C, A) -> R) -> Self {
        Captured {
            captures: Arc::new(captures),
            f,
        }
    }

    /// The captured values.
    ///
    /// ```
    /// use concurrent_futures::task;
    /// let k = 7u8;
    /// assert_eq!(*task!([k] |x: u8| x + k).captures(), (7,));
    /// ```
    pub fn captures(&self) -> &C {
        &self.captures
    }
}

impl<C, A, R> Clone for Captured<C, A, R> {
    fn clone(&self) -> Self {
        Captured {
            captures: self.captures.clone(),
            f: self.f,
        }
    }
}

impl<C: fmt::Debug, A, R> fmt::Debug for Captured<C, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Captured")
            .field("captures", &self.captures)
            .finish_non_exhaustive()
    }
}

impl<C: Payload, A: Payload, R: Payload> Task<A, R> for Captured<C, A, R> {
    #[inline]
    fn call(&self, arg: A) -> R {
        (self.f)(&self.captures, arg)
    }

    fn remote(&self, shape: Shape) -> Result<RemoteTask, SubmitError> {
        #[cfg(target_os = "linux")]
        {
            use crate::remote::{codec, naming, shared_state};
            shared_state::refuse_shared_state::<C, ()>()?;
            let target = match shape {
                Shape::One => naming::captured_target_of(self.f)?,
                Shape::Chunk => naming::captured_chunk_target_of(self.f)?,
            };
            // A `Serialize` that panics refuses the task with its message. For a process or
            // MPI pool, the shared tables in the captures are encoded by id and go with the task.
            let (bytes, tables) = crate::shared::collect_if_encoding(|| {
                crate::unwind::catch(|| codec::encode(&codec::Wire(&*self.captures)))
            });
            let bytes = bytes
                .map_err(|e| {
                    SubmitError::Codec(
                        format!("the task's captures' encoding panicked: {e}").into(),
                    )
                })?
                .map_err(|e| {
                    SubmitError::Codec(
                        format!("the task's captures could not be encoded: {e}").into(),
                    )
                })?;
            Ok(RemoteTask {
                target,
                captures: Some(Arc::from(bytes)),
                tables,
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = shape;
            Err(SubmitError::Unsendable(
                "no worker processes on this platform".into(),
            ))
        }
    }
}

/// Checks that a capture of [`task!`](crate::task!) is a [`Payload`] (with a message that
/// says what to do when it is not) and passes it through.
#[doc(hidden)]
pub fn capture<T: Capture>(value: T) -> T {
    value
}

/// A value a [`task!`](crate::task!) may capture: a [`Payload`].
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be captured by a task: it is not a `Payload`",
    label = "captured here",
    note = "a task's captures cross to worker processes by value, so each must implement \
            serde's `Serialize` and `Deserialize` and be `Send + Sync + 'static`: add \
            `#[derive(serde::Serialize, serde::Deserialize)]` to your own types",
    note = "shared state (`Arc<Mutex<_>>`, `Rc`, references) cannot be captured: return \
            values and combine them in the caller, or, on threads only, capture it in a \
            closure given to `ThreadPoolExecutor::spawn`"
)]
pub trait Capture: Payload {}

#[diagnostic::do_not_recommend]
impl<T: Payload> Capture for T {}

/// A task behind a reference count: cloned per block of a backend's own `map` (see
/// `Executor::ordered_map`), called without dynamic dispatch.
pub(crate) struct SharedTask<T>(Arc<T>);

impl<T> SharedTask<T> {
    pub(crate) fn new(task: T) -> Self {
        SharedTask(Arc::new(task))
    }
}

impl<T> Clone for SharedTask<T> {
    fn clone(&self) -> Self {
        SharedTask(self.0.clone())
    }
}

impl<A, R, T: Task<A, R>> Task<A, R> for SharedTask<T> {
    #[inline]
    fn call(&self, arg: A) -> R {
        self.0.call(arg)
    }

    fn remote(&self, shape: Shape) -> Result<RemoteTask, SubmitError> {
        self.0.remote(shape)
    }
}

/// One type-erased handle on a task, as a `map` keeps it: cloned per chunk (a reference
/// count), with what the remote pools send computed once (the captures encoded once per
/// `map`).
#[doc(hidden)]
pub struct TaskHandle<A, R>(Arc<dyn ErasedTask<A, R>>);

impl<A: Payload, R: Payload> TaskHandle<A, R> {
    /// Erases `task`'s type.
    pub fn new<T: Task<A, R>>(task: T) -> Self {
        TaskHandle(Arc::new(Held {
            task,
            one: OnceLock::new(),
            chunk: OnceLock::new(),
        }))
    }
}

impl<A, R> Clone for TaskHandle<A, R> {
    fn clone(&self) -> Self {
        TaskHandle(self.0.clone())
    }
}

impl<A, R> fmt::Debug for TaskHandle<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TaskHandle")
    }
}

trait ErasedTask<A, R>: Send + Sync + 'static {
    fn call(&self, arg: A) -> R;
    fn remote(&self, shape: Shape) -> Result<RemoteTask, SubmitError>;
}

struct Held<T> {
    task: T,
    one: OnceLock<Result<RemoteTask, SubmitError>>,
    chunk: OnceLock<Result<RemoteTask, SubmitError>>,
}

impl<A, R, T: Task<A, R>> ErasedTask<A, R> for Held<T> {
    #[inline]
    fn call(&self, arg: A) -> R {
        self.task.call(arg)
    }

    fn remote(&self, shape: Shape) -> Result<RemoteTask, SubmitError> {
        let cell = match shape {
            Shape::One => &self.one,
            Shape::Chunk => &self.chunk,
        };
        cell.get_or_init(|| self.task.remote(shape)).clone()
    }
}

impl<A: Payload, R: Payload> Task<A, R> for TaskHandle<A, R> {
    #[inline]
    fn call(&self, arg: A) -> R {
        self.0.call(arg)
    }

    fn remote(&self, shape: Shape) -> Result<RemoteTask, SubmitError> {
        self.0.remote(shape)
    }
}

/// Builds a [`Task`] that captures values: `task!([a, b] |arg: A| body)`.
///
/// The list names the captured values, moved into the task (write `[a = expr]` to capture
/// a value computed here, e.g. `[table = table.clone()]` to keep your own copy). In the
/// closure each name is a reference to its value. Each captured value must be a
/// [`Payload`] (serde's traits, `Send + Sync + 'static`): the process and MPI pools send
/// the captures to their workers, once per task and once per chunk of a `map`, never once
/// per item. Write the type of the closure's argument (`|x: u32| ...`); a return type is
/// optional (`|x: u32| -> u64 { ... }`). The closure can use nothing else from its
/// surroundings than the captures (what else it captured could not reach a worker
/// process), and the compiler says so.
///
/// The task is a [`Captured`]: `Clone` (sharing its captures), and accepted by every
/// method that takes a task, on every backend.
///
/// ```
/// use concurrent_futures::{Executor, ThreadPoolExecutor, task};
///
/// let words = vec!["apple".to_string(), "kiwi".to_string()];
/// let min_len = 5usize;
/// let longer = task!([words, min_len] |extra: usize| -> usize {
///     words.iter().filter(|w| w.len() + extra >= *min_len).count()
/// });
/// let pool = ThreadPoolExecutor::new(2);
/// assert_eq!(pool.submit(longer.clone(), 0).result(), Ok(1));
/// let counts: Vec<usize> = pool.map(longer, 0..3).map(Result::unwrap).collect();
/// assert_eq!(counts, [1, 2, 2]);
/// ```
///
/// A capture that is not a [`Payload`] is refused at compile time, with a message that
/// says what to do:
///
/// ```compile_fail,E0277
/// use concurrent_futures::task;
/// struct Settings { scale: u32 } // no serde derives
/// let settings = Settings { scale: 2 };
/// let t = task!([settings] |x: u32| x * settings.scale);
/// // error: `Settings` cannot be captured by a task: it is not a `Payload`
/// ```
#[macro_export]
macro_rules! task {
    ([$($name:ident $(= $value:expr)?),* $(,)?] $f:expr) => {
        $crate::Captured::new(
            ($($crate::__task_capture($crate::task!(@value $name $(= $value)?)),)*),
            |__captures, __arg| {
                #[allow(unused_variables)]
                let ($($name,)*) = __captures;
                ($f)(__arg)
            },
        )
    };
    (@value $name:ident = $value:expr) => {
        $value
    };
    (@value $name:ident) => {
        $name
    };
}
