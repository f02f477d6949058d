//! The dispatcher of a session: the only code that sends and receives this rank's MPI
//! messages. Each round it reads what arrived, sends pending work to the workers' windows
//! (the policies are `remote::window`'s), asks busy workers for work back, pings silent
//! ones, and ends the session.

use super::*;
use crate::stats::{Outcome, RemoteCounters};
use std::sync::atomic::Ordering::Relaxed;

/// Every this many rounds, the dispatcher looks whether it is time to watch the workers.
const WATCH_EVERY: u32 = 32;

/// One worker rank, as the dispatcher tracks it.
pub(super) struct Link {
    info: RankInfo,
    /// What it holds (see `remote::window`).
    window: Window,
    /// When the worker was last heard from (or given work while idle), as of the last
    /// `watch`: a message only sets `heard`, which `watch` turns into a time, so that no
    /// clock is read per message.
    last_heard: Instant,
    heard: bool,
    pinged: bool,
    lost: bool,
    /// Its process, when it runs on this host: its death is seen at once (MPI does not end
    /// a client whose spawned worker died).
    process: Option<crate::os::Pidfd>,
    /// This rank's clock less the worker's, as well as its messages tell it (timeline).
    offset: Option<i64>,
}

impl Link {
    /// It may be sent work (it is alive, and not busy with a task it was robbed behind).
    pub(super) fn open(&self) -> bool {
        !self.lost && self.window.has_room()
    }
}

/// Futures and where their outcomes are in a received message.
pub(super) type Outcomes = Vec<(Box<dyn Completion>, Range<usize>)>;

/// Futures to complete once the dispatcher's state is released (callbacks run there, and
/// may wait on other futures of the pool: see `help`).
#[derive(Default)]
pub(super) struct Finished {
    /// One message's bytes, and the outcomes in it.
    batches: Vec<(Vec<u8>, Outcomes)>,
    failed: Vec<(Box<dyn Completion>, TaskError)>,
}

impl Finished {
    /// Completes the futures (their callbacks run here), and counts how they ended.
    pub(super) fn complete(self, counters: &RemoteCounters) {
        let count = |ended| {
            RemoteCounters::add(
                match ended {
                    Outcome::Ok => &counters.done,
                    Outcome::Failed => &counters.failed,
                    Outcome::Cancelled => &counters.cancelled,
                },
                1,
            )
        };
        for (buf, items) in self.batches {
            for (c, range) in items {
                count(c.complete(Ok(&buf[range])));
            }
        }
        for (c, e) in self.failed {
            count(c.complete(Err(e)));
        }
    }
}

/// A task in a worker: its future, the link that holds it, what a timeline calls it, and
/// the shared tables it names.
type InFlight = (Box<dyn Completion>, usize, &'static str, Vec<TableRef>);

pub(super) struct Dispatcher {
    pub(super) client: Arc<Client>,
    pub(super) port: Port,
    pub(super) links: Vec<Link>,
    /// Tasks in a worker: their futures, which link holds them, what a timeline calls
    /// them, and the shared tables they name (kept until they are over).
    pub(super) inflight: IdMap<InFlight>,
    /// The shared tables sent to workers, by id: the links that hold them.
    tables: IdMap<Vec<usize>>,
    /// The last round ended early, after results (see `step`).
    deferred: bool,
    pub(super) config: Config,
    pub(super) backoff: Backoff,
    /// `State::events` last seen.
    pub(super) seen: u64,
    /// What `dispatch` saw of the shared state this round (one lock per round): nothing was
    /// left pending, and whether new work was still accepted. `steal` and `finish_if_done`
    /// act on it; a change after it is seen next round.
    pub(super) drained: bool,
    pub(super) accepting: bool,
    pub(super) last_check: Instant,
    /// Rounds stepped, to read the clock only now and then.
    pub(super) rounds: u32,
    pub(super) finished: Finished,
    /// The workers were told to leave; this many have not said `Left` yet.
    pub(super) leaving: Option<usize>,
    /// Every worker has left: the session is over.
    pub(super) over: bool,
    pub(super) session: Option<comm::Session>,
}

impl Dispatcher {
    pub(super) fn new(
        client: Arc<Client>,
        port: Port,
        workers: Vec<RankInfo>,
        config: Config,
        host: &str,
    ) -> Self {
        let now = Instant::now();
        Dispatcher {
            client,
            port,
            links: workers
                .into_iter()
                .map(|info| Link {
                    process: (info.host == host)
                        .then(|| crate::os::Pidfd::open(info.pid).ok())
                        .flatten(),
                    info,
                    window: Window::default(),
                    last_heard: now,
                    heard: false,
                    pinged: false,
                    lost: false,
                    offset: None,
                })
                .collect(),
            inflight: IdMap::default(),
            tables: IdMap::default(),
            deferred: false,
            backoff: Backoff::new(config.backoff_cap),
            config,
            seen: 0,
            drained: true,
            accepting: true,
            last_check: now,
            rounds: 0,
            finished: Finished::default(),
            leaving: None,
            over: false,
            session: None,
        }
    }

    /// One round: read what arrived, send what can go, steal, watch. Returns the futures to
    /// complete, whether anything happened, and whether the session is over.
    pub(super) fn step(&mut self) -> (Finished, bool, bool) {
        if self.over {
            return (Finished::default(), false, true);
        }
        // New tasks go out before anything is read: a probe that finds nothing costs about
        // as much as the send, and a task submitted to a quiet pool should not wait for it.
        // When results came in, their freed room is used in the same round.
        let mut progress = self.dispatch();
        if self.receive() {
            if !self.finished.batches.is_empty() && !std::mem::replace(&mut self.deferred, true) {
                // Results: their futures are completed now, and the rest of the round
                // waits for the next one (which comes at once: this one made progress).
                // Never twice in a row, so a stream of results cannot starve it.
                self.backoff.reset();
                self.publish_inflight();
                return (std::mem::take(&mut self.finished), true, false);
            }
            progress = true;
            if !self.drained {
                self.dispatch();
            }
        }
        self.deferred = false;
        progress |= self.steal();
        self.port.test_sends();
        // The clock is read once per `WATCH_EVERY` rounds: a read costs about as much as
        // a round that finds nothing.
        self.rounds = self.rounds.wrapping_add(1);
        if self.rounds.is_multiple_of(WATCH_EVERY)
            && self.last_check.elapsed() >= Duration::from_millis(100)
        {
            self.last_check = Instant::now();
            self.watch();
        }
        let over = self.finish_if_done();
        if progress {
            self.backoff.reset();
        }
        self.publish_inflight();
        (std::mem::take(&mut self.finished), progress, over)
    }

    /// A task of link `li` ended: it ran from `ran[0]` to `ran[1]` on the worker's clock,
    /// which read `sent` when the message left; `outcome` is its encoded outcome. The
    /// worker's times are mapped onto this rank's clock by the smallest difference seen
    /// between a message's arrival here and its `sent` (the worker may be on another host:
    /// the clocks need not agree). That difference is the true offset plus the message's
    /// way here and its wait to be read, so the smallest is the best estimate, and a bar
    /// is never drawn later than its result arrived.
    fn record_task_ended(
        &mut self,
        li: usize,
        name: &'static str,
        ran: [u64; 2],
        sent: u64,
        outcome: &[u8],
    ) {
        let now = crate::os::monotonic_nanos();
        let seen = (i128::from(now) - i128::from(sent)).clamp(i64::MIN.into(), i64::MAX.into());
        let seen = seen as i64;
        let link = &mut self.links[li];
        let offset = *link
            .offset
            .insert(link.offset.map_or(seen, |o| o.min(seen)));
        let here = |t: u64| t.saturating_add_signed(offset);
        let outcome = crate::remote::recording::outcome_of_bytes(outcome);
        self.client
            .timeline
            .task(li, [here(ran[0]), here(ran[1])], outcome, name);
    }

    /// What the workers hold, for the statistics' `running`: stored only when it changed, so
    /// that a round that moves nothing writes nothing shared.
    fn publish_inflight(&self) {
        let n = self.inflight.len() as u64;
        if self.client.inflight.load(Relaxed) != n {
            self.client.inflight.store(n, Relaxed);
        }
    }

    /// Nothing happened in the last round: spins or yields a little here (the next
    /// submission or result is often microseconds away); or says how long to sleep (the
    /// backoff's next poll if results are expected, a long while if only a submission or a
    /// shutdown can bring work) and the events seen, for `Client::sleep`.
    pub(super) fn nap(&mut self) -> Option<(Duration, u64)> {
        let pause = self.backoff.pause()?;
        // After a sleep, the next round looks at the clock (see `step`).
        self.rounds = WATCH_EVERY - 1;
        let expecting = !self.inflight.is_empty() || self.port.sending() || self.leaving.is_some();
        // Even with nothing to expect, wake now and then, to notice that the process exits.
        let nap = if expecting {
            pause
        } else {
            Duration::from_millis(100)
        };
        Some((nap, self.seen))
    }

    /// Reads the messages that have arrived (a bounded number per round). Stops after
    /// results: their futures are completed first, and the probe that would find nothing
    /// more is left to the next round.
    pub(super) fn receive(&mut self) -> bool {
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
            if !self.finished.batches.is_empty() {
                break;
            }
        }
        any
    }

    pub(super) fn link_of(&mut self, src: i32) -> Result<usize, MpiError> {
        let outside = MpiError::Protocol {
            rank: src,
            what: "is not a worker of this session",
        };
        let first = self.links.first().map_or(0, |l| l.info.rank);
        let i = usize::try_from(src - first).map_err(|_| outside.clone())?;
        if i >= self.links.len() {
            return Err(outside);
        }
        Ok(i)
    }

    pub(super) fn handle(&mut self, src: i32, buf: Vec<u8>) -> Result<(), MpiError> {
        let li = self.link_of(src)?;
        let link = &mut self.links[li];
        if link.lost {
            // Its tasks already failed; whatever it says now comes too late.
            return Ok(());
        }
        link.heard = true;
        link.pinged = false;
        let (mut r, k) = Reader::new(&buf)?;
        match k {
            kind::DONE => {
                let n = r.u32()? as usize;
                let sent = r.u64()?;
                let outcomes = r.outcomes(n)?;
                let mut items = Vec::with_capacity(outcomes.len());
                for wire::Outcome { id, range, ran } in outcomes {
                    if !self.links[li].window.release(id) {
                        return Err(MpiError::Protocol {
                            rank: src,
                            what: "sent the result of a task it did not hold",
                        });
                    }
                    let (c, _, name, _) = self.inflight.remove(&id).ok_or(MpiError::Protocol {
                        rank: src,
                        what: "sent an unknown result",
                    })?;
                    if sent != 0 && ran != [0, 0] && self.client.timeline.on() {
                        self.record_task_ended(li, name, ran, sent, &buf[range.clone()]);
                    }
                    items.push((c, range));
                }
                RemoteCounters::add(&self.client.counters.bytes_received, buf.len() as u64);
                self.finished.batches.push((buf, items));
            }
            kind::REVOKED => {
                let n = r.u32()? as usize;
                let calls = r.calls(n)?;
                if !self.links[li].window.revoking {
                    return Err(MpiError::Protocol {
                        rank: src,
                        what: "gave back tasks never asked for",
                    });
                }
                if calls
                    .iter()
                    .any(|(head, _)| !self.links[li].window.holds(head.id))
                {
                    return Err(MpiError::Protocol {
                        rank: src,
                        what: "gave back a task it did not hold",
                    });
                }
                let ids: Vec<u64> = calls.iter().map(|(head, _)| head.id).collect();
                trace::stolen(trace::Pool::Mpi, None, src as u64, ids.len() as u64);
                // What it still holds has started; the last of it runs long.
                self.links[li].window.given_back(&ids, u64::MAX);
                let mut back = Vec::with_capacity(calls.len());
                for (head, range) in calls {
                    let (completion, _, name, tables) =
                        self.inflight.remove(&head.id).ok_or(MpiError::Protocol {
                            rank: src,
                            what: "gave back an unknown task",
                        })?;
                    back.push(Work {
                        id: head.id,
                        target: head.target,
                        payload: buf[range].to_vec(),
                        completion,
                        tables,
                        claimed: true,
                        reserved: false,
                        name,
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
            other => {
                return Err(MpiError::UnexpectedKind {
                    rank: src,
                    kind: other,
                    when: "mid-session",
                });
            }
        }
        Ok(())
    }

    /// Sends pending tasks to the workers with room, the one with the fewest batches in
    /// flight first, until the queue is empty or every window is full; then publishes how
    /// many batches the workers can still take.
    pub(super) fn dispatch(&mut self) -> bool {
        let released = self.release_tables();
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
            return released;
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
                    // Cancelled while pending.
                    RemoteCounters::add(&self.client.counters.cancelled, 1);
                    continue;
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
        sent || released
    }

    /// Tells the workers that hold the shared tables whose last handle was dropped to let
    /// them go; true if it told any. (Not once they were told to leave: the session's end
    /// frees every table there, and no message may follow `Exit`.)
    fn release_tables(&mut self) -> bool {
        let ids = std::mem::take(&mut *lock(&self.client.released));
        if ids.is_empty() || self.leaving.is_some() {
            return false;
        }
        let mut per_link: Vec<Vec<u64>> = vec![Vec::new(); self.links.len()];
        for id in ids {
            for li in self.tables.remove(&id).into_iter().flatten() {
                per_link[li].push(id);
            }
        }
        let mut any = false;
        for (li, ids) in per_link.into_iter().enumerate() {
            if !ids.is_empty() && !self.links[li].lost {
                let rank = self.links[li].info.rank;
                self.port
                    .send(rank, wire::TO_WORKER, wire::release_message(&ids));
                any = true;
            }
        }
        any
    }

    /// Sends the worker of link `li` the shared tables that `batch` names and that it does
    /// not hold yet, each in a `Table` message (before the calls: MPI keeps them in order).
    fn send_tables(&mut self, li: usize, batch: &[Work]) {
        let rank = self.links[li].info.rank;
        for table in batch.iter().flat_map(|w| &w.tables) {
            let holders = self.tables.entry(table.id()).or_default();
            if !holders.contains(&li) {
                holders.push(li);
                let msg = wire::table_message(table.id(), table.bytes());
                RemoteCounters::add(&self.client.counters.bytes_sent, msg.len() as u64);
                self.port.send(rank, wire::TO_WORKER, msg);
            }
        }
    }

    /// Tasks a link can still be sent, with `batches` and `held` in flight: one per free
    /// batch, within its window.
    pub(super) fn free_slots(&self, link: &Link, batches: usize, held: usize) -> usize {
        if !link.open() {
            return 0;
        }
        MAX_BATCHES
            .saturating_sub(batches)
            .min(self.config.window.saturating_sub(held))
    }

    pub(super) fn send_batch(&mut self, li: usize, batch: Vec<Work>) {
        // (Timed calls when recording: the worker then sends their run times.)
        let calls_kind = if self.client.timeline.on() {
            kind::CALLS_TIMED
        } else {
            kind::CALLS
        };
        let link = &mut self.links[li];
        if link.window.is_empty() {
            link.heard = true;
        }
        link.window.send(batch.iter().map(|w| w.id));
        let rank = link.info.rank;
        self.send_tables(li, &batch);
        if let [_] = batch.as_slice() {
            // One call (the common case of a pool that is not flooded): its header goes
            // after its payload, in the room the encoding left.
            let Some(w) = batch.into_iter().next() else {
                return;
            };
            let head = CallHead {
                id: w.id,
                target: w.target,
                len: w.payload.len(),
            };
            w.completion.trace().started(rank as u64);
            self.inflight
                .insert(w.id, (w.completion, li, w.name, w.tables));
            let msg = wire::call_message(calls_kind, head, w.payload);
            RemoteCounters::add(&self.client.counters.bytes_sent, msg.len() as u64);
            self.port.send(rank, wire::TO_WORKER, msg);
            return;
        }
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
            w.completion.trace().started(rank as u64);
            self.inflight
                .insert(w.id, (w.completion, li, w.name, w.tables));
        }
        let msg = wire::calls_message(calls_kind, calls);
        RemoteCounters::add(&self.client.counters.bytes_sent, msg.len() as u64);
        self.port.send(rank, wire::TO_WORKER, msg);
    }

    /// With nothing pending and a worker idle, asks the worker with the most unstarted
    /// calls to give them back.
    pub(super) fn steal(&mut self) -> bool {
        if !self.drained {
            return false;
        }
        let idle = self
            .links
            .iter()
            .filter(|l| l.open() && l.window.is_empty())
            .count();
        if idle == 0 {
            return false; // nobody to give work to
        }
        if !self.links.iter().any(|l| l.window.has_backlog()) {
            return false; // nothing to give back
        }
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
    pub(super) fn watch(&mut self) {
        let now = Instant::now();
        for li in 0..self.links.len() {
            let link = &mut self.links[li];
            if link.lost {
                continue;
            }
            if std::mem::take(&mut link.heard) {
                link.last_heard = now;
            }
            // (Once told to leave, a worker may end its process as soon as it has said so.)
            if self.leaving.is_none() && link.process.as_ref().is_some_and(|p| p.exited()) {
                self.lose(li, "died".into());
                continue;
            }
            if link.window.is_empty() || !link.info.helper {
                continue;
            }
            let silent = now.saturating_duration_since(link.last_heard);
            if silent >= self.config.unresponsive_after {
                self.lose(li, format!("has not answered for {silent:.1?}"));
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

    /// A worker rank died or stopped answering (`what` says which): its tasks fail, and
    /// since MPI cannot go on without it, the pool is broken (everything pending fails) and
    /// the job will be aborted at exit.
    pub(super) fn lose(&mut self, li: usize, what: String) {
        comm::mark_lost();
        RemoteCounters::add(&self.client.counters.deaths, 1);
        let link = &mut self.links[li];
        link.lost = true;
        let info = link.info.clone();
        if self.client.timeline.on() {
            self.client
                .timeline
                .mark_now(li, crate::timeline::MarkKind::Died, info.pid);
        }
        trace::worker_ended(trace::Pool::Mpi, info.rank as u64, true, &what);
        let held = link.window.clear();
        for id in held {
            if let Some((c, ..)) = self.inflight.remove(&id) {
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
            "worker rank {} (pid {} on {}) {what}; MPI cannot continue without it, so the job \
             will be aborted when this process exits",
            info.rank, info.pid, info.host
        )
        .into();
        eprintln!("concurrent_futures: {why}");
        let mut s = lock(&self.client.state);
        s.phase = Phase::Broken(why.clone());
        s.reserved = 0;
        for w in s.pending.drain(..) {
            // A task cancelled while pending stays cancelled: only one claimed here (or
            // before) may be completed.
            if w.claimed || w.completion.claim() {
                self.finished
                    .failed
                    .push((w.completion, TaskError::Broken(why.clone())));
            } else {
                RemoteCounters::add(&self.client.counters.cancelled, 1);
            }
        }
    }

    /// After the session: waits for the last sends; spawned workers are kept for the next
    /// dynamic session (see `spawned`). A session that lost a worker cannot disconnect from
    /// it (that would wait for it forever): the job is aborted at exit instead.
    pub(super) fn close(mut self) {
        {
            let _mpi = comm::serial();
            self.port.flush();
        }
        if self.links.iter().any(|l| l.lost) {
            return;
        }
        if let Some(key) = self.config.spawn.take() {
            let processes = self
                .links
                .iter_mut()
                .filter_map(|l| l.process.take())
                .collect();
            super::super::spawned::keep(key, self.port.comm(), processes);
        }
    }

    /// Ends the session once shutdown was asked and nothing is left: every live worker is
    /// told to leave it, and the session is over when all have said they left (so that no
    /// late answer of this session can reach the next one).
    pub(super) fn finish_if_done(&mut self) -> bool {
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
