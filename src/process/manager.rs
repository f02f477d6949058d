//! The parent side of the process pool: pending work, the workers' windows, the manager
//! thread that reads results and watches the workers, and worker start-up.
//!
//! ```text
//! submit ──► pending queue ──dispatch──► worker's calls channel ──► worker process
//!   (cancellable here)        (claimed: RUNNING; at most `window::MAX_BATCHES` per worker)
//! future ◄── decode + complete ◄── reader: epoll(workers' sockets, their pidfds, a wake-up)
//!                                   └─ the worker died → complete what its result log
//!                                      holds, fail the call it died in, queue again the
//!                                      calls it never started, start a replacement
//! ```
//!
//! Dispatch happens on whichever thread makes room or work: the submitting thread (if a
//! worker's window has room) or the manager thread (when results free a window).

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::Child;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::wire::{
    self, CallRef, Hello, LOG_SIZE, MAX_FRAME, Payload, PostMortem, Revoke, Revoked, TAG_DONE,
    TAG_HELLO, TAG_INIT, TAG_REVOKED, TAG_TO_WORKER, TAG_WELCOME, ToWorkerRef,
};
use crate::error::{ExitStatus, SubmitError, TaskError};
use crate::os::{self, Memfd, Pidfd, Poller, Recv, Socket, WAKE_KEY};
use crate::remote::bootstrap::{self, CONNECT_TIMEOUT, ChildGuard, ENV_WORKER, StartError};
use crate::remote::window::{self, Window};
use crate::remote::{Completion, FnRef, codec, naming};
use crate::sync::{self, Condvar, Mutex};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};

/// How long a thread that wants to read results yields (instead of sleeping) while the
/// manager thread wakes up and lets go of the reader.
const READER_SPIN: Duration = Duration::from_micros(200);
/// How long the manager thread leaves results in flight to a user thread that may come to
/// read them itself, before it reads them (for callbacks and `as_completed`).
const READ_GRACE: Duration = Duration::from_micros(100);

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
    child: ChildGuard,
    /// Calls down, results up (see `wire`).
    main: Arc<Socket>,
    /// Revokes down, served by the worker's helper thread.
    ctl: Socket,
    /// Readable once the worker has exited (even if a process it started still holds its
    /// socket open).
    pidfd: Pidfd,
    /// The worker's result log (see `wire`), read once it is dead.
    log: Memfd,
    /// What it holds (see `remote::window`).
    window: Window,
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
    /// The key of the next worker started.
    next_worker: u64,
    /// Set when start-up failed.
    startup_error: Option<StartError>,
    /// The manager thread has finished (every worker is reaped).
    finished: bool,
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
    /// The manager thread needs the reader (to add a new worker's channel).
    manager_wants: AtomicBool,
    config: Config,
    /// Shared memory blocks kept for large arguments.
    pub(crate) blocks: wire::Blocks,
    thread: Mutex<Option<JoinHandle<()>>>,
    watchdog: Mutex<Option<JoinHandle<()>>>,
}

impl Manager {
    /// Starts the manager thread and the workers; returns once all workers are ready.
    pub(crate) fn start(config: Config) -> Result<Arc<Manager>, StartError> {
        let poller = Poller::new().map_err(|e| StartError::Spawn(e.to_string()))?;
        let manager = Arc::new(Manager {
            state: Mutex::new(State {
                phase: Phase::Starting,
                pending: VecDeque::new(),
                inflight: HashMap::new(),
                workers: HashMap::new(),
                next_id: 1,
                next_worker: 1,
                startup_error: None,
                finished: false,
                respawn: 0,
            }),
            changed: Condvar::new(),
            reader: Mutex::new(None),
            poller,
            wants: AtomicUsize::new(0),
            manager_wants: AtomicBool::new(false),
            config,
            blocks: wire::Blocks::default(),
            thread: Mutex::new(None),
            watchdog: Mutex::new(None),
        });
        let m = manager.clone();
        let handle = std::thread::Builder::new()
            .name("cf-process-manager".into())
            .spawn(move || m.run())
            .map_err(|e| StartError::Spawn(format!("cannot start the manager thread: {e}")))?;
        *sync::lock(&manager.thread) = Some(handle);
        if let Some(limit) = manager.config.task_timeout {
            let m = manager.clone();
            let handle = std::thread::Builder::new()
                .name("cf-process-watchdog".into())
                .spawn(move || m.watch(limit))
                .map_err(|e| StartError::Spawn(format!("cannot start the watchdog thread: {e}")))?;
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
            self.poller.wake();
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
            link.pidfd.signal(signal);
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
                || (stopping(&st) && st.workers.is_empty() && st.finished);
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
                        link.pidfd.signal(libc::SIGKILL);
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
    /// Gives up at once if the pool is stopping, and at `deadline` if there is one.
    pub(crate) fn read_until(&self, done: &dyn Fn() -> bool, deadline: Option<Instant>) {
        self.wants.fetch_add(1, SeqCst);
        let mut finished = Finished::new();
        while !done() {
            let timeout = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(t) if !t.is_zero() => Some(t),
                    _ => break,
                },
                None => None,
            };
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
                    Some(r) if !self.should_stop() => self.pump(r, &mut finished, timeout),
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
        // The manager thread is reading: wake it from its wait so it lets go.
        self.poller.wake();
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
            self.poller.wake();
        }
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
                self.pump(r, &mut finished, None)
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

    /// One round of reading: waits for events (at most `timeout`) and handles them; the
    /// tasks they finish go to `finished`. False if the poller is unusable.
    fn pump(&self, r: &mut Reader, finished: &mut Finished, timeout: Option<Duration>) -> bool {
        if let Err(e) = self.poller.wait(&mut r.keys, timeout) {
            eprintln!("concurrent_futures: the process pool cannot watch its workers: {e}");
            return false;
        }
        let keys = std::mem::take(&mut r.keys);
        for &key in &keys {
            if key == WAKE_KEY {
                continue;
            }
            let id = key >> 1;
            let exited = key & 1 == 1;
            self.drain(id, r, finished, exited);
        }
        r.keys = keys;
        self.retire_if_done();
        true
    }

    /// Reads every message a worker's socket holds. Once the worker has exited (its pidfd
    /// is readable) or closed its socket, handles its death after its last message.
    fn drain(&self, id: u64, r: &mut Reader, finished: &mut Finished, exited: bool) {
        let Some(main) = sync::lock(&self.state)
            .workers
            .get(&id)
            .map(|l| l.main.clone())
        else {
            return;
        };
        loop {
            r.fds.clear();
            match main.recv(&mut r.buf, &mut r.fds, true) {
                Ok(Recv::Message(_)) => {
                    if let Err(why) = self.on_message(id, &r.buf, &mut r.fds, finished) {
                        // It broke the protocol: it is stopped, and its death is handled
                        // as any other.
                        eprintln!("concurrent_futures: a worker sent {why}; stopping it");
                        self.kill_worker(id);
                    }
                }
                Ok(Recv::Empty) if !exited => return,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // A message longer than any the protocol allows (never allocated for).
                    eprintln!("concurrent_futures: a worker sent {e}; stopping it");
                    self.kill_worker(id);
                }
                // A worker that died with messages of ours unread resets the socket: the
                // error is reported once, and what it sent before is still there to read.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Ok(Recv::Empty | Recv::Closed) | Err(_) => break,
            }
        }
        self.on_closed(id, finished);
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
        self.wants.load(SeqCst) == 0 && expecting(st)
    }

    /// True once the pool is stopping and no worker is left.
    fn should_stop(&self) -> bool {
        let st = sync::lock(&self.state);
        stopping(&st) && st.workers.is_empty()
    }

    /// Handles one message of worker `id`. An error means the worker broke the protocol.
    fn on_message(
        &self,
        id: u64,
        msg: &[u8],
        fds: &mut Vec<OwnedFd>,
        finished: &mut Finished,
    ) -> Result<(), &'static str> {
        let (&tag, body) = msg.split_first().ok_or("an empty message")?;
        match tag {
            TAG_DONE => self.on_done(id, body, fds, finished),
            TAG_INIT => {
                if !fds.is_empty() {
                    return Err("descriptors with its initializer's outcome");
                }
                match crate::remote::codec::decode_outcome::<()>(body) {
                    Ok(()) => {
                        let mut st = sync::lock(&self.state);
                        if let Some(link) = st.workers.get_mut(&id) {
                            if link.ready {
                                return Err("a second initializer outcome");
                            }
                            link.ready = true;
                        }
                        if st.phase == Phase::Starting && st.workers.values().all(|l| l.ready) {
                            st.phase = Phase::Running;
                            self.changed.notify_all();
                        }
                        dispatch(&mut st);
                    }
                    Err(e) => finished
                        .extend(self.break_pool(format!("a worker's initializer failed: {e}"))),
                }
                Ok(())
            }
            TAG_REVOKED => {
                let Revoked { ids, unread_from } =
                    codec::decode(body).map_err(|_| "a malformed answer to a revoke")?;
                let mut st = sync::lock(&self.state);
                let State {
                    workers,
                    inflight,
                    pending,
                    ..
                } = &mut *st;
                let Some(link) = workers.get_mut(&id) else {
                    return Ok(());
                };
                if !link.window.revoking {
                    return Err("an answer to a revoke never asked");
                }
                let mut back = link.window.given_back(&ids, unread_from);
                // Back to the front of the queue, in their order.
                back.reverse();
                for task in back {
                    if let Some(mut w) = inflight.remove(&task) {
                        w.claimed = true;
                        pending.push_front(w);
                    }
                }
                dispatch(&mut st);
                Ok(())
            }
            _ => Err("an unknown message"),
        }
    }

    /// Results: each must be of a task this worker holds (a worker cannot complete another
    /// worker's task, or one twice); a result in shared memory is read with its length
    /// checked. A result that cannot be read fails its own task only.
    fn on_done(
        &self,
        id: u64,
        body: &[u8],
        fds: &mut Vec<OwnedFd>,
        finished: &mut Finished,
    ) -> Result<(), &'static str> {
        let mut st = sync::lock(&self.state);
        let State {
            workers, inflight, ..
        } = &mut *st;
        let Some(link) = workers.get_mut(&id) else {
            return Ok(());
        };
        // The whole message is checked before any of it is used: a message with one bad
        // record completes nothing.
        let mut shared = 0;
        let mut ids = Vec::new();
        for record in wire::records(body) {
            let record = record.map_err(|_| "a malformed result record")?;
            // (At most one result per task held, so these checks stay small.)
            if ids.len() >= link.window.len()
                || !link.window.holds(record.id)
                || ids.contains(&record.id)
            {
                return Err("a result for a task it does not hold");
            }
            ids.push(record.id);
            shared += usize::from(record.shared);
        }
        if shared != fds.len() {
            return Err("results whose files do not match the descriptors sent");
        }
        let mut files = fds.drain(..);
        for record in wire::records(body).map_while(Result::ok) {
            let bytes = if record.shared {
                let fd = files.next().expect("[internal] counted above");
                wire::read_shared(fd, record.len)
                    .map_err(|e| TaskError::Codec(format!("the task's result: {e}").into()))
            } else {
                Ok(record.payload.to_vec())
            };
            link.finished(record.id);
            if let Some(w) = inflight.remove(&record.id) {
                finished.push((w.completion, bytes));
                self.blocks.put(w.payload);
            }
        }
        if let Some(limit) = self.config.max_tasks_per_child
            && link.tasks_done >= limit
            && !link.retiring
        {
            link.retire();
        }
        dispatch(&mut st);
        Ok(())
    }

    /// A worker exited or died (after its last message was read). The results in its log
    /// complete their tasks; the task it was running fails; those it had not started go
    /// back to the front of the queue, so no task runs twice and none is lost. While the
    /// pool is running, the manager thread starts a replacement.
    fn on_closed(&self, id: u64, finished: &mut Finished) {
        let link = sync::lock(&self.state).workers.remove(&id);
        let Some(mut link) = link else { return };
        self.poller.remove(link.main.as_fd());
        self.poller.remove(link.pidfd.as_fd());
        let status = reap(&mut link.child);
        // The worker is dead: its log no longer changes (a process it started could still
        // write to it, which costs only this worker's own tasks: everything read is checked).
        let log = PostMortem::read(&link.log);
        let failed = {
            let mut st = sync::lock(&self.state);
            let terminated = st.phase == Phase::Terminated;
            // Calls run in the order sent: those up to the last it started have run, those
            // after it never started. (If it started none of them, none has run.)
            let started = link
                .window
                .tasks()
                .position(|task| task == log.started)
                .map_or(0, |p| p + 1);
            let mut held: Vec<Work> = Vec::new();
            let mut unstarted: Vec<Work> = Vec::new();
            for (i, task) in link.window.clear().into_iter().enumerate() {
                let Some(w) = st.inflight.remove(&task) else {
                    continue;
                };
                if let Some(pos) = log.results.iter().position(|(id, _)| *id == task) {
                    // Finished, its result committed to the log: delivered.
                    let bytes = log.results[pos].1.clone();
                    finished.push((w.completion, Ok(bytes)));
                    self.blocks.put(w.payload);
                } else if i < started {
                    held.push(w);
                } else {
                    unstarted.push(w);
                }
            }
            let died = TaskError::WorkerDied {
                pid: link.pid,
                status,
            };
            let failed: Vec<(Work, TaskError)> = if terminated {
                let error = TaskError::Broken("the pool was terminated".into());
                held.into_iter()
                    .chain(unstarted)
                    .map(|w| (w, error.clone()))
                    .collect()
            } else {
                for mut w in unstarted.into_iter().rev() {
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
            link.pidfd.signal(libc::SIGKILL);
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
            drop(link.main);
            drop(link.ctl);
            let _ = link.child.wait();
        }
    }

    /// Starts `n` workers (on the manager thread): spawns them all, waits for each
    /// handshake, then watches their sockets. On a failure, every worker started here is
    /// killed and reaped, and everything opened for them is closed.
    fn spawn_workers(&self, n: usize) -> Result<(), StartError> {
        let mut starting = Vec::with_capacity(n);
        for _ in 0..n {
            starting.push(Starting::spawn()?);
        }
        let mut connected = Vec::with_capacity(n);
        for s in starting {
            let mut link = s.connect()?;
            if let Some(init) = self.config.initializer {
                link.ready = false;
                // (On an error, dropping the links kills and reaps their workers.)
                link.send(&ToWorkerRef::Init(init), &[])
                    .map_err(|e| StartError::Connect("worker", e.to_string()))?;
            }
            connected.push(link);
        }
        for link in connected {
            let mut st = sync::lock(&self.state);
            let id = st.next_worker;
            st.next_worker += 1;
            let watched = self
                .poller
                .add(link.main.as_fd(), socket_key(id))
                .and_then(|()| self.poller.add(link.pidfd.as_fd(), socket_key(id) + 1));
            if let Err(e) = watched {
                return Err(StartError::Spawn(format!("cannot watch a worker: {e}")));
            }
            st.workers.insert(id, link);
            dispatch(&mut st);
        }
        let _st = sync::lock(&self.state);
        self.changed.notify_all();
        Ok(())
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
        self.window.release(task);
        self.head_since = (!self.window.is_empty()).then(Instant::now);
    }

    /// May be sent work.
    fn open(&self) -> bool {
        self.ready && !self.retiring
    }

    /// Ready for work and holding none.
    fn idle(&self) -> bool {
        self.open() && self.window.has_room() && self.window.is_empty()
    }

    /// Asks the worker to exit once it has finished what it was sent.
    fn retire(&mut self) {
        if !self.retiring {
            self.retiring = true;
            let _ = self.send(&ToWorkerRef::Exit, &[]);
        }
    }

    /// Sends a message, with the shared payload files of its calls attached.
    fn send(&self, msg: &ToWorkerRef<'_>, files: &[BorrowedFd<'_>]) -> std::io::Result<()> {
        let bytes = codec::encode(msg).map_err(std::io::Error::other)?;
        self.main.send(&[&[TAG_TO_WORKER], &bytes], files)
    }
}

/// Sends pending work to workers with room, in batches when much is pending (the policies
/// are `remote::window`'s).
fn dispatch(st: &mut State) {
    let n = st.workers.len();
    while !st.pending.is_empty() {
        let open = st.workers.iter().map(|(&k, l)| (k, &l.window, l.open()));
        let Some(wid) = window::pick(open) else {
            return;
        };
        let size = window::batch_size(st.pending.len(), n);
        let mut batch: Vec<Work> = Vec::with_capacity(size);
        // A batch is one message: its inline payloads fit in `MAX_FRAME` with room for the
        // rest, and its shared payloads in one message's descriptors.
        let (mut bytes, mut files) = (0, 0);
        while batch.len() < size {
            let Some(work) = st.pending.front() else {
                break;
            };
            let (b, f) = (
                work.payload.inline().len() + 64,
                usize::from(work.payload.file().is_some()),
            );
            if !batch.is_empty() && (bytes + b > MAX_FRAME - 1024 || files + f > os::MAX_FDS) {
                break;
            }
            let Some(work) = st.pending.pop_front() else {
                break;
            };
            if work.claimed || work.completion.claim() {
                bytes += b;
                files += f;
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
        let seq = link.window.seq() + 1;
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
        let files: Vec<BorrowedFd<'_>> = batch
            .iter()
            .filter_map(|w| w.payload.file().map(AsFd::as_fd))
            .collect();
        let sent = link.send(&msg, &files);
        drop(files);
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
        if link.window.is_empty() {
            link.head_since = Some(Instant::now());
        }
        link.window.send(batch.iter().map(|w| w.id));
        for w in batch {
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
    let idle = st.workers.values().filter(|l| l.idle()).count();
    if idle == 0 {
        return;
    }
    let candidates = st.workers.iter().map(|(&k, l)| (k, &l.window, l.open()));
    for key in window::victims(candidates, idle) {
        let Some(link) = st.workers.get_mut(&key) else {
            continue;
        };
        let revoke = codec::encode(&Revoke {
            through: link.window.seq(),
        });
        if revoke.is_ok_and(|bytes| link.ctl.send(&[&bytes], &[]).is_ok()) {
            link.window.revoking = true;
        }
    }
}

/// Waits for a worker whose socket closed or whose process exited, and reports how it
/// ended.
fn reap(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return bootstrap::exit_status(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                // Socket closed but still running: it cannot serve us any more.
                let _ = child.kill();
                return child
                    .wait()
                    .map(bootstrap::exit_status)
                    .unwrap_or(ExitStatus::Unknown);
            }
            Err(_) => return ExitStatus::Unknown,
        }
    }
}

/// A worker process that was spawned and has not said hello yet. Dropped before it
/// connects, it is killed and reaped.
struct Starting {
    child: ChildGuard,
    main: Socket,
    ctl: Socket,
    log: Memfd,
}

impl Starting {
    /// Spawns a worker with one end of a socket pair: only it can talk to us on the other.
    /// The welcome (its control socket and result log) waits in the socket for it.
    fn spawn() -> Result<Starting, StartError> {
        let io = |e: std::io::Error| StartError::Spawn(e.to_string());
        let (main, theirs) = Socket::pair().map_err(io)?;
        let (ctl, their_ctl) = Socket::pair().map_err(io)?;
        let log = Memfd::new(LOG_SIZE).map_err(io)?;
        let mut command = bootstrap::worker_executable();
        command.env(ENV_WORKER, theirs.raw().to_string());
        let inherited = theirs.raw();
        use std::os::unix::process::CommandExt;
        // SAFETY: the hook runs in the child between `fork` and `exec` and only calls
        // `inherit_in_child`, which is async-signal-safe (see its contract).
        unsafe {
            command.pre_exec(move || os::inherit_in_child(&[inherited]));
        }
        let child = ChildGuard(command.spawn().map_err(io)?);
        drop(theirs);
        main.send(&[&[TAG_WELCOME]], &[their_ctl.as_fd(), log.as_fd()])
            .map_err(|e| StartError::Connect("worker", e.to_string()))?;
        Ok(Starting {
            child,
            main,
            ctl,
            log,
        })
    }

    /// Waits for the worker's hello, bounded by `CONNECT_TIMEOUT`, noticing a worker that
    /// dies first.
    fn connect(self) -> Result<Link, StartError> {
        let Starting {
            mut child,
            main,
            ctl,
            log,
        } = self;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut buf = Vec::with_capacity(256);
        let mut fds = Vec::new();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(StartError::Exited("worker", bootstrap::exit_status(status)));
            }
            if Instant::now() > deadline {
                return Err(StartError::Timeout("worker", CONNECT_TIMEOUT));
            }
            match main.wait_readable(Duration::from_millis(5)) {
                Ok(false) => continue,
                Ok(true) => break,
                Err(e) => return Err(StartError::Connect("worker", e.to_string())),
            }
        }
        let hello = match main.recv(&mut buf, &mut fds, true) {
            Ok(Recv::Message(_)) if buf[0] == TAG_HELLO && fds.is_empty() => {
                codec::decode::<Hello>(&buf[1..])
                    .map_err(|e| StartError::Protocol("worker", e.to_string()))?
            }
            Ok(Recv::Closed) => {
                let status = child.wait().map(bootstrap::exit_status);
                return Err(StartError::Exited(
                    "worker",
                    status.unwrap_or(ExitStatus::Unknown),
                ));
            }
            Ok(_) => return Err(StartError::Protocol("worker", "no hello".into())),
            Err(e) => return Err(StartError::Connect("worker", e.to_string())),
        };
        if hello.fingerprint != naming::fingerprint() {
            return Err(StartError::Fingerprint("worker"));
        }
        let pid = child.id();
        if hello.pid != pid {
            return Err(StartError::Protocol(
                "worker",
                "a hello from another process".into(),
            ));
        }
        let pidfd = Pidfd::open(pid).map_err(|e| StartError::Spawn(e.to_string()))?;
        Ok(Link {
            pid,
            child,
            main: Arc::new(main),
            ctl,
            pidfd,
            log,
            window: Window::default(),
            ready: true,
            retiring: false,
            tasks_done: 0,
            head_since: None,
            timed_out: false,
        })
    }
}
