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
    IpcSender,
};

use super::image;
use super::protocol::{self, CallRef, FnRef, FromWorker, Hello, ToWorkerRef};
use super::worker::format_token;
use crate::error::{ExitStatus, SubmitError, TaskError};
use crate::future::Future;
use crate::sync::{self, Condvar, Mutex};

/// Batches in flight per worker: one running, one waiting behind it, so a worker never
/// waits for the parent between batches.
const MAX_BATCHES: usize = 2;
/// Largest batch of calls in one message.
const MAX_BATCH: usize = 64;
/// How long a new worker may take to connect before start-up fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings fixed when the pool is built.
pub(crate) struct Config {
    pub(crate) workers: usize,
    pub(crate) initializer: Option<FnRef>,
    pub(crate) max_tasks_per_child: Option<usize>,
}

/// A task's future, seen without its result type: claim it, cancel it, or complete it from
/// the bytes a worker sent.
pub(crate) trait Completion: Send {
    /// PENDING → RUNNING; false if it was cancelled (it must not be sent).
    fn claim(&self) -> bool;
    fn cancel(self: Box<Self>);
    fn complete(self: Box<Self>, outcome: Result<Vec<u8>, TaskError>);
}

/// The `Completion` of a `Future<T>` whose worker sends an encoded `Result<T, TaskError>`.
pub(crate) struct Slot<T>(pub(crate) Future<T>);

impl<T: serde::de::DeserializeOwned + Send + Sync + 'static> Completion for Slot<T> {
    fn claim(&self) -> bool {
        self.0.core().claim()
    }
    fn cancel(self: Box<Self>) {
        self.0.cancel();
    }
    fn complete(self: Box<Self>, outcome: Result<Vec<u8>, TaskError>) {
        let value = outcome.and_then(|bytes| protocol::decode_outcome::<T>(&bytes));
        self.0.finish_claimed(value);
    }
}

/// A task, pending or in a worker. The payload is kept until the result arrives, so that a
/// task a dead worker never started can be sent to another.
struct Work {
    id: u64,
    target: FnRef,
    payload: Vec<u8>,
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
    /// Tasks left in each batch sent, oldest first.
    batches: VecDeque<usize>,
    /// Ids in flight on this worker, in the order sent (= the order it runs them).
    held: VecDeque<u64>,
    /// The initializer has run (or there is none): the worker may get calls.
    ready: bool,
    /// Told to exit (shutdown, or `max_tasks_per_child` reached).
    retiring: bool,
    tasks_done: usize,
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
}

/// Shared by the pool handle and its manager thread.
pub(crate) struct Manager {
    state: Mutex<State>,
    changed: Condvar,
    config: Config,
    thread: Mutex<Option<JoinHandle<()>>>,
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
            }),
            changed: Condvar::new(),
            config,
            thread: Mutex::new(None),
        });
        let m = manager.clone();
        let handle = std::thread::Builder::new()
            .name("cf-process-manager".into())
            .spawn(move || m.run())
            .map_err(|e| format!("cannot start the manager thread: {e}"))?;
        *sync::lock(&manager.thread) = Some(handle);
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
        payload: Vec<u8>,
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
        dispatch(&mut st);
        Ok(())
    }

    /// Stops accepting work; with `cancel`, cancels what is pending. Wakes the manager so
    /// that it retires the workers once the work is done.
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
        let handle = sync::lock(&self.thread).take();
        if let Some(h) = handle {
            if h.thread().id() == std::thread::current().id() {
                *sync::lock(&self.thread) = Some(h);
                return;
            }
            let _ = h.join();
        }
    }

    /// Pids of the live workers.
    pub(crate) fn pids(&self) -> Vec<u32> {
        let st = sync::lock(&self.state);
        let mut pids: Vec<u32> = st.workers.values().map(|l| l.pid).collect();
        pids.sort_unstable();
        pids
    }

    // ===== the manager thread =====

    fn run(self: Arc<Self>) {
        let mut set = match IpcReceiverSet::new() {
            Ok(s) => s,
            Err(e) => return self.fail_startup(format!("cannot create a receiver set: {e}")),
        };
        let (wake_tx, wake_rx) = match ipc::channel::<()>() {
            Ok(c) => c,
            Err(e) => return self.fail_startup(format!("cannot create a channel: {e}")),
        };
        let wake_id = match set.add(wake_rx) {
            Ok(id) => id,
            Err(e) => return self.fail_startup(format!("cannot watch a channel: {e}")),
        };
        sync::lock(&self.state).wake = Some(wake_tx);
        if let Err(e) = self.spawn_workers(&mut set, self.config.workers) {
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
            if self.should_stop() {
                break;
            }
            let events = match set.select() {
                Ok(ev) => ev,
                Err(e) => {
                    eprintln!("concurrent_futures: the process pool lost its channels: {e}");
                    self.shutdown(true, true);
                    self.kill_all();
                    break;
                }
            };
            for event in events {
                match event {
                    IpcSelectionResult::MessageReceived(id, _) if id == wake_id => {}
                    IpcSelectionResult::ChannelClosed(id) if id == wake_id => {}
                    IpcSelectionResult::MessageReceived(id, msg) => match msg.to::<FromWorker>() {
                        Ok(msg) => self.on_message(id, msg),
                        Err(e) => {
                            eprintln!(
                                "concurrent_futures: malformed message from a worker ({e}); stopping it"
                            );
                            self.kill_worker(id);
                        }
                    },
                    IpcSelectionResult::ChannelClosed(id) => self.on_closed(id, &mut set),
                }
            }
            self.retire_if_done();
        }
        self.reap_all();
        let mut st = sync::lock(&self.state);
        st.wake = None;
        self.changed.notify_all();
    }

    fn fail_startup(&self, error: String) {
        let mut st = sync::lock(&self.state);
        st.startup_error = Some(error);
        self.changed.notify_all();
    }

    /// True once the pool is stopping and no worker is left.
    fn should_stop(&self) -> bool {
        let st = sync::lock(&self.state);
        matches!(
            st.phase,
            Phase::ShuttingDown | Phase::Terminated | Phase::Broken(_)
        ) && st.workers.is_empty()
    }

    fn on_message(&self, id: u64, msg: FromWorker) {
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
                self.break_pool(format!("a worker's initializer failed: {e}"))
            }
            FromWorker::Done(results) => {
                let mut done = Vec::with_capacity(results.len());
                {
                    let mut st = sync::lock(&self.state);
                    let State {
                        workers, inflight, ..
                    } = &mut *st;
                    for r in results {
                        if let Some(w) = inflight.remove(&r.id) {
                            done.push((w.completion, r.payload));
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
                for (c, payload) in done {
                    c.complete(Ok(payload));
                }
            }
        }
    }

    /// A worker's results channel closed: it exited or died. The task it was running (the
    /// first it had not answered: it runs them in order) fails; those it had not started go
    /// back to the front of the queue. While the pool is running, a replacement starts.
    fn on_closed(&self, id: u64, set: &mut IpcReceiverSet) {
        let link = sync::lock(&self.state).workers.remove(&id);
        let Some(mut link) = link else { return };
        let status = reap(&mut link.child);
        let failed: Vec<Work> = {
            let mut st = sync::lock(&self.state);
            let terminated = st.phase == Phase::Terminated;
            let mut held: Vec<Work> = link
                .held
                .iter()
                .filter_map(|task| st.inflight.remove(task))
                .collect();
            if terminated || held.is_empty() {
                held
            } else {
                let running = held.remove(0);
                for mut w in held.into_iter().rev() {
                    w.claimed = true;
                    st.pending.push_front(w);
                }
                vec![running]
            }
        };
        let error = {
            let st = sync::lock(&self.state);
            if st.phase == Phase::Terminated {
                TaskError::Broken("the pool was terminated".into())
            } else {
                TaskError::WorkerDied {
                    pid: link.pid,
                    status,
                }
            }
        };
        for w in failed {
            w.completion.complete(Err(error.clone()));
        }
        let replace = {
            let st = sync::lock(&self.state);
            matches!(st.phase, Phase::Running | Phase::Starting)
                || (st.phase == Phase::ShuttingDown && !st.pending.is_empty())
        };
        if replace && let Err(e) = self.spawn_workers(set, 1) {
            self.break_pool(format!("cannot replace a dead worker: {e}"));
        }
        let mut st = sync::lock(&self.state);
        dispatch(&mut st);
    }

    /// The pool cannot work (an initializer failed): refuse work, fail what is pending.
    fn break_pool(&self, reason: String) {
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
        for w in failed {
            if w.claimed || w.completion.claim() {
                w.completion
                    .complete(Err(TaskError::Broken(reason.clone())));
            }
        }
    }

    /// Once shutting down with nothing pending or in flight, tells every worker to exit.
    fn retire_if_done(&self) {
        let mut st = sync::lock(&self.state);
        let stopping = match st.phase {
            Phase::ShuttingDown => st.pending.is_empty() && st.inflight.is_empty(),
            Phase::Terminated | Phase::Broken(_) => true,
            _ => false,
        };
        if stopping {
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

    /// Starts `n` workers: spawns them all, then waits for each handshake.
    fn spawn_workers(&self, set: &mut IpcReceiverSet, n: usize) -> Result<(), String> {
        let mut starting = Vec::with_capacity(n);
        for _ in 0..n {
            starting.push(Starting::spawn()?);
        }
        for s in starting {
            let (link, results) = s.connect()?;
            let id = set
                .add(results)
                .map_err(|e| format!("cannot watch a worker's channel: {e}"))?;
            let mut link = link;
            if let Some(init) = self.config.initializer {
                link.ready = false;
                link.send(&ToWorkerRef::Init(init))
                    .map_err(|e| format!("cannot reach a new worker: {e}"))?;
            }
            sync::lock(&self.state).workers.insert(id, link);
        }
        Ok(())
    }
}

impl Link {
    fn finished(&mut self, task: u64) {
        self.tasks_done += 1;
        if self.held.front() == Some(&task) {
            self.held.pop_front();
        } else if let Some(pos) = self.held.iter().position(|&t| t == task) {
            self.held.remove(pos);
        }
        if let Some(front) = self.batches.front_mut() {
            *front -= 1;
            if *front == 0 {
                self.batches.pop_front();
            }
        }
    }

    fn has_room(&self) -> bool {
        self.ready && !self.retiring && self.batches.len() < MAX_BATCHES
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
        let msg = ToWorkerRef::Calls(
            batch
                .iter()
                .map(|w| CallRef {
                    id: w.id,
                    target: w.target,
                    payload: &w.payload,
                })
                .collect(),
        );
        // A send error means the worker is gone; its channel closes and the manager then
        // handles these tasks as held by a dead worker.
        let _ = link.send(&msg);
        drop(msg);
        link.batches.push_back(batch.len());
        for w in batch {
            link.held.push_back(w.id);
            st.inflight.insert(w.id, w);
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
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(server.accept().map(|(_, hello)| hello));
        });
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let hello = loop {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(Ok(hello)) => break hello,
                Ok(Err(e)) => return self.fail(format!("a worker failed to connect: {e}")),
                Err(_) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        self.unblock_accept();
                        return Err(format!(
                            "a worker process exited before connecting ({})",
                            exit_status(status)
                        ));
                    }
                    if Instant::now() > deadline {
                        self.unblock_accept();
                        return self.fail("a worker did not connect in time".into());
                    }
                }
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
            batches: VecDeque::new(),
            held: VecDeque::new(),
            ready: true,
            retiring: false,
            tasks_done: 0,
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
        if let (Ok(sender), Ok((calls, _)), Ok((_, results))) = (
            IpcSender::<Hello>::connect(self.name.clone()),
            ipc::bytes_channel(),
            ipc::channel::<FromWorker>(),
        ) {
            let _ = sender.send(Hello {
                token: [0; 16],
                fingerprint: 0,
                pid: 0,
                calls,
                results,
            });
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
fn random_token() -> [u8; 16] {
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
