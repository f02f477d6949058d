//! The workers as the scheduler sees them ([`Worker`]: what each holds, whether it may get
//! work, what is left of its budget) and the tasks they hold ([`Workers`]): what a result,
//! a task given back and a death do to that bookkeeping, and when a worker is retired.

use super::Transport;
use super::window::{MAX_BATCHES, Window};
use super::work::{Phase, Work};
use crate::remote::IdMap;

/// One live worker: the transport's handles (`link`) and the scheduler's bookkeeping.
pub(crate) struct Worker<L> {
    /// What the transport reaches it by (sockets, a rank).
    pub(crate) link: L,
    /// What it holds (see `window`).
    pub(crate) window: Window,
    /// The initializer has run (or there is none): it may get calls.
    pub(crate) ready: bool,
    /// Told to exit (shutdown, a spent budget), or known to be unreachable: no new work.
    pub(crate) retiring: bool,
    /// Tasks that may still be sent to it (`max_tasks_per_child` less the tasks sent; a
    /// task it gives back unstarted returns to the budget, since it never ran there).
    /// `None`: no limit.
    budget: Option<usize>,
    /// It answers a request for work back while it runs a task.
    helper: bool,
}

impl<L> Worker<L> {
    pub(crate) fn new(link: L, ready: bool, budget: Option<usize>, helper: bool) -> Worker<L> {
        Worker {
            link,
            window: Window::default(),
            ready,
            retiring: false,
            budget,
            helper,
        }
    }

    /// Initialized and not told to exit: it runs what it holds, and may be asked to give
    /// back what it has not started.
    pub(crate) fn serving(&self) -> bool {
        self.ready && !self.retiring
    }

    /// How many more tasks it may be sent now, with at most `max_held` in flight.
    fn room(&self, max_held: usize) -> usize {
        max_held
            .saturating_sub(self.window.len())
            .min(self.budget.unwrap_or(usize::MAX))
    }

    /// May be sent work now (serving, budget and window not spent).
    pub(crate) fn open(&self, max_held: usize) -> bool {
        self.serving() && self.window.has_room() && self.room(max_held) > 0
    }

    /// Ready for work and holding none.
    fn idle(&self, max_held: usize) -> bool {
        self.open(max_held) && self.window.is_empty()
    }

    /// `n` tasks came back unstarted: they never ran there, so they count again.
    pub(crate) fn refund(&mut self, n: usize) {
        if let Some(b) = &mut self.budget {
            *b += n;
        }
    }

    /// Tells it (once) to exit once it has finished what it holds.
    pub(crate) fn retire<T: Transport<Link = L>>(&mut self, t: &mut T) {
        if !self.retiring {
            self.retiring = true;
            t.retire(&self.link);
        }
    }
}

/// The workers (by key) and the tasks they hold (by id).
pub(crate) struct Workers<L, P> {
    workers: IdMap<Worker<L>>,
    /// Tasks in a worker. (A worker may still hold a task no longer here: one
    /// `cancel_running` completed once it was told the task had finished; its window keeps
    /// it until the result comes.)
    pub(crate) inflight: IdMap<Work<P>>,
    /// The most tasks one worker may hold (besides the windows' batches).
    pub(super) max_held: usize,
}

/// A worker broke the protocol: it sent the result of a task, or gave back tasks, it was
/// not given or not asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unasked;

impl<L, P> Workers<L, P> {
    /// No worker yet; each may hold at most `max_held` tasks.
    pub(crate) fn new(max_held: usize) -> Workers<L, P> {
        Workers {
            workers: IdMap::default(),
            inflight: IdMap::default(),
            max_held,
        }
    }

    pub(crate) fn insert(&mut self, key: u64, worker: Worker<L>) {
        self.workers.insert(key, worker);
    }

    pub(crate) fn get(&self, key: u64) -> Option<&Worker<L>> {
        self.workers.get(&key)
    }

    pub(crate) fn get_mut(&mut self, key: u64) -> Option<&mut Worker<L>> {
        self.workers.get_mut(&key)
    }

    pub(crate) fn len(&self) -> usize {
        self.workers.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Worker<L>)> {
        self.workers.iter().map(|(&k, w)| (k, w))
    }

    /// Every worker, and the tasks in flight, for a caller that needs both at once.
    pub(crate) fn split_mut(&mut self) -> (&mut IdMap<Worker<L>>, &mut IdMap<Work<P>>) {
        (&mut self.workers, &mut self.inflight)
    }

    /// Forgets every worker (the pool is over); returns them.
    pub(crate) fn drain(&mut self) -> Vec<Worker<L>> {
        self.workers.drain().map(|(_, w)| w).collect()
    }

    /// Tasks the workers could take now: one per free batch of each open worker, within
    /// what it may still hold. A pool whose submitters do not dispatch publishes it
    /// (`Queue::slots`), so that a task still pending after `submit` means no worker has
    /// room.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn free_slots(&self) -> usize {
        (self.workers.values())
            .filter(|w| w.open(self.max_held))
            .map(|w| (MAX_BATCHES.saturating_sub(w.window.batches())).min(w.room(self.max_held)))
            .sum()
    }

    /// Worker `key` finished task `id` (its result came): forgets it there; a worker whose
    /// budget is spent is retired once it holds nothing more. The task, unless it was
    /// completed already (by `cancel_running`). `Unasked`: that worker did not hold it.
    #[inline]
    pub(crate) fn finished<T: Transport<Link = L>>(
        &mut self,
        key: u64,
        id: u64,
        t: &mut T,
    ) -> Result<Option<Work<P>>, Unasked> {
        let worker = self.workers.get_mut(&key).ok_or(Unasked)?;
        if !worker.window.release(id) {
            return Err(Unasked);
        }
        if worker.budget == Some(0) && worker.window.is_empty() {
            worker.retire(t);
        }
        Ok(self.inflight.remove(&id))
    }

    /// Worker `key` answered a request for work back: `given` are tasks it had not
    /// started, and every task of batches from `unread_from` on had not even been read.
    /// Forgets them there (they return to its budget); returns them in the order sent, for
    /// `Queue::requeue`. What it still holds has started, and the last of it runs long: it
    /// gets no new work until that is done. `Unasked`: it was not asked.
    pub(crate) fn given_back<T: Transport<Link = L, Payload = P>>(
        &mut self,
        key: u64,
        given: &[u64],
        unread_from: u64,
        t: &T,
    ) -> Result<Vec<Work<P>>, Unasked> {
        let worker = self.workers.get_mut(&key).ok_or(Unasked)?;
        if !worker.window.revoking {
            return Err(Unasked);
        }
        let back = worker.window.given_back(given, unread_from);
        worker.refund(back.len());
        let row = T::row(&worker.link);
        let back: Vec<Work<P>> = (back.into_iter())
            .filter_map(|id| self.inflight.remove(&id))
            .map(|mut w| {
                w.given_by = u32::try_from(row).ok();
                w
            })
            .collect();
        t.counters().gave_away(row, back.len() as u64);
        Ok(back)
    }

    /// Worker `key` is gone: forgets it. The worker (its window emptied), and the ids of
    /// the tasks it held, in the order sent (the order it runs them), still in flight here
    /// until the transport has said how far it got (see [`bury`]).
    pub(crate) fn remove(&mut self, key: u64) -> Option<(Worker<L>, Vec<u64>)> {
        let mut worker = self.workers.remove(&key)?;
        let held = worker.window.clear();
        Some((worker, held))
    }

    /// Once no more work can come and nothing is pending or in flight (or at once, when
    /// terminated), tells every worker to exit; true if it is time. `pending_empty` and
    /// `phase` are the queue's, as the caller last saw them.
    pub(crate) fn retire_if_done<T: Transport<Link = L>>(
        &mut self,
        phase: &Phase,
        pending_empty: bool,
        t: &mut T,
    ) -> bool {
        let done = match phase {
            Phase::ShuttingDown | Phase::Broken(_) => {
                pending_empty
                    && self.inflight.is_empty()
                    && self.workers.values().all(|w| !w.window.revoking)
            }
            Phase::Terminated => true,
            Phase::Starting | Phase::Running => false,
        };
        if done {
            self.retire_all(t);
        }
        done
    }

    /// Tells every worker to exit once it has finished what it holds.
    pub(crate) fn retire_all<T: Transport<Link = L>>(&mut self, t: &mut T) {
        for worker in self.workers.values_mut() {
            worker.retire(t);
        }
    }

    /// True if something is bound to come from the workers: results of tasks in flight, a
    /// result of a task completed already (its worker still holds it), the exit of a
    /// retiring worker, the end of an initializer.
    pub(crate) fn expecting(&self) -> bool {
        !self.inflight.is_empty()
            || (self.workers.values()).any(|w| w.retiring || !w.ready || !w.window.is_empty())
    }

    /// Idle workers now: open, holding nothing.
    pub(super) fn idle(&self) -> usize {
        let max_held = self.max_held;
        self.workers.values().filter(|w| w.idle(max_held)).count()
    }

    /// The windows, and whether each worker may be asked for work back.
    pub(super) fn windows(&self) -> impl Iterator<Item = (u64, &Window, bool)> {
        (self.workers.iter()).map(|(&k, w)| (k, &w.window, w.serving() && w.helper))
    }

    /// The windows, and whether each worker may be sent work now.
    pub(super) fn open_windows(&self) -> impl Iterator<Item = (u64, &Window, bool)> {
        let max_held = self.max_held;
        (self.workers.iter()).map(move |(&k, w)| (k, &w.window, w.open(max_held)))
    }

    /// How many more tasks worker `key` may be sent now.
    pub(super) fn room(&self, key: u64) -> Option<usize> {
        self.workers.get(&key).map(|w| w.room(self.max_held))
    }

    /// Records a batch sent to worker `key`: in its window and against its budget. The
    /// batch's number, and whether the worker held nothing before.
    pub(super) fn record_sent(&mut self, key: u64, ids: impl Iterator<Item = u64>) -> (u64, bool) {
        let Some(worker) = self.workers.get_mut(&key) else {
            return (0, false);
        };
        let was_idle = worker.window.is_empty();
        let before = worker.window.len();
        let seq = worker.window.send(ids);
        if let Some(b) = &mut worker.budget {
            *b -= worker.window.len() - before;
        }
        (seq, was_idle)
    }

    /// A batch recorded by `record_sent` never reached worker `key` (it is gone): it is
    /// forgotten there, and the worker gets no more work (its death is reported apart).
    pub(super) fn unsend(&mut self, key: u64, ids: impl Iterator<Item = u64>) {
        if let Some(worker) = self.workers.get_mut(&key) {
            worker.retiring = true;
            let n = ids.filter(|&id| worker.window.release(id)).count();
            worker.refund(n);
        }
    }
}

/// What a death costs the tasks `held` by a dead worker that are still open (and not
/// marked by `cancel_running`: those end as cancelled), in the order sent (the order it
/// ran them). The first `started` had started (the last of them is the one it died in; the
/// others finished, but their results never reached the pool): they fail, and are
/// returned, in order. The rest never started: with `queue` they go back to its front,
/// claimed, to run elsewhere; without (the pool is terminated or broken) they fail too,
/// returned after the others.
pub(crate) fn bury<P>(
    mut held: Vec<Work<P>>,
    started: usize,
    queue: Option<&mut super::Queue<P>>,
) -> Vec<Work<P>> {
    let started = started.min(held.len());
    if let Some(queue) = queue {
        let unstarted = held.split_off(started);
        // (None is marked cancelled: nothing comes back from the queue.)
        held.extend(queue.requeue(unstarted));
    }
    held
}
