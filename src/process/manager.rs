//! The parent side of the process pool: pending work, the workers' windows, the manager
//! thread that reads results and watches the workers, and worker start-up.
//!
//! ```text
//! submit ──► pending queue ──dispatch──► worker's calls channel ──► worker process
//!   (cancellable here)        (claimed: RUNNING; at most MAX_BATCHES per worker)
//! future ◄── decode + complete ◄── manager thread: select(results channels, wake channel)
//!                                   └─ channel closed: the worker died → fail what it held,
//!                                      start a replacement
//! ```
//!
//! Dispatch happens on whichever thread makes room or work: the submitting thread (if a
//! worker's window has room) or the manager thread (when results free a window).

use std::collections::{HashMap, VecDeque};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc_channel::ipc::{
    self, IpcBytesSender, IpcOneShotServer, IpcReceiver, IpcReceiverSet, IpcSelectionResult,
    IpcSender, IpcSharedMemory,
};

use super::image;
use super::protocol::{self, CallRef, FnRef, FromWorker, Hello, Payload, Revoke, ToWorkerRef};
pub(crate) use super::protocol::{Completion, Slot};
use super::worker::format_token;
use crate::error::{ExitStatus, SubmitError, TaskError};
use crate::sync::{self, Condvar, Mutex};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};

/// Batches in flight per worker: one running, one waiting behind it, so a worker never
/// waits for the parent between batches.
const MAX_BATCHES: usize = 2;
/// Largest batch of calls in one message.
const MAX_BATCH: usize = 64;
/// How long a thread that wants to read results yields (instead of sleeping) while the
/// manager thread wakes up and lets go of the reader.
const READER_SPIN: Duration = Duration::from_micros(200);
/// How long the manager thread leaves results in flight to a user thread that may come to
/// read them itself, before it reads them (for callbacks and `as_completed`).
const READ_GRACE: Duration = Duration::from_micros(100);
/// How long a new worker may take to connect before start-up fails.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings fixed when the pool is built.
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) initializer: Option<FnRef>,
    pub(crate) max_tasks_per_child: Option<usize>,
    /// A task running longer than this has its worker killed and fails with
    /// `TaskError::TimeLimit`.
    pub(crate) task_timeout: Option<Duration>,
}

/// A task, pending or in a worker. The payload is kept until the result arrives, so that a
/// task a dead worker never started can be sent to another.
struct Work {
    id: u64,
    target: FnRef,
    payload: Payload,
    completion: Box<dyn Completion>,
    /// Already RUNNING (it was sent once, to a worker that died before starting it).
    claimed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    /// No new work; the pending work still runs.
    ShuttingDown,
    /// Workers are being stopped now.
    Terminated,
    Broken(Arc<str>),
}

/// One live worker as the parent sees it.
struct Link {
    pid: u32,
    child: Child,
    calls: IpcBytesSender,
    bulk: IpcSender<IpcSharedMemory>,
    revoke: IpcSender<Revoke>,
    /// The worker's progress word (see `Hello::progress`).
    progress: IpcSharedMemory,
    /// The number of the last batch sent.
    seq: u64,
    /// Batches in flight (number, tasks left), oldest first.
    batches: VecDeque<(u64, usize)>,
    /// Tasks in flight on this worker (id, batch), in the order sent (= the order it runs
    /// them).
    held: VecDeque<(u64, u64)>,
    /// Asked to give back what it has not started; the answer has not come yet.
    revoking: bool,
    /// Gave work back (or had none to give): it is busy with a long task (this one, the
    /// last it started), so it gets no new work and is not asked again until that is done.
    robbed: Option<u64>,
    /// The initializer has run (or there is none): the worker may get calls.
    ready: bool,
    /// Told to exit (shutdown, or `max_tasks_per_child` reached).
    retiring: bool,
    tasks_done: usize,
    /// Since when the oldest task it holds has been running (the clock of the time limit).
    head_since: Option<Instant>,
    /// Killed for running a task over the time limit.
    timed_out: bool,
}

struct State {
    phase: Phase,
    pending: VecDeque<Work>,
    inflight: HashMap<u64, Work>,
    workers: HashMap<u64, Link>,
    next_id: u64,
    /// Set when start-up failed.
    startup_error: Option<String>,
    wake: Option<IpcSender<()>>,
    /// Workers to start (replacements), by the manager thread.
    respawn: usize,
}

/// Tasks to complete once the reader is released (completing runs callbacks, which may
/// themselves wait on the pool).
type Finished = Vec<(Box<dyn Completion>, Result<Vec<u8>, TaskError>)>;

fn complete_all(finished: &mut Finished) {
    for (c, outcome) in finished.drain(..) {
        match outcome {
            Ok(bytes) => c.complete(Ok(&bytes)),
            Err(e) => c.complete(Err(e)),
        }
    }
}

/// The receiver set: whoever holds it reads results. Normally the manager thread; a user
/// thread blocked on a task that a worker has takes it over (see `read_until`).
struct Reader {
    set: IpcReceiverSet,
    wake_id: u64,
}

/// Shared by the pool handle, its manager thread, and threads reading results.
pub(crate) struct Manager {
    state: Mutex<State>,
    /// The manager thread and `start` wait on it; readers signal it.
    changed: Condvar,
    reader: Mutex<Option<Reader>>,
    /// User threads waiting to read (or reading) results.
    wants: AtomicUsize,
    /// The manager thread needs the reader (to add a new worker's channel).
    manager_wants: AtomicBool,
    config: Config,
    /// Shared memory blocks kept for large arguments.
    pub(crate) blocks: protocol::Blocks,
    thread: Mutex<Option<JoinHandle<()>>>,
    watchdog: Mutex<Option<JoinHandle<()>>>,
}

impl Manager {
    /// Starts the manager thread and the workers; returns once all workers are ready.
    pub(crate) fn start(config: Config) -> Result<Arc<Manager>, String> {
        let manager = Arc::new(Manager {
            state: Mutex::new(State {
                phase: Phase::Starting,
                pending: VecDeque::new(),
                inflight: HashMap::new(),
                workers: HashMap::new(),
                next_id: 1,
                startup_error: None,
                wake: None,
                respawn: 0,
            }),
            changed: Condvar::new(),
            reader: Mutex::new(None),
            wants: AtomicUsize::new(0),
            manager_wants: AtomicBool::new(false),
            config,
            blocks: protocol::Blocks::default(),
            thread: Mutex::new(None),
            watchdog: Mutex::new(None),
        });
        let m = manager.clone();
        let handle = std::thread::Builder::new()
            .name("cf-process-manager".into())
            .spawn(move || m.run())
            .map_err(|e| format!("cannot start the manager thread: {e}"))?;
        *sync::lock(&manager.thread) = Some(handle);
        if let Some(limit) = manager.config.task_timeout {
            let m = manager.clone();
            let handle = std::thread::Builder::new()
                .name("cf-process-watchdog".into())
                .spawn(move || m.watch(limit))
                .map_err(|e| format!("cannot start the watchdog thread: {e}"))?;
            *sync::lock(&manager.watchdog) = Some(handle);
        }
        let mut st = sync::lock(&manager.state);
        while st.phase == Phase::Starting && st.startup_error.is_none() {
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

    /// Queues a task and sends it at once if a worker has room.
    pub(crate) fn submit(
        &self,
        target: FnRef,
        payload: Payload,
        completion: Box<dyn Completion>,
    ) -> Result<(), SubmitError> {
        let mut st = sync::lock(&self.state);
        match &st.phase {
            Phase::Running | Phase::Starting => {}
            Phase::ShuttingDown | Phase::Terminated => return Err(SubmitError::Shutdown),
            Phase::Broken(r) => return Err(SubmitError::Broken(r.clone())),
        }
        let id = st.next_id;
        st.next_id += 1;
        st.pending.push_back(Work {
            id,
            target,
            payload,
            completion,
            claimed: false,
        });
        let was_quiet = !expecting(&st);
        dispatch(&mut st);
        if was_quiet && expecting(&st) {
            // Someone must read what comes: the manager thread, unless the submitter comes to
            // wait for its result first (it usually does, long before the manager is awake).
            self.changed.notify_all();
        }
        Ok(())
    }

    /// Stops accepting work; with `cancel`, cancels what is pending. Wakes the reader so
    /// that the workers are retired once the work is done.
    pub(crate) fn shutdown(&self, terminate: bool, cancel: bool) {
        let cancelled = {
            let mut st = sync::lock(&self.state);
            if matches!(st.phase, Phase::Running | Phase::Starting) {
                st.phase = Phase::ShuttingDown;
            }
            if terminate && st.phase != Phase::Terminated {
                st.phase = Phase::Terminated;
            }
            let cancelled: Vec<Work> = if cancel || terminate {
                st.pending.drain(..).collect()
            } else {
                Vec::new()
            };
            wake(&st);
            self.changed.notify_all();
            cancelled
        };
        for w in cancelled {
            w.completion.cancel();
        }
    }

    /// Sends `signal` to every worker (terminate / kill).
    pub(crate) fn signal_workers(&self, signal: libc::c_int) {
        let st = sync::lock(&self.state);
        for link in st.workers.values() {
            image::signal(link.pid, signal);
        }
    }

    /// Waits for the manager thread (and so every worker) to finish. No-op on the manager
    /// thread itself (a callback shutting the pool down).
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
    }

    /// The watchdog thread: kills a worker whose current task has run longer than `limit`.
    fn watch(&self, limit: Duration) {
        let mut st = sync::lock(&self.state);
        loop {
            let finished = st.startup_error.is_some()
                || (stopping(&st) && st.workers.is_empty() && st.wake.is_none());
            if finished {
                return;
            }
            let now = Instant::now();
            let mut next = now + Duration::from_secs(1);
            for link in st.workers.values_mut() {
                if let Some(since) = link.head_since
                    && !link.timed_out
                {
                    let deadline = since + limit;
                    if deadline <= now {
                        link.timed_out = true;
                        image::signal(link.pid, libc::SIGKILL);
                    } else {
                        next = next.min(deadline);
                    }
                }
            }
            st = sync::wait_until(&self.changed, st, next).0;
        }
    }

    /// Pids of the live workers.
    pub(crate) fn pids(&self) -> Vec<u32> {
        let st = sync::lock(&self.state);
        let mut pids: Vec<u32> = st.workers.values().map(|l| l.pid).collect();
        pids.sort_unstable();
        pids
    }

    /// Reads results on this thread until `done()` holds: a thread blocked on a task that a
    /// worker holds takes the results off the channels itself, instead of being woken by the
    /// manager thread after it did (one thread wake-up fewer on the way of every result).
    /// Gives up at once if the pool is stopping.
    pub(crate) fn read_until(&self, done: &dyn Fn() -> bool) {
        self.wants.fetch_add(1, SeqCst);
        let mut finished = Finished::new();
        while !done() {
            if self.manager_wants.load(SeqCst) {
                // The manager must add a worker's channel: step aside until it has.
                let mut st = sync::lock(&self.state);
                while self.manager_wants.load(SeqCst) {
                    st = sync::wait(&self.changed, st);
                }
                continue;
            }
            let ok = {
                let mut reader = self.take_reader();
                match reader.as_mut() {
                    Some(r) if !self.should_stop() => self.pump(r, &mut finished),
                    _ => false,
                }
            };
            self.settle(&mut finished, 1);
            if !ok {
                break;
            }
        }
        if self.wants.fetch_sub(1, SeqCst) == 1 {
            // The manager reads from now on, if anything is left to read.
            // (This includes the close of a worker retired by `max_tasks_per_child` after the
            // result this thread read: the manager must read it to start a replacement.)
            let st = sync::lock(&self.state);
            if expecting(&st) || stopping(&st) {
                self.changed.notify_all();
            }
        }
    }

    /// Takes the reader, yielding rather than sleeping while the manager thread lets go of
    /// it: sleeping would add one more thread wake-up to the way of the result.
    fn take_reader(&self) -> sync::MutexGuard<'_, Option<Reader>> {
        if let Ok(guard) = self.reader.try_lock() {
            return guard;
        }
        // The manager thread is reading: wake it from `select` so it lets go.
        wake(&sync::lock(&self.state));
        let backoff = crossbeam_utils::Backoff::new();
        let start = Instant::now();
        loop {
            if let Ok(guard) = self.reader.try_lock() {
                return guard;
            }
            if start.elapsed() > READER_SPIN {
                return sync::lock(&self.reader);
            }
            backoff.snooze();
        }
    }

    /// Completes tasks read under the reader lock, after it was released. A thread that
    /// took the reader meanwhile may be waiting in `select` for one of these very tasks (its
    /// result was read by us): wake it, so it looks again.
    /// `mine` counts the caller among the readers (`read_until`), whom it need not wake.
    fn settle(&self, finished: &mut Finished, mine: usize) {
        if finished.is_empty() {
            return;
        }
        complete_all(finished);
        if self.wants.load(SeqCst) > mine {
            wake(&sync::lock(&self.state));
        }
    }

    // ===== the manager thread =====

    fn run(self: Arc<Self>) {
        let reader = IpcReceiverSet::new()
            .map_err(|e| format!("cannot create a receiver set: {e}"))
            .and_then(|mut set| {
                let (tx, rx) =
                    ipc::channel::<()>().map_err(|e| format!("cannot create a channel: {e}"))?;
                let wake_id = set
                    .add(rx)
                    .map_err(|e| format!("cannot watch a channel: {e}"))?;
                Ok((Reader { set, wake_id }, tx))
            });
        let (reader, wake_tx) = match reader {
            Ok(r) => r,
            Err(e) => return self.fail_startup(e),
        };
        *sync::lock(&self.reader) = Some(reader);
        sync::lock(&self.state).wake = Some(wake_tx);
        if let Err(e) = self.spawn_workers(self.config.workers) {
            self.kill_all();
            self.reap_all();
            return self.fail_startup(e);
        }
        {
            let mut st = sync::lock(&self.state);
            if self.config.initializer.is_none() && st.phase == Phase::Starting {
                st.phase = Phase::Running;
            }
            self.changed.notify_all();
        }
        loop {
            // Replace dead workers (only this thread starts workers: their parent-death
            // signal follows the thread that started them).
            let respawn = std::mem::take(&mut sync::lock(&self.state).respawn);
            if respawn > 0
                && let Err(e) = self.spawn_workers(respawn)
            {
                let mut finished = self.break_pool(format!("cannot replace a dead worker: {e}"));
                self.settle(&mut finished, 0);
            }
            if self.should_stop() {
                break;
            }
            // Read only when someone must: tasks are in flight and no user thread reads, or
            // workers are starting or stopping. An idle manager sleeps here, not in
            // `select`, so that a thread waiting for a result can read it itself at once.
            {
                let mut st = sync::lock(&self.state);
                loop {
                    if st.respawn > 0 || stopping(&st) || st.phase == Phase::Starting {
                        break;
                    }
                    if self.result_unclaimed(&st) {
                        // Give the thread that submitted a moment to come and read its result
                        // itself (it usually does, within microseconds); read only if none did.
                        st = sync::wait_until(&self.changed, st, Instant::now() + READ_GRACE).0;
                        if self.result_unclaimed(&st) {
                            break;
                        }
                        continue;
                    }
                    st = sync::wait(&self.changed, st);
                }
                if st.respawn > 0 {
                    continue;
                }
            }
            let mut finished = Finished::new();
            let ok = {
                let mut reader = sync::lock(&self.reader);
                let Some(r) = reader.as_mut() else { break };
                self.pump(r, &mut finished)
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
        st.wake = None;
        self.changed.notify_all();
    }

    /// One round of reading: waits for events on the channels and handles them; the tasks
    /// they finish go to `finished`. False if the channels are unusable.
    fn pump(&self, r: &mut Reader, finished: &mut Finished) -> bool {
        let events = match r.set.select() {
            Ok(ev) => ev,
            Err(e) => {
                eprintln!("concurrent_futures: the process pool lost its channels: {e}");
                return false;
            }
        };
        for event in events {
            match event {
                IpcSelectionResult::MessageReceived(id, _) if id == r.wake_id => {}
                IpcSelectionResult::ChannelClosed(id) if id == r.wake_id => {}
                IpcSelectionResult::MessageReceived(id, msg) => match msg.to::<FromWorker>() {
                    Ok(msg) => self.on_message(id, msg, finished),
                    Err(e) => {
                        eprintln!(
                            "concurrent_futures: malformed message from a worker ({e}); stopping it"
                        );
                        self.kill_worker(id);
                    }
                },
                IpcSelectionResult::ChannelClosed(id) => self.on_closed(id, finished),
            }
        }
        self.retire_if_done();
        true
    }

    fn fail_startup(&self, error: String) {
        let mut st = sync::lock(&self.state);
        st.startup_error = Some(error);
        self.changed.notify_all();
    }

    /// True if something is bound to arrive on the channels (results of tasks in flight, the
    /// close of a retiring worker, a worker's initialization) and no user thread is there to
    /// read it.
    fn result_unclaimed(&self, st: &State) -> bool {
        self.wants.load(SeqCst) == 0 && expecting(st)
    }

    /// True once the pool is stopping and no worker is left.
    fn should_stop(&self) -> bool {
        let st = sync::lock(&self.state);
        stopping(&st) && st.workers.is_empty()
    }

    fn on_message(&self, id: u64, msg: FromWorker, finished: &mut Finished) {
        match msg {
            FromWorker::Initialized(Ok(())) => {
                let mut st = sync::lock(&self.state);
                if let Some(link) = st.workers.get_mut(&id) {
                    link.ready = true;
                }
                if st.phase == Phase::Starting && st.workers.values().all(|l| l.ready) {
                    st.phase = Phase::Running;
                    self.changed.notify_all();
                }
                dispatch(&mut st);
            }
            FromWorker::Initialized(Err(e)) => {
                finished.extend(self.break_pool(format!("a worker's initializer failed: {e}")))
            }
            FromWorker::Done(results) => {
                let mut st = sync::lock(&self.state);
                let State {
                    workers, inflight, ..
                } = &mut *st;
                for r in results {
                    if let Some(w) = inflight.remove(&r.id) {
                        let bytes = match r.shared {
                            Some(shm) => shm.to_vec(),
                            None => r.payload,
                        };
                        finished.push((w.completion, Ok(bytes)));
                        self.blocks.put(w.payload);
                    }
                    if let Some(link) = workers.get_mut(&id) {
                        link.finished(r.id);
                    }
                }
                if let Some(limit) = self.config.max_tasks_per_child
                    && let Some(link) = workers.get_mut(&id)
                    && link.tasks_done >= limit
                    && !link.retiring
                {
                    link.retire();
                }
                dispatch(&mut st);
            }
            FromWorker::Revoked { ids, unread_from } => {
                let mut st = sync::lock(&self.state);
                let State {
                    workers,
                    inflight,
                    pending,
                    ..
                } = &mut *st;
                let Some(link) = workers.get_mut(&id) else {
                    return;
                };
                link.revoking = false;
                let mut back: Vec<u64> = link
                    .held
                    .iter()
                    .filter(|&&(task, seq)| seq >= unread_from || ids.contains(&task))
                    .map(|&(task, _)| task)
                    .collect();
                for &task in &back {
                    link.forget(task);
                }
                // What it still holds has started; the last of it runs long.
                link.robbed = link.held.back().map(|&(task, _)| task);
                // Back to the front of the queue, in their order.
                back.reverse();
                for task in back {
                    if let Some(mut w) = inflight.remove(&task) {
                        w.claimed = true;
                        pending.push_front(w);
                    }
                }
                dispatch(&mut st);
            }
        }
    }

    /// A worker's results channel closed: it exited or died. The task it was running fails
    /// (so do those it finished whose results died with it); those it had not started go
    /// back to the front of the queue, so no task runs twice. While the pool is running, the
    /// manager thread starts a replacement.
    fn on_closed(&self, id: u64, finished: &mut Finished) {
        let link = sync::lock(&self.state).workers.remove(&id);
        let Some(mut link) = link else { return };
        let status = reap(&mut link.child);
        let failed = {
            let mut st = sync::lock(&self.state);
            let terminated = st.phase == Phase::Terminated;
            let mut held: Vec<Work> = link
                .held
                .iter()
                .filter_map(|(task, _)| st.inflight.remove(task))
                .collect();
            // The last call it started (it is dead: the word no longer changes). Calls run in
            // the order sent: those before it finished, but their results (sent in batches)
            // died with it; those after it never started and go back to the queue. If it
            // started none of them, none failed.
            let last = link
                .progress
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            let died = TaskError::WorkerDied {
                pid: link.pid,
                status,
            };
            let failed: Vec<(Work, TaskError)> = if terminated {
                let error = TaskError::Broken("the pool was terminated".into());
                held.into_iter().map(|w| (w, error.clone())).collect()
            } else {
                let started = held.iter().position(|w| w.id == last).map_or(0, |p| p + 1);
                for mut w in held.drain(started..).rev() {
                    w.claimed = true;
                    st.pending.push_front(w);
                }
                let running = held.pop();
                let mut failed: Vec<(Work, TaskError)> =
                    held.into_iter().map(|w| (w, died.clone())).collect();
                if let Some(w) = running {
                    let error = match self.config.task_timeout {
                        Some(limit) if link.timed_out => TaskError::TimeLimit(limit),
                        _ => died.clone(),
                    };
                    failed.push((w, error));
                }
                failed
            };
            // Replace it while work may still come or is still queued (this includes a
            // worker retired by `max_tasks_per_child`).
            if matches!(st.phase, Phase::Running | Phase::Starting)
                || (st.phase == Phase::ShuttingDown && !st.pending.is_empty())
            {
                st.respawn += 1;
                self.changed.notify_all();
            }
            dispatch(&mut st);
            failed
        };
        for (w, error) in failed {
            finished.push((w.completion, Err(error)));
        }
    }

    /// The pool cannot work (an initializer failed): refuse work; returns what was pending,
    /// failed, for the caller to complete.
    #[must_use]
    fn break_pool(&self, reason: String) -> Finished {
        let reason: Arc<str> = reason.into();
        let failed: Vec<Work> = {
            let mut st = sync::lock(&self.state);
            st.phase = Phase::Broken(reason.clone());
            for link in st.workers.values_mut() {
                link.retire();
            }
            self.changed.notify_all();
            st.pending.drain(..).collect()
        };
        failed
            .into_iter()
            .filter(|w| w.claimed || w.completion.claim())
            .map(|w| (w.completion, Err(TaskError::Broken(reason.clone()))))
            .collect()
    }

    /// Once shutting down with nothing pending or in flight, tells every worker to exit.
    fn retire_if_done(&self) {
        let mut st = sync::lock(&self.state);
        let done = match st.phase {
            Phase::ShuttingDown => st.pending.is_empty() && st.inflight.is_empty(),
            Phase::Terminated | Phase::Broken(_) => true,
            _ => false,
        };
        if done {
            for link in st.workers.values_mut() {
                link.retire();
            }
        }
    }

    fn kill_worker(&self, id: u64) {
        let st = sync::lock(&self.state);
        if let Some(link) = st.workers.get(&id) {
            image::signal(link.pid, libc::SIGKILL);
        }
    }

    fn kill_all(&self) {
        self.signal_workers(libc::SIGKILL);
    }

    /// Waits for every worker process still known (after they were told to exit).
    fn reap_all(&self) {
        let links: Vec<Link> = sync::lock(&self.state)
            .workers
            .drain()
            .map(|(_, l)| l)
            .collect();
        for mut link in links {
            drop(link.calls);
            let _ = link.child.wait();
        }
    }

    /// Starts `n` workers (on the manager thread): spawns them all, waits for each
    /// handshake, then adds their channels to the reader.
    fn spawn_workers(&self, n: usize) -> Result<(), String> {
        let mut starting = Vec::with_capacity(n);
        for _ in 0..n {
            starting.push(Starting::spawn()?);
        }
        let mut connected = Vec::with_capacity(n);
        for s in starting {
            let (mut link, results) = s.connect()?;
            if let Some(init) = self.config.initializer {
                link.ready = false;
                link.send(&ToWorkerRef::Init(init))
                    .map_err(|e| format!("cannot reach a new worker: {e}"))?;
            }
            connected.push((link, results));
        }
        // Take the reader from whoever reads now.
        self.manager_wants.store(true, SeqCst);
        wake(&sync::lock(&self.state));
        let mut reader = sync::lock(&self.reader);
        let result = (|| {
            let r = reader.as_mut().ok_or("the pool is gone")?;
            for (link, results) in connected {
                let id = r
                    .set
                    .add(results)
                    .map_err(|e| format!("cannot watch a worker's channel: {e}"))?;
                let mut st = sync::lock(&self.state);
                st.workers.insert(id, link);
                dispatch(&mut st);
            }
            Ok(())
        })();
        drop(reader);
        self.manager_wants.store(false, SeqCst);
        let _st = sync::lock(&self.state);
        self.changed.notify_all();
        result
    }
}

/// True if something is bound to arrive on the channels: results of tasks in flight, the
/// close of a retiring worker, a worker's initialization.
fn expecting(st: &State) -> bool {
    !st.inflight.is_empty() || st.workers.values().any(|l| l.retiring || !l.ready)
}

/// True once the pool accepts no more work.
fn stopping(st: &State) -> bool {
    matches!(
        st.phase,
        Phase::ShuttingDown | Phase::Terminated | Phase::Broken(_)
    )
}

impl Link {
    fn finished(&mut self, task: u64) {
        self.tasks_done += 1;
        if self.robbed == Some(task) {
            self.robbed = None;
        }
        self.forget(task);
        self.head_since = (!self.held.is_empty()).then(Instant::now);
    }

    /// Removes a task from those in flight here.
    fn forget(&mut self, task: u64) {
        let pos = if self.held.front().is_some_and(|&(t, _)| t == task) {
            0
        } else if let Some(pos) = self.held.iter().position(|&(t, _)| t == task) {
            pos
        } else {
            return;
        };
        let Some((_, seq)) = self.held.remove(pos) else {
            return;
        };
        if let Some(i) = self.batches.iter().position(|&(s, _)| s == seq) {
            self.batches[i].1 -= 1;
            if self.batches[i].1 == 0 {
                self.batches.remove(i);
            }
        }
    }

    fn has_room(&self) -> bool {
        self.ready
            && !self.retiring
            && !self.revoking
            && self.robbed.is_none()
            && self.batches.len() < MAX_BATCHES
    }

    /// Ready for work and holding none.
    fn idle(&self) -> bool {
        self.has_room() && self.held.is_empty()
    }

    /// Holds tasks queued behind the one it runs, that an idle worker could run.
    fn has_backlog(&self) -> bool {
        self.ready
            && !self.retiring
            && !self.revoking
            && self.robbed.is_none()
            && self.held.len() >= 2
    }

    /// Asks the worker to exit once it has finished what it was sent.
    fn retire(&mut self) {
        if !self.retiring {
            self.retiring = true;
            let _ = self.send(&ToWorkerRef::Exit);
        }
    }

    fn send(&self, msg: &ToWorkerRef<'_>) -> Result<(), String> {
        let bytes = protocol::encode(msg)?;
        self.calls.send(&bytes).map_err(|e| e.to_string())
    }
}

/// Sends pending work to workers with room, in batches when much is pending. A worker
/// holds at most `MAX_BATCHES` batches, and batches are sized so that at least half of what
/// is pending stays here, cancellable.
fn dispatch(st: &mut State) {
    let n = st.workers.len().max(1);
    while !st.pending.is_empty() {
        // The worker with the fewest batches in flight.
        let Some((&wid, _)) = st
            .workers
            .iter()
            .filter(|(_, l)| l.has_room())
            .min_by_key(|(_, l)| l.batches.len())
        else {
            return;
        };
        let size = (st.pending.len() / (2 * n * MAX_BATCHES)).clamp(1, MAX_BATCH);
        let mut batch: Vec<Work> = Vec::with_capacity(size);
        while batch.len() < size {
            let Some(work) = st.pending.pop_front() else {
                break;
            };
            if work.claimed || work.completion.claim() {
                batch.push(work);
            }
            // else: cancelled while pending, never sent
        }
        if batch.is_empty() {
            continue;
        }
        let Some(link) = st.workers.get_mut(&wid) else {
            return;
        };
        let seq = link.seq + 1;
        let msg = ToWorkerRef::Calls(
            seq,
            batch
                .iter()
                .map(|w| CallRef {
                    id: w.id,
                    target: w.target,
                    payload: w.payload.inline(),
                    bulk: w.payload.bulk_len(),
                })
                .collect(),
        );
        let sent = link.send(&msg).and_then(|()| {
            // Large payloads follow on the bulk channel, in the same order.
            for w in &batch {
                if let Payload::Shared { block, .. } = &w.payload {
                    link.bulk.send(block.clone()).map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        });
        drop(msg);
        if sent.is_err() {
            // The worker is gone (it died while idle): it never got these. Put them back and
            // stop sending to it; its closed channel reports the death.
            link.retiring = true;
            for mut w in batch.into_iter().rev() {
                w.claimed = true;
                st.pending.push_front(w);
            }
            continue;
        }
        link.seq = seq;
        link.batches.push_back((seq, batch.len()));
        if link.held.is_empty() {
            link.head_since = Some(Instant::now());
        }
        for w in batch {
            link.held.push_back((w.id, seq));
            st.inflight.insert(w.id, w);
        }
    }
    steal(st);
}

/// Work stealing between the workers' windows: with nothing pending, an idle worker must
/// not wait while another holds tasks queued behind a long one. Such a worker is asked to
/// give back what it has not started (it answers from a helper thread even while its task
/// runs); what comes back is dispatched again, to the idle worker.
fn steal(st: &mut State) {
    if !st.pending.is_empty() || st.phase == Phase::Terminated {
        return;
    }
    let mut idle = st.workers.values().filter(|l| l.idle()).count();
    if idle == 0 {
        return;
    }
    let mut victims: Vec<&mut Link> = st
        .workers
        .values_mut()
        .filter(|l| l.has_backlog())
        .collect();
    victims.sort_by_key(|l| std::cmp::Reverse(l.held.len()));
    for link in victims {
        if idle == 0 {
            break;
        }
        if link.revoke.send(Revoke { through: link.seq }).is_ok() {
            link.revoking = true;
            idle -= 1;
        }
    }
}

fn wake(st: &State) {
    if let Some(w) = &st.wake {
        let _ = w.send(());
    }
}

/// Waits for a worker that closed its channel and reports how it ended.
fn reap(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return exit_status(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                // Channel closed but still running: it cannot serve us any more.
                let _ = child.kill();
                return child.wait().map(exit_status).unwrap_or(ExitStatus::Unknown);
            }
            Err(_) => return ExitStatus::Unknown,
        }
    }
}

fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => ExitStatus::Code(c),
        (None, Some(s)) => ExitStatus::Signal(s),
        _ => ExitStatus::Unknown,
    }
}

/// A worker process that was spawned and has not connected yet.
struct Starting {
    child: Child,
    server: Option<IpcOneShotServer<Hello>>,
    name: String,
    token: [u8; 16],
}

impl Starting {
    fn spawn() -> Result<Starting, String> {
        let (server, name) = IpcOneShotServer::<Hello>::new()
            .map_err(|e| format!("cannot listen for a worker: {e}"))?;
        let token = random_token();
        let child = Command::new(worker_executable())
            .env(protocol::ENV_SERVER, &name)
            .env(protocol::ENV_TOKEN, format_token(&token))
            .env(protocol::ENV_PARENT, std::process::id().to_string())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start a worker process: {e}"))?;
        Ok(Starting {
            child,
            server: Some(server),
            name,
            token,
        })
    }

    /// Waits for the worker's hello (accepting on a helper thread, so that a worker that
    /// dies first is noticed instead of waited for forever).
    fn connect(mut self) -> Result<(Link, IpcReceiver<FromWorker>), String> {
        let server = self.server.take().expect("[internal] server taken twice");
        let hello = match accept_child(server, &mut self.child, "worker") {
            Ok(hello) => hello,
            Err(e) => {
                self.unblock_accept();
                return Err(e);
            }
        };
        if hello.token != self.token {
            return self.fail("a process connected with the wrong token".into());
        }
        if hello.fingerprint != image::fingerprint() {
            return self.fail(
                "a worker runs a different executable than its parent (was the program \
                 replaced on disk?)"
                    .into(),
            );
        }
        let link = Link {
            pid: hello.pid,
            child: self.child,
            calls: hello.calls,
            bulk: hello.bulk,
            revoke: hello.revoke,
            progress: hello.progress,
            seq: 0,
            batches: VecDeque::new(),
            held: VecDeque::new(),
            revoking: false,
            robbed: None,
            ready: true,
            retiring: false,
            tasks_done: 0,
            head_since: None,
            timed_out: false,
        };
        Ok((link, hello.results))
    }

    fn fail<T>(mut self, error: String) -> Result<T, String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(error)
    }

    /// Connects to our own one-shot server so that the helper thread blocked in `accept`
    /// returns (with a hello that is then ignored).
    fn unblock_accept(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let (Ok(sender), Ok((calls, _)), Ok((bulk, _)), Ok((_, results)), Ok((revoke, _))) = (
            IpcSender::<Hello>::connect(self.name.clone()),
            ipc::bytes_channel(),
            ipc::channel::<IpcSharedMemory>(),
            ipc::channel::<FromWorker>(),
            ipc::channel::<Revoke>(),
        ) {
            let _ = sender.send(Hello {
                token: [0; 16],
                fingerprint: 0,
                pid: 0,
                calls,
                bulk,
                results,
                revoke,
                progress: image::new_block(8),
            });
        }
    }
}

/// Waits for the first message of a child process on `server` (accepting on a helper thread,
/// so that a child that dies first is noticed instead of waited for forever, and the wait is
/// bounded by `CONNECT_TIMEOUT`). On an error the helper thread may still be blocked in
/// `accept`: the caller kills the child and connects to the server itself to release it.
pub(crate) fn accept_child<T>(
    server: IpcOneShotServer<T>,
    child: &mut Child,
    what: &str,
) -> Result<T, String>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.accept().map(|(_, hello)| hello));
    });
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(Ok(hello)) => return Ok(hello),
            Ok(Err(e)) => return Err(format!("a {what} failed to connect: {e}")),
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "a {what} process exited before connecting ({})",
                        exit_status(status)
                    ));
                }
                if Instant::now() > deadline {
                    return Err(format!("a {what} did not connect in time"));
                }
            }
        }
    }
}

/// The program to start as a worker: this very executable.
fn worker_executable() -> std::path::PathBuf {
    // `/proc/self/exe`, opened by the child while exec-ing, is the parent's own image even if
    // the file was replaced on disk since.
    std::path::PathBuf::from("/proc/self/exe")
}

/// 128 random bits from the OS.
pub(crate) fn random_token() -> [u8; 16] {
    use std::io::Read;
    let mut token = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom")
        && f.read_exact(&mut token).is_ok()
    {
        return token;
    }
    // Fallback: std's randomly keyed hasher.
    use std::hash::{BuildHasher, Hasher};
    let s = std::collections::hash_map::RandomState::new();
    for chunk in token.chunks_mut(8) {
        let mut h = s.build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
    }
    token
}
