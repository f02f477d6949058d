//! Dispatch and stealing: pending tasks cut into batches for the workers with room (by
//! count, by bytes and by attached files), and busy workers asked for work back when
//! another is idle and nothing is pending.

use super::window;
use super::work::{Phase, Queue, Work};
use super::workers::Workers;
use super::{Gone, Transport};
use crate::stats::RemoteCounters;

/// A batch cut for one worker and recorded in its window, to be sent.
pub(crate) struct Batch<P> {
    /// The worker.
    pub(crate) key: u64,
    /// Its number among the batches sent to that worker.
    pub(crate) seq: u64,
    /// The worker held nothing before it.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) was_idle: bool,
    pub(crate) works: Vec<Work<P>>,
}

impl<L, P> Workers<L, P> {
    /// Cuts the next batch off the front of `queue` for the open worker with the fewest
    /// batches in flight (`window::pick`), and records it there; `None` once the queue is
    /// empty or no worker has room. A batch takes `window::batch_size` tasks, fewer if the
    /// worker may take fewer (its budget, `max_held`), and stops before a task that would
    /// take it past the transport's bytes or files (a task alone always goes). Tasks
    /// cancelled while pending are skipped and counted: claimed here, a task can no
    /// longer be cancelled.
    pub(crate) fn cut<T: Transport<Link = L, Payload = P>>(
        &mut self,
        queue: &mut Queue<P>,
        counters: &RemoteCounters,
    ) -> Option<Batch<P>> {
        let n = self.len();
        while !queue.pending.is_empty() {
            let key = window::pick(self.open_windows())?;
            let size = window::batch_size(queue.pending.len(), n).min(self.room(key)?);
            let mut works = Vec::with_capacity(size);
            let (mut bytes, mut files) = (0, 0);
            while works.len() < size {
                let first = works.is_empty();
                let fits = |w: &Work<P>| {
                    let (b, f) = T::weight(&w.payload);
                    first || (bytes + b <= T::MAX_BATCH_BYTES && files + f <= T::MAX_BATCH_FILES)
                };
                if !queue.pop_claimed(counters, fits, &mut works) {
                    break;
                }
                if let Some(work) = works.last() {
                    let (b, f) = T::weight(&work.payload);
                    bytes += b;
                    files += f;
                }
            }
            if works.is_empty() {
                continue;
            }
            let (seq, was_idle) = self.record_sent(key, works.iter().map(|w| w.id));
            return Some(Batch {
                key,
                seq,
                was_idle,
                works,
            });
        }
        None
    }

    /// Sends a batch `cut` made: its tasks are then in flight. If it never reached the
    /// worker (gone), it is forgotten there and its tasks returned, for `Queue::requeue`.
    pub(crate) fn send<T: Transport<Link = L, Payload = P>>(
        &mut self,
        mut batch: Batch<P>,
        t: &mut T,
    ) -> Result<(), Vec<Work<P>>> {
        let Some(worker) = self.get_mut(batch.key) else {
            return Err(batch.works);
        };
        let sent = t.send(&mut worker.link, &mut batch);
        let label = T::label(&worker.link);
        match sent {
            Ok(()) => {
                // Tasks another worker gave back: this one stole them (one count and one
                // event per victim, in the order given back).
                let mut steal: Option<(usize, u64)> = None;
                for w in batch.works.iter_mut() {
                    match (w.given_by.take().map(|v| v as usize), &mut steal) {
                        (None, _) => {}
                        (Some(v), Some((victim, n))) if v == *victim => *n += 1,
                        (Some(v), _) => {
                            if let Some((victim, n)) = steal.replace((v, 1)) {
                                stolen(t, &worker.link, victim, n);
                            }
                        }
                    }
                }
                if let Some((victim, n)) = steal {
                    stolen(t, &worker.link, victim, n);
                }
                for w in batch.works.drain(..) {
                    w.completion.trace().started(label);
                    self.inflight.insert(w.id, w);
                }
                Ok(())
            }
            Err(Gone) => {
                self.unsend(batch.key, batch.works.iter().map(|w| w.id));
                Err(batch.works)
            }
        }
    }

    /// Sends pending work to the workers with room until the queue is empty or every
    /// window is full, then steals: for a pool whose sends are made under the queue's lock
    /// (a send that fails puts its batch back, and the next worker gets it).
    pub(crate) fn dispatch<T: Transport<Link = L, Payload = P>>(
        &mut self,
        queue: &mut Queue<P>,
        t: &mut T,
    ) {
        while let Some(batch) = self.cut::<T>(queue, t.counters()) {
            if let Err(back) = self.send(batch, t) {
                let cancelled = queue.requeue(back);
                debug_assert!(cancelled.is_empty(), "a task never sent was cancelled");
            }
        }
        self.steal(queue.pending.is_empty(), &queue.phase, t);
    }

    /// Work stealing between the workers' windows: with nothing pending, an idle worker
    /// must not wait while another holds tasks queued behind a long one. Such a worker is
    /// asked to give back what it has not started (it answers while its task runs, see the
    /// module's invariants); what comes back is dispatched again, to the idle worker. True
    /// if a worker was asked.
    pub(crate) fn steal<T: Transport<Link = L, Payload = P>>(
        &mut self,
        pending_empty: bool,
        phase: &Phase,
        t: &mut T,
    ) -> bool {
        if !pending_empty || *phase == Phase::Terminated {
            return false;
        }
        let idle = self.idle();
        if idle == 0 || !self.iter().any(|(_, w)| w.window.has_backlog()) {
            return false; // nobody to give work to, or nothing to give back
        }
        let victims = window::victims(self.windows(), idle);
        for &key in &victims {
            if let Some(w) = self.get_mut(key)
                && t.revoke(&w.link, w.window.seq())
            {
                w.window.revoking = true;
            }
        }
        !victims.is_empty()
    }
}

/// Worker `thief` was sent `n` tasks that the worker on slot `victim` gave back: counted for
/// the thief (not when a worker gets back what it gave), and told to the transport.
fn stolen<T: Transport>(t: &mut T, thief: &T::Link, victim: usize, n: u64) {
    if T::row(thief) != victim {
        t.counters().stole(T::row(thief), n);
        t.stolen(thief, victim, n);
    }
}
