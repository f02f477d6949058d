//! [`AnyExecutorBuilder`]: the pool an [`ExecutorSpec`] names, with an initializer given
//! once for whichever backend the spec picks.

use std::fmt;

use super::{AnyExecutor, Backend, ExecutorSpec, SpecError};
use crate::task::Payload;
use crate::thread::ThreadPoolExecutor;

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
/// fail with [`SubmitError::Broken`](crate::SubmitError::Broken).
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
    remote: Option<Result<crate::remote::InitCall, crate::SubmitError>>,
}

impl AnyExecutorBuilder {
    pub(super) fn new(spec: ExecutorSpec) -> Self {
        AnyExecutorBuilder {
            spec,
            initializer: None,
        }
    }

    #[cfg(target_os = "linux")]
    fn remote(&self) -> bool {
        matches!(self.spec.backend(), Backend::Processes | Backend::Mpi)
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
    /// [`BuildError::Initializer`](crate::BuildError::Initializer) if the initializer cannot be sent to worker processes;
    /// [`SpecError::Unsupported`] for an initializer on `rayon`.
    ///
    /// ```
    /// use concurrent_futures::{AnyExecutor, Backend};
    /// let pool = AnyExecutor::builder("threads").unwrap().start().unwrap().unwrap();
    /// assert_eq!(pool.backend(), Backend::Threads);
    /// ```
    pub fn start(self) -> Result<Option<AnyExecutor>, SpecError> {
        let spec = self.spec;
        if let Some(why) = spec.backend().unavailable() {
            return Err(why);
        }
        let n = spec.workers();
        match spec.backend() {
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
                    .map_err(|e| crate::BuildError::Spawn(std::io::Error::other(e)))?;
                Ok(Some(AnyExecutor::Rayon(pool)))
            }
            #[allow(unreachable_patterns)] // backends this build lacks: `unavailable` said so
            _ => unreachable!("backend {} is available but not built", spec.backend()),
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
