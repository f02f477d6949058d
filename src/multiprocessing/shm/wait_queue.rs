//! [`WaitQueue`]: the waiters of a `Condition`, each returning only for a notification
//! granted to it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use super::{Init, RawCond, RawMutex, Woke};

/// How many waiters a [`WaitQueue`] keeps slots for.
pub(crate) const WAIT_SLOTS: usize = 64;

/// The waiters of a `Condition`: a [`RawCond`] to sleep on, and a slot per waiter that
/// says whether a notification was granted to it, so that a waiter returns only for a
/// notification meant for it (or its timeout), never for a futex wake-up meant for another
/// or a spurious one. Every field is read and written under the condition's mutex.
///
/// A waiter takes a free slot and the next ticket (`WAITING`); `notify(n)` grants the `n`
/// oldest tickets still waiting (sets their `GRANTED` bit) and wakes every sleeper; each
/// sleeper looks at its own slot and sleeps again unless granted. A waiter that times out
/// frees its slot: a grant that came first is taken (the wait was notified), otherwise no
/// grant was spent on it. A waiter that arrives after a notification has a newer ticket and
/// a slot the notification did not grant: it cannot take the notification of another.
///
/// Deaths: a slot records its waiter's pid. A notifier skips (and frees) a waiting slot
/// whose process is gone (`kill(pid, 0)`), so a dead waiter swallows no notification; one
/// that dies after its grant and before it re-takes the mutex takes that notification with
/// it (as in Python). A waiter that finds no free slot first frees the slots of dead
/// processes. The notifier waits for nobody, so no death can wedge a wait or a notify.
///
/// More than [`WAIT_SLOTS`] waiters at once: the extra ones wait on the bare [`RawCond`]
/// and may wake without a notification meant for them (as any condition variable may).
#[repr(C)]
pub(crate) struct WaitQueue {
    cond: RawCond,
    /// The last ticket handed out.
    tickets: AtomicU64,
    /// Waiters without a slot, asleep on `cond`.
    overflow: AtomicU32,
    slots: [WaitSlot; WAIT_SLOTS],
}

#[repr(C)]
struct WaitSlot {
    /// 0: free; otherwise the waiter's ticket shifted left by one, with [`GRANTED`] set once
    /// a notification was granted to it.
    word: AtomicU64,
    /// The waiter's process.
    pid: AtomicU32,
}

// SAFETY: a `RawCond` and atomics, all `SharedField`s; all-zero is an empty queue (every
// slot free, no ticket handed out).
unsafe impl super::SharedField for WaitQueue {}

const GRANTED: u64 = 1;

/// Whether process `pid` still exists (a zombie counts: it is reaped soon).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl WaitQueue {
    /// Nothing to do: all-zero is a queue with no waiter.
    pub(crate) fn init(&self, init: &Init) {
        self.cond.init(init);
    }

    /// Releases `m` (held by this thread), waits for a notification granted to this waiter
    /// or for `deadline`, and takes `m` again. Returns true if notified.
    pub(crate) fn wait(&self, m: &RawMutex, deadline: Option<Instant>) -> bool {
        let me = std::process::id();
        let Some(slot) = self.take_slot(me) else {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            let woke = self.cond.wait(m, deadline);
            self.overflow.fetch_sub(1, Ordering::Relaxed);
            return woke == Woke::Maybe;
        };
        loop {
            // A grant, even one that came with the deadline, is taken.
            if slot.word.load(Ordering::Relaxed) & GRANTED != 0 {
                slot.word.store(0, Ordering::Relaxed);
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // Withdrawn: no later notification is granted to this slot.
                slot.word.store(0, Ordering::Relaxed);
                return false;
            }
            // Woken by a notification (for this waiter or another), spuriously, or by the
            // deadline: the slot says which.
            self.cond.wait(m, deadline);
        }
    }

    /// A free slot, marked waiting with the next ticket (freeing the slots of dead
    /// processes if none is free); None if all are taken.
    fn take_slot(&self, me: u32) -> Option<&WaitSlot> {
        let free = || {
            self.slots
                .iter()
                .find(|s| s.word.load(Ordering::Relaxed) == 0)
        };
        let slot = free().or_else(|| {
            for s in &self.slots {
                let pid = s.pid.load(Ordering::Relaxed);
                if pid != me && !process_alive(pid) {
                    s.word.store(0, Ordering::Relaxed);
                }
            }
            free()
        })?;
        let ticket = self.tickets.load(Ordering::Relaxed) + 1;
        self.tickets.store(ticket, Ordering::Relaxed);
        slot.pid.store(me, Ordering::Relaxed);
        slot.word.store(ticket << 1, Ordering::Relaxed);
        Some(slot)
    }

    /// Grants a notification to the `n` oldest waiters (all with `usize::MAX`) and wakes
    /// them. Called with the mutex held.
    pub(crate) fn notify(&self, n: usize) {
        let me = std::process::id();
        let mut granted = 0;
        while granted < n {
            let oldest = self
                .slots
                .iter()
                .filter(|s| {
                    let w = s.word.load(Ordering::Relaxed);
                    w != 0 && w & GRANTED == 0
                })
                .min_by_key(|s| s.word.load(Ordering::Relaxed));
            let Some(slot) = oldest else { break };
            let pid = slot.pid.load(Ordering::Relaxed);
            if pid != me && !process_alive(pid) {
                // Its waiter is gone: the slot is freed and the grant goes to the next.
                slot.word.store(0, Ordering::Relaxed);
                continue;
            }
            slot.word.fetch_or(GRANTED, Ordering::Relaxed);
            granted += 1;
        }
        if granted > 0 || self.overflow.load(Ordering::Relaxed) > 0 {
            // Every sleeper wakes and looks at its slot; those not granted sleep again.
            self.cond.notify_all();
        }
    }
}
