//! The client rank (rank 0): pending work, each worker rank's window, and the dispatcher,
//! which owns all MPI traffic of this rank and runs on its MPI thread.
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

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::comm::{self, Backoff, Env, MAX_MESSAGE, Port};
use super::wire::{self, CallHead, Reader, kind};
use crate::error::{ExitStatus, SubmitError, TaskError};
use crate::remote::window::{self, MAX_BATCHES, Window};
use crate::remote::{Completion, FnRef};
use crate::sync::{Condvar, Mutex, lock};

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
}

/// A worker rank that holds tasks and has been silent this long is asked for a sign of life.
const PING_AFTER: Duration = Duration::from_secs(1);
/// Room kept in a message for its header.
const HEADER_ROOM: usize = 64;

/// A task not sent yet (or given back by a worker).
struct Work {
    id: u64,
    target: FnRef,
    payload: Vec<u8>,
    completion: Box<dyn Completion>,
    /// Already RUNNING: given a free slot at submission, or sent once and given back.
    claimed: bool,
    /// Claimed at submission against `State::slots`.
    reserved: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Running,
    /// No new work; the pending work still runs.
    ShuttingDown,
    /// A rank was lost: nothing new runs.
    Broken(Arc<str>),
}

struct State {
    phase: Phase,
    pending: VecDeque<Work>,
    next_id: u64,
    /// Bumped by every submission and shutdown, so the dispatcher knows whether to look.
    events: u64,
    /// The dispatcher sleeps on `Client::wake` and wants a notification.
    sleeping: bool,
    /// The dispatcher finished the session.
    over: bool,
    /// Batches the workers can take now, as the dispatcher last counted them, and how many
    /// of them submissions have reserved since. A task submitted while a slot is free is
    /// claimed (RUNNING) at once, as the dispatcher will send it next; so a task still
    /// pending after `submit` means that no worker has room, as on the process pool.
    slots: usize,
    reserved: usize,
}

/// The handle the executor holds; shared with the dispatcher.
pub(crate) struct Client {
    state: Mutex<State>,
    /// The dispatcher sleeps here; submissions and shutdown wake it.
    wake: Condvar,
    /// `shutdown(wait)` waits here for the end of the session.
    ended: Condvar,
    workers: Vec<RankInfo>,
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
    /// Starts a session: every other rank must be waiting in `MpiPoolExecutor::start`.
    /// Checks that they run the same executable, then starts the dispatcher.
    pub(crate) fn start(env: &'static Env, config: Config) -> Result<Arc<Driver>, String> {
        let cfg = config.clone();
        let (workers, port) = env.call(move || handshake(env, &cfg))?;
        // (On an error, `handshake` released the ranks it could, or marked the job lost.)
        let client = Arc::new(Client {
            state: Mutex::new(State {
                phase: Phase::Running,
                pending: VecDeque::new(),
                next_id: 1,
                events: 0,
                sleeping: false,
                over: false,
                slots: 0,
                reserved: 0,
            }),
            wake: Condvar::new(),
            ended: Condvar::new(),
            workers: workers.clone(),
        });
        let mut dispatcher = Dispatcher::new(client.clone(), port, workers, config.clone());
        dispatcher.session = Some(comm::Session::begin());
        let driver = Arc::new(Driver {
            client,
            dispatcher: Mutex::new(Some(dispatcher)),
            leaders: AtomicUsize::new(0),
            serialized: env.serialized,
            cap: config.backoff_cap,
        });
        let d = driver.clone();
        env.run(move || d.run());
        Ok(driver)
    }

    pub(crate) fn workers(&self) -> &[RankInfo] {
        &self.workers
    }

    /// Queues a task.
    pub(crate) fn submit(
        &self,
        target: FnRef,
        payload: Vec<u8>,
        completion: Box<dyn Completion>,
    ) -> Result<(), SubmitError> {
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
        let mut s = lock(&self.state);
        match &s.phase {
            Phase::Running => {}
            Phase::ShuttingDown => return Err(SubmitError::Shutdown),
            Phase::Broken(why) => return Err(SubmitError::Broken(why.clone())),
        }
        let id = s.next_id;
        s.next_id += 1;
        let reserved = s.reserved < s.slots && completion.claim();
        s.reserved += usize::from(reserved);
        s.pending.push_back(Work {
            id,
            target,
            payload,
            completion,
            claimed: reserved,
            reserved,
        });
        s.events += 1;
        if std::mem::take(&mut s.sleeping) {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Refuses new work; with `cancel`, cancels what is pending.
    pub(crate) fn shutdown(&self, cancel: bool) {
        let cancelled: Vec<Work> = {
            let mut s = lock(&self.state);
            if s.phase == Phase::Running {
                s.phase = Phase::ShuttingDown;
            }
            s.events += 1;
            if std::mem::take(&mut s.sleeping) {
                self.wake.notify_one();
            }
            if cancel {
                // Given-back tasks are RUNNING already: they stay and run.
                let (claimed, unclaimed): (VecDeque<Work>, VecDeque<Work>) =
                    s.pending.drain(..).partition(|w| w.claimed);
                s.pending = claimed;
                unclaimed.into()
            } else {
                Vec::new()
            }
        };
        for w in cancelled {
            w.completion.cancel();
        }
    }
}

/// Rank 0's side of the start of a session: `Start` to every rank, a `Hello` from each.
fn handshake(env: &Env, config: &Config) -> Result<(Vec<RankInfo>, Port), String> {
    let mut port = Port::new();
    let fingerprint = crate::remote::naming::code_fingerprint();
    for rank in 1..env.size {
        let mut buf = Vec::new();
        wire::Writer::new(&mut buf)
            .u64(fingerprint)
            .u64(config.backoff_cap.as_micros() as u64)
            .finish(kind::START);
        port.send(rank, wire::TO_WORKER, buf);
    }
    let mut hellos: Vec<Option<(bool, RankInfo)>> = vec![None; env.size as usize - 1];
    let deadline = Instant::now() + config.start_timeout;
    let mut backoff = Backoff::new(config.backoff_cap);
    while hellos.iter().any(Option::is_none) {
        match port.probe(wire::TO_CLIENT) {
            Some((src, buf)) => {
                let (ok, info) = parse_hello(src, &buf).inspect_err(|_| comm::mark_lost())?;
                let slot = hellos
                    .get_mut(src as usize - 1)
                    .ok_or("a Hello from outside the job")?;
                *slot = Some((ok, info));
                backoff.reset();
            }
            None if Instant::now() > deadline => {
                let missing: Vec<String> = hellos
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.is_none())
                    .map(|(i, _)| (i + 1).to_string())
                    .collect();
                // Those ranks may still join later and wait for calls that never come:
                // the job cannot be finalized cleanly any more.
                comm::mark_lost();
                return Err(format!(
                    "rank(s) {} did not call MpiPoolExecutor::start within {:?} (every rank \
                     must run the same program and reach start)",
                    missing.join(", "),
                    config.start_timeout
                ));
            }
            None => backoff.wait(),
        }
    }
    let hellos: Vec<(bool, RankInfo)> = hellos.into_iter().flatten().collect();
    let mismatched: Vec<&RankInfo> = hellos.iter().filter(|h| !h.0).map(|h| &h.1).collect();
    if !mismatched.is_empty() {
        // The ranks that matched are serving: release them.
        for (ok, info) in &hellos {
            if *ok {
                port.send(info.rank, wire::TO_WORKER, wire::bare(kind::EXIT));
            }
        }
        port.flush();
        let names: Vec<String> = mismatched
            .iter()
            .map(|i| format!("rank {} (pid {} on {})", i.rank, i.pid, i.host))
            .collect();
        return Err(format!(
            "{} run(s) a different executable than rank 0 (code fingerprints differ); every \
             rank must run the same build",
            names.join(", ")
        ));
    }
    Ok((hellos.into_iter().map(|h| h.1).collect(), port))
}

fn parse_hello(src: i32, buf: &[u8]) -> Result<(bool, RankInfo), String> {
    let (mut r, k) = Reader::new(buf)?;
    if k != kind::HELLO {
        return Err(format!("rank {src} sent message kind {k} before its Hello"));
    }
    let ok = r.u8()? != 0;
    let pid = r.u32()?;
    let helper = r.u8()? != 0;
    let host = String::from_utf8_lossy(r.rest()).into_owned();
    Ok((
        ok,
        RankInfo {
            rank: src,
            pid,
            host,
            helper,
        },
    ))
}

/// One worker rank, as the dispatcher tracks it.
struct Link {
    info: RankInfo,
    /// What it holds (see `remote::window`).
    window: Window,
    last_heard: Instant,
    pinged: bool,
    lost: bool,
}

impl Link {
    /// It may be sent work (it is alive, and not busy with a task it was robbed behind).
    fn open(&self) -> bool {
        !self.lost && self.window.has_room()
    }
}

/// Futures and where their outcomes are in a received message.
type Outcomes = Vec<(Box<dyn Completion>, Range<usize>)>;

/// Futures to complete once the dispatcher's state is released (callbacks run there, and
/// may wait on other futures of the pool: see `help`).
#[derive(Default)]
struct Finished {
    /// One message's bytes, and the outcomes in it.
    batches: Vec<(Vec<u8>, Outcomes)>,
    failed: Vec<(Box<dyn Completion>, TaskError)>,
}

impl Finished {
    fn complete(self) {
        for (buf, items) in self.batches {
            for (c, range) in items {
                c.complete(Ok(&buf[range]));
            }
        }
        for (c, e) in self.failed {
            c.complete(Err(e));
        }
    }
}

struct Dispatcher {
    client: Arc<Client>,
    port: Port,
    links: Vec<Link>,
    /// Tasks in a worker: their futures, and which link holds them.
    inflight: HashMap<u64, (Box<dyn Completion>, usize)>,
    config: Config,
    backoff: Backoff,
    /// `State::events` last seen.
    seen: u64,
    /// What `dispatch` saw of the shared state this round (one lock per round): nothing was
    /// left pending, and whether new work was still accepted. `steal` and `finish_if_done`
    /// act on it; a change after it is seen next round.
    drained: bool,
    accepting: bool,
    last_check: Instant,
    finished: Finished,
    /// The workers were told to leave; this many have not said `Left` yet.
    leaving: Option<usize>,
    /// Every worker has left: the session is over.
    over: bool,
    session: Option<comm::Session>,
}

/// A session's dispatcher, and who drives it. The MPI thread drives it unless a user thread
/// that waits on a future of the pool does: when the MPI library allows any thread to call
/// it (`MPI_THREAD_SERIALIZED`), a thread blocked in `result()` runs the dispatcher itself
/// (under the lock), so its task goes out and its result comes in on the thread that waits,
/// with no hand-off to the MPI thread and no wake-up; meanwhile the MPI thread naps. With
/// `MPI_THREAD_FUNNELED` only, the MPI thread does everything.
pub(crate) struct Driver {
    pub(crate) client: Arc<Client>,
    dispatcher: Mutex<Option<Dispatcher>>,
    /// User threads driving (or about to).
    leaders: AtomicUsize,
    serialized: bool,
    cap: Duration,
}

impl Driver {
    /// Called by a thread about to block on a future of the pool (`done` tells when it
    /// may stop). On the MPI thread (a callback waiting on another task), it must keep the
    /// session going, or it would wait forever; elsewhere it drives if it may, or yields a
    /// little (a result is often microseconds away, and a wake-up costs more).
    pub(crate) fn help(&self, done: &dyn Fn() -> bool) {
        if comm::on_mpi_thread() {
            self.drive(done);
        } else if self.serialized {
            self.leaders.fetch_add(1, Ordering::AcqRel);
            self.drive(done);
            if self.leaders.fetch_sub(1, Ordering::AcqRel) == 1 && self.has_work() {
                // The last leader leaves work behind: the MPI thread takes over now.
                self.client.wake.notify_all();
            }
        } else {
            let start = Instant::now();
            while !done() && start.elapsed() < WAITER_YIELD {
                std::thread::yield_now();
            }
        }
    }

    /// Waits until the session is over (every accepted task is done and the workers were
    /// released), driving it if this thread may.
    pub(crate) fn join(&self) {
        if comm::on_mpi_thread() {
            // Called from a callback on the MPI thread: the session cannot end under it.
            return;
        }
        let over = || lock(&self.client.state).over;
        self.help(&|| over() || self.stepped_over());
        let mut s = lock(&self.client.state);
        while !s.over {
            s = self.client.ended.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Something is pending or in flight.
    fn has_work(&self) -> bool {
        let in_flight = lock(&self.dispatcher)
            .as_ref()
            .is_some_and(|d| !d.inflight.is_empty() || d.leaving.is_some());
        in_flight || !lock(&self.client.state).pending.is_empty()
    }

    fn stepped_over(&self) -> bool {
        lock(&self.dispatcher).as_ref().is_none_or(|d| d.over)
    }

    /// Runs the dispatcher until `until()` holds or the session is over. Futures are
    /// completed with the dispatcher released, so a callback may wait on another future
    /// (nesting `drive`) or submit.
    fn drive(&self, until: &dyn Fn() -> bool) {
        loop {
            if until() {
                return;
            }
            let step = lock(&self.dispatcher).as_mut().map(Dispatcher::step);
            let Some((finished, progress, over)) = step else {
                return;
            };
            finished.complete();
            if over {
                return;
            }
            if !progress {
                let nap = lock(&self.dispatcher).as_mut().map(Dispatcher::nap);
                match nap {
                    None => return,
                    Some(Some((nap, seen))) => self.client.sleep(nap, seen),
                    Some(None) => {}
                }
            }
        }
    }

    /// The session, on the MPI thread: it drives whenever no user thread does.
    fn run(self: Arc<Self>) {
        loop {
            if self.leaders.load(Ordering::Acquire) > 0 {
                // A user thread drives: nap, unwoken by submissions (the leader sends them),
                // until the last leader hands over or the cap passes.
                let s = lock(&self.client.state);
                drop(self.client.wake.wait_timeout(s, self.cap));
                if self.stepped_over() {
                    break;
                }
                continue;
            }
            self.drive(&|| self.leaders.load(Ordering::Acquire) > 0);
            if self.stepped_over() {
                break;
            }
        }
        let d = lock(&self.dispatcher).take();
        if let Some(mut d) = d {
            d.port.flush();
        }
        let mut s = lock(&self.client.state);
        s.over = true;
        self.client.ended.notify_all();
    }
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

/// How long a thread about to block on a future keeps looking (yielding) first, where it
/// may not drive.
const WAITER_YIELD: Duration = Duration::from_micros(200);

impl Dispatcher {
    fn new(client: Arc<Client>, port: Port, workers: Vec<RankInfo>, config: Config) -> Self {
        let now = Instant::now();
        Dispatcher {
            client,
            port,
            links: workers
                .into_iter()
                .map(|info| Link {
                    info,
                    window: Window::default(),
                    last_heard: now,
                    pinged: false,
                    lost: false,
                })
                .collect(),
            inflight: HashMap::new(),
            backoff: Backoff::new(config.backoff_cap),
            config,
            seen: 0,
            drained: true,
            accepting: true,
            last_check: now,
            finished: Finished::default(),
            leaving: None,
            over: false,
            session: None,
        }
    }

    /// One round: read what arrived, send what can go, steal, watch. Returns the futures to
    /// complete, whether anything happened, and whether the session is over.
    fn step(&mut self) -> (Finished, bool, bool) {
        if self.over {
            return (Finished::default(), false, true);
        }
        let mut progress = self.receive();
        progress |= self.dispatch();
        progress |= self.steal();
        self.port.test_sends();
        if self.last_check.elapsed() >= Duration::from_millis(100) {
            self.last_check = Instant::now();
            self.watch();
        }
        let over = self.finish_if_done();
        if progress {
            self.backoff.reset();
        }
        (std::mem::take(&mut self.finished), progress, over)
    }

    /// Nothing happened in the last round: spins or yields a little here (the next
    /// submission or result is often microseconds away); or says how long to sleep (the
    /// backoff's next poll if results are expected, a long while if only a submission or a
    /// shutdown can bring work) and the events seen, for `Client::sleep`.
    fn nap(&mut self) -> Option<(Duration, u64)> {
        let pause = self.backoff.pause()?;
        let expecting = !self.inflight.is_empty() || self.port.sending() || self.leaving.is_some();
        // Even with nothing to expect, wake now and then, to notice that the process exits.
        let nap = if expecting {
            pause
        } else {
            Duration::from_millis(100)
        };
        Some((nap, self.seen))
    }

    /// Reads the messages that have arrived (a bounded number per round).
    fn receive(&mut self) -> bool {
        let mut any = false;
        for _ in 0..64 {
            let Some((src, buf)) = self.port.probe(wire::TO_CLIENT) else {
                break;
            };
            any = true;
            if let Err(e) = self.handle(src, buf) {
                // A rank that sends garbage runs something else than we think: stop.
                eprintln!("concurrent_futures: rank 0: {e}; aborting the MPI job");
                comm::abort(3);
            }
        }
        any
    }

    fn link_of(&mut self, src: i32) -> Result<usize, String> {
        let i = usize::try_from(src - 1).map_err(|_| format!("a message from rank {src}"))?;
        if i >= self.links.len() {
            return Err(format!("a message from rank {src}, outside the job"));
        }
        Ok(i)
    }

    fn handle(&mut self, src: i32, buf: Vec<u8>) -> Result<(), String> {
        let li = self.link_of(src)?;
        let link = &mut self.links[li];
        if link.lost {
            // Its tasks already failed; whatever it says now comes too late.
            return Ok(());
        }
        link.last_heard = Instant::now();
        link.pinged = false;
        let (mut r, k) = Reader::new(&buf)?;
        match k {
            kind::DONE => {
                let n = r.u32()? as usize;
                let outcomes = r.outcomes(n)?;
                let mut items = Vec::with_capacity(outcomes.len());
                for (id, range) in outcomes {
                    if !self.links[li].window.release(id) {
                        return Err(format!(
                            "rank {src} sent the result of a task it did not hold"
                        ));
                    }
                    let (c, _) = self
                        .inflight
                        .remove(&id)
                        .ok_or_else(|| format!("rank {src} sent an unknown result"))?;
                    items.push((c, range));
                }
                self.finished.batches.push((buf, items));
            }
            kind::REVOKED => {
                let n = r.u32()? as usize;
                let calls = r.calls(n)?;
                if !self.links[li].window.revoking {
                    return Err(format!("rank {src} gave back tasks never asked for"));
                }
                if calls
                    .iter()
                    .any(|(head, _)| !self.links[li].window.holds(head.id))
                {
                    return Err(format!("rank {src} gave back a task it did not hold"));
                }
                let ids: Vec<u64> = calls.iter().map(|(head, _)| head.id).collect();
                // What it still holds has started; the last of it runs long.
                self.links[li].window.given_back(&ids, u64::MAX);
                let mut back = Vec::with_capacity(calls.len());
                for (head, range) in calls {
                    let (completion, _) = self
                        .inflight
                        .remove(&head.id)
                        .ok_or_else(|| format!("rank {src} gave back an unknown task"))?;
                    back.push(Work {
                        id: head.id,
                        target: head.target,
                        payload: buf[range].to_vec(),
                        completion,
                        claimed: true,
                        reserved: false,
                    });
                }
                let mut s = lock(&self.client.state);
                for w in back.into_iter().rev() {
                    s.pending.push_front(w);
                }
            }
            kind::PONG => {}
            kind::LEFT => {
                if let Some(n) = &mut self.leaving {
                    *n -= 1;
                    if *n == 0 {
                        self.over = true;
                    }
                }
            }
            other => return Err(format!("rank {src} sent message kind {other} mid-session")),
        }
        Ok(())
    }

    /// Sends pending tasks to the workers with room, the one with the fewest batches in
    /// flight first, until the queue is empty or every window is full; then publishes how
    /// many batches the workers can still take.
    fn dispatch(&mut self) -> bool {
        let mut s = lock(&self.client.state);
        self.seen = s.events;
        self.accepting = s.phase == Phase::Running;
        let n = self.links.len();
        self.drained = s.pending.is_empty();
        if self.drained {
            // The common round while tasks run: only the free slots to publish.
            s.slots = self
                .links
                .iter()
                .map(|l| self.free_slots(l, l.window.batches(), l.window.len()))
                .sum();
            return false;
        }
        let mut batches = Vec::new();
        // What each link will hold once these batches are sent.
        let mut load: Vec<(usize, usize)> = self
            .links
            .iter()
            .map(|l| (l.window.batches(), l.window.len()))
            .collect();
        while !s.pending.is_empty() {
            let Some(li) = (0..n)
                .filter(|&i| self.links[i].open() && load[i].0 < MAX_BATCHES)
                .filter(|&i| load[i].1 < self.config.window)
                .min_by_key(|&i| load[i])
            else {
                break;
            };
            // Small batches while little is pending: most of it stays cancellable.
            let size = window::batch_size(s.pending.len(), n).min(self.config.window - load[li].1);
            let mut batch = Vec::with_capacity(size);
            let mut bytes = 0usize;
            while batch.len() < size {
                let Some(w) = s.pending.front() else { break };
                // A large payload goes alone, so that it is sent without a copy.
                if !batch.is_empty() && bytes + w.payload.len() > (1 << 16) {
                    break;
                }
                let w = s.pending.pop_front().expect("front exists");
                if w.reserved {
                    s.reserved -= 1;
                }
                if !w.claimed && !w.completion.claim() {
                    continue; // cancelled while pending
                }
                bytes += w.payload.len();
                batch.push(w);
            }
            if !batch.is_empty() {
                load[li].0 += 1;
                load[li].1 += batch.len();
                batches.push((li, batch));
            }
        }
        s.slots = (0..n)
            .map(|i| self.free_slots(&self.links[i], load[i].0, load[i].1))
            .sum();
        self.drained = s.pending.is_empty();
        drop(s);
        let sent = !batches.is_empty();
        for (li, batch) in batches {
            self.send_batch(li, batch);
        }
        sent
    }

    /// Tasks a link can still be sent, with `batches` and `held` in flight: one per free
    /// batch, within its window.
    fn free_slots(&self, link: &Link, batches: usize, held: usize) -> usize {
        if !link.open() {
            return 0;
        }
        MAX_BATCHES
            .saturating_sub(batches)
            .min(self.config.window.saturating_sub(held))
    }

    fn send_batch(&mut self, li: usize, batch: Vec<Work>) {
        let link = &mut self.links[li];
        if link.window.is_empty() {
            link.last_heard = Instant::now();
        }
        link.window.send(batch.iter().map(|w| w.id));
        let mut calls = Vec::with_capacity(batch.len());
        for w in batch {
            calls.push((
                CallHead {
                    id: w.id,
                    target: w.target,
                    len: w.payload.len(),
                },
                w.payload,
            ));
            self.inflight.insert(w.id, (w.completion, li));
        }
        let rank = link.info.rank;
        self.port.send(
            rank,
            wire::TO_WORKER,
            wire::calls_message(kind::CALLS, calls),
        );
    }

    /// With nothing pending and a worker idle, asks the worker with the most unstarted
    /// calls to give them back.
    fn steal(&mut self) -> bool {
        if !self.drained {
            return false;
        }
        let idle = self
            .links
            .iter()
            .filter(|l| l.open() && l.window.is_empty())
            .count();
        let candidates = self
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| (i, &l.window, l.info.helper && !l.lost));
        let victims = window::victims(candidates, idle);
        for &li in &victims {
            self.links[li].window.revoking = true;
            let rank = self.links[li].info.rank;
            self.port
                .send(rank, wire::TO_WORKER, wire::bare(kind::REVOKE));
        }
        !victims.is_empty()
    }

    /// Pings silent workers that hold tasks; declares lost those silent for too long.
    fn watch(&mut self) {
        for li in 0..self.links.len() {
            let link = &mut self.links[li];
            if link.lost || link.window.is_empty() || !link.info.helper {
                continue;
            }
            let silent = link.last_heard.elapsed();
            if silent >= self.config.unresponsive_after {
                self.lose(li, silent);
            } else if silent >= PING_AFTER && !link.pinged {
                link.pinged = true;
                let rank = link.info.rank;
                self.port
                    .send(rank, wire::TO_WORKER, wire::bare(kind::PING));
            }
        }
        if comm::exiting() {
            // The process is exiting with the pool still open: stop taking work.
            self.client.shutdown(true);
        }
    }

    /// A worker rank stopped answering: its tasks fail, and since MPI cannot go on without
    /// it, the pool is broken (everything pending fails) and the job will be aborted at exit.
    fn lose(&mut self, li: usize, silent: Duration) {
        comm::mark_lost();
        let link = &mut self.links[li];
        link.lost = true;
        let info = link.info.clone();
        let held = link.window.clear();
        for id in held {
            if let Some((c, _)) = self.inflight.remove(&id) {
                self.finished.failed.push((
                    c,
                    TaskError::WorkerDied {
                        pid: info.pid,
                        status: ExitStatus::Unknown,
                    },
                ));
            }
        }
        let why: Arc<str> = format!(
            "rank {} (pid {} on {}) has not answered for {:.1?}; MPI cannot continue without \
             it, so the job will be aborted when this process exits",
            info.rank, info.pid, info.host, silent
        )
        .into();
        eprintln!("concurrent_futures: {why}");
        let mut s = lock(&self.client.state);
        s.phase = Phase::Broken(why.clone());
        s.reserved = 0;
        for w in s.pending.drain(..) {
            self.finished
                .failed
                .push((w.completion, TaskError::Broken(why.clone())));
        }
    }

    /// Ends the session once shutdown was asked and nothing is left: every live worker is
    /// told to leave it, and the session is over when all have said they left (so that no
    /// late answer of this session can reach the next one).
    fn finish_if_done(&mut self) -> bool {
        if self.over {
            return true;
        }
        if self.leaving.is_some() {
            return false;
        }
        if self.accepting || !self.drained {
            return false;
        }
        if !self.inflight.is_empty() || self.links.iter().any(|l| l.window.revoking) {
            return false;
        }
        let mut leaving = 0;
        for link in &self.links {
            if !link.lost {
                self.port
                    .send(link.info.rank, wire::TO_WORKER, wire::bare(kind::EXIT));
                leaving += 1;
            }
        }
        self.leaving = Some(leaving);
        self.over = leaving == 0;
        self.over
    }
}
