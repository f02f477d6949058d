//! The parent side of the process pool: pending work, the workers' windows, the manager
//! thread that reads results and watches the workers, and worker start-up.
//!
//! ```text
//! submit ──► pending queue ──dispatch──► worker's socket ──► worker process
//!   (cancellable here)        (claimed: RUNNING; at most `window::MAX_BATCHES` per worker)
//! future ◄── decode + complete ◄── reader: epoll(workers' sockets, their pidfds, a wake-up)
//!                                   └─ the worker died → complete what its result log
//!                                      holds, fail the call it died in, queue again the
//!                                      calls it never started, start a replacement
//! ```
//!
//! The queue, the windows, batching, stealing, budgets and what a death costs are the
//! dispatch core's (`remote::scheduler`); this pool is its transport over socket pairs
//! (`transport`), and dispatches under its state lock on whichever thread makes room or
//! work: the submitting thread (if a worker's window has room) or the thread that reads
//! results (when they free a window).
//!
//! This file holds the state and the manager thread; `reader` is who reads the sockets,
//! `inbox` what a worker's messages and death do, `transport` a worker process as the
//! parent reaches it and the core's sends, `start` how workers are started, `watchdog`
//! the time limits.

mod callbacks;
mod inbox;
mod reader;
mod record;
mod start;
mod transport;
mod watchdog;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::wire::{self, MAX_FRAME, Payload, ToWorkerRef};
use crate::error::{SubmitError, TaskError};
use crate::os::{Poller, Socket};
use crate::remote::bootstrap::StartError;
use crate::remote::recording::Recording;
use crate::remote::scheduler::{Phase, Queue, TaskKind, Work, Workers};
use crate::remote::{Completion, FnRef, IdMap, codec};
use crate::shared::TableRef;
use crate::stats::RemoteCounters;
use crate::sync::{self, Condvar, Mutex};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use transport::{Sockets, WorkerProcess};

/// How long a thread that wants to read results yields (instead of sleeping) while the
/// manager thread wakes up and lets go of the reader.
const READER_SPIN: Duration = Duration::from_micros(200);
/// How long the manager thread leaves results in flight to a user thread that may come to
/// read them itself, before it reads them (for callbacks and `as_completed`).
const READ_GRACE: Duration = Duration::from_micros(100);
/// How long after the last submission the manager thread keeps looking every `READ_GRACE`
/// instead of sleeping until woken: while tasks keep coming, a submission wakes no thread.
const LINGER: Duration = Duration::from_millis(1);
/// How long `terminate` lets a worker handle SIGTERM before it is killed with SIGKILL. A
/// second is enough for a handler to flush a file or remove a temporary one, and short
/// enough that `terminate` still means "now": a task that ignores SIGTERM, or handles it
/// and runs on, holds `terminate` this long and no longer.
const TERMINATE_GRACE: Duration = Duration::from_secs(1);
/// How long a worker asked to stop a task (`cancel_running`) has to answer before the
/// watchdog kills it: its helper thread answers in microseconds unless the process cannot
/// run (stopped by SIGSTOP, traced, starved).
const CANCEL_GRACE: Duration = Duration::from_secs(1);
/// A replacement worker that cannot be started because this process (or the system) is
/// short of descriptors or memory is tried again after `RETRY_MIN`, then after twice as
/// long each time, up to `RETRY_MAX`, for as long as the pool runs: the shortage is
/// transient (another part of the program holds descriptors for a while, or the limit is
/// raised again), so it does not break the pool. Meanwhile the queued tasks wait for the
/// workers that are left (or, with none left, for the replacement). Any other failure to
/// start a replacement breaks the pool.
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Settings fixed when the pool is built.
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) initializer: Option<crate::process::wire::Init>,
    pub(crate) max_tasks_per_child: Option<usize>,
    /// A task running longer than this has its worker killed and fails with
    /// `TaskError::TimeLimit`.
    pub(crate) task_timeout: Option<Duration>,
}

struct State {
    /// Pending tasks and the pool's phase (the dispatch core's).
    queue: Queue<Payload>,
    /// The live workers, keyed as their poller entries, and the tasks they hold.
    workers: Workers<WorkerProcess, Payload>,
    /// The key of the next worker started.
    next_worker: u64,
    /// Set when start-up failed.
    startup_error: Option<StartError>,
    /// The manager thread has finished (every worker is reaped).
    finished: bool,
    /// Workers to start (replacements), by the manager thread.
    respawn: usize,
    /// Not before then: the last start failed for lack of descriptors or memory, and is
    /// tried again after `retry` (see `RETRY_MIN`).
    respawn_at: Option<Instant>,
    retry: Duration,
    /// The manager thread looks on its own every `READ_GRACE` (it saw work lately), so a
    /// submission need not wake it.
    lingering: bool,
    /// Set by `terminate`: from then on the watchdog kills every worker with SIGKILL.
    kill_at: Option<Instant>,
    /// The pool's statistics (the same counters as `Manager::counters`).
    counters: Arc<RemoteCounters>,
    /// The same as `Manager::tables_sent`.
    tables_sent: Arc<TablesSent>,
    /// The same as `Manager::timeline`.
    timeline: Arc<Recording>,
    /// Timeline rows no live worker holds (a replacement takes the row of the worker it
    /// replaces), smallest last.
    free_rows: Vec<usize>,
}

impl State {
    /// The queue, the workers and the transport the core sends through.
    fn parts(
        &mut self,
    ) -> (
        &mut Queue<Payload>,
        &mut Workers<WorkerProcess, Payload>,
        Sockets<'_>,
    ) {
        let wire = Sockets {
            tables_sent: &self.tables_sent,
            counters: &self.counters,
            timeline: &self.timeline,
        };
        (&mut self.queue, &mut self.workers, wire)
    }

    /// Sends pending work to the workers with room, then steals (`remote::scheduler`).
    fn dispatch(&mut self) {
        let (queue, workers, mut wire) = self.parts();
        workers.dispatch(queue, &mut wire);
    }
}

/// Which workers were sent which shared table (by table id: the worker's key and its main
/// socket). Locked after the state (by `dispatch`), or alone (when a table's last handle is
/// dropped, which may happen on a thread that holds the state): so a table's release never
/// waits for the state.
pub(super) type TablesSent = Mutex<IdMap<Vec<(u64, std::sync::Weak<Socket>)>>>;

/// Tasks to complete once the reader is released (completing decodes the results, with
/// the user's `Deserialize`; their callbacks go to the callback threads).
type Finished = Vec<(Box<dyn Completion>, Result<Vec<u8>, TaskError>)>;

impl Manager {
    /// Completes what was read; the callbacks go to their own threads (`callbacks`), since
    /// the caller reads results for the pool.
    fn complete_all(&self, finished: &mut Finished) {
        let counters = &self.counters;
        for (c, outcome) in finished.drain(..) {
            let (deferred, ended) = match outcome {
                Ok(bytes) => {
                    RemoteCounters::add(&counters.bytes_received, bytes.len() as u64);
                    c.settle_deferring(Ok(&bytes))
                }
                Err(e) => c.settle_deferring(Err(e)),
            };
            counters.ended(ended);
            if let Some(job) = deferred {
                self.callbacks.run(job);
            }
        }
    }
}

/// The right to read the workers' sockets, and its buffers: whoever holds it reads
/// results. Normally the manager thread; a user thread blocked on a task that a worker has
/// takes it over (see `read_until`).
struct Reader {
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
    keys: Vec<u64>,
}

/// The poller key of a worker's socket; `key + 1` is its pidfd's.
fn socket_key(id: u64) -> u64 {
    id << 1
}

/// Shared by the pool handle, its manager thread, and threads reading results.
pub(crate) struct Manager {
    state: Mutex<State>,
    /// The manager thread and `start` wait on it; readers signal it.
    changed: Condvar,
    reader: Mutex<Option<Reader>>,
    /// Watches the workers' sockets and pidfds; `wake` interrupts a reader's wait.
    poller: Poller,
    /// User threads waiting to read (or reading) results.
    wants: AtomicUsize,
    /// Some task was given a time limit of its own (the watchdog then looks for them in
    /// the queue).
    own_limits: AtomicBool,
    /// The manager thread needs the reader (to add a new worker's channel).
    manager_wants: AtomicBool,
    config: Config,
    /// Shared memory blocks kept for large arguments.
    pub(crate) payload_files: wire::PayloadFileCache,
    /// Where the futures' callbacks run.
    callbacks: Arc<callbacks::Callbacks>,
    thread: Mutex<Option<JoinHandle<()>>>,
    watchdog: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<RemoteCounters>,
    tables_sent: Arc<TablesSent>,
    /// The timeline, when recording (`record.rs`).
    timeline: Arc<Recording>,
}

/// The last handle of a shared table is gone: the workers that hold it are told to let it
/// go (each live one; a worker that died took its mapping with it).
impl crate::shared::Releaser for Manager {
    fn release(&self, id: u64) {
        let holders = sync::lock(&self.tables_sent).remove(&id);
        for (_, socket) in holders.into_iter().flatten() {
            if let Some(socket) = socket.upgrade() {
                let msg = ToWorkerRef::Release(&[id]);
                if let Ok(bytes) = crate::remote::codec::encode(&msg) {
                    let _ = socket.send(&[&[wire::TAG_TO_WORKER], &bytes], &[]);
                }
            }
        }
    }
}

impl Manager {
    /// Starts the manager thread and the workers; returns once all workers are ready.
    pub(crate) fn start(config: Config) -> Result<Arc<Manager>, StartError> {
        let poller = Poller::new().map_err(|e| StartError::spawn("", e))?;
        let workers = config.workers;
        let counters = Arc::new(RemoteCounters::with_rows(workers));
        let tables_sent = Arc::new(TablesSent::default());
        let timeline = Arc::new(Recording::new(workers));
        let manager = Arc::new(Manager {
            state: Mutex::new(State {
                queue: Queue::new(Phase::Starting),
                workers: Workers::new(usize::MAX),
                next_worker: 1,
                startup_error: None,
                finished: false,
                respawn: 0,
                respawn_at: None,
                retry: RETRY_MIN,
                lingering: false,
                kill_at: None,
                counters: counters.clone(),
                tables_sent: tables_sent.clone(),
                timeline: timeline.clone(),
                free_rows: (0..workers).rev().collect(),
            }),
            changed: Condvar::new(),
            reader: Mutex::new(None),
            poller,
            wants: AtomicUsize::new(0),
            manager_wants: AtomicBool::new(false),
            own_limits: AtomicBool::new(false),
            config,
            payload_files: wire::PayloadFileCache::default(),
            callbacks: Arc::default(),
            thread: Mutex::new(None),
            watchdog: Mutex::new(None),
            counters,
            tables_sent,
            timeline,
        });
        let m = manager.clone();
        let handle = std::thread::Builder::new()
            .name("cf-process-manager".into())
            .spawn(move || m.run())
            .map_err(|e| StartError::spawn("cannot start the manager thread: ", e))?;
        *sync::lock(&manager.thread) = Some(handle);
        {
            let m = manager.clone();
            let handle = std::thread::Builder::new()
                .name("cf-process-watchdog".into())
                .spawn(move || m.watch())
                .map_err(|e| StartError::spawn("cannot start the watchdog thread: ", e))?;
            *sync::lock(&manager.watchdog) = Some(handle);
        }
        let mut st = sync::lock(&manager.state);
        while st.queue.phase == Phase::Starting && st.startup_error.is_none() {
            st = sync::wait(&manager.changed, st);
        }
        if let Some(e) = st.startup_error.clone() {
            drop(st);
            manager.join();
            return Err(e);
        }
        // A failed initializer leaves a broken pool, as in Python: building succeeds and
        // every submission reports why.
        drop(st);
        Ok(manager)
    }

    pub(crate) fn workers(&self) -> usize {
        self.config.workers
    }

    /// Queues a task and sends it at once if a worker has room; returns its id.
    pub(crate) fn submit(
        &self,
        target: FnRef,
        payload: Payload,
        tables: Vec<TableRef>,
        completion: Box<dyn Completion>,
        limit: Option<Duration>,
        kind: TaskKind,
    ) -> Result<u64, SubmitError> {
        let mut st = sync::lock(&self.state);
        let work = Work::new(target, payload, completion, tables, kind, limit);
        let st = &mut *st;
        let id = st.queue.submit(work, &st.counters)?;
        if limit.is_some() || self.config.task_timeout.is_some() {
            // The watchdog learns of a limit to keep (it may be asleep until a far deadline).
            self.own_limits.fetch_or(limit.is_some(), SeqCst);
            self.changed.notify_all();
        }
        let was_quiet = !st.workers.expecting();
        st.dispatch();
        if was_quiet && st.workers.expecting() && !st.lingering {
            // Someone must read what comes: the manager thread, unless the submitter comes to
            // wait for its result first (it usually does, long before the manager is awake).
            // A lingering manager looks by itself within `READ_GRACE`.
            self.changed.notify_all();
        }
        Ok(id)
    }

    /// `Future::cancel_running` on task `id`, whose future is claimed (sent to a worker at
    /// least once); true unless its outcome is already known. A task queued again (given
    /// back, or left unstarted by a dead worker) leaves the queue and fails with `Cancelled`
    /// now. A task a worker holds is marked, and the worker told (`Control::Cancel`); the
    /// future fails with `Cancelled` when the worker answers: it dropped the task unstarted,
    /// or had finished it (the value is discarded), or killed itself because it was running
    /// it. That death is handled as any other (as the kill for a time limit): what the
    /// worker had not started runs elsewhere, a replacement starts.
    pub(crate) fn cancel_running(&self, id: u64) -> bool {
        let work = {
            let mut st = sync::lock(&self.state);
            let State { queue, workers, .. } = &mut *st;
            let (links, inflight) = workers.split_mut();
            if let Some(work) = inflight.get_mut(&id) {
                if !work.cancelled {
                    work.cancelled = true;
                    let holder = links.values_mut().find(|w| w.window.holds(id));
                    if let Some((w, batch)) =
                        holder.and_then(|w| w.window.batch_of(id).map(|b| (w, b)))
                    {
                        let cancel = codec::encode(&wire::Control::Cancel { id, batch });
                        // A worker that cannot be told is gone: its death completes the task.
                        let _ = cancel.map(|bytes| w.link.ctl.send(&[&bytes], &[]));
                        // One that does not answer is killed (`watchdog.rs`).
                        let by = Instant::now() + CANCEL_GRACE;
                        w.link.cancel_by.get_or_insert(by);
                        self.changed.notify_all();
                    }
                }
                return true;
            }
            // Claimed tasks queued again are at the front of the queue.
            let pending = &mut queue.pending;
            let at = pending
                .iter()
                .take_while(|w| w.claimed)
                .position(|w| w.id == id);
            match at.and_then(|at| pending.remove(at)) {
                Some(work) => work,
                None => return false,
            }
        };
        let mut finished: Finished = vec![(work.completion, Err(TaskError::Cancelled))];
        self.settle(&mut finished, 0);
        true
    }

    /// Stops accepting work; with `cancel`, cancels what is pending and not RUNNING yet (a
    /// task given back, or left unstarted by a dead worker, runs; with `terminate` it fails
    /// with `Broken`, see `Queue::shut_down`). Wakes the reader so that the workers are
    /// retired once the work is done.
    pub(crate) fn shutdown(&self, terminate: bool, cancel: bool) {
        let (cancelled, failed) = {
            let mut st = sync::lock(&self.state);
            if terminate && st.queue.phase != Phase::Terminated {
                st.kill_at = Some(Instant::now() + TERMINATE_GRACE);
            }
            let stopped = st.queue.shut_down(terminate, cancel, &self.counters);
            self.poller.wake();
            self.changed.notify_all();
            stopped
        };
        for w in cancelled {
            w.completion.cancel();
        }
        // Tasks queued again after they were sent (RUNNING): terminated with the pool.
        let error = || Err(TaskError::Broken("the pool was terminated".into()));
        let mut failed: Finished = (failed.into_iter())
            .map(|w| (w.completion, error()))
            .collect();
        self.settle(&mut failed, 0);
    }

    /// The pool's counters now (see `stats.rs`).
    pub(crate) fn stats(&self) -> crate::PoolStats {
        let (queued, running) = {
            let st = sync::lock(&self.state);
            (
                st.queue.pending.len() as u64,
                st.workers.inflight.len() as u64,
            )
        };
        self.counters.snapshot(queued, running)
    }

    /// Starts or stops recording the timeline (`record.rs`).
    pub(crate) fn set_recording(&self, on: bool) {
        if on {
            self.timeline.start();
        } else {
            self.timeline.stop();
        }
    }

    /// What the timeline recorded so far.
    pub(crate) fn take_timeline(&self) -> crate::Timeline {
        self.timeline.take()
    }

    /// Sends `signal` to every worker (terminate / kill).
    pub(crate) fn signal_workers(&self, signal: libc::c_int) {
        let st = sync::lock(&self.state);
        for (_, w) in st.workers.iter() {
            w.link.pidfd.signal(signal);
        }
    }

    /// Waits for the manager thread (and so every worker) to finish, then for the
    /// callbacks of the futures it completed. No-op on the manager thread itself.
    pub(crate) fn join(&self) {
        for slot in [&self.thread, &self.watchdog] {
            let handle = sync::lock(slot).take();
            if let Some(h) = handle {
                if h.thread().id() == std::thread::current().id() {
                    *sync::lock(slot) = Some(h);
                    return;
                }
                let _ = h.join();
            }
        }
        self.callbacks.close();
    }

    /// Pids of the live workers.
    pub(crate) fn pids(&self) -> Vec<u32> {
        let st = sync::lock(&self.state);
        let mut pids: Vec<u32> = st.workers.iter().map(|(_, w)| w.link.pid).collect();
        pids.sort_unstable();
        pids
    }

    // ===== the manager thread =====

    fn run(self: Arc<Self>) {
        *sync::lock(&self.reader) = Some(Reader {
            buf: Vec::with_capacity(MAX_FRAME),
            fds: Vec::new(),
            keys: Vec::new(),
        });
        if let Err(e) = self.spawn_workers(self.config.workers) {
            self.kill_all();
            self.reap_all();
            return self.fail_startup(e);
        }
        {
            let mut st = sync::lock(&self.state);
            if self.config.initializer.is_none() && st.queue.phase == Phase::Starting {
                st.queue.phase = Phase::Running;
            }
            self.changed.notify_all();
        }
        // Submissions seen (`next_id` as last read), and since when none came: the manager
        // lingers for `LINGER` after the last one (read here, not stamped by `submit`, which
        // so reads no clock).
        let mut seen_id = 0;
        let mut quiet_since = Instant::now();
        loop {
            // Replace dead workers (only this thread starts workers: their parent-death
            // signal follows the thread that started them).
            let respawn = {
                let mut st = sync::lock(&self.state);
                if respawn_due(&st) {
                    std::mem::take(&mut st.respawn)
                } else {
                    0
                }
            };
            match self.spawn_workers(respawn) {
                Ok(()) => {
                    if respawn > 0 {
                        RemoteCounters::add(&self.counters.restarts, respawn as u64);
                        crate::trace::workers_restarted(crate::trace::Pool::Process, respawn);
                        let mut st = sync::lock(&self.state);
                        st.respawn_at = None;
                        st.retry = RETRY_MIN;
                    }
                }
                Err(StartError::Shortage { doing, error }) => {
                    // (Every worker of this attempt was killed and reaped: try them all again.)
                    let mut st = sync::lock(&self.state);
                    if st.respawn_at.is_none() {
                        eprintln!(
                            "concurrent_futures: cannot replace a dead worker now ({doing}{error}); \
                             trying again until it can"
                        );
                    }
                    st.respawn += respawn;
                    st.respawn_at = Some(Instant::now() + st.retry);
                    st.retry = (st.retry * 2).min(RETRY_MAX);
                }
                Err(e) => {
                    let mut finished =
                        self.break_pool(format!("cannot replace a dead worker: {e}"));
                    self.settle(&mut finished, 0);
                }
            }
            if self.should_stop() {
                break;
            }
            // Read only when someone must: tasks are in flight and no user thread reads, or
            // workers are starting or stopping. An idle manager sleeps here, not in
            // `epoll`, so that a thread waiting for a result can read it itself at once.
            {
                let mut st = sync::lock(&self.state);
                loop {
                    if respawn_due(&st) || st.queue.stopping() || st.queue.phase == Phase::Starting
                    {
                        break;
                    }
                    if self.result_unclaimed(&st) {
                        // Give the thread that submitted a moment to come and read its result
                        // itself (it usually does, within microseconds); read only if none did.
                        st = sync::wait_until(&self.changed, st, Instant::now() + READ_GRACE).0;
                        if self.result_unclaimed(&st) {
                            st.lingering = false;
                            break;
                        }
                        continue;
                    }
                    // Tasks came lately: look again soon by itself (submissions do not wake a
                    // lingering manager, see `submit`). Otherwise sleep until woken. Both are
                    // decided under the state lock, so no submission is missed.
                    if st.queue.next_id != seen_id {
                        seen_id = st.queue.next_id;
                        quiet_since = Instant::now();
                    }
                    st.lingering = quiet_since.elapsed() < LINGER;
                    st = match (st.lingering, retry_at(&st)) {
                        (true, _) => {
                            sync::wait_until(&self.changed, st, Instant::now() + READ_GRACE).0
                        }
                        (false, Some(at)) => sync::wait_until(&self.changed, st, at).0,
                        (false, None) => sync::wait(&self.changed, st),
                    };
                }
                if respawn_due(&st) {
                    continue;
                }
            }
            let mut finished = Finished::new();
            let ok = {
                let mut reader = sync::lock(&self.reader);
                let Some(r) = reader.as_mut() else { break };
                // A replacement waiting to be tried again is not waited past.
                let timeout = retry_at(&sync::lock(&self.state))
                    .map(|at| at.saturating_duration_since(Instant::now()));
                self.pump(r, &mut finished, timeout)
            };
            self.settle(&mut finished, 0);
            if !ok {
                self.shutdown(true, true);
                self.kill_all();
                break;
            }
        }
        self.reap_all();
        *sync::lock(&self.reader) = None;
        let mut st = sync::lock(&self.state);
        st.finished = true;
        self.changed.notify_all();
    }

    fn fail_startup(&self, error: StartError) {
        let mut st = sync::lock(&self.state);
        st.startup_error = Some(error);
        self.changed.notify_all();
    }

    /// True if something is bound to arrive on the channels (results of tasks in flight, the
    /// close of a retiring worker, a worker's initialization) and no user thread is there to
    /// read it.
    fn result_unclaimed(&self, st: &State) -> bool {
        self.wants.load(SeqCst) == 0 && st.workers.expecting()
    }

    /// True once the pool is stopping and no worker is left.
    fn should_stop(&self) -> bool {
        let st = sync::lock(&self.state);
        st.queue.stopping() && st.workers.is_empty()
    }

    /// The pool cannot work (an initializer failed): refuse work; returns what was pending,
    /// failed, for the caller to complete.
    #[must_use]
    fn break_pool(&self, reason: String) -> Finished {
        let mut st = sync::lock(&self.state);
        let (queue, workers, mut wire) = st.parts();
        // A worker finishes what it holds before it reads its `Exit`.
        workers.retire_all(&mut wire);
        let failed = queue.break_with(reason.into(), &self.counters);
        self.changed.notify_all();
        failed.into_iter().map(|(c, e)| (c, Err(e))).collect()
    }

    /// Once shutting down with nothing pending or in flight, tells every worker to exit.
    fn retire_if_done(&self) {
        let mut st = sync::lock(&self.state);
        let (queue, workers, mut wire) = st.parts();
        workers.retire_if_done(&queue.phase, queue.pending.is_empty(), &mut wire);
    }

    fn kill_worker(&self, id: u64) {
        let st = sync::lock(&self.state);
        if let Some(w) = st.workers.get(id) {
            w.link.pidfd.signal(libc::SIGKILL);
        }
    }

    fn kill_all(&self) {
        self.signal_workers(libc::SIGKILL);
    }

    /// Waits for every worker process still known (after they were told to exit).
    fn reap_all(&self) {
        let workers = sync::lock(&self.state).workers.drain();
        for mut link in workers.into_iter().map(|w| w.link) {
            drop(link.main);
            drop(link.ctl);
            let _ = link.child.wait();
        }
    }
}

/// True if replacement workers are to be started now.
fn respawn_due(st: &State) -> bool {
    st.respawn > 0 && st.respawn_at.is_none_or(|at| Instant::now() >= at)
}

/// When a replacement that could not be started is to be tried again.
fn retry_at(st: &State) -> Option<Instant> {
    if st.respawn > 0 { st.respawn_at } else { None }
}
