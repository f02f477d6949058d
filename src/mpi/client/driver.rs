//! Who drives the dispatcher: the session's thread, or a user thread that waits on a future
//! of the pool (when MPI allows any thread to call it).

use super::*;
use std::sync::OnceLock;
use std::thread::ThreadId;

/// How long a thread about to block on a future keeps looking (yielding) first, where it
/// may not drive.
const WAITER_YIELD: Duration = Duration::from_micros(200);

/// A session's dispatcher, and who drives it. The session's thread (its *runner*) drives it
/// unless a user thread that waits on a future of the pool does: when the MPI library
/// allows any thread to call it (`MPI_THREAD_SERIALIZED`), a thread blocked in `result()`
/// runs the dispatcher itself (under the lock), so its task goes out and its result comes
/// in on the thread that waits, with no hand-off and no wake-up; meanwhile the runner naps.
/// The runner is a thread of the session's own (`cf-mpi-session`), so that the sessions of
/// several pools, and the MPI thread's jobs (a spawn for a new pool), go on side by side,
/// their MPI calls serialized by the process's MPI lock (`comm::Serial`). With
/// `MPI_THREAD_FUNNELED` only, the MPI thread is the runner and does everything.
pub(crate) struct Driver {
    pub(crate) client: Arc<Client>,
    /// Reached under the process's MPI lock: one lock per round.
    pub(super) dispatcher: comm::Serial<Option<Dispatcher>>,
    /// The thread that runs the session (set when it starts to).
    pub(super) runner: OnceLock<ThreadId>,
    /// User threads driving (or about to).
    pub(super) leaders: AtomicUsize,
    pub(super) serialized: bool,
    pub(super) cap: Duration,
}

impl Driver {
    /// Called by a thread about to block on a future of the pool (`done` tells when it
    /// may stop). On the session's runner (a callback waiting on another task), it must
    /// keep the session going, or it would wait forever; elsewhere it drives if it may, or
    /// yields a little (a result is often microseconds away, and a wake-up costs more).
    pub(crate) fn help(&self, done: &dyn Fn() -> bool) {
        if self.on_runner() {
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
        if self.on_runner() {
            // Called from a callback on the runner: the session cannot end under it.
            return;
        }
        let over = || lock(&self.client.state).over;
        self.help(&|| over() || self.stepped_over());
        let mut s = lock(&self.client.state);
        while !s.over {
            s = self.client.ended.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// This thread runs the session.
    fn on_runner(&self) -> bool {
        self.runner.get() == Some(&std::thread::current().id())
    }

    /// Something is pending or in flight.
    pub(super) fn has_work(&self) -> bool {
        let in_flight = self
            .dispatcher
            .lock()
            .as_ref()
            .is_some_and(|d| !d.workers.inflight.is_empty() || d.leaving.is_some());
        in_flight || !lock(&self.client.state).queue.pending.is_empty()
    }

    pub(super) fn stepped_over(&self) -> bool {
        self.dispatcher.lock().as_ref().is_none_or(|d| d.over)
    }

    /// Runs the dispatcher until `until()` holds or the session is over. Futures are
    /// completed with the dispatcher released, so a callback may wait on another future
    /// (nesting `drive`) or submit.
    pub(super) fn drive(&self, until: &dyn Fn() -> bool) {
        loop {
            if until() {
                return;
            }
            // One lock per round: a round that made no progress also takes its pause.
            let step = self.dispatcher.lock().as_mut().map(|d| {
                let (finished, progress, over) = d.step();
                let nap = if progress || over { None } else { d.nap() };
                (finished, over, nap)
            });
            let Some((finished, over, nap)) = step else {
                return;
            };
            finished.complete(&self.client.counters);
            if over {
                return;
            }
            if let Some((nap, seen)) = nap {
                self.client.sleep(nap, seen);
            }
        }
    }

    /// The session, on its runner: it drives whenever no user thread does.
    pub(super) fn run(self: Arc<Self>) {
        let _ = self.runner.set(std::thread::current().id());
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
        let d = self.dispatcher.lock().take();
        if let Some(d) = d {
            d.close();
        }
        LIVE.fetch_sub(1, Ordering::AcqRel);
        let mut s = lock(&self.client.state);
        s.over = true;
        self.client.ended.notify_all();
    }
}

/// Program end ends a session still open, as `shutdown(true)` would (see `crate::exit`).
impl crate::exit::Watched for Driver {
    fn stop_accepting(&self) {
        self.client.shutdown(false);
    }

    fn wait_done(&self) {
        self.join();
    }
}
