//! One worker's share of the work as the scheduler tracks it ([`Window`]), and the choices
//! made over the windows: how many tasks go in the next batch ([`batch_size`]), which worker
//! gets it ([`pick`]), whom to ask for work back ([`victims`]).
//!
//! A worker holds at most [`MAX_BATCHES`] batches: one it runs, one waiting behind it, so
//! it never waits for the parent between batches. Batches are sized so that at least half
//! of what is pending stays in the parent, cancellable ([`batch_size`]).

use std::collections::VecDeque;

/// Batches in flight per worker: one running, one waiting behind it.
pub(crate) const MAX_BATCHES: usize = 2;
/// The largest batch of calls in one message. Beyond a few dozen, a larger batch saves
/// nothing measurable per task and keeps more work out of reach of cancellation and of
/// other workers.
pub(crate) const MAX_BATCH: usize = 32;

/// How many pending tasks go in the next batch: small while little is pending, so that
/// most of it stays cancellable (and free to go to whichever worker is free first).
pub(crate) fn batch_size(pending: usize, workers: usize) -> usize {
    (pending / (2 * workers.max(1) * MAX_BATCHES)).clamp(1, MAX_BATCH)
}

/// One worker's share of the work, as the scheduler tracks it.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// The number of the last batch sent.
    seq: u64,
    /// Batches in flight (number, tasks left), oldest first.
    batches: VecDeque<(u64, usize)>,
    /// Tasks in flight (id, batch), in the order sent, which is the order the worker runs
    /// them.
    held: VecDeque<(u64, u64)>,
    /// Asked to give back what it has not started; no answer yet.
    pub(crate) revoking: bool,
    /// Gave work back while busy with this task (the last it started, which runs long): it
    /// gets no new work, and is not asked again, until that task is done.
    pub(crate) robbed: Option<u64>,
}

impl Window {
    /// The number of the last batch sent.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Batches in flight.
    pub(crate) fn batches(&self) -> usize {
        self.batches.len()
    }

    /// Tasks in flight.
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// True if this worker holds `task`: only then may it complete it or give it back.
    pub(crate) fn holds(&self, task: u64) -> bool {
        self.held.iter().any(|&(t, _)| t == task)
    }

    /// The batch that brought `task`, if this worker holds it.
    pub(crate) fn batch_of(&self, task: u64) -> Option<u64> {
        self.held
            .iter()
            .find(|&&(t, _)| t == task)
            .map(|&(_, seq)| seq)
    }

    /// The tasks held, in the order the worker runs them.
    pub(crate) fn tasks(&self) -> impl Iterator<Item = u64> + '_ {
        self.held.iter().map(|&(t, _)| t)
    }

    /// Room for one more batch (and not robbed, nor being asked for work back).
    pub(crate) fn has_room(&self) -> bool {
        !self.revoking && self.robbed.is_none() && self.batches.len() < MAX_BATCHES
    }

    /// Holds tasks queued behind the one it runs, that an idle worker could run.
    pub(crate) fn has_backlog(&self) -> bool {
        !self.revoking && self.robbed.is_none() && self.held.len() >= 2
    }

    /// Records a batch of `tasks` sent; returns its number.
    pub(crate) fn send(&mut self, tasks: impl IntoIterator<Item = u64>) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        let before = self.held.len();
        self.held.extend(tasks.into_iter().map(|t| (t, seq)));
        let n = self.held.len() - before;
        if n > 0 {
            self.batches.push_back((seq, n));
        }
        seq
    }

    /// Forgets `task` (finished, or given back); false if this worker did not hold it.
    #[inline]
    pub(crate) fn release(&mut self, task: u64) -> bool {
        let pos = if self.held.front().is_some_and(|&(t, _)| t == task) {
            0
        } else if let Some(pos) = self.held.iter().position(|&(t, _)| t == task) {
            pos
        } else {
            return false;
        };
        let Some((_, seq)) = self.held.remove(pos) else {
            return false;
        };
        if let Some(i) = self.batches.iter().position(|&(s, _)| s == seq) {
            self.batches[i].1 -= 1;
            if self.batches[i].1 == 0 {
                self.batches.remove(i);
            }
        }
        if self.robbed == Some(task) {
            self.robbed = None;
        }
        true
    }

    /// The answer to a request for work back: `given` are tasks it had not started, and
    /// every task of batches from `unread_from` on had not even been read. Forgets them and
    /// returns them in the order sent; what it still holds has started, and the last of it
    /// runs long: no new work until that is done.
    pub(crate) fn given_back(&mut self, given: &[u64], unread_from: u64) -> Vec<u64> {
        self.revoking = false;
        let back: Vec<u64> = self
            .held
            .iter()
            .filter(|&&(task, seq)| seq >= unread_from || given.contains(&task))
            .map(|&(task, _)| task)
            .collect();
        for &task in &back {
            self.release(task);
        }
        self.robbed = self.held.back().map(|&(task, _)| task);
        back
    }

    /// Forgets everything (the worker is gone); returns what it held, in order.
    pub(crate) fn clear(&mut self) -> Vec<u64> {
        self.batches.clear();
        self.revoking = false;
        self.robbed = None;
        self.held.drain(..).map(|(t, _)| t).collect()
    }
}

/// The worker to send the next batch to: among those `open` with room, the one with the
/// fewest batches in flight (then the fewest tasks), the earliest on a tie.
pub(crate) fn pick<'a, K: Copy + Ord>(
    windows: impl IntoIterator<Item = (K, &'a Window, bool)>,
) -> Option<K> {
    windows
        .into_iter()
        .filter(|(_, w, open)| *open && w.has_room())
        .min_by_key(|(i, w, _)| (w.batches(), w.len(), *i))
        .map(|(i, _, _)| i)
}

/// Whom to ask for work back when some worker is idle and nothing is pending: the workers
/// with a backlog, the longest first, at most one per idle worker.
pub(crate) fn victims<'a, K: Copy + Ord>(
    windows: impl IntoIterator<Item = (K, &'a Window, bool)>,
    idle: usize,
) -> Vec<K> {
    let mut v: Vec<(K, usize)> = windows
        .into_iter()
        .filter(|(_, w, can)| *can && w.has_backlog())
        .map(|(i, w, _)| (i, w.len()))
        .collect();
    v.sort_by_key(|&(i, len)| (std::cmp::Reverse(len), i));
    v.into_iter().take(idle).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_small_while_little_is_pending() {
        assert_eq!(batch_size(0, 2), 1);
        assert_eq!(batch_size(7, 2), 1);
        assert_eq!(batch_size(80, 2), 10);
        assert_eq!(batch_size(1_000_000, 2), MAX_BATCH);
        assert_eq!(batch_size(100, 0), 25, "no worker counts as one");
    }

    #[test]
    fn a_window_holds_at_most_two_batches() {
        let mut w = Window::default();
        assert!(w.has_room());
        assert_eq!(w.send([1, 2, 3]), 1);
        assert!(w.has_room());
        assert_eq!(w.send([4]), 2);
        assert!(!w.has_room(), "two batches in flight");
        assert!(w.release(1) && w.release(2) && w.release(3));
        assert!(w.has_room(), "the first batch is done");
        assert!(!w.release(1), "not held any more");
        assert_eq!(w.tasks().collect::<Vec<_>>(), vec![4]);
    }

    #[test]
    fn work_given_back_is_forgotten_and_the_rest_is_robbed() {
        let mut w = Window::default();
        w.send([1, 2, 3]);
        w.send([4, 5]);
        w.revoking = true;
        // Task 1 runs; 2 and 3 were not started; batch 2 was not read yet.
        assert_eq!(w.given_back(&[2, 3], 2), vec![2, 3, 4, 5]);
        assert!(!w.revoking);
        assert_eq!(w.robbed, Some(1));
        assert!(!w.has_room() && !w.has_backlog(), "busy with a long task");
        assert!(w.release(1));
        assert_eq!(w.robbed, None);
        assert!(w.has_room());
    }

    #[test]
    fn the_least_loaded_open_worker_gets_the_batch() {
        let mut a = Window::default();
        let mut b = Window::default();
        let c = Window::default();
        a.send([1]);
        b.send([2, 3]);
        assert_eq!(pick([(0, &a, true), (1, &b, true), (2, &c, true)]), Some(2));
        assert_eq!(
            pick([(0, &a, true), (1, &b, true), (2, &c, false)]),
            Some(0)
        );
        a.send([4]);
        assert_eq!(pick([(0, &a, true), (1, &b, true)]), Some(1));
        b.send([5]);
        assert_eq!(
            pick([(0, &a, true), (1, &b, true)]),
            None,
            "every window is full"
        );
    }

    #[test]
    fn the_longest_backlogs_are_asked_first_one_per_idle_worker() {
        let mut a = Window::default();
        let mut b = Window::default();
        let mut c = Window::default();
        a.send([1, 2]);
        b.send([3, 4, 5]);
        c.send([6]);
        let all = [(0, &a, true), (1, &b, true), (2, &c, true)];
        assert_eq!(victims(all, 1), vec![1]);
        assert_eq!(
            victims(all, 5),
            vec![1, 0],
            "a worker of one task has no backlog"
        );
        b.revoking = true;
        assert_eq!(victims([(0, &a, true), (1, &b, true)], 2), vec![0]);
        assert_eq!(victims([(0usize, &a, false)], 1), Vec::<usize>::new());
    }

    #[test]
    fn clearing_returns_everything_in_order() {
        let mut w = Window::default();
        w.send([7, 8]);
        w.send([9]);
        w.robbed = Some(8);
        assert_eq!(w.clear(), vec![7, 8, 9]);
        assert!(w.is_empty() && w.has_room());
    }
}
