//! The dispatch core of the remote pools, whatever the wire (worker processes over
//! sockets, MPI ranks): the queue of pending tasks, what each worker holds, how work is cut
//! into batches and which worker gets the next one, whom to ask for work back, what a
//! result, a task given back and a worker's death do, and when a worker is retired. Plain
//! data and decisions, tested here without a process (`tests.rs`). A pool owns a [`Queue`]
//! and a [`Workers`] and implements [`Transport`], the few things that need its wire: send
//! a batch, ask a worker for work back, tell it to exit. Results, answers and deaths flow
//! the other way: the pool reads them off its wire and calls [`Workers::finished`],
//! [`Workers::given_back`], [`Workers::remove`] and [`bury`].
//!
//! ```text
//! submit ─► Queue ──cut──► Batch ──Transport::send──► worker
//!   (claims a   ▲                  │ Workers: windows, budgets,
//!   free slot)  │                  │ tasks in flight
//!               └── requeue ◄──────┘ given_back / bury (a death)
//! ```
//!
//! - [`work`]: [`Work`] (a task), [`Queue`] (pending tasks, the pool's [`Phase`],
//!   claim-or-skip, requeue, shutdown, breaking the pool).
//! - [`window`]: one worker's batches ([`Window`](window::Window)), batch sizes, the choice
//!   of worker, the choice of victims.
//! - [`workers`]: [`Worker`] (a window, readiness, retirement, the budget of
//!   `max_tasks_per_child`) and [`Workers`] (the workers and the tasks in flight).
//! - [`dispatch`]: cutting batches ([`Workers::cut`]), sending them, stealing.
//!
//! # Invariants (both pools)
//!
//! * **A task pending after `submit` means no worker has room.** A pool whose submitters
//!   dispatch themselves (the process pool: `submit` calls [`Workers::dispatch`] under the
//!   queue's lock) sends it at once if a window has room. A pool whose dispatcher runs
//!   apart (the MPI pool: only its dispatcher may call MPI) publishes its free batch slots
//!   ([`Workers::free_slots`] into [`Queue::slots`]) and `submit` claims the task against
//!   them: it is RUNNING at once, and goes in the dispatcher's next round.
//! * **A revoke is answered under the worker's queue lock.** A worker asked for work back
//!   ([`Transport::revoke`]) decides, under the lock where its task thread takes its next
//!   call, which calls it had not started: each is either started there or given back,
//!   never both. Given-back tasks return to the front of the queue, claimed, in their order
//!   ([`Queue::requeue`]); what the worker still holds has started, and the last of it runs
//!   long, so it gets no new work until that is done
//!   ([`Window::given_back`](window::Window::given_back)).
//! * **A task is claimed once, before it is sent** ([`Work::claim`], in
//!   [`Queue::pop_claimed`]): a task cancelled while pending is skipped (and counted),
//!   never sent; a claimed task that comes back is sent again without a second claim, and
//!   a shutdown that cancels what is pending leaves it to run ([`Queue::shut_down`]).
//! * **A worker completes only what it holds**: [`Workers::finished`] and
//!   [`Workers::given_back`] refuse ([`Unasked`]) a task not in that worker's window, or an
//!   answer to a revoke never asked; the pool treats it as a broken protocol.
//! * **`max_tasks_per_child` counts tasks sent**: a batch is cut to the worker's budget, a
//!   task given back unstarted returns to it, and a worker whose budget is spent is retired
//!   once it holds nothing. At most [`MAX_BATCHES`](window::MAX_BATCHES) batches of at most
//!   [`MAX_BATCH`](window::MAX_BATCH) tasks are in a worker, sized so that half of what is
//!   pending stays in the parent, cancellable ([`batch_size`](window::batch_size)).
//! * **A death fails what it may have run, and nothing else** ([`bury`]): of the tasks a
//!   dead worker held, those it started fail (the last is the one it died in), those it
//!   never started run elsewhere.
//!
//! # What stays with each transport, and why
//!
//! * **Where the queue and the workers live, and who sends.** The process pool keeps both
//!   under one lock and sends under it ([`Workers::dispatch`]: `send` on a socket never
//!   blocks, and a batch that fails goes at once to the next worker). The MPI pool keeps the
//!   queue under the submitters' lock and the workers in its dispatcher (under the process's
//!   MPI lock): it cuts batches under the queue's lock ([`Workers::cut`]) and sends them
//!   after releasing it ([`Workers::send`]), so that a submission never waits for an MPI
//!   call.
//! * **How far a dead worker got** (the `started` of [`bury`]): the process pool reads it in
//!   the worker's result log, which also completes the tasks whose results it holds, and
//!   queues the unstarted tasks again; MPI has no result log and no kill (a lost rank ends
//!   the job's use of MPI): every task the rank held counts as started, and the pool is
//!   broken ([`Queue::break_with`]).
//! * **Time limits, `cancel_running` and `terminate`** ([`Work::limit`], [`Work::cancelled`],
//!   [`Phase::Terminated`]) are the process pool's: they end with a worker's death
//!   (SIGKILL), which an MPI rank cannot be given. So is [`Phase::Starting`]: its workers
//!   run the initializer after they start, an MPI rank before its session. The core
//!   carries the marks and honours them where a task comes back ([`Queue::requeue`]).
//! * **Liveness**: the process pool sees a death on the worker's pidfd and socket; the MPI
//!   pool pings silent ranks and watches the pids of those on its host.
//! * **Shared tables**: which worker holds which table is the transport's record. The
//!   process pool tells the holders of a released table from whatever thread drops its
//!   last handle, straight on their sockets (its record has a lock of its own); the MPI
//!   pool queues the release for its dispatcher, the only thread that may call MPI.
//! * **Completing futures**: the process pool hands callbacks to threads of their own (the
//!   thread that read a result moves work); the MPI pool runs them on the thread that
//!   drives the session, outside the dispatcher.
//!
//! Flush timing is the workers' side: both send results together while they come quickly,
//! at most [`FLUSH_AFTER`] after the oldest unsent one, and neither holds a result back
//! for the length of the call after it: during a long call, the worker's helper thread
//! sends what waits (the process pool's after 1 ms, the MPI pool's within two looks of
//! its helper).

pub(crate) mod dispatch;
#[cfg(test)]
pub(crate) mod tests;
pub(crate) mod window;
pub(crate) mod work;
pub(crate) mod workers;

use std::time::Duration;

pub(crate) use dispatch::Batch;
pub(crate) use work::{Phase, Queue, TaskKind, Work};
#[cfg_attr(not(feature = "mpi"), allow(unused_imports))]
pub(crate) use workers::Unasked;
pub(crate) use workers::{Worker, Workers, bury};

use crate::stats::RemoteCounters;

/// Results are sent together while they come quickly: a worker sends what is ready when it
/// has nothing left to run, or once a call ends and the oldest unsent result is this old
/// (the process pool's worker also when its result log is full; during a long call its
/// helper thread sends them). Until then they wait in the worker
/// (in the process pool, in its result log, which the parent reads if the worker dies:
/// batching never loses a result).
pub(crate) const FLUSH_AFTER: Duration = Duration::from_micros(200);

/// A send that never reached its worker: the worker is gone (its death is reported apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gone;

/// What a pool's wire does for the core. Called with the pool's lock on the workers held;
/// each call is one message (or none), never a wait.
pub(crate) trait Transport {
    /// A task's argument as the wire carries it.
    type Payload;
    /// What the wire reaches a worker by (sockets and a pidfd, a rank).
    type Link;
    /// A batch stops before a task that would take its payloads past this many bytes...
    const MAX_BATCH_BYTES: usize;
    /// ...or its attached files past this many (a task alone always goes).
    const MAX_BATCH_FILES: usize;

    /// What `payload` adds to a batch: bytes, files.
    fn weight(payload: &Self::Payload) -> (usize, usize);
    /// The worker's name in traces (its pid, its rank).
    fn label(link: &Self::Link) -> u64;
    /// The worker's slot: its row on the timeline and its entry in the statistics.
    fn row(link: &Self::Link) -> usize;
    /// The pool's statistics.
    fn counters(&self) -> &RemoteCounters;
    /// Sends `batch` (its number is `batch.seq`). A transport that moves the payloads into
    /// its message may take them. `Gone`: it never reached the worker.
    fn send(&mut self, link: &mut Self::Link, batch: &mut Batch<Self::Payload>)
    -> Result<(), Gone>;
    /// Asks the worker to give back what it has not started of the batches up to
    /// `through`; false if it cannot be asked (it is gone).
    fn revoke(&mut self, link: &Self::Link, through: u64) -> bool;
    /// Tells the worker to exit once it has finished what it holds.
    fn retire(&mut self, link: &Self::Link);
    /// The worker `thief` was just sent `tasks` tasks that the worker on slot `victim` gave
    /// back (counted already): for the timeline and traces.
    fn stolen(&mut self, thief: &Self::Link, victim: usize, tasks: u64);
}
