//! [`AnyExecutor`]: a backend chosen at run time, from a string such as `"processes:4"`.
//!
//! [`Executor`] has generic methods, so `Box<dyn Executor>` is not possible; this enum over
//! the backends is the run-time choice instead, and implements [`Executor`] itself.
//!
//! The spec a pool is chosen by ([`ExecutorSpec`], [`Backend`], [`SpecError`]) is in
//! `spec.rs`; the builder that gives it an initializer ([`AnyExecutorBuilder`]), in
//! `builder.rs`.

mod builder;
mod spec;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use builder::AnyExecutorBuilder;
pub use spec::{Backend, ExecutorSpec, SpecError};

use crate::chunk::Chunk;
use crate::error::SubmitError;
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
