//! How idle workers sleep and how new work wakes them, without lost wake-ups and without
//! waking more threads than there is work for.
//!
//! # Protocol
//!
//! A worker is, at any time, *busy*, *searching* (spinning for work after finding none,
//! or just woken) or *sleeping* (parked). One atomic word counts searchers and sleepers;
//! the list of sleeping workers is under a mutex.
//!
//! * A submitter pushes its job, issues a `SeqCst` fence, and reads the counts. If a worker
//!   is searching, that worker will find the job (see below), so nobody is woken. Otherwise,
//!   if a worker sleeps, one is popped from the list, counted as searching, and unparked.
//! * A searcher that finds nothing registers as sleeping (searching → sleeping in one
//!   atomic step), issues a `SeqCst` fence, and looks at the queues once more before it
//!   parks. If work is visible it withdraws (back to searching) instead.
//! * A searcher that finds work stops searching; if it was the last searcher and more work
//!   is visible, it wakes another worker.
//!
//! # Why no wake-up is lost
//!
//! Both sides write one location (the queue, the counts), fence, then read the other's. By
//! the `SeqCst` fence rule, at least one of them reads the other's write: either the
//! submitter sees the searcher (which then must see the job in its re-check or after it
//! stops searching), or the worker sees the job before parking. `src/loom_tests.rs` checks
//! this exhaustively for small configurations.

use std::sync::atomic::Ordering::SeqCst;

use crate::sync::{self, AtomicUsize, Condvar, Mutex, fence};

const SLEEPER: usize = 1 << 16;
const SEARCH_MASK: usize = SLEEPER - 1;

/// Parks one worker: a boolean token under a mutex, so an unpark that comes first is kept.
struct Parker {
    notified: Mutex<bool>,
    cv: Condvar,
}

impl Parker {
    fn park(&self) {
        let mut n = sync::lock(&self.notified);
        while !*n {
            n = sync::wait(&self.cv, n);
        }
        *n = false;
    }

    fn unpark(&self) {
        let mut n = sync::lock(&self.notified);
        *n = true;
        self.cv.notify_one();
    }
}

/// The sleep state of a pool's workers.
pub(crate) struct Sleep {
    /// Searchers in the low 16 bits, sleepers above.
    counts: AtomicUsize,
    /// Indices of sleeping workers, most recent last (woken first: its cache is warmest).
    idle: Mutex<Vec<usize>>,
    parkers: Box<[Parker]>,
}

impl Sleep {
    pub(crate) fn new(workers: usize) -> Self {
        Sleep {
            counts: AtomicUsize::new(0),
            idle: Mutex::new(Vec::with_capacity(workers)),
            parkers: (0..workers)
                .map(|_| Parker {
                    notified: Mutex::new(false),
                    cv: Condvar::new(),
                })
                .collect(),
        }
    }

    /// Called after work was published: wakes a sleeper unless a searcher will find it.
    pub(crate) fn notify_one(&self) {
        fence(SeqCst);
        self.notify_one_fenced();
    }

    /// `notify_one` for a caller that already issued the `SeqCst` fence after publishing.
    pub(crate) fn notify_one_fenced(&self) {
        let c = self.counts.load(SeqCst);
        if c & SEARCH_MASK != 0 || c < SLEEPER {
            return;
        }
        self.wake_one();
    }

    fn wake_one(&self) {
        let index = {
            let mut idle = sync::lock(&self.idle);
            let Some(index) = idle.pop() else { return };
            self.counts.fetch_sub(SLEEPER - 1, SeqCst);
            index
        };
        self.parkers[index].unpark();
    }

    /// Wakes every sleeper (shutdown).
    pub(crate) fn notify_all(&self) {
        let woken: Vec<usize> = {
            let mut idle = sync::lock(&self.idle);
            let n = idle.len();
            self.counts.fetch_sub(n * (SLEEPER - 1), SeqCst);
            idle.drain(..).collect()
        };
        for index in woken {
            self.parkers[index].unpark();
        }
    }

    /// The worker found no work and starts spinning for it.
    pub(crate) fn start_searching(&self, searching: &mut bool) {
        if !*searching {
            *searching = true;
            self.counts.fetch_add(1, SeqCst);
        }
    }

    /// The worker found work. If it was the last searcher and `more_work()` says more is
    /// queued, another worker is woken to take it.
    pub(crate) fn found_work(&self, searching: &mut bool, more_work: impl Fn() -> bool) {
        if !*searching {
            return;
        }
        *searching = false;
        let prev = self.counts.fetch_sub(1, SeqCst);
        if prev & SEARCH_MASK == 1 {
            fence(SeqCst);
            if more_work() {
                self.notify_one();
            }
        }
    }

    /// Parks searching worker `index` unless `has_work()` holds once it is registered as
    /// sleeping. Returns searching (woken by a notifier, or withdrawn because work appeared).
    pub(crate) fn sleep(&self, index: usize, searching: &mut bool, has_work: impl Fn() -> bool) {
        debug_assert!(*searching);
        {
            let mut idle = sync::lock(&self.idle);
            idle.push(index);
            self.counts.fetch_add(SLEEPER - 1, SeqCst);
        }
        fence(SeqCst);
        if has_work() {
            let mut idle = sync::lock(&self.idle);
            if let Some(pos) = idle.iter().position(|&i| i == index) {
                idle.swap_remove(pos);
                self.counts.fetch_sub(SLEEPER - 1, SeqCst);
                return;
            }
            // A notifier already took this worker off the list and will unpark it:
            // consume that wake-up so it does not linger.
        }
        self.parkers[index].park();
    }

    /// Number of parked workers (for the loom models).
    #[cfg(all(test, loom))]
    pub(crate) fn sleepers(&self) -> usize {
        self.counts.load(SeqCst) / SLEEPER
    }
}
