//! The client rank (rank 0): pending work, each worker rank's window, and the dispatcher,
//! which owns all MPI traffic of this rank and runs on its MPI thread. The queue, the
//! windows, batching, stealing and what a lost rank costs are the dispatch core's
//! (`remote::scheduler`); `transport` is its transport over MPI messages, `dispatcher` the
//! session's rounds, `driver` who runs them.
//!
//! ```text
//! submit ──► pending queue ──dispatch──► Calls message ──► worker rank
//!  (any thread;   (cancellable here)      (claimed: RUNNING; a window per worker)
//!   wakes the                                                      │
//!   dispatcher)                                                    ▼
//! future ◄── complete (callbacks run ◄── dispatcher: probe ◄── Done message
//!            on the MPI thread)           (backoff when idle)
//! an idle worker and another with unstarted calls ──Revoke──► the busy worker's helper
//!                                                   ◄─Revoked (the calls, with payloads)
//! ```
//!
//! The shared tables a task names by id (`Shared`) go to a rank once, in a `Table` message
//! before the first `Calls` that needs them; the dispatcher remembers which rank holds
//! which, and when the parent drops a table's last handle (`Releaser`, from any thread,
//! which only queues its id and wakes the dispatcher), tells those ranks to let it go.

mod dispatcher;
mod driver;
mod transport;

use dispatcher::Dispatcher;
pub(crate) use driver::Driver;

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use std::time::{Duration, Instant};

use super::comm::{self, Backoff, Comm, Env, MAX_MESSAGE, Port};
use super::error::MpiError;
use super::wire::{self, Reader, kind};
use crate::error::{ExitStatus, SubmitError, TaskError};
use crate::remote::IdMap;
use crate::remote::scheduler::{Phase, Queue, TaskKind, Work, Worker, Workers};
use crate::remote::{Completion, FnRef};
use crate::shared::TableRef;
use crate::sync::{Condvar, Mutex, lock};
use crate::trace;

/// Settings of a session, fixed when it starts.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Longest sleep of an idle loop between two polls, on every rank.
    pub(crate) backoff_cap: Duration,
    /// Most tasks in flight on one worker rank.
    pub(crate) window: usize,
    /// A worker rank that holds tasks and has not answered for this long is lost.
    pub(crate) unresponsive_after: Duration,
    /// How long rank 0 waits for every rank to join the session.
    pub(crate) start_timeout: Duration,
    /// Dynamic mode: the workers were spawned with this key, and are kept for the next
    /// session with the same one.
    pub(crate) spawn: Option<super::spawned::SpawnKey>,
    /// What every worker runs when it joins the session, before any task.
    pub(crate) initializer: Option<Init>,
}

/// A pool's initializer, as `Start` carries it to every worker: a `fn(A)` named as a task
/// (`naming::target_of`, whose outcome is a `Result<(), TaskError>`) and its encoded
/// argument (`()` for a plain `fn()`).
#[derive(Debug, Clone)]
pub(crate) struct Init {
    pub(crate) target: FnRef,
    pub(crate) arg: Vec<u8>,
}

/// Client sessions alive in this process (started, and not over).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// How many client sessions of this process are alive.
pub(crate) fn live_sessions() -> usize {
    LIVE.load(Ordering::Acquire)
}

/// A worker rank that holds tasks and has been silent this long is asked for a sign of life.
const PING_AFTER: Duration = Duration::from_secs(1);
/// Room kept in a message for its header.
const HEADER_ROOM: usize = 64;

struct State {
    /// Pending tasks, the pool's phase, and the batch slots the dispatcher last published
    /// (the dispatch core's): a task still pending after `submit` means that no worker has
    /// room, as on the process pool.
    queue: Queue<Vec<u8>>,
    /// Bumped by every submission and shutdown, so the dispatcher knows whether to look.
    events: u64,
    /// The dispatcher sleeps on `Client::wake` and wants a notification.
    sleeping: bool,
    /// The dispatcher finished the session.
    over: bool,
}

/// The handle the executor holds; shared with the dispatcher.
pub(crate) struct Client {
    state: Mutex<State>,
    /// The dispatcher sleeps here; submissions and shutdown wake it.
    wake: Condvar,
    /// `shutdown(wait)` waits here for the end of the session.
    ended: Condvar,
    workers: Vec<RankInfo>,
    /// The statistics: counted by `submit`, `shutdown` and the dispatcher (`stats.rs`), on
    /// lines of their own (not the state lock's, which every submission takes).
    pub(super) counters: CachePadded<crate::stats::RemoteCounters>,
    /// Tasks the workers hold, as the dispatcher last counted them (stored when it changes).
    pub(super) inflight: CachePadded<AtomicU64>,
    /// The timeline, when recording: one row per worker rank, in rank order.
    pub(crate) timeline: crate::remote::recording::Recording,
    /// Shared tables whose last handle was dropped, for the dispatcher to release on the
    /// ranks that hold them. (A lock of its own: a table may be dropped under `state`.)
    released: Mutex<Vec<u64>>,
}

/// The last handle of a shared table is gone: its id is queued, and the dispatcher tells
/// the ranks that hold it. The dropping thread never waits on MPI (nor on `state`, which it
/// may hold already: a pending task dropped under it).
impl crate::shared::Releaser for Client {
    fn release(&self, id: u64) {
        lock(&self.released).push(id);
        if let Ok(mut s) = self.state.try_lock() {
            s.events += 1;
            if std::mem::take(&mut s.sleeping) {
                self.wake.notify_one();
            }
        }
    }
}

/// A worker rank as it introduced itself.
#[derive(Debug, Clone)]
pub(crate) struct RankInfo {
    pub(crate) rank: i32,
    pub(crate) pid: u32,
    pub(crate) host: String,
    /// It answers (revokes, pings) while it runs a task.
    pub(crate) helper: bool,
}

impl Client {
    /// Starts a session with the workers at ranks `workers` of `comm`'s other side (the
    /// world's ranks 1.., or the spawned processes): every one must be waiting in
    /// `MpiPoolExecutor::start` (or be a spawned worker). Checks that they run the same
    /// executable and ran the initializer, then starts the session's thread, which drives
    /// the dispatcher, and registers the pool for the wait of program end. A failed
    /// initializer leaves a broken pool, as on the process pool: the session ends at once
    /// (the workers stay usable), and every submission says why.
    pub(crate) fn start(
        env: &'static Env,
        config: Config,
        comm: Comm,
        workers: Range<i32>,
    ) -> Result<Arc<Driver>, MpiError> {
        let cfg = config.clone();
        let (workers, port, init_failed) = env.call(move || handshake(&cfg, comm, workers))?;
        // (On an error, `handshake` released the ranks it could, or marked the job lost.)
        let phase = match init_failed {
            Some(e) => Phase::Broken(format!("a worker's initializer failed: {e}").into()),
            None => Phase::Running,
        };
        let client = Arc::new(Client {
            state: Mutex::new(State {
                queue: Queue::new(phase),
                events: 0,
                sleeping: false,
                over: false,
            }),
            wake: Condvar::new(),
            ended: Condvar::new(),
            workers: workers.clone(),
            counters: CachePadded::new(crate::stats::RemoteCounters::with_rows(workers.len())),
            inflight: CachePadded::default(),
            timeline: crate::remote::recording::Recording::new(workers.len()),
            released: Mutex::new(Vec::new()),
        });
        (workers.iter()).for_each(|w| trace::worker_started(trace::Pool::Mpi, w.rank as u64));
        let mut dispatcher =
            Dispatcher::new(client.clone(), port, workers, config.clone(), &env.host);
        dispatcher.session = Some(comm::Session::begin());
        let driver = Arc::new(Driver {
            client,
            dispatcher: comm::Serial::new(Some(dispatcher)),
            runner: std::sync::OnceLock::new(),
            leaders: AtomicUsize::new(0),
            serialized: env.serialized,
            cap: config.backoff_cap,
        });
        LIVE.fetch_add(1, Ordering::AcqRel);
        // With SERIALIZED, a thread of its own; else (or if no thread can be started) the
        // MPI thread, which then serves this session alone until it ends.
        let d = driver.clone();
        let own = env
            .serialized
            .then(|| {
                std::thread::Builder::new()
                    .name("cf-mpi-session".into())
                    .spawn(move || d.run())
                    .ok()
            })
            .flatten();
        let runner = match own {
            Some(handle) => handle.thread().id(),
            None => {
                let d = driver.clone();
                env.run(move || d.run());
                env.thread
            }
        };
        crate::exit::watch(&driver, vec![env.thread, runner]);
        Ok(driver)
    }

    pub(crate) fn workers(&self) -> &[RankInfo] {
        &self.workers
    }

    /// Queues a task, which names the shared tables `tables` by id.
    pub(crate) fn submit(
        &self,
        target: FnRef,
        payload: Vec<u8>,
        tables: Vec<TableRef>,
        completion: Box<dyn Completion>,
        kind: TaskKind,
    ) -> Result<(), SubmitError> {
        if let Some(t) = tables
            .iter()
            .find(|t| t.len() > (MAX_MESSAGE - HEADER_ROOM) as u64)
        {
            return Err(SubmitError::Codec(
                format!(
                    "a shared table of {} bytes does not fit in one MPI message (at most {} \
                     bytes)",
                    t.len(),
                    MAX_MESSAGE - HEADER_ROOM
                )
                .into(),
            ));
        }
        if payload.len() > MAX_MESSAGE - HEADER_ROOM {
            return Err(SubmitError::Codec(
                format!(
                    "an argument of {} bytes does not fit in one MPI message (at most {} bytes)",
                    payload.len(),
                    MAX_MESSAGE - HEADER_ROOM
                )
                .into(),
            ));
        }
        let work = Work::new(target, payload, completion, tables, kind, None);
        let mut s = lock(&self.state);
        s.queue.submit(work, &self.counters)?;
        s.events += 1;
        if std::mem::take(&mut s.sleeping) {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Refuses new work; with `cancel`, cancels what is pending.
    pub(crate) fn shutdown(&self, cancel: bool) {
        let cancelled = {
            let mut s = lock(&self.state);
            s.events += 1;
            if std::mem::take(&mut s.sleeping) {
                self.wake.notify_one();
            }
            // Given-back tasks are RUNNING already: they stay and run.
            s.queue.shut_down(false, cancel, &self.counters).0
        };
        for w in cancelled {
            w.completion.cancel();
        }
    }

    /// The statistics now: what is pending here, what the workers hold (as of the
    /// dispatcher's last round), and the counters.
    pub(crate) fn stats(&self) -> crate::PoolStats {
        let running = self.inflight.load(Ordering::Relaxed);
        let queued = lock(&self.state).queue.pending.len() as u64;
        self.counters.snapshot(queued, running)
    }
}

/// Rank 0's side of the start of a session: `Start` to every worker, a `Hello` from each
/// (sent once it ran the initializer). The ranks, the session's port, and the first
/// initializer's failure. Each MPI call is made under the MPI lock, taken call by call: the
/// sessions of other pools go on meanwhile.
fn handshake(
    config: &Config,
    comm: Comm,
    ranks: Range<i32>,
) -> Result<(Vec<RankInfo>, Port, Option<TaskError>), MpiError> {
    let mut port = Port::new(comm);
    let fingerprint = crate::remote::naming::code_fingerprint();
    for rank in ranks.clone() {
        let buf = wire::start_message(
            fingerprint,
            config.backoff_cap.as_micros() as u64,
            config.initializer.as_ref().map(|i| (i.target, &i.arg[..])),
        );
        let _mpi = comm::serial();
        port.send(rank, wire::TO_WORKER, buf);
    }
    let mut hellos: Vec<Option<Hello>> = vec![None; ranks.len()];
    let deadline = Instant::now() + config.start_timeout;
    let mut backoff = Backoff::new(config.backoff_cap);
    while hellos.iter().any(Option::is_none) {
        let probed = {
            let _mpi = comm::serial();
            port.probe(wire::TO_CLIENT)
        };
        match probed {
            Some((src, buf)) => {
                let hello = parse_hello(src, &buf).inspect_err(|_| comm::mark_lost())?;
                let slot = usize::try_from(src - ranks.start)
                    .ok()
                    .and_then(|i| hellos.get_mut(i))
                    .ok_or(MpiError::Protocol {
                        rank: src,
                        what: "said Hello from outside the job",
                    })?;
                *slot = Some(hello);
                backoff.reset();
            }
            None if Instant::now() > deadline => {
                let missing: Vec<String> = hellos
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.is_none())
                    .map(|(i, _)| (i as i32 + ranks.start).to_string())
                    .collect();
                // Those ranks may still join later and wait for calls that never come:
                // the job cannot be finalized cleanly any more.
                comm::mark_lost();
                return Err(MpiError::Session(format!(
                    "rank(s) {} did not call MpiPoolExecutor::start within {:?} (every rank \
                     must run the same program and reach start)",
                    missing.join(", "),
                    config.start_timeout
                )));
            }
            None => backoff.wait(),
        }
    }
    let hellos: Vec<Hello> = hellos.into_iter().flatten().collect();
    let mismatched: Vec<&RankInfo> = hellos.iter().filter(|h| !h.ok).map(|h| &h.info).collect();
    if !mismatched.is_empty() {
        // The ranks that matched are serving: release them.
        let _mpi = comm::serial();
        for h in &hellos {
            if h.ok {
                port.send(h.info.rank, wire::TO_WORKER, wire::bare(kind::EXIT));
            }
        }
        port.flush();
        let names: Vec<String> = mismatched
            .iter()
            .map(|i| format!("rank {} (pid {} on {})", i.rank, i.pid, i.host))
            .collect();
        return Err(MpiError::Session(format!(
            "{} run(s) a different executable than rank 0 (code fingerprints differ); every \
             rank must run the same build",
            names.join(", ")
        )));
    }
    let failed = hellos
        .iter()
        .find_map(|h| h.init.clone().and_then(Result::err));
    Ok((hellos.into_iter().map(|h| h.info).collect(), port, failed))
}

/// A worker's `Hello`.
#[derive(Clone)]
struct Hello {
    /// It runs the same build.
    ok: bool,
    info: RankInfo,
    /// How the initializer went, if there is one (and the build matched).
    init: Option<Result<(), TaskError>>,
}

fn parse_hello(src: i32, buf: &[u8]) -> Result<Hello, MpiError> {
    let (mut r, k) = Reader::new(buf)?;
    if k != kind::HELLO {
        return Err(MpiError::UnexpectedKind {
            rank: src,
            kind: k,
            when: "before its Hello",
        });
    }
    let (ok, pid, helper) = r.hello()?;
    let (host, outcome) = if ok {
        r.hello_rest()?
    } else {
        (r.rest(), None)
    };
    let init = outcome.map(crate::remote::codec::decode_outcome::<()>);
    Ok(Hello {
        ok,
        info: RankInfo {
            rank: src,
            pid,
            host: String::from_utf8_lossy(host).into_owned(),
            helper,
        },
        init,
    })
}

impl Client {
    /// Sleeps up to `nap`, or until a submission or shutdown after event `seen`.
    fn sleep(&self, nap: Duration, seen: u64) {
        let mut s = lock(&self.state);
        if s.events != seen {
            return;
        }
        s.sleeping = true;
        let (mut s, _) = self
            .wake
            .wait_timeout(s, nap)
            .unwrap_or_else(|p| p.into_inner());
        s.sleeping = false;
    }
}
