//! [`AnyExecutor`]: a backend chosen at run time, from a string such as `"processes:4"`.
//!
//! [`Executor`] has generic methods, so `Box<dyn Executor>` is not possible; this enum over
//! the backends is the run-time choice instead, and implements [`Executor`] itself.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::chunk::Chunk;
use crate::error::{BuildError, SubmitError};
use crate::executor::Executor;
use crate::future::Future;
use crate::map::{MapOptions, OrderedMap};
use crate::task::Payload;
use crate::task::Task;
use crate::thread::ThreadPoolExecutor;

/// The environment variable [`AnyExecutor::from_default_env`] reads: `CF_EXECUTOR`.
pub const EXECUTOR_ENV_VAR: &str = "CF_EXECUTOR";

/// Any of the crate's backends, chosen at run time: parse it from a string (a command-line
/// argument, a configuration value) or an environment variable, and give it to the same
/// generic code as any pool.
///
/// | spec | pool |
/// |---|---|
/// | `threads`, `threads:8` | [`ThreadPoolExecutor::default`] (Python's `min(32, cpus + 4)`), [`ThreadPoolExecutor::new(8)`](ThreadPoolExecutor::new) |
/// | `processes`, `processes:4` | `ProcessPoolExecutor::default()` (one per CPU), `ProcessPoolExecutor::new(4)` (Linux) |
/// | `mpi` | `MpiPoolExecutor::start()` (feature `mpi`): the ranks of `mpirun -n N` |
/// | `mpi:8` | `MpiPoolExecutor::builder().max_workers(8)` (feature `mpi`): 8 workers the pool spawns itself (MPI dynamic processes) |
/// | `rayon`, `rayon:4` | a new `rayon::ThreadPool` (rayon's default size, or 4 threads; feature `rayon`) |
///
/// Backend names are case-insensitive and blanks around the spec are ignored. A bad spec, a
/// count that is not a positive number, or a backend this build does not have is a
/// [`SpecError`] that says what to write or which cargo feature to enable.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{AnyExecutor, Executor};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// fn total<E: Executor>(pool: &E) -> u64 {
///     pool.map(square, 0..100).map(Result::unwrap).sum()
/// }
///
/// # fn main() -> Result<(), concurrent_futures::SpecError> {
/// let spec = std::env::args().nth(1).unwrap_or_else(|| "threads:2".into());
/// # let spec = "threads:2";
/// let pool: AnyExecutor = spec.parse()?; // "threads:2", "processes:4", "mpi", "rayon"...
/// assert_eq!(total(&pool), 328_350);
/// # Ok(()) }
/// ```
///
/// # `mpi`
///
/// Under `mpirun` every rank runs the same program, and only rank 0 gets a pool (see
/// `MpiPoolExecutor::start`). Parsing `"mpi"` on any other rank serves tasks for rank 0
/// inside `parse`, and when rank 0 shuts the pool down, **ends the process** with exit
/// status 0 (MPI finalized), as mpi4py's `python -m mpi4py.futures` workers do: the code
/// after `parse` runs on rank 0 only, so one program works unchanged on every backend. To
/// keep control on the worker ranks instead, use [`ExecutorSpec::start`], which returns
/// `Ok(None)` there. Started without `mpirun`, `"mpi"` runs its tasks on local worker
/// processes. `"mpi:N"` instead starts N workers of the pool's own with `MPI_Comm_spawn`
/// (as mpi4py's `MPIPoolExecutor(max_workers=N)`): the program runs alone (or under
/// `mpirun -n 1`), and `parse` returns the pool on every process that calls it.
///
/// # Shutdown and drop
///
/// Each variant keeps its backend's behaviour: dropping an `AnyExecutor` waits for the
/// accepted work on threads and processes; a rayon pool has no shutdown (see
/// [`Executor`] for `rayon::ThreadPool`).
#[non_exhaustive]
pub enum AnyExecutor {
    /// A [`ThreadPoolExecutor`].
    Threads(ThreadPoolExecutor),
    /// A `ProcessPoolExecutor` (Linux).
    #[cfg(target_os = "linux")]
    #[cfg_attr(docsrs_nightly, doc(cfg(target_os = "linux")))]
    Processes(crate::ProcessPoolExecutor),
    /// An `MpiPoolExecutor` (feature `mpi`, Linux).
    #[cfg(all(feature = "mpi", target_os = "linux"))]
    #[cfg_attr(docsrs_nightly, doc(cfg(all(feature = "mpi", target_os = "linux"))))]
    Mpi(crate::MpiPoolExecutor),
    /// A `rayon::ThreadPool` (feature `rayon`).
    #[cfg(feature = "rayon")]
    #[cfg_attr(docsrs_nightly, doc(cfg(feature = "rayon")))]
    Rayon(rayon::ThreadPool),
}

/// Which backend an [`ExecutorSpec`] names.
///
/// ```
/// use concurrent_futures::{Backend, ExecutorSpec};
/// let spec: ExecutorSpec = "processes:4".parse().unwrap();
/// assert_eq!(spec.backend(), Backend::Processes);
/// assert_eq!(Backend::Processes.to_string(), "processes");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// `threads`: [`ThreadPoolExecutor`].
    Threads,
    /// `processes`: `ProcessPoolExecutor` (Linux).
    Processes,
    /// `mpi`: `MpiPoolExecutor` (feature `mpi`).
    Mpi,
    /// `rayon`: `rayon::ThreadPool` (feature `rayon`).
    Rayon,
}

impl Backend {
    /// Every backend, in the order the docs list them.
    ///
    /// ```
    /// assert_eq!(concurrent_futures::Backend::ALL.len(), 4);
    /// ```
    pub const ALL: [Backend; 4] = [
        Backend::Threads,
        Backend::Processes,
        Backend::Mpi,
        Backend::Rayon,
    ];

    /// The name used in specs: `threads`, `processes`, `mpi`, `rayon`.
    ///
    /// ```
    /// assert_eq!(concurrent_futures::Backend::Mpi.name(), "mpi");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Backend::Threads => "threads",
            Backend::Processes => "processes",
            Backend::Mpi => "mpi",
            Backend::Rayon => "rayon",
        }
    }

    /// Whether this build can start the backend: `None` if it can, else why not (the
    /// [`SpecError`] that starting it gives).
    ///
    /// ```
    /// use concurrent_futures::Backend;
    /// assert!(Backend::Threads.unavailable().is_none());
    /// # #[cfg(not(feature = "mpi"))]
    /// assert!(Backend::Mpi.unavailable().is_some()); // without the `mpi` feature
    /// ```
    pub fn unavailable(self) -> Option<SpecError> {
        match self {
            Backend::Threads => None,
            Backend::Processes => {
                if cfg!(target_os = "linux") {
                    None
                } else {
                    Some(SpecError::Unsupported {
                        backend: self,
                        reason: "worker processes are only implemented on Linux",
                    })
                }
            }
            Backend::Mpi => {
                if !cfg!(feature = "mpi") {
                    Some(SpecError::NotBuilt {
                        backend: self,
                        feature: "mpi",
                    })
                } else if !cfg!(target_os = "linux") {
                    Some(SpecError::Unsupported {
                        backend: self,
                        reason: "the MPI pool is only implemented on Linux",
                    })
                } else {
                    None
                }
            }
            Backend::Rayon => (!cfg!(feature = "rayon")).then_some(SpecError::NotBuilt {
                backend: self,
                feature: "rayon",
            }),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed backend spec (`"threads:8"`, `"processes"`, ...), not yet started: validate a
/// command line first, start the pool later with [`start`](ExecutorSpec::start).
///
/// ```
/// use concurrent_futures::{Backend, ExecutorSpec, SpecError};
/// let spec: ExecutorSpec = "threads:8".parse().unwrap();
/// assert_eq!((spec.backend(), spec.workers()), (Backend::Threads, Some(8)));
/// assert_eq!(spec.to_string(), "threads:8");
/// assert!(matches!("threads:0".parse::<ExecutorSpec>(), Err(SpecError::BadWorkers { .. })));
/// assert!(matches!("fibers".parse::<ExecutorSpec>(), Err(SpecError::UnknownBackend { .. })));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExecutorSpec {
    backend: Backend,
    workers: Option<usize>,
}

impl ExecutorSpec {
    /// A spec for `backend` with `workers` workers (`None`: the backend's default).
    ///
    /// ```
    /// use concurrent_futures::{Backend, ExecutorSpec};
    /// assert_eq!(ExecutorSpec::new(Backend::Processes, Some(2)).to_string(), "processes:2");
    /// ```
    pub fn new(backend: Backend, workers: Option<usize>) -> Self {
        ExecutorSpec { backend, workers }
    }

    /// The backend it names.
    ///
    /// ```
    /// # use concurrent_futures::{Backend, ExecutorSpec};
    /// assert_eq!("rayon".parse::<ExecutorSpec>().unwrap().backend(), Backend::Rayon);
    /// ```
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The number of workers it asks for, if it gives one.
    ///
    /// ```
    /// # use concurrent_futures::ExecutorSpec;
    /// assert_eq!("threads".parse::<ExecutorSpec>().unwrap().workers(), None);
    /// ```
    pub fn workers(&self) -> Option<usize> {
        self.workers
    }

    /// Starts the pool. `Ok(None)` only for `mpi` on an MPI rank other than 0, once rank 0
    /// has shut the pool down (that rank served tasks inside this call); see
    /// [`AnyExecutor`]'s section on `mpi`.
    ///
    /// # Errors
    ///
    /// [`SpecError::NotBuilt`] or [`SpecError::Unsupported`] if this build cannot run the
    /// backend (or the worker count), [`SpecError::Start`] if the pool does not start.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ExecutorSpec};
    /// let spec: ExecutorSpec = "threads:3".parse().unwrap();
    /// let pool = spec.start().unwrap().expect("not an MPI worker rank");
    /// assert_eq!(pool.max_workers(), 3);
    /// ```
    pub fn start(&self) -> Result<Option<AnyExecutor>, SpecError> {
        self.builder().start()
    }

    /// A builder for the pool this spec names, to give it options every backend takes
    /// (an initializer) before starting it.
    ///
    /// ```
    /// use concurrent_futures::{Executor, ExecutorSpec};
    /// fn setup() {}
    /// let spec: ExecutorSpec = "threads:2".parse().unwrap();
    /// let pool = spec.builder().initializer(setup).start().unwrap().unwrap();
    /// assert_eq!(pool.max_workers(), 2);
    /// ```
    pub fn builder(&self) -> AnyExecutorBuilder {
        AnyExecutorBuilder {
            spec: *self,
            initializer: None,
        }
    }
}

/// Builds the [`AnyExecutor`] an [`ExecutorSpec`] names, with an initializer every worker
/// runs once before any task, on whichever backend the spec picks: Python's
/// `initializer=`/`initargs=`, given once for all backends. Get one from
/// [`ExecutorSpec::builder`] or [`AnyExecutor::builder`].
///
/// | backend | initializer |
/// |---|---|
/// | `threads` | [`ThreadPoolBuilder::initializer`](crate::ThreadPoolBuilder::initializer) (each thread gets a clone of the argument) |
/// | `processes` | `ProcessPoolBuilder::initializer`/`initializer_with` (the argument is encoded once) |
/// | `mpi` | `MpiPoolBuilder::initializer`/`initializer_with` (on the ranks, or on the local processes when started alone) |
/// | `rayon` | refused with [`SpecError::Unsupported`]: a rayon pool has no initializer whose failure it could report (a panicking start handler aborts the process) |
///
/// A panicking initializer breaks the pool on every backend that takes one: submissions
/// fail with [`SubmitError::Broken`].
///
/// ```
/// use concurrent_futures::{AnyExecutor, Executor};
/// use std::sync::OnceLock;
///
/// static SCALE: OnceLock<u64> = OnceLock::new();
/// // (on threads every worker runs it in the same process: the first one sets the static)
/// fn init(scale: u64) { SCALE.get_or_init(|| scale); }
/// fn scaled(x: u64) -> u64 { x * SCALE.get().unwrap() }
///
/// for spec in ["threads:2", "processes:2"] {
///     let pool = AnyExecutor::builder(spec)
///         .unwrap()
///         .initializer_with(init, 10)
///         .start()
///         .unwrap()
///         .unwrap();
///     assert_eq!(pool.submit(scaled, 4).result(), Ok(40));
/// }
/// ```
#[must_use]
pub struct AnyExecutorBuilder {
    spec: ExecutorSpec,
    initializer: Option<AnyInit>,
}

/// An initializer as each backend takes it.
struct AnyInit {
    /// For threads.
    local: std::sync::Arc<dyn Fn() + Send + Sync>,
    /// For worker processes and ranks: named and encoded (only for those backends).
    #[cfg(target_os = "linux")]
    remote: Option<Result<crate::remote::InitCall, SubmitError>>,
}

impl AnyExecutorBuilder {
    #[cfg(target_os = "linux")]
    fn remote(&self) -> bool {
        matches!(self.spec.backend, Backend::Processes | Backend::Mpi)
    }

    /// A function every worker runs once before any task; see [`AnyExecutorBuilder`].
    ///
    /// ```
    /// use concurrent_futures::AnyExecutor;
    /// fn setup() {}
    /// let pool = AnyExecutor::builder("processes:1").unwrap().initializer(setup).start();
    /// assert!(pool.is_ok());
    /// ```
    pub fn initializer(mut self, init: fn()) -> Self {
        self.initializer = Some(AnyInit {
            local: std::sync::Arc::new(init),
            #[cfg(target_os = "linux")]
            remote: self.remote().then(|| crate::remote::InitCall::plain(init)),
        });
        self
    }

    /// [`initializer`](Self::initializer) with an argument (Python's `initargs`): each
    /// thread gets a clone of it; worker processes and ranks decode the copy encoded once
    /// here (see `ProcessPoolBuilder::initializer_with`).
    ///
    /// ```
    /// use concurrent_futures::AnyExecutor;
    /// fn connect(url: String) { assert!(url.starts_with("db://")) }
    /// let pool = AnyExecutor::builder("threads:1")
    ///     .unwrap()
    ///     .initializer_with(connect, "db://primary".to_string())
    ///     .start();
    /// assert!(pool.is_ok());
    /// ```
    pub fn initializer_with<A: Payload + Clone>(mut self, init: fn(A), arg: A) -> Self {
        #[cfg(target_os = "linux")]
        let remote = self
            .remote()
            .then(|| crate::remote::InitCall::with(init, &arg));
        self.initializer = Some(AnyInit {
            local: std::sync::Arc::new(move || init(arg.clone())),
            #[cfg(target_os = "linux")]
            remote,
        });
        self
    }

    /// Starts the pool, as [`ExecutorSpec::start`] does.
    ///
    /// # Errors
    ///
    /// As [`ExecutorSpec::start`]; [`SpecError::Start`] with
    /// [`BuildError::Initializer`] if the initializer cannot be sent to worker processes;
    /// [`SpecError::Unsupported`] for an initializer on `rayon`.
    ///
    /// ```
    /// use concurrent_futures::{AnyExecutor, Backend};
    /// let pool = AnyExecutor::builder("threads").unwrap().start().unwrap().unwrap();
    /// assert_eq!(pool.backend(), Backend::Threads);
    /// ```
    pub fn start(self) -> Result<Option<AnyExecutor>, SpecError> {
        let spec = self.spec;
        if let Some(why) = spec.backend.unavailable() {
            return Err(why);
        }
        let n = spec.workers;
        match spec.backend {
            Backend::Threads => {
                let mut b = ThreadPoolExecutor::builder();
                if let Some(n) = n {
                    b = b.max_workers(n);
                }
                if let Some(init) = self.initializer {
                    b = b.initializer(move || (init.local)());
                }
                Ok(Some(AnyExecutor::Threads(b.build()?)))
            }
            #[cfg(target_os = "linux")]
            Backend::Processes => {
                let mut b = crate::ProcessPoolExecutor::builder();
                if let Some(n) = n {
                    b = b.max_workers(n);
                }
                if let Some(init) = self.initializer.and_then(|i| i.remote) {
                    b = b.encoded_initializer(init);
                }
                Ok(Some(AnyExecutor::Processes(b.build()?)))
            }
            #[cfg(all(feature = "mpi", target_os = "linux"))]
            Backend::Mpi => {
                let mut b = crate::MpiPoolExecutor::builder();
                if let Some(n) = n {
                    b = b.max_workers(n);
                }
                if let Some(init) = self.initializer.and_then(|i| i.remote) {
                    b = b.encoded_initializer(init);
                }
                Ok(b.start()?.map(AnyExecutor::Mpi))
            }
            #[cfg(feature = "rayon")]
            Backend::Rayon => {
                if self.initializer.is_some() {
                    return Err(SpecError::Unsupported {
                        backend: Backend::Rayon,
                        reason: "a rayon pool takes no initializer (a panicking start handler \
                                 aborts the process instead of breaking the pool): use \
                                 `threads`",
                    });
                }
                let mut b = rayon::ThreadPoolBuilder::new();
                if let Some(n) = n {
                    b = b.num_threads(n);
                }
                let pool = b
                    .build()
                    .map_err(|e| BuildError::Spawn(std::io::Error::other(e)))?;
                Ok(Some(AnyExecutor::Rayon(pool)))
            }
            #[allow(unreachable_patterns)] // backends this build lacks: `unavailable` said so
            _ => unreachable!("backend {} is available but not built", spec.backend),
        }
    }
}

impl fmt::Debug for AnyExecutorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyExecutorBuilder")
            .field("spec", &self.spec)
            .field("initializer", &self.initializer.is_some())
            .finish()
    }
}

impl fmt::Display for ExecutorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.workers {
            Some(n) => write!(f, "{}:{n}", self.backend),
            None => write!(f, "{}", self.backend),
        }
    }
}

impl FromStr for ExecutorSpec {
    type Err = SpecError;

    /// Parses `backend` or `backend:N`; see [`AnyExecutor`]. Only the syntax is checked
    /// here: a backend this build lacks is refused by [`start`](ExecutorSpec::start).
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let spec = s.trim();
        let (name, count) = match spec.split_once(':') {
            Some((name, count)) => (name.trim(), Some(count.trim())),
            None => (spec, None),
        };
        let backend = Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| SpecError::UnknownBackend { spec: s.to_owned() })?;
        let workers = match count {
            None => None,
            Some(count) => match count.parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(SpecError::BadWorkers { spec: s.to_owned() });
                }
            },
        };
        Ok(ExecutorSpec { backend, workers })
    }
}

/// Why a backend spec was refused or its pool did not start.
///
/// ```
/// use concurrent_futures::{AnyExecutor, SpecError};
/// let err = "threads:many".parse::<AnyExecutor>().unwrap_err();
/// assert!(matches!(err, SpecError::BadWorkers { .. }));
/// assert!(err.to_string().contains("threads:many"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The spec names no known backend.
    #[error(
        "unknown executor `{spec}`: expected `threads`, `processes`, `mpi` or `rayon`, \
         optionally followed by `:N` workers (e.g. `threads:8`)"
    )]
    UnknownBackend {
        /// The spec as given.
        spec: String,
    },
    /// The part after `:` is not a positive whole number.
    #[error("bad worker count in executor `{spec}`: expected a whole number above 0 after `:`")]
    BadWorkers {
        /// The spec as given.
        spec: String,
    },
    /// The backend needs a cargo feature this build was compiled without.
    #[error(
        "the `{backend}` executor is not built in: enable the cargo feature `{feature}` \
         (e.g. `cargo build --features {feature}`)"
    )]
    NotBuilt {
        /// The backend asked for.
        backend: Backend,
        /// The cargo feature of `concurrent-futures` that provides it.
        feature: &'static str,
    },
    /// The backend (or what the spec asks of it) is not available on this platform or in
    /// this version.
    #[error("the `{backend}` executor cannot be used here: {reason}")]
    Unsupported {
        /// The backend asked for.
        backend: Backend,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// The pool did not start.
    #[error("the executor did not start: {0}")]
    Start(#[from] BuildError),
    /// The environment variable is set but is not valid Unicode.
    #[error("the environment variable {var} is not valid Unicode")]
    EnvNotUnicode {
        /// Its name.
        var: String,
    },
}

impl FromStr for AnyExecutor {
    type Err = SpecError;

    /// Parses the spec and starts the pool; see [`AnyExecutor`] (and its section on `mpi`,
    /// which never returns on MPI worker ranks).
    fn from_str(s: &str) -> Result<Self, SpecError> {
        match s.parse::<ExecutorSpec>()?.start()? {
            Some(pool) => Ok(pool),
            // An MPI worker rank whose session is over: it has nothing else to do, and the
            // program after `parse` is rank 0's (see "`mpi`" above). `exit` runs the
            // `atexit` handler that finalizes MPI.
            None => std::process::exit(0),
        }
    }
}

impl AnyExecutor {
    /// A builder for the pool `spec` names (as [`FromStr`] takes it), to give it an
    /// initializer before starting it; see [`AnyExecutorBuilder`].
    ///
    /// # Errors
    ///
    /// [`SpecError::UnknownBackend`] or [`SpecError::BadWorkers`] for a bad spec.
    ///
    /// ```
    /// use concurrent_futures::{AnyExecutor, Executor};
    /// fn setup() {}
    /// let pool = AnyExecutor::builder("threads:2").unwrap().initializer(setup).start().unwrap();
    /// assert_eq!(pool.unwrap().max_workers(), 2);
    /// ```
    pub fn builder(spec: &str) -> Result<AnyExecutorBuilder, SpecError> {
        Ok(spec.parse::<ExecutorSpec>()?.builder())
    }

    /// The pool named by the environment variable `var` (a spec, as [`FromStr`] takes),
    /// or [`ThreadPoolExecutor::default`] when `var` is unset or blank.
    ///
    /// # Errors
    ///
    /// As [`FromStr`], plus [`SpecError::EnvNotUnicode`].
    ///
    /// ```
    /// use concurrent_futures::{AnyExecutor, Backend, Executor};
    /// let pool = AnyExecutor::from_env("MY_APP_EXECUTOR_UNSET").unwrap();
    /// assert_eq!(pool.backend(), Backend::Threads);
    /// ```
    pub fn from_env(var: &str) -> Result<AnyExecutor, SpecError> {
        match std::env::var(var) {
            Ok(spec) if !spec.trim().is_empty() => spec.parse(),
            Ok(_) | Err(std::env::VarError::NotPresent) => {
                Ok(AnyExecutor::Threads(ThreadPoolExecutor::builder().build()?))
            }
            Err(std::env::VarError::NotUnicode(_)) => Err(SpecError::EnvNotUnicode {
                var: var.to_owned(),
            }),
        }
    }

    /// [`from_env`](Self::from_env) with [`EXECUTOR_ENV_VAR`] (`CF_EXECUTOR`): run a program
    /// as `CF_EXECUTOR=processes:4 ./app`.
    ///
    /// ```
    /// use concurrent_futures::{AnyExecutor, Executor};
    /// let pool = AnyExecutor::from_default_env().unwrap();
    /// assert!(pool.max_workers() >= 1);
    /// ```
    pub fn from_default_env() -> Result<AnyExecutor, SpecError> {
        Self::from_env(EXECUTOR_ENV_VAR)
    }

    /// Which backend runs the tasks.
    ///
    /// ```
    /// use concurrent_futures::{AnyExecutor, Backend, ThreadPoolExecutor};
    /// let pool = AnyExecutor::from(ThreadPoolExecutor::new(1));
    /// assert_eq!(pool.backend(), Backend::Threads);
    /// ```
    pub fn backend(&self) -> Backend {
        match self {
            AnyExecutor::Threads(_) => Backend::Threads,
            #[cfg(target_os = "linux")]
            AnyExecutor::Processes(_) => Backend::Processes,
            #[cfg(all(feature = "mpi", target_os = "linux"))]
            AnyExecutor::Mpi(_) => Backend::Mpi,
            #[cfg(feature = "rayon")]
            AnyExecutor::Rayon(_) => Backend::Rayon,
        }
    }
}

/// Forwards a call to the pool inside, whichever it is.
macro_rules! each {
    ($self:expr, $p:ident => $call:expr) => {
        match $self {
            AnyExecutor::Threads($p) => $call,
            #[cfg(target_os = "linux")]
            AnyExecutor::Processes($p) => $call,
            #[cfg(all(feature = "mpi", target_os = "linux"))]
            AnyExecutor::Mpi($p) => $call,
            #[cfg(feature = "rayon")]
            AnyExecutor::Rayon($p) => $call,
        }
    };
}

impl Executor for AnyExecutor {
    fn max_workers(&self) -> usize {
        each!(self, p => p.max_workers())
    }

    fn try_submit<A: Payload, R: Payload, T: Task<A, R>>(
        &self,
        task: T,
        arg: A,
    ) -> Result<Future<R>, SubmitError> {
        each!(self, p => p.try_submit(task, arg))
    }

    fn submit_chunk<A: Payload, R: Payload, T: Task<A, R>>(
        &self,
        task: T,
        items: Vec<A>,
    ) -> Result<Future<Chunk<R>>, SubmitError> {
        each!(self, p => p.submit_chunk(task, items))
    }

    fn shutdown_with(&self, wait: bool, cancel_futures: bool) {
        each!(self, p => p.shutdown_with(wait, cancel_futures))
    }

    fn chunk_target(&self) -> Duration {
        each!(self, p => p.chunk_target())
    }

    /// The backend's own ordered `map`, if it has one (threads: block splitting).
    fn ordered_map<A: Payload, R: Payload, T: Task<A, R> + Clone>(
        &self,
        task: T,
        opts: MapOptions,
    ) -> Option<Box<dyn OrderedMap<A, R> + '_>> {
        each!(self, p => p.ordered_map(task, opts))
    }

    fn stats(&self) -> crate::PoolStats {
        each!(self, p => p.stats())
    }
}

impl fmt::Debug for AnyExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        each!(self, p => f.debug_tuple("AnyExecutor").field(p).finish())
    }
}

/// [`ThreadPoolExecutor::default`]: Python's default pool, `min(32, cpus + 4)` threads.
///
/// # Panics
///
/// If the OS refuses to start a thread (as [`ThreadPoolExecutor::default`]).
///
/// ```
/// use concurrent_futures::{AnyExecutor, Backend};
/// assert_eq!(AnyExecutor::default().backend(), Backend::Threads);
/// ```
impl Default for AnyExecutor {
    fn default() -> Self {
        AnyExecutor::Threads(ThreadPoolExecutor::default())
    }
}

impl From<ThreadPoolExecutor> for AnyExecutor {
    fn from(pool: ThreadPoolExecutor) -> Self {
        AnyExecutor::Threads(pool)
    }
}

#[cfg(target_os = "linux")]
impl From<crate::ProcessPoolExecutor> for AnyExecutor {
    fn from(pool: crate::ProcessPoolExecutor) -> Self {
        AnyExecutor::Processes(pool)
    }
}

#[cfg(all(feature = "mpi", target_os = "linux"))]
impl From<crate::MpiPoolExecutor> for AnyExecutor {
    fn from(pool: crate::MpiPoolExecutor) -> Self {
        AnyExecutor::Mpi(pool)
    }
}

#[cfg(feature = "rayon")]
impl From<rayon::ThreadPool> for AnyExecutor {
    fn from(pool: rayon::ThreadPool) -> Self {
        AnyExecutor::Rayon(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_on_threads_takes_the_thread_pool_path() {
        let threads: AnyExecutor = "threads:1".parse().unwrap();
        let own = |e: &AnyExecutor| e.ordered_map(u8::wrapping_neg, MapOptions::new()).is_some();
        assert!(own(&threads));
        #[cfg(feature = "rayon")]
        {
            let rayon: AnyExecutor = "rayon:1".parse().unwrap();
            assert!(!own(&rayon));
        }
    }

    #[test]
    fn specs_parse_with_blanks_and_any_case() {
        let spec: ExecutorSpec = " Threads : 8 ".parse().unwrap();
        assert_eq!(spec, ExecutorSpec::new(Backend::Threads, Some(8)));
        for b in Backend::ALL {
            let spec: ExecutorSpec = b.name().parse().unwrap();
            assert_eq!(spec, ExecutorSpec::new(b, None));
            assert_eq!(spec.to_string().parse::<ExecutorSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn bad_specs_are_refused_with_the_spec_in_the_message() {
        for bad in [
            "",
            "thread",
            "threads:",
            "threads:0",
            "threads:-1",
            "threads:2:3",
        ] {
            let err = bad.parse::<ExecutorSpec>().unwrap_err();
            assert!(
                matches!(
                    err,
                    SpecError::UnknownBackend { .. } | SpecError::BadWorkers { .. }
                ),
                "{bad:?}: {err:?}"
            );
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn a_backend_not_built_in_names_its_feature() {
        for (backend, feature, built) in [
            (Backend::Rayon, "rayon", cfg!(feature = "rayon")),
            (Backend::Mpi, "mpi", cfg!(feature = "mpi")),
        ] {
            if built {
                continue;
            }
            let err = format!("{backend}:2").parse::<AnyExecutor>().unwrap_err();
            assert!(
                matches!(err, SpecError::NotBuilt { backend: b, feature: f } if b == backend && f == feature),
                "{err:?}"
            );
            assert!(
                err.to_string().contains(&format!("--features {feature}")),
                "{err}"
            );
        }
    }
}
