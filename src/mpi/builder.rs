//! [`MpiPoolBuilder`]: the options of an MPI pool, and its start (a static job's session,
//! dynamic mode's spawned workers, or the singleton fallback on local processes).

use std::time::Duration;

use super::client::{self, Client, Config, Init};
use super::comm::{self, Comm};
use super::{DEFAULT_BACKOFF_CAP, Inner, MpiPoolExecutor, spawned, worker};
use crate::error::{BuildError, StartFailure, SubmitError};
use crate::process::ProcessPoolExecutor;
use crate::remote::InitCall;
use crate::task::Payload;

/// Builds an [`MpiPoolExecutor`]; every rank must build it with the same settings.
///
/// ```no_run
/// use concurrent_futures::MpiPoolExecutor;
/// use std::time::Duration;
/// let Some(pool) = MpiPoolExecutor::builder()
///     .idle_backoff_cap(Duration::from_millis(5))
///     .unresponsive_after(Duration::from_secs(600))
///     .start()
///     .unwrap()
/// else {
///     return;
/// };
/// # drop(pool);
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct MpiPoolBuilder {
    config: Config,
    local_workers: Option<usize>,
    /// Dynamic mode: this many workers spawned by the pool.
    spawn: Option<usize>,
    spawn_info: Vec<(String, String)>,
    /// The initializer as the workers get it (the ranks, or the local fallback's
    /// processes), or why it cannot be sent.
    initializer: Option<Result<InitCall, SubmitError>>,
    record_timeline: bool,
}

impl Default for MpiPoolBuilder {
    fn default() -> Self {
        MpiPoolBuilder {
            config: Config {
                backoff_cap: DEFAULT_BACKOFF_CAP,
                window: 64,
                unresponsive_after: Duration::from_secs(60),
                start_timeout: Duration::from_secs(300),
                spawn: None,
                initializer: None,
            },
            local_workers: None,
            spawn: None,
            spawn_info: Vec::new(),
            initializer: None,
            record_timeline: false,
        }
    }
}

impl MpiPoolBuilder {
    /// The longest an idle rank sleeps between two polls for messages (default 1 ms). Longer
    /// saves CPU on idle ranks; shorter answers an idle rank's first task sooner. Rank 0's
    /// value is sent to every rank when the pool starts.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = concurrent_futures::MpiPoolExecutor::builder().idle_backoff_cap(Duration::from_micros(200));
    /// # drop(b);
    /// ```
    pub fn idle_backoff_cap(mut self, cap: Duration) -> Self {
        self.config.backoff_cap = cap.max(Duration::from_micros(1));
        self
    }

    /// The most tasks in flight on one worker rank (default 64; at least 1). More hides the
    /// latency of the network behind cheap tasks; fewer keeps more of a queue cancellable.
    ///
    /// ```
    /// let b = concurrent_futures::MpiPoolExecutor::builder().window(8);
    /// # drop(b);
    /// ```
    pub fn window(mut self, tasks: usize) -> Self {
        self.config.window = tasks.max(1);
        self
    }

    /// How long a worker rank holding tasks may stay silent (not even answering a ping)
    /// before it is taken for lost (default 60 s). See "Failures" on [`MpiPoolExecutor`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = concurrent_futures::MpiPoolExecutor::builder().unresponsive_after(Duration::from_secs(5));
    /// # drop(b);
    /// ```
    pub fn unresponsive_after(mut self, limit: Duration) -> Self {
        self.config.unresponsive_after = limit;
        self
    }

    /// How long a rank waits for every other rank to reach `start` (default 5 minutes): the
    /// first `start` of a process waits in `MPI_Init` for all ranks, and rank 0 then waits
    /// for each rank's answer. Past it, `start` fails instead of waiting forever.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = concurrent_futures::MpiPoolExecutor::builder().start_timeout(Duration::from_secs(10));
    /// # drop(b);
    /// ```
    pub fn start_timeout(mut self, limit: Duration) -> Self {
        self.config.start_timeout = limit;
        self
    }

    /// Worker processes to use when the program was started alone, without `mpirun`
    /// (default: one per CPU); 0 makes `start` fail there instead.
    ///
    /// ```
    /// let b = concurrent_futures::MpiPoolExecutor::builder().local_workers(2);
    /// # drop(b);
    /// ```
    pub fn local_workers(mut self, n: usize) -> Self {
        self.local_workers = Some(n);
        self
    }

    /// A function every worker runs once when it joins the pool, before any task (mpi4py's
    /// and Python's `initializer=`): on every worker rank of a static job, on every spawned
    /// worker in dynamic mode (kept workers run the initializer of each new pool that takes
    /// them), and on every local worker process of the fallback. `start` returns once every
    /// worker ran it (so it counts against [`start_timeout`](Self::start_timeout)). Rank
    /// 0's initializer is the one that runs. If it panics on any worker, the pool is broken
    /// (as in mpi4py and on the process pool): `start` still returns it, every submission
    /// fails with [`SubmitError::Broken`] ("a worker's initializer failed: ..."), and the
    /// workers, unharmed, serve the next pool.
    ///
    /// ```no_run
    /// use concurrent_futures::{Executor, MpiPoolExecutor, SubmitError};
    /// fn bad() { panic!("no config") }
    /// fn one(_: ()) -> u8 { 1 }
    /// let pool = MpiPoolExecutor::builder().max_workers(1).initializer(bad).start().unwrap().unwrap();
    /// assert!(matches!(pool.try_submit(one, ()), Err(SubmitError::Broken(_))));
    /// ```
    pub fn initializer(mut self, init: fn()) -> Self {
        self.initializer = Some(InitCall::plain(init));
        self
    }

    /// [`initializer`](Self::initializer) with an argument, sent from rank 0 to every
    /// worker (Python's `initializer=init, initargs=(arg,)`), and to every local worker
    /// process when the program was started alone (as
    /// [`ProcessPoolBuilder::initializer_with`](crate::ProcessPoolBuilder::initializer_with)
    /// does). An argument that cannot be encoded, or that holds shared state
    /// ([`SubmitError::SharedState`]), makes `start` fail with
    /// [`BuildError::Initializer`].
    ///
    /// ```no_run
    /// use concurrent_futures::MpiPoolExecutor;
    /// fn connect(url: String) { assert!(url.starts_with("db://")); }
    /// let pool = MpiPoolExecutor::builder()
    ///     .max_workers(2)
    ///     .initializer_with(connect, "db://primary".to_string())
    ///     .start();
    /// # drop(pool);
    /// ```
    pub fn initializer_with<A: Payload>(mut self, init: fn(A), arg: A) -> Self {
        self.initializer = Some(InitCall::with(init, &arg));
        self
    }

    /// An initializer already named and encoded (`AnyExecutor`'s builder).
    pub(crate) fn encoded_initializer(mut self, init: Result<InitCall, SubmitError>) -> Self {
        self.initializer = Some(init);
        self
    }

    /// Dynamic mode, as mpi4py's `MPIPoolExecutor(max_workers=n)`: the pool spawns `n`
    /// worker processes of its own (`MPI_Comm_spawn`, from the calling process alone), so it
    /// works from a program started without `mpirun`, or by `mpirun -n 1`, like any pool.
    /// [`start`](Self::start) is then not collective: it returns the pool on the process
    /// that calls it, on any rank. The workers run this executable, but never its `main`:
    /// they serve the pool from before `main`. When it shuts down they wait, idle (a look
    /// every 10 ms), for the next dynamic pool of this process with the same size and hints,
    /// which takes them instead of spawning (a spawn costs a few hundred ms, and some MPI
    /// libraries hang after many); at program end they are told to quit and exit. Where they
    /// run is the MPI library's choice, steered by [`spawn_info`](Self::spawn_info).
    /// Several dynamic pools may be alive at once, each with workers of its own (a start
    /// does not wait for the other pools, which keep running while it spawns).
    ///
    /// ```no_run
    /// use concurrent_futures::{Executor, MpiPoolExecutor};
    /// fn square(x: u64) -> u64 { x * x }
    /// // `cargo run` alone is enough: the pool starts its 4 workers itself
    /// let pool = MpiPoolExecutor::builder().max_workers(4).start().unwrap().unwrap();
    /// assert_eq!(pool.submit(square, 7).result(), Ok(49));
    /// ```
    pub fn max_workers(mut self, n: usize) -> Self {
        self.spawn = Some(n);
        self
    }

    /// An `MPI_Info` hint for spawning the workers in dynamic mode (see
    /// [`max_workers`](Self::max_workers)): `host`, `hostfile`, `wdir`, `map_by`, ... as your
    /// MPI library documents them for `MPI_Comm_spawn`. With Open MPI, which counts one
    /// slot per core and refuses to start more processes than slots, the pool asks for
    /// `map_by = slot:OVERSUBSCRIBE` unless you give a `map_by` yourself (as a process pool
    /// starts as many workers as asked); give `spawn_info("map_by", "slot")` to keep to
    /// the slots.
    ///
    /// ```
    /// let b = concurrent_futures::MpiPoolExecutor::builder()
    ///     .max_workers(8)
    ///     .spawn_info("hostfile", "nodes.txt");
    /// # drop(b);
    /// ```
    pub fn spawn_info(mut self, key: &str, value: &str) -> Self {
        self.spawn_info.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts a session on every rank (collective: every rank must call it). On rank 0,
    /// returns the pool; on the other ranks, serves tasks until rank 0 shuts the pool down,
    /// then returns `Ok(None)`. In dynamic mode ([`max_workers`](Self::max_workers)), starts
    /// the pool's own workers instead, and returns the pool on the calling process.
    ///
    /// # Errors
    ///
    /// [`BuildError::Mpi`] if MPI cannot be initialized, a rank runs another executable, a
    /// rank does not reach `start` in time, the workers cannot be spawned, or (with
    /// `local_workers(0)`) the program was not started by `mpirun`;
    /// [`BuildError::ZeroWorkers`] for `max_workers(0)`.
    ///
    /// ```no_run
    /// let Some(pool) = concurrent_futures::MpiPoolExecutor::builder().start().unwrap() else {
    ///     return; // a worker rank, after the session
    /// };
    /// # drop(pool);
    /// ```
    pub fn start(self) -> Result<Option<MpiPoolExecutor>, BuildError> {
        let record = self.record_timeline;
        let pool = self.start_session()?;
        if let Some(pool) = pool.as_ref().filter(|_| record) {
            pool.start_recording();
        }
        Ok(pool)
    }

    /// Records a [`Timeline`](crate::Timeline) from the moment the pool has started (rank
    /// 0's setting counts; default: off). See [`MpiPoolExecutor::start_recording`].
    ///
    /// ```
    /// let b = concurrent_futures::MpiPoolExecutor::builder().record_timeline(true);
    /// # drop(b);
    /// ```
    pub fn record_timeline(mut self, on: bool) -> Self {
        self.record_timeline = on;
        self
    }

    fn start_session(mut self) -> Result<Option<MpiPoolExecutor>, BuildError> {
        crate::unwind::install_hook();
        if self.spawn == Some(0) {
            return Err(BuildError::ZeroWorkers);
        }
        let initializer = self
            .initializer
            .take()
            .transpose()
            .map_err(BuildError::Initializer)?;
        self.config.initializer = initializer
            .clone()
            .map(|InitCall { target, arg }| Init { target, arg });
        let env = comm::env(self.config.start_timeout)
            .map_err(|e| BuildError::Mpi(StartFailure::new(e)))?;
        if let Some(n) = self.spawn {
            if !env.serialized && client::live_sessions() > 0 {
                // Only the MPI thread may call MPI, and it serves the live session.
                return Err(BuildError::Mpi(StartFailure::message(
                    "the MPI library grants only MPI_THREAD_FUNNELED, so this process runs \
                     one MPI pool at a time; shut the other one down first",
                )));
            }
            let key = (n, spawn_hints(self.spawn_info));
            let mut config = self.config;
            config.spawn = Some(key.clone());
            let limit = config.start_timeout;
            let comm = match env.call_timeout(move || spawned::take_or_spawn(&key), limit) {
                Some(comm) => comm.map_err(|e| BuildError::Mpi(StartFailure::new(e)))?,
                None => {
                    // The MPI thread is stuck in the library: MPI cannot be finalized.
                    comm::mark_lost();
                    return Err(BuildError::Mpi(StartFailure::message(format!(
                        "MPI_Comm_spawn did not return within {limit:?} (the start timeout); \
                         the process will end with status 1"
                    ))));
                }
            };
            let workers = 0..i32::try_from(n).unwrap_or(i32::MAX);
            let client = Client::start(env, config, comm, workers)
                .map_err(|e| BuildError::Mpi(StartFailure::new(e)))?;
            return Ok(Some(MpiPoolExecutor::new(Inner::Ranks(client))));
        }
        if env.size == 1 {
            let n = self.local_workers.unwrap_or_else(crate::available_cpus);
            if n == 0 {
                return Err(BuildError::Mpi(StartFailure::message(
                    "this program was started alone, not by mpirun (MPI_COMM_WORLD has one \
                     rank, so there are no workers); start it with `mpirun -n N` (N ≥ 2)",
                )));
            }
            let mut builder = ProcessPoolExecutor::builder().max_workers(n);
            if let Some(init) = initializer {
                builder = builder.encoded_initializer(Ok(init));
            }
            let pool = builder.build()?;
            return Ok(Some(MpiPoolExecutor::new(Inner::Local(pool))));
        }
        if env.rank != 0 {
            let _session = comm::Session::begin();
            worker::serve(env, Comm::world(), DEFAULT_BACKOFF_CAP);
            return Ok(None);
        }
        let client = Client::start(env, self.config, Comm::world(), 1..env.size)
            .map_err(|e| BuildError::Mpi(StartFailure::new(e)))?;
        Ok(Some(MpiPoolExecutor::new(Inner::Ranks(client))))
    }
}

/// The spawn hints given, plus Open MPI's leave to start more workers than cores.
fn spawn_hints(mut info: Vec<(String, String)>) -> Vec<(String, String)> {
    let open_mpi = ::mpi::environment::library_version().is_ok_and(|v| v.contains("Open MPI"));
    if open_mpi && !info.iter().any(|(k, _)| k == "map_by" || k == "map-by") {
        info.push(("map_by".into(), "slot:OVERSUBSCRIBE".into()));
    }
    info
}
