//! [`RawCond`]: a condition variable made of a futex word, which no death can wedge, and the
//! [`Wakeup`] it leaves to be made once the mutex is released.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::{Init, Locked, RawMutex, Woke};
use crate::os::shared::{futex_wait, futex_wake};

/// A condition variable built on a futex word, for waiters holding a [`RawMutex`].
///
/// `seq` counts notifications: a waiter reads it with the mutex held, releases the mutex
/// and sleeps in the kernel while `seq` still holds what it read ([`futex_wait`]); a
/// notifier (holding the mutex) bumps `seq`, then wakes sleepers ([`futex_wake`]). A
/// notification between the read and the sleep changes `seq`, so the sleep returns at once:
/// no wake-up is lost.
///
/// `waiting` says whether a waiter may be asleep: a waiter stores in it the `seq` it read
/// (plus one, never 0), and a notification to all clears it once its wake-up is made, unless
/// a newer waiter stored its own value meanwhile. A notification with nobody asleep writes
/// nothing and calls nothing, so a queue's producer pays for a wake-up once per sleep of its
/// consumer, not once per item.
///
/// Why no death can wedge it: a waiter holds nothing while it sleeps (the mutex is
/// released before the sleep, and the kernel forgets a dead sleeper), and a notifier never
/// waits for anyone. A waiter killed in its wait leaves `waiting` set, which costs the next
/// notification a needless system call. A notifier killed between its bump of `seq` and
/// its wake-up (a window of a few instructions) leaves `waiting` set too, so the next
/// notification wakes the sleepers it was waking (or their timeout does). (glibc's
/// process-shared `pthread_cond_t`, by contrast, makes a broadcast wait for waiters to leave
/// an old group, which a dead waiter never does.)
#[repr(C)]
pub(crate) struct RawCond {
    seq: AtomicU32,
    /// 0, or one more than the `seq` the latest waiter read (0 skipped).
    waiting: AtomicU32,
}

// SAFETY: two `AtomicU32`s (see `SharedField`'s impls for the atomics).
unsafe impl super::SharedField for RawCond {}

impl RawCond {
    /// Nothing to do: all-zero is a condition variable with no waiter. Kept so that every
    /// header initializes its parts the same way.
    pub(crate) fn init(&self, _: &Init) {}

    /// Releases `m` (held by this thread), waits for a notification, a spurious wake-up or
    /// `deadline`, and takes `m` again (repairing it if a holder died meanwhile: the callers'
    /// critical sections leave their state consistent at every store). Returns
    /// [`Woke::TimedOut`] if the deadline passed.
    pub(crate) fn wait(&self, m: &RawMutex, deadline: Option<Instant>) -> Woke {
        let seq = self.seq.load(Ordering::SeqCst);
        let token = seq.wrapping_add(1).max(1);
        if self.waiting.load(Ordering::Relaxed) != token {
            self.waiting.store(token, Ordering::SeqCst);
        }
        m.unlock();
        let woke = futex_wait(&self.seq, seq, deadline);
        if m.lock(None) == Locked::OwnerDied {
            m.consistent();
        }
        woke
    }

    /// Wakes up to `n` waiters (`u32::MAX`: all), with spurious wake-ups possible for
    /// others. Called with the mutex held: a waiter sets `waiting` before it releases the
    /// mutex, so when it is clear nobody can be between reading `seq` and sleeping, and
    /// nothing is written (the header's cache line stays shared between the processes that
    /// use it) and nothing is called.
    pub(crate) fn notify(&self, n: u32) {
        self.notify_later(n).wake();
    }

    /// As [`notify`](Self::notify), with the system call left to the returned [`Wakeup`],
    /// to be dropped after the mutex is released: the woken thread then does not run into
    /// the mutex still held by the notifier (and sleep once more on it).
    pub(crate) fn notify_later(&self, n: u32) -> Wakeup<'_> {
        let token = self.waiting.load(Ordering::SeqCst);
        if token == 0 {
            return Wakeup::default();
        }
        // The bump, under the mutex, is what a waiter about to sleep sees; the wake-up
        // itself may come after the mutex is released.
        self.seq.fetch_add(1, Ordering::SeqCst);
        Wakeup {
            word: Some(&self.seq),
            n,
            // Everyone asleep is woken by this wake-up: once it is made, `waiting` may be
            // cleared, unless a newer waiter stored its own token meanwhile.
            clear: (n == u32::MAX).then_some((&self.waiting, token)),
        }
    }

    /// Wakes every waiter. Called with the mutex held.
    pub(crate) fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}

/// A wake-up decided by [`RawCond::notify_later`] under the mutex, made when this is
/// dropped (or by [`wake`](Wakeup::wake)): after the mutex is released, if the caller lets
/// it live that long. Dropping it can never lose the wake-up.
#[derive(Default)]
pub(crate) struct Wakeup<'a> {
    word: Option<&'a AtomicU32>,
    n: u32,
    /// The `waiting` word to clear after the wake-up, if it still holds this token.
    clear: Option<(&'a AtomicU32, u32)>,
}

impl<'a> Wakeup<'a> {
    /// Makes the wake-up now (once).
    pub(crate) fn wake(&mut self) {
        if let Some(word) = self.word.take() {
            futex_wake(word, self.n);
            if let Some((waiting, token)) = self.clear.take() {
                let _ = waiting.compare_exchange(token, 0, Ordering::SeqCst, Ordering::Relaxed);
            }
        }
    }

    /// Adds `other` to this one: both are made (at once if they are for different
    /// conditions, since one value holds one).
    pub(crate) fn add(&mut self, mut other: Wakeup<'a>) {
        match (self.word, other.word) {
            (_, None) => {}
            (None, Some(_)) => *self = std::mem::take(&mut other),
            (Some(a), Some(b)) if std::ptr::eq(a, b) => {
                self.n = self.n.max(other.n);
                if self.clear.is_none() || other.clear.is_none() {
                    self.clear = None;
                }
                other.word = None;
            }
            (Some(_), Some(_)) => other.wake(),
        }
    }
}

impl Drop for Wakeup<'_> {
    fn drop(&mut self) {
        self.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multiprocessing::shm::{Layout, Reentrant, Shared};

    #[test]
    fn a_wait_times_out_at_its_deadline_and_a_notify_before_the_sleep_is_not_lost() {
        #[repr(C)]
        struct H {
            m: RawMutex,
            c: RawCond,
        }
        // SAFETY: a robust mutex and a futex-word condition; all-zero before `init`.
        unsafe impl Layout for H {
            const KIND: u32 = 0x7e58;
        }
        let shared = Shared::new(0, |h: &H, init| h.m.init(init, Reentrant::No));
        let h = shared.get();
        let start = Instant::now();
        let woke = h.m.with(|_| {
            h.c.wait(
                &h.m,
                Some(Instant::now() + std::time::Duration::from_millis(30)),
            )
        });
        assert_eq!(woke, Woke::TimedOut);
        assert!(start.elapsed() >= std::time::Duration::from_millis(30));
        // A notification between a waiter's reading the sequence (under the mutex) and its
        // sleep: the sleep returns at once.
        let seq = h.m.with(|_| {
            let seq = h.c.seq.load(Ordering::SeqCst);
            h.c.waiting.store(seq + 1, Ordering::SeqCst);
            seq
        });
        h.m.with(|_| h.c.notify_all());
        assert_eq!(futex_wait(&h.c.seq, seq, None), Woke::Maybe);
        // With nobody waiting since, a notification writes nothing.
        let before = h.c.seq.load(Ordering::SeqCst);
        h.m.with(|_| h.c.notify_all());
        assert_eq!(h.c.seq.load(Ordering::SeqCst), before);

        // A notifier that dies after its bump and before its wake-up (simulated by
        // forgetting the wake-up): the next notification still wakes the sleepers.
        h.m.with(|_| {
            let seq = h.c.seq.load(Ordering::SeqCst);
            h.c.waiting.store(seq + 1, Ordering::SeqCst);
        });
        std::mem::forget(h.m.with(|_| h.c.notify_later(u32::MAX)));
        assert_ne!(
            h.c.waiting.load(Ordering::SeqCst),
            0,
            "still marked as waited on"
        );
        let before = h.c.seq.load(Ordering::SeqCst);
        h.m.with(|_| h.c.notify_all());
        assert_ne!(
            h.c.seq.load(Ordering::SeqCst),
            before,
            "the next notify wakes"
        );
        assert_eq!(h.c.waiting.load(Ordering::SeqCst), 0);
    }
}
