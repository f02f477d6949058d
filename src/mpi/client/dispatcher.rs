//! The dispatcher of a session: the only code that sends and receives this rank's MPI
//! messages. Each round it reads what arrived, sends pending work to the workers' windows,
//! asks busy workers for work back, pings silent ones, and ends the session. Every decision
//! of those is the dispatch core's (`remote::scheduler`), through its transport
//! (`transport`'s `Messages`); what is this file's own is what only MPI has: the rounds,
//! the checking of every message, the liveness watch, the clock offsets of the timeline.

use super::transport::{Messages, Rank};
use super::*;
use crate::remote::scheduler::{Unasked, bury};
use crate::stats::RemoteCounters;
use std::sync::atomic::Ordering::Relaxed;

/// Every this many rounds, the dispatcher looks whether it is time to watch the workers.
const WATCH_EVERY: u32 = 32;

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
        for (buf, items) in self.batches {
            for (c, range) in items {
                counters.ended(c.complete(Ok(&buf[range])));
            }
        }
        for (c, e) in self.failed {
            counters.ended(c.complete(Err(e)));
        }
    }
}

pub(super) struct Dispatcher {
    pub(super) client: Arc<Client>,
    pub(super) port: Port,
    /// The worker ranks still in the session (keyed by their place among the session's
    /// ranks; a lost rank is no longer there), and the tasks they hold.
    pub(super) workers: Workers<Rank, Vec<u8>>,
    /// The session's first worker rank, and how many it started with.
    first_rank: i32,
    ranks: usize,
    /// The shared tables sent to workers, by id: the workers that hold them.
    tables: IdMap<Vec<u64>>,
    /// The last round ended early, after results (see `step`).
    deferred: bool,
    pub(super) config: Config,
    pub(super) backoff: Backoff,
    /// `State::events` last seen.
    pub(super) seen: u64,
    /// What `dispatch` saw of the shared state this round (one lock per round): nothing was
    /// left pending, and the pool's phase. `steal` and `finish_if_done` act on it; a
    /// change after it is seen next round.
    pub(super) drained: bool,
    pub(super) phase: Phase,
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
        let first_rank = workers.first().map_or(0, |i| i.rank);
        let ranks = workers.len();
        // Each rank holds at most `window` tasks, and answers revokes if it has a helper.
        let mut links = Workers::new(config.window);
        for (key, info) in (0..).zip(workers) {
            let helper = info.helper;
            let rank = Rank {
                row: key as usize,
                process: (info.host == host)
                    .then(|| crate::os::Pidfd::open(info.pid).ok())
                    .flatten(),
                info,
                last_heard: now,
                heard: false,
                pinged: false,
                offset: None,
            };
            links.insert(key, Worker::new(rank, true, None, helper));
        }
        Dispatcher {
            client,
            port,
            workers: links,
            first_rank,
            ranks,
            tables: IdMap::default(),
            deferred: false,
            backoff: Backoff::new(config.backoff_cap),
            config,
            seen: 0,
            drained: true,
            phase: Phase::Running,
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
        // With nothing pending and a worker idle, a busy worker is asked for work back.
        let mut wire = Messages::new(&mut self.port, &mut self.tables, &self.client);
        progress |= (self.workers).steal(self.drained, &self.phase, &mut wire);
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

    /// A task of worker `key` ended: it ran from `ran[0]` to `ran[1]` on the worker's clock,
    /// which read `sent` when the message left; `outcome` is its encoded outcome. The
    /// worker's times are mapped onto this rank's clock by the smallest difference seen
    /// between a message's arrival here and its `sent` (the worker may be on another host:
    /// the clocks need not agree). That difference is the true offset plus the message's
    /// way here and its wait to be read, so the smallest is the best estimate, and a bar
    /// is never drawn later than its result arrived.
    fn record_task_ended(
        &mut self,
        key: u64,
        name: &'static str,
        ran: [u64; 2],
        sent: u64,
        outcome: &[u8],
    ) {
        let now = crate::os::monotonic_nanos();
        let seen = (i128::from(now) - i128::from(sent)).clamp(i64::MIN.into(), i64::MAX.into());
        let seen = seen as i64;
        let Some(link) = self.workers.get_mut(key).map(|w| &mut w.link) else {
            return;
        };
        let offset = *link
            .offset
            .insert(link.offset.map_or(seen, |o| o.min(seen)));
        let here = |t: u64| t.saturating_add_signed(offset);
        let outcome = crate::remote::recording::outcome_of_bytes(outcome);
        self.client
            .timeline
            .task(key as usize, [here(ran[0]), here(ran[1])], outcome, name);
    }

    /// What the workers hold, for the statistics' `running`: stored only when it changed, so
    /// that a round that moves nothing writes nothing shared.
    fn publish_inflight(&self) {
        let n = self.workers.inflight.len() as u64;
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
        let expecting =
            !self.workers.inflight.is_empty() || self.port.sending() || self.leaving.is_some();
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

    /// The key of rank `src` among the session's workers.
    pub(super) fn link_of(&mut self, src: i32) -> Result<u64, MpiError> {
        let outside = MpiError::Protocol {
            rank: src,
            what: "is not a worker of this session",
        };
        let i = usize::try_from(src - self.first_rank).map_err(|_| outside.clone())?;
        if i >= self.ranks {
            return Err(outside);
        }
        Ok(i as u64)
    }

    pub(super) fn handle(&mut self, src: i32, buf: Vec<u8>) -> Result<(), MpiError> {
        let key = self.link_of(src)?;
        let Some(link) = self.workers.get_mut(key).map(|w| &mut w.link) else {
            // Lost: its tasks already failed; whatever it says now comes too late.
            return Ok(());
        };
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
                    let mut wire = Messages::new(&mut self.port, &mut self.tables, &self.client);
                    let w = match self.workers.finished(key, id, &mut wire) {
                        Ok(Some(w)) => w,
                        Err(Unasked) => {
                            return Err(MpiError::Protocol {
                                rank: src,
                                what: "sent the result of a task it did not hold",
                            });
                        }
                        Ok(None) => {
                            return Err(MpiError::Protocol {
                                rank: src,
                                what: "sent an unknown result",
                            });
                        }
                    };
                    // (Run times come only with timed calls, sent while recording.)
                    let timed = sent != 0 && ran != [0, 0];
                    (self.client.counters).ran(key as usize, timed.then_some(ran));
                    if timed && self.client.timeline.on() {
                        self.record_task_ended(key, w.kind.name(), ran, sent, &buf[range.clone()]);
                    }
                    items.push((w.completion, range));
                }
                RemoteCounters::add(&self.client.counters.bytes_received, buf.len() as u64);
                self.finished.batches.push((buf, items));
            }
            kind::REVOKED => {
                let n = r.u32()? as usize;
                let calls = r.calls(n)?;
                let Some(worker) = self.workers.get(key) else {
                    return Ok(());
                };
                if !worker.window.revoking {
                    return Err(MpiError::Protocol {
                        rank: src,
                        what: "gave back tasks never asked for",
                    });
                }
                if calls.iter().any(|(head, _)| !worker.window.holds(head.id)) {
                    return Err(MpiError::Protocol {
                        rank: src,
                        what: "gave back a task it did not hold",
                    });
                }
                let ids: Vec<u64> = calls.iter().map(|(head, _)| head.id).collect();
                trace::stolen(trace::Pool::Mpi, None, src as u64, ids.len() as u64);
                // What it still holds has started; the last of it runs long.
                let wire = Messages::new(&mut self.port, &mut self.tables, &self.client);
                let mut given =
                    (self.workers.given_back(key, &ids, u64::MAX, &wire)).map_err(|Unasked| {
                        MpiError::Protocol {
                            rank: src,
                            what: "gave back tasks never asked for",
                        }
                    })?;
                // They come back with their payloads (sent, they were moved into the message).
                let mut back = Vec::with_capacity(calls.len());
                for (head, range) in calls {
                    let at = given.iter().position(|w| w.id == head.id);
                    let mut w = at
                        .map(|at| given.swap_remove(at))
                        .ok_or(MpiError::Protocol {
                            rank: src,
                            what: "gave back an unknown task",
                        })?;
                    w.payload = buf[range].to_vec();
                    back.push(w);
                }
                let cancelled = lock(&self.client.state).queue.requeue(back);
                debug_assert!(cancelled.is_empty(), "no MPI task is marked cancelled");
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

    /// Sends pending tasks to the workers with room until the queue is empty or every
    /// window is full; then publishes how many tasks the workers can still take. The
    /// batches are cut under the queue's lock and sent after it is released, so that a
    /// submission never waits for MPI.
    pub(super) fn dispatch(&mut self) -> bool {
        let released = self.release_tables();
        let mut s = lock(&self.client.state);
        self.seen = s.events;
        if self.phase != s.queue.phase {
            self.phase = s.queue.phase.clone();
        }
        self.drained = s.queue.pending.is_empty();
        if self.drained {
            // The common round while tasks run: only the free slots to publish.
            s.queue.slots = self.workers.free_slots();
            return released;
        }
        let mut batches = Vec::new();
        while let Some(batch) =
            (self.workers).cut::<Messages<'_>>(&mut s.queue, &self.client.counters)
        {
            batches.push(batch);
        }
        s.queue.slots = self.workers.free_slots();
        self.drained = s.queue.pending.is_empty();
        drop(s);
        let sent = !batches.is_empty();
        let mut wire = Messages::new(&mut self.port, &mut self.tables, &self.client);
        for batch in batches {
            // (An MPI send is queued in the port: it cannot fail here.)
            let _ = self.workers.send(batch, &mut wire);
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
        let mut per_link: Vec<Vec<u64>> = vec![Vec::new(); self.ranks];
        for id in ids {
            for key in self.tables.remove(&id).into_iter().flatten() {
                per_link[key as usize].push(id);
            }
        }
        let mut any = false;
        for (key, ids) in (0..).zip(per_link) {
            if let Some(w) = self.workers.get(key)
                && !ids.is_empty()
            {
                let rank = w.link.info.rank;
                self.port
                    .send(rank, wire::TO_WORKER, wire::release_message(&ids));
                any = true;
            }
        }
        any
    }

    /// Pings silent workers that hold tasks; declares lost those silent for too long.
    pub(super) fn watch(&mut self) {
        let now = Instant::now();
        for key in 0..self.ranks as u64 {
            let leaving = self.leaving.is_some();
            let Some(worker) = self.workers.get_mut(key) else {
                continue; // lost
            };
            let held = !worker.window.is_empty();
            let link = &mut worker.link;
            if std::mem::take(&mut link.heard) {
                link.last_heard = now;
            }
            // (Once told to leave, a worker may end its process as soon as it has said so.)
            if !leaving && link.process.as_ref().is_some_and(|p| p.exited()) {
                self.lose(key, "died".into());
                continue;
            }
            if !held || !link.info.helper {
                continue;
            }
            let silent = now.saturating_duration_since(link.last_heard);
            if silent >= self.config.unresponsive_after {
                self.lose(key, format!("has not answered for {silent:.1?}"));
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
    pub(super) fn lose(&mut self, key: u64, what: String) {
        let Some((worker, held)) = self.workers.remove(key) else {
            return;
        };
        comm::mark_lost();
        RemoteCounters::add(&self.client.counters.deaths, 1);
        let info = worker.link.info;
        if self.client.timeline.on() {
            self.client
                .timeline
                .mark_now(key as usize, crate::timeline::MarkKind::Died, info.pid);
        }
        trace::worker_ended(trace::Pool::Mpi, info.rank as u64, true, &what);
        // No result log, no kill: any task it held may have run, so all of them fail (see
        // `remote::scheduler`), and nothing is queued again (the pool breaks).
        let held: Vec<_> = (held.iter())
            .filter_map(|id| self.workers.inflight.remove(id))
            .collect();
        let started = held.len();
        for w in bury(held, started, None) {
            self.finished.failed.push((
                w.completion,
                TaskError::WorkerDied {
                    pid: info.pid,
                    status: ExitStatus::Unknown,
                },
            ));
        }
        let why: Arc<str> = format!(
            "worker rank {} (pid {} on {}) {what}; MPI cannot continue without it, so the job \
             will be aborted when this process exits",
            info.rank, info.pid, info.host
        )
        .into();
        eprintln!("concurrent_futures: {why}");
        let mut s = lock(&self.client.state);
        // A task cancelled while pending stays cancelled: only one claimed here (or before)
        // is failed.
        let failed = s.queue.break_with(why, &self.client.counters);
        self.finished.failed.extend(failed);
    }

    /// After the session: waits for the last sends; spawned workers are kept for the next
    /// dynamic session (see `spawned`). A session that lost a worker cannot disconnect from
    /// it (that would wait for it forever): the job is aborted at exit instead.
    pub(super) fn close(mut self) {
        {
            let _mpi = comm::serial();
            self.port.flush();
        }
        if self.workers.len() < self.ranks {
            return;
        }
        if let Some(key) = self.config.spawn.take() {
            let mut workers = self.workers.drain();
            workers.sort_by_key(|w| w.link.info.rank);
            let processes = (workers.iter_mut())
                .filter_map(|w| w.link.process.take())
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
        let mut wire = Messages::new(&mut self.port, &mut self.tables, &self.client);
        if !(self.workers).retire_if_done(&self.phase, self.drained, &mut wire) {
            return false;
        }
        let leaving = self.workers.len();
        self.leaving = Some(leaving);
        self.over = leaving == 0;
        self.over
    }
}
