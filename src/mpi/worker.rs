//! A worker rank (rank 1 and up of the job, or a process the client spawned): join the
//! session, run calls until the client (rank 0) says it is over.
//!
//! Two threads share the rank's MPI traffic (one at a time, under `Shared::link`, a
//! `comm::Serial`: the process's MPI lock), when the library grants `MPI_THREAD_SERIALIZED`:
//!
//! * the *task thread* (the one that called `start`) runs the calls; between calls, and
//!   while it has none, it probes for messages and sends results itself, so a call that
//!   arrives at an idle rank starts on the thread that received it, without a hand-off;
//! * the *helper* (the MPI thread) stays asleep, waking once per backoff cap; when a call
//!   has run longer than that, it takes over the probing: it queues new calls, answers pings,
//!   sends results that have waited, and gives back unstarted calls when rank 0 asks
//!   (`Revoke`), which is what lets an idle rank take the work queued behind a long call.
//!
//! With only `MPI_THREAD_FUNNELED`, the MPI thread does everything itself, one call at a
//! time, and tells rank 0 that it cannot answer while busy (no stealing from it, no pings).
//!
//! Before its `Hello`, the rank runs the pool's initializer, if `Start` names one, on the
//! thread that will run the tasks; the `Hello` carries its outcome.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::comm::{self, Backoff, Comm, Env, MAX_MESSAGE, Port, Serial};
use super::error::MpiError;
use super::wire::{self, CallHead, Reader, kind};
use crate::remote::scheduler::FLUSH_AFTER;
use crate::remote::{codec as protocol, naming as image};
use crate::sync::{Condvar, Mutex, lock};

/// A call received and not started.
struct Job {
    head: CallHead,
    msg: Message,
    range: Range<usize>,
    /// Rank 0 wants its run times (it came in `CallsTimed`).
    timed: bool,
}

/// The message a call came in: its own, or shared with the other calls of its batch.
enum Message {
    One(Vec<u8>),
    Shared(Arc<Vec<u8>>),
}

impl std::ops::Deref for Message {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Message::One(v) => v,
            Message::Shared(v) => v,
        }
    }
}

/// The rank's side of the session's traffic, used by one thread at a time.
struct Link {
    port: Port,
    /// Results not sent yet (with their run times, 0 if untimed), and since when the oldest
    /// has waited.
    ready: Vec<(u64, Vec<u8>, [u64; 2])>,
    ready_bytes: usize,
    since: Instant,
    /// Rank 0 ended the session.
    exit: bool,
    /// The shared tables rank 0 sent in this session and has not released: let go when it
    /// ends.
    tables: Vec<u64>,
}

struct Shared {
    /// Under the process's MPI lock.
    link: Serial<Link>,
    queue: Mutex<VecDeque<Job>>,
    /// The number of the running call (they are numbered from 1 as they start), 0 while
    /// none runs. The helper, which looks once per cap, takes over when it sees the same
    /// call running at two looks in a row: no clock is read per call.
    running: AtomicU64,
    over: AtomicBool,
    /// The helper sleeps here between looks.
    nap: (Mutex<()>, Condvar),
    cap: Duration,
}

/// Serves one session on this worker rank, whose client is rank 0 of `comm`'s other side
/// (the world's rank 0, or the parent that spawned this process); returns when it is over
/// (or was refused): true, or false if the client said `Quit` instead of starting one.
/// Waiting for the session's start, it polls at most every `idle_cap`.
pub(crate) fn serve(env: &'static Env, comm: Comm, idle_cap: Duration) -> bool {
    let outcome = if env.serialized {
        join_and_run(env, comm, idle_cap)
    } else {
        env.call(move || join_and_run(env, comm, idle_cap))
    };
    match outcome {
        Ok(started) => started,
        Err(e) => {
            // A rank that cannot follow the protocol would leave rank 0 waiting: end the job.
            eprintln!(
                "concurrent_futures: rank {} (pid {}): {e}; aborting the MPI job",
                env.rank,
                std::process::id()
            );
            comm::abort(3);
        }
    }
}

/// Waits for rank 0's `Start`, answers with this rank's `Hello`, then runs the session.
/// False if rank 0 said `Quit` instead.
fn join_and_run(env: &'static Env, comm: Comm, idle_cap: Duration) -> Result<bool, MpiError> {
    let mut port = Port::new(comm);
    // Rank 0 tells the backoff cap in `Start`; until then, `idle_cap`.
    let mut backoff = Backoff::new(idle_cap);
    let buf = loop {
        let probed = {
            let _mpi = comm::serial();
            port.probe(wire::TO_WORKER)
        };
        if let Some((_, buf)) = probed {
            break buf;
        }
        backoff.wait();
    };
    let (mut r, k) = Reader::new(&buf)?;
    if k == kind::QUIT {
        return Ok(false);
    }
    if k != kind::START {
        return Err(MpiError::UnexpectedKind {
            rank: 0,
            kind: k,
            when: "instead of Start",
        });
    }
    let (theirs, cap) = r.start()?;
    let cap = Duration::from_micros(cap);
    let ours = image::code_fingerprint();
    let ok = theirs == ours;
    // The initializer runs first, on the thread that will run the tasks (only code of the
    // same build runs: after the fingerprint check). A panic in it is its outcome.
    let init = match ok.then(|| r.start_init()).transpose()?.flatten() {
        Some((target, arg)) => Some(image::invoke(target, arg)?),
        None => None,
    };
    let hello = wire::hello_message(
        ok,
        std::process::id(),
        env.serialized,
        &env.host,
        init.as_deref(),
    );
    let _mpi = comm::serial();
    port.send(0, wire::TO_CLIENT, hello);
    if !ok {
        port.flush();
        eprintln!(
            "concurrent_futures: rank {} runs a different executable than rank 0 (code \
             fingerprint {ours:016x}, rank 0 has {theirs:016x}); it runs no task",
            env.rank
        );
        return Ok(true);
    }
    drop(_mpi);
    let shared = Arc::new(Shared {
        link: Serial::new(Link {
            port,
            ready: Vec::new(),
            ready_bytes: 0,
            since: Instant::now(),
            exit: false,
            tables: Vec::new(),
        }),
        queue: Mutex::new(VecDeque::new()),
        running: AtomicU64::new(0),
        over: AtomicBool::new(false),
        nap: (Mutex::new(()), Condvar::new()),
        cap,
    });
    if env.serialized {
        let helper = shared.clone();
        env.run(move || helper_loop(&helper));
    }
    let result = task_loop(&shared);
    shared.over.store(true, Ordering::Release);
    shared.nap.1.notify_all();
    let tables = std::mem::take(&mut shared.link.lock().tables);
    crate::shared::uninstall(&tables);
    result.map(|()| true)
}

/// Runs calls; probes and sends whenever it has none to run.
fn task_loop(shared: &Shared) -> Result<(), MpiError> {
    let mut backoff = Backoff::new(shared.cap);
    let mut calls = 0u64;
    loop {
        let job = lock(&shared.queue).pop_front();
        if let Some(job) = job {
            calls += 1;
            shared.running.store(calls, Ordering::Release);
            // (A clock read only for a timed call: rank 0 records a timeline.)
            let clock = || {
                if job.timed {
                    crate::os::monotonic_nanos()
                } else {
                    0
                }
            };
            let start = clock();
            let outcome = image::invoke(job.head.target, &job.msg[job.range.clone()])?;
            let ran = [start, clock()];
            shared.running.store(0, Ordering::Release);
            drop(job.msg);
            let mut link = shared.link.lock();
            let more = !lock(&shared.queue).is_empty();
            link.add_result(job.head.id, outcome, more, ran);
            if !more || link.since.elapsed() >= FLUSH_AFTER {
                link.flush_results();
            }
            backoff.reset();
            continue;
        }
        let mut link = shared.link.lock();
        link.flush_results();
        if link.exit {
            // The last message of the session from this rank: after it, rank 0 knows that
            // nothing of this session is still on its way.
            link.port.send(0, wire::TO_CLIENT, wire::bare(kind::LEFT));
            link.port.flush();
            return Ok(());
        }
        if link.poll(shared, true)? {
            backoff.reset();
            continue;
        }
        drop(link);
        if comm::exiting() {
            return Ok(());
        }
        backoff.wait();
    }
}

/// The helper: while a call runs longer than the backoff cap, it keeps the rank's traffic
/// going.
fn helper_loop(shared: &Shared) {
    let (m, nap) = &shared.nap;
    let mut busy = false;
    // The call seen running at the last look.
    let mut seen = 0;
    loop {
        {
            let g = lock(m);
            if shared.over.load(Ordering::Acquire) {
                return;
            }
            // While calls run, look once per cap; while the rank is idle (the task thread
            // polls), look rarely. A call seen running at two looks in a row is long, so a
            // long call is noticed within 17 caps.
            let _ = nap.wait_timeout(g, if busy { shared.cap } else { shared.cap * 16 });
        }
        if shared.over.load(Ordering::Acquire) || comm::exiting() {
            return;
        }
        let running = shared.running.load(Ordering::Acquire);
        busy = running != 0;
        let long = busy && running == seen;
        seen = running;
        if !long {
            continue; // the task thread is polling, or will be soon
        }
        let mut link = shared.link.lock();
        if link.since.elapsed() >= FLUSH_AFTER {
            link.flush_results();
        }
        if let Err(e) = link.poll(shared, false) {
            eprintln!(
                "concurrent_futures: worker pid {}: {e}; aborting the MPI job",
                std::process::id()
            );
            comm::abort(3);
        }
    }
}

impl Link {
    /// Queues a result to send; `held` if it will wait for more (the time it starts to
    /// wait is then noted, for `FLUSH_AFTER`).
    fn add_result(&mut self, id: u64, mut outcome: Vec<u8>, held: bool, ran: [u64; 2]) {
        if outcome.len() > MAX_MESSAGE - 64 {
            let err: Result<(), crate::TaskError> = Err(crate::TaskError::Codec(
                format!(
                    "a result of {} bytes does not fit in one MPI message",
                    outcome.len()
                )
                .into(),
            ));
            outcome = protocol::encode_outcome(&err);
        }
        if self.ready_bytes + outcome.len() > MAX_MESSAGE / 2 {
            self.flush_results();
        }
        if self.ready.is_empty() && held {
            self.since = Instant::now();
        }
        self.ready_bytes += outcome.len();
        self.ready.push((id, outcome, ran));
    }

    fn flush_results(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        self.ready_bytes = 0;
        // When this leaves, on the clock of the run times (if any call was timed): rank 0
        // maps them onto its own clock with it.
        let timed = self.ready.iter().any(|r| r.2 != [0, 0]);
        let sent = if timed {
            crate::os::monotonic_nanos()
        } else {
            0
        };
        let msg = wire::done_message(&mut self.ready, sent);
        self.port.send(0, wire::TO_CLIENT, msg);
    }

    /// Handles the messages that have arrived; true if there was one. With `to_run` (the
    /// task thread, which will run what comes), it stops at the first message that brings
    /// calls, so that they start at once: the probe that would find nothing more is left to
    /// the next round. The helper reads everything (a `Revoke` may follow the calls).
    fn poll(&mut self, shared: &Shared, to_run: bool) -> Result<bool, MpiError> {
        self.port.test_sends();
        let mut any = false;
        while let Some((_, buf)) = self.port.probe(wire::TO_WORKER) {
            any = true;
            let calls = self.handle(shared, buf)?;
            if self.exit || (calls && to_run) {
                break;
            }
        }
        Ok(any)
    }

    /// Handles one message from rank 0; true if it brought calls.
    fn handle(&mut self, shared: &Shared, buf: Vec<u8>) -> Result<bool, MpiError> {
        let (mut r, k) = Reader::new(&buf)?;
        match k {
            kind::CALLS | kind::CALLS_TIMED => {
                let timed = k == kind::CALLS_TIMED;
                let n = r.u32()? as usize;
                let mut calls = r.calls(n)?;
                let mut q = lock(&shared.queue);
                if calls.len() == 1
                    && let Some((head, range)) = calls.pop()
                {
                    q.push_back(Job {
                        head,
                        msg: Message::One(buf),
                        range,
                        timed,
                    });
                    return Ok(true);
                }
                let msg = Arc::new(buf);
                q.extend(calls.into_iter().map(|(head, range)| Job {
                    head,
                    msg: Message::Shared(msg.clone()),
                    range,
                    timed,
                }));
                return Ok(true);
            }
            kind::REVOKE => {
                // Under the queue lock: a call is either started by the task thread or given
                // back here, never both.
                let back: Vec<Job> = lock(&shared.queue).drain(..).collect();
                let calls = back
                    .into_iter()
                    .map(|j| (j.head, j.msg[j.range].to_vec()))
                    .collect();
                // Results first: rank 0 must not see a call given back after its result.
                self.flush_results();
                self.port.send(
                    0,
                    wire::TO_CLIENT,
                    wire::calls_message(kind::REVOKED, calls),
                );
            }
            kind::TABLE => {
                // (Before the calls that name it: MPI keeps the messages in order.)
                let (id, bytes) = r.table()?;
                crate::shared::install_bytes(id, bytes);
                self.tables.push(id);
            }
            kind::RELEASE => {
                let ids = r.release()?;
                self.tables.retain(|id| !ids.contains(id));
                crate::shared::uninstall(&ids);
            }
            kind::PING => self.port.send(0, wire::TO_CLIENT, wire::bare(kind::PONG)),
            kind::EXIT => self.exit = true,
            other => {
                return Err(MpiError::UnexpectedKind {
                    rank: 0,
                    kind: other,
                    when: "mid-session",
                });
            }
        }
        Ok(false)
    }
}
