//! [`ExecutorSpec`]: a backend spec (`"threads:8"`) parsed and not yet started; [`Backend`],
//! the backend it names; [`SpecError`], why a spec was refused or its pool did not start.

use std::fmt;
use std::str::FromStr;

use super::{AnyExecutor, AnyExecutorBuilder};
use crate::error::BuildError;

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
    /// `threads`: [`ThreadPoolExecutor`](crate::ThreadPoolExecutor).
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
        AnyExecutorBuilder::new(*self)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
