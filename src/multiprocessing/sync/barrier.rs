//! [`Barrier`]: parties wait for each other, and the last to arrive runs the action.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::multiprocessing::error::BrokenBarrierError;
use crate::multiprocessing::shm::{
    Guarded, GuardedFlag, Handle, Held, RawCond, RawMutex, Reentrant, deadline_of, shared_header,
};
use crate::remote::{FnRef, codec, naming};

shared_header! {
    pub(crate) struct BarrierHeader: KIND = 5;
    {
        m: RawMutex,
        changed: RawCond,
        parties: Guarded<u32>,
        /// Parties waiting in the current generation.
        count: Guarded<u32>,
        /// Incremented each time the barrier lets a generation through or is reset.
        generation: Guarded<u64>,
        /// The generation that `reset` ended, plus one (0: none), so that its waiters fail.
        reset: Guarded<u64>,
        broken: GuardedFlag,
        /// The last party is running the action. It holds `m` throughout, so anyone else who
        /// holds `m` and sees this set knows the runner died in the action.
        acting: GuardedFlag,
    }
}

/// A barrier's action: the function itself in the process that made the barrier, its
/// position in the executable in a process that received the barrier.
#[derive(Clone, Copy)]
enum Action {
    Here(fn()),
    There(FnRef),
}

impl Action {
    /// Runs the action; false if it panicked (or could not be found in this process).
    fn run(self) -> bool {
        match self {
            Action::Here(f) => crate::unwind::catch(f).is_ok(),
            Action::There(target) => match naming::invoke(target, &[]) {
                Ok(outcome) => codec::decode_outcome::<()>(&outcome).is_ok(),
                Err(_) => false,
            },
        }
    }
}

/// Python's `multiprocessing.Barrier`: `parties` processes or threads wait until all of them
/// arrive, then all go on. [`with_action`](Barrier::with_action) adds Python's `action`.
///
/// A party killed while it waits still counts as arrived in its round (as in Python: the
/// others are not stuck, the round just completes without it). A party killed while it runs
/// the action breaks the barrier: the others get [`BrokenBarrierError`] at once.
///
/// ```
/// use concurrent_futures::multiprocessing::Barrier;
/// let b = Barrier::new(2);
/// let b2 = b.clone();
/// let t = std::thread::spawn(move || b2.wait().unwrap());
/// let mine = b.wait().unwrap();
/// let theirs = t.join().unwrap();
/// assert_eq!(mine + theirs, 1); // arrival indexes 0 and 1
/// ```
#[derive(Clone)]
pub struct Barrier {
    shared: Handle<BarrierHeader>,
    action: Option<Action>,
}

impl Serialize for Barrier {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let action = match self.action {
            None => None,
            Some(Action::There(target)) => Some(target),
            Some(Action::Here(f)) => {
                Some(naming::init_target_of(f).map_err(serde::ser::Error::custom)?)
            }
        };
        (&self.shared, action).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (shared, action) = <(Handle<BarrierHeader>, Option<FnRef>)>::deserialize(deserializer)?;
        // The action must be called through the trampoline for a `fn()`, the one this
        // process would name itself: a sender cannot pick another code path.
        fn probe() {}
        let own = naming::init_target_of(probe).map_err(serde::de::Error::custom)?;
        if action.is_some_and(|a| a.tramp != own.tramp) {
            return Err(serde::de::Error::custom(
                "a shared barrier names its action through an unexpected trampoline",
            ));
        }
        Ok(Barrier {
            shared,
            action: action.map(Action::There),
        })
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

impl Barrier {
    /// A barrier for `parties` parties (at least one).
    ///
    /// ```
    /// assert_eq!(concurrent_futures::multiprocessing::Barrier::new(3).parties(), 3);
    /// ```
    pub fn new(parties: u32) -> Barrier {
        let parties = parties.max(1);
        Barrier {
            shared: Handle::new(0, |h: &BarrierHeader, init| {
                h.m.init(init, Reentrant::No);
                h.changed.init(init);
                h.m.with(|held| h.parties.set(held, parties));
            }),
            action: None,
        }
    }

    /// A barrier whose last arriving party runs `action` before the others are released.
    /// Python's `Barrier(parties, action=f)`.
    ///
    /// The action runs in whichever process arrives last, so it is a plain `fn()` of the
    /// program, found in a child by its place in the executable (as a [`Process`]'s target
    /// is). If it panics, the barrier breaks and every party of the round, the one that ran
    /// it included, gets [`BrokenBarrierError`]; if its process is killed while it runs, the
    /// barrier breaks too. While it runs, the other
    /// parties wait for it, past their timeouts if need be (they need the barrier's lock
    /// back, as in Python).
    ///
    /// ```
    /// use concurrent_futures::multiprocessing::Barrier;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    ///
    /// static ROUNDS: AtomicU32 = AtomicU32::new(0);
    /// fn count_round() {
    ///     ROUNDS.fetch_add(1, Ordering::SeqCst);
    /// }
    ///
    /// let b = Barrier::with_action(2, count_round);
    /// let b2 = b.clone();
    /// let t = std::thread::spawn(move || b2.wait());
    /// assert!(b.wait().is_ok());
    /// assert!(t.join().unwrap().is_ok());
    /// assert_eq!(ROUNDS.load(Ordering::SeqCst), 1); // once per round, not per party
    /// ```
    ///
    /// [`Process`]: crate::multiprocessing::Process
    pub fn with_action(parties: u32, action: fn()) -> Barrier {
        Barrier {
            action: Some(Action::Here(action)),
            ..Barrier::new(parties)
        }
    }

    fn header(&self) -> &BarrierHeader {
        self.shared.get()
    }

    /// Runs `f` with the barrier's lock held, after breaking the barrier if the lock's last
    /// holder died running the action.
    fn locked<T>(&self, f: impl FnOnce(&BarrierHeader, &Held<'_>) -> T) -> T {
        let h = self.header();
        h.m.with(|held| {
            if h.acting.get(held) {
                Self::runner_died(h, held);
            }
            f(h, held)
        })
    }

    fn runner_died(h: &BarrierHeader, held: &Held<'_>) {
        h.acting.set(held, false);
        h.broken.set(held, true);
        h.changed.notify_all();
    }

    /// Waits for all parties; returns this party's arrival index (0 for the first, `parties
    /// - 1` for the last). Fails if the barrier is or becomes broken.
    ///
    /// ```
    /// let b = concurrent_futures::multiprocessing::Barrier::new(1);
    /// assert_eq!(b.wait(), Ok(0));
    /// ```
    pub fn wait(&self) -> Result<u32, BrokenBarrierError> {
        self.wait_until(None)
    }

    /// As [`wait`](Self::wait), for at most `timeout`; a timeout breaks the barrier for
    /// everyone, as in Python.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = concurrent_futures::multiprocessing::Barrier::new(2);
    /// assert!(b.wait_timeout(Duration::from_millis(5)).is_err());
    /// assert!(b.broken());
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, BrokenBarrierError> {
        self.wait_until(Some(deadline_of(timeout)))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<u32, BrokenBarrierError> {
        self.locked(|h, held| {
            if h.broken.get(held) {
                return Err(BrokenBarrierError);
            }
            let index = h.count.get(held);
            let generation = h.generation.get(held);
            if index.saturating_add(1) >= h.parties.get(held) {
                if let Some(action) = self.action {
                    h.acting.set(held, true);
                    // Wake the waiters now: they queue on the lock, which this thread holds
                    // while the action runs, so that if this process dies in the action the
                    // kernel hands the lock to one of them (owner died) and they learn it.
                    h.changed.notify_all();
                    let ok = action.run();
                    h.acting.set(held, false);
                    if !ok {
                        h.broken.set(held, true);
                        h.changed.notify_all();
                        return Err(BrokenBarrierError);
                    }
                }
                h.count.set(held, 0);
                h.generation.set(held, generation + 1);
                h.changed.notify_all();
                return Ok(index);
            }
            h.count.set(held, index + 1);
            loop {
                if h.generation.get(held) != generation {
                    return if h.reset.get(held) == generation + 1 {
                        Err(BrokenBarrierError)
                    } else {
                        Ok(index)
                    };
                }
                if h.acting.get(held) {
                    Self::runner_died(h, held);
                }
                if h.broken.get(held) {
                    return Err(BrokenBarrierError);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    h.broken.set(held, true);
                    h.changed.notify_all();
                    return Err(BrokenBarrierError);
                }
                h.changed.wait(&h.m, deadline);
            }
        })
    }

    /// Breaks the barrier: current and future waiters fail until [`reset`](Self::reset).
    ///
    /// ```
    /// let b = concurrent_futures::multiprocessing::Barrier::new(2);
    /// b.abort();
    /// assert!(b.broken());
    /// ```
    pub fn abort(&self) {
        self.locked(|h, held| {
            h.broken.set(held, true);
            h.changed.notify_all();
        });
    }

    /// Returns the barrier to its initial state; parties waiting now fail.
    ///
    /// ```
    /// let b = concurrent_futures::multiprocessing::Barrier::new(1);
    /// b.abort();
    /// b.reset();
    /// assert_eq!(b.wait(), Ok(0));
    /// ```
    pub fn reset(&self) {
        self.locked(|h, held| {
            let generation = h.generation.get(held);
            if h.count.get(held) > 0 {
                h.reset.set(held, generation + 1);
            }
            h.generation.set(held, generation + 1);
            h.count.set(held, 0);
            h.broken.set(held, false);
            h.changed.notify_all();
        });
    }

    /// The number of parties.
    ///
    /// ```
    /// assert_eq!(concurrent_futures::multiprocessing::Barrier::new(4).parties(), 4);
    /// ```
    pub fn parties(&self) -> u32 {
        self.locked(|h, held| h.parties.get(held))
    }

    /// The number of parties waiting now.
    ///
    /// ```
    /// assert_eq!(concurrent_futures::multiprocessing::Barrier::new(4).n_waiting(), 0);
    /// ```
    pub fn n_waiting(&self) -> u32 {
        self.locked(|h, held| h.count.get(held))
    }

    /// Whether the barrier is broken.
    ///
    /// ```
    /// assert!(!concurrent_futures::multiprocessing::Barrier::new(4).broken());
    /// ```
    pub fn broken(&self) -> bool {
        self.locked(|h, held| h.broken.get(held))
    }
}
