//! Shared memory for the toolkit's primitives, and every `unsafe` of the toolkit apart from
//! its system calls ([`sys`](super::sys)) and [`SharedMemory`](super::SharedMemory)'s
//! mapping.
//!
//! A primitive ([`Lock`](super::Lock), [`Queue`](super::Queue), [`Value`](super::Value), …)
//! is a handle on a [`Shared`] region: an anonymous memory file (`memfd`) mapped in every
//! process that holds the handle. The region starts with a small [`Prefix`] (magic number,
//! kind, length) that a receiving process checks, then the primitive's header `H`, then an
//! optional tail of bytes (a queue's ring, an array's elements).
//!
//! The header holds only process-shared objects: [`RawMutex`] (a robust, process-shared
//! pthread mutex: when its owner dies, the next locker is told), [`RawCond`] (a condition
//! variable made of a futex word, which no death can wedge: see its docs) and atomics.
//! Waiting is done by the kernel (futexes): no spinning, no polling.
//!
//! The region's layout (its length, the tail's length) is read once, when a process
//! creates or receives the region, checked against the mapping's real size, and kept in
//! the handle: another process rewriting the prefix cannot make this one read or write
//! outside the mapping.
//!
//! # How a region reaches another process
//!
//! Only inside an ipc-channel message: `Serialize` sends the region's file descriptor
//! alongside the message (ipc-channel collects it through a thread-local while it encodes),
//! and `Deserialize` maps it in the receiving process. This works for the arguments of a
//! [`Process`](super::Process) and for messages of a [`Pipe`](super::Pipe); in any other
//! serializer (a pool task's arguments, a queue item, JSON) the region refuses to serialize,
//! with a clear error, instead of silently producing a number nobody can map. Python has the
//! same rule ("Lock objects should only be shared between processes through inheritance").

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::mem::{MaybeUninit, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

pub(crate) use crate::os::shared::Woke;
use crate::os::shared::{futex_wait, futex_wake};

use ipc_channel::ipc::IpcSharedMemory;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

thread_local! {
    /// Depth of `sharing` scopes on this thread: while positive, regions may serialize.
    static SHARING: Cell<u32> = const { Cell::new(0) };
}

/// Runs `send` (an ipc-channel send) with shared primitives allowed to serialize into its
/// message.
pub(crate) fn sharing<T>(send: impl FnOnce() -> T) -> T {
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            SHARING.with(|s| s.set(s.get() - 1));
        }
    }
    SHARING.with(|s| s.set(s.get() + 1));
    let _scope = Scope;
    send()
}

/// Fails a serialization attempted outside [`sharing`].
pub(crate) fn check_sharing<E: serde::ser::Error>(what: &str) -> Result<(), E> {
    if SHARING.with(Cell::get) > 0 {
        Ok(())
    } else {
        Err(E::custom(format_args!(
            "a {what} can only be shared with another process through the arguments of a \
             Process or a message on a Pipe (it holds a file descriptor), not encoded as data"
        )))
    }
}

const MAGIC: u64 = 0x6366_5f6d_705f_7632; // "cf_mp_v2"

/// The first bytes of every region: what a receiving process checks before trusting it.
#[repr(C, align(64))]
struct Prefix {
    magic: AtomicU64,
    kind: AtomicU32,
    header: AtomicU32,
    tail: AtomicU64,
}

/// A header type that may live in a [`Shared`] region.
///
/// # Safety
///
/// The implementor promises that (1) every field is usable through `&Self` from several
/// processes at once, i.e. it is an atomic, a [`RawMutex`], a [`RawCond`], or a plain
/// `UnsafeCell` only touched under one of the header's mutexes; (2) it holds no pointers
/// (addresses differ between processes); (3) all-zero bytes are a valid value of it before
/// `init` runs (the region is created zero-filled).
pub(crate) unsafe trait Layout: Sized + 'static {
    /// Tells regions of different primitives apart.
    const KIND: u32;
}

/// Proof that a region is being initialized: not yet visible to any other thread or process.
pub(crate) struct Init(());

/// A handle on a shared region holding an `H` and `tail` bytes.
pub(crate) struct Shared<H: Layout> {
    shm: IpcSharedMemory,
    base: *mut u8,
    /// Length of the tail in bytes: read once, checked against the mapping, never re-read.
    tail: usize,
    _header: PhantomData<H>,
}

// SAFETY: the region is only accessed through `&H`, whose fields are all usable from several
// threads and processes at once (the `Layout` contract), and through the tail, which callers
// only access under one of the header's mutexes. The mapping lives as long as `shm`.
unsafe impl<H: Layout> Send for Shared<H> {}
// SAFETY: as for `Send`.
unsafe impl<H: Layout> Sync for Shared<H> {}

const fn header_offset() -> usize {
    size_of::<Prefix>()
}

const fn tail_offset<H>() -> usize {
    (header_offset() + size_of::<H>()).next_multiple_of(64)
}

/// Why a region received from another process is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadRegion {
    #[error("a shared region is too small for its kind")]
    TooSmall,
    #[error("a shared region does not hold the expected primitive")]
    NotThisKind,
}

impl<H: Layout> Shared<H> {
    /// A new zero-filled region with a header initialized by `init` and `tail` bytes after it.
    pub(crate) fn new(tail: usize, init: impl FnOnce(&H, &Init)) -> Shared<H> {
        assert!(align_of::<H>() <= 64, "[internal] header over-aligned");
        let len = tail_offset::<H>() + tail.max(1);
        let mut shm = IpcSharedMemory::from_byte(0, len);
        // SAFETY: the region was just created and no other handle on it exists yet, so the
        // mutable borrow is unique; we keep only the raw pointer (to a mapping that lives as
        // long as `shm`) and never create a reference to the bytes again.
        let base = unsafe { shm.deref_mut() }.as_mut_ptr();
        let shared = Shared {
            shm,
            base,
            tail,
            _header: PhantomData,
        };
        let prefix = shared.prefix();
        prefix.kind.store(H::KIND, Ordering::Relaxed);
        prefix
            .header
            .store(size_of::<H>() as u32, Ordering::Relaxed);
        prefix.tail.store(tail as u64, Ordering::Relaxed);
        init(shared.get(), &Init(()));
        // Published by the channel send that carries the region to another process (a
        // system call, a full barrier), or by `Arc` within this process.
        prefix.magic.store(MAGIC, Ordering::Release);
        shared
    }

    fn from_shm(mut shm: IpcSharedMemory) -> Result<Shared<H>, BadRegion> {
        if shm.len() < tail_offset::<H>() {
            return Err(BadRegion::TooSmall);
        }
        // SAFETY: we own this mapping (just received); we keep only the raw pointer and access
        // the memory through the `Layout` header and the tail, as every handle does.
        let base = unsafe { shm.deref_mut() }.as_mut_ptr();
        let mut shared = Shared {
            shm,
            base,
            tail: 0,
            _header: PhantomData,
        };
        let prefix = shared.prefix();
        let tail = prefix.tail.load(Ordering::Relaxed);
        let fits = (tail_offset::<H>() as u64)
            .checked_add(tail.max(1))
            .is_some_and(|end| end <= shared.shm.len() as u64);
        if prefix.magic.load(Ordering::Acquire) != MAGIC
            || prefix.kind.load(Ordering::Relaxed) != H::KIND
            || prefix.header.load(Ordering::Relaxed) != size_of::<H>() as u32
            || !fits
        {
            return Err(BadRegion::NotThisKind);
        }
        // `fits` bounds it by the mapping's length, a `usize`.
        shared.tail = tail as usize;
        Ok(shared)
    }

    fn prefix(&self) -> &Prefix {
        // SAFETY: the region starts with a `Prefix` (page-aligned mapping, `len` checked in
        // `new`/`from_shm`), all of whose fields are atomics, valid when zero.
        unsafe { &*(self.base as *const Prefix) }
    }

    /// The header.
    pub(crate) fn get(&self) -> &H {
        // SAFETY: the header lies at `header_offset()`, 64-byte aligned and inside the
        // region (checked when the region was made or received); `Layout` makes a shared
        // reference to it sound while other processes use it.
        unsafe { &*(self.base.add(header_offset()) as *const H) }
    }

    /// Length of the tail in bytes (as read when the region was made or received).
    pub(crate) fn tail_len(&self) -> usize {
        self.tail
    }

    /// Copies `src` into the tail at `at`. The caller holds the header mutex that guards
    /// the tail.
    pub(crate) fn write_tail(&self, _held: &Held<'_>, at: usize, src: &[u8]) {
        assert!(
            at + src.len() <= self.tail_len(),
            "[internal] tail write out of range"
        );
        // SAFETY: the range is inside the tail (asserted); the tail is only written under
        // the mutex the caller holds, so no other thread or process touches these bytes now;
        // `src` is our own memory and cannot overlap the shared mapping's range we write.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.base.add(tail_offset::<H>() + at),
                src.len(),
            );
        }
    }

    /// Copies from the tail at `at` into `dst`. The caller holds the header mutex that
    /// guards the tail.
    pub(crate) fn read_tail(&self, _held: &Held<'_>, at: usize, dst: &mut [u8]) {
        assert!(
            at + dst.len() <= self.tail_len(),
            "[internal] tail read out of range"
        );
        // SAFETY: as in `write_tail`, with the copy going the other way.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.add(tail_offset::<H>() + at),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
    }
}

impl<H: Layout> Serialize for Shared<H> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        check_sharing::<S::Error>("shared primitive")?;
        self.shm.serialize(serializer)
    }
}

impl<'de, H: Layout> Deserialize<'de> for Shared<H> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shm = IpcSharedMemory::deserialize(deserializer)?;
        Shared::from_shm(shm).map_err(serde::de::Error::custom)
    }
}

/// What an attempt to lock a [`RawMutex`] (or to wait on a [`RawCond`]) came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// The mutex is held by this thread.
    Yes,
    /// The mutex is held by this thread, and its previous owner died holding it: the state
    /// it guards may be half-updated. Call [`RawMutex::consistent`] before unlocking.
    OwnerDied,
    /// Not locked: the deadline passed (or the mutex was busy, for `try_lock`).
    No,
}

/// Proof that the caller holds a header mutex (for `Shared::tail_as`).
pub(crate) struct Held<'a>(PhantomData<&'a RawMutex>);

/// A robust, process-shared pthread mutex.
#[repr(transparent)]
pub(crate) struct RawMutex(UnsafeCell<libc::pthread_mutex_t>);

/// Whether a [`RawMutex`] may be locked again by the thread that holds it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reentrant {
    No,
    Yes,
}

#[cfg(target_env = "gnu")]
unsafe extern "C" {
    // glibc 2.30+: `pthread_mutex_timedlock` on a chosen clock.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// `deadline` as an absolute time on `clock`.
fn abs_time(clock: libc::clockid_t, deadline: Instant) -> libc::timespec {
    let mut now = MaybeUninit::<libc::timespec>::uninit();
    // SAFETY: `clock_gettime` writes a `timespec` to the pointer we pass, which is valid.
    let now = unsafe {
        libc::clock_gettime(clock, now.as_mut_ptr());
        now.assume_init()
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let mut sec = now
        .tv_sec
        .saturating_add(left.as_secs().min(i32::MAX as u64) as libc::time_t);
    let mut nsec = now.tv_nsec + left.subsec_nanos() as libc::c_long;
    if nsec >= 1_000_000_000 {
        sec = sec.saturating_add(1);
        nsec -= 1_000_000_000;
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

fn outcome(rc: libc::c_int, what: &str) -> Locked {
    match rc {
        0 => Locked::Yes,
        libc::EOWNERDEAD => Locked::OwnerDied,
        libc::ETIMEDOUT | libc::EBUSY => Locked::No,
        // Only a corrupted region (memory written by something other than this module) or a
        // mutex left unrecoverable by a bug here gets there.
        rc => panic!("[internal] {what} failed with error {rc}"),
    }
}

impl RawMutex {
    /// Initializes the mutex: robust, process-shared, reentrant or not.
    pub(crate) fn init(&self, _: &Init, reentrant: Reentrant) {
        // SAFETY: `Init` proves no other thread or process sees the region yet, so nothing
        // uses the mutex while it is initialized; the attribute object lives on our stack
        // and is destroyed after use; every call gets valid pointers.
        unsafe {
            let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            libc::pthread_mutexattr_init(attr.as_mut_ptr());
            libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST);
            let kind = match reentrant {
                Reentrant::Yes => libc::PTHREAD_MUTEX_RECURSIVE,
                Reentrant::No => libc::PTHREAD_MUTEX_NORMAL,
            };
            libc::pthread_mutexattr_settype(attr.as_mut_ptr(), kind);
            libc::pthread_mutex_init(self.0.get(), attr.as_ptr());
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
        }
    }

    /// Locks, waiting until `deadline` (forever if `None`).
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Locked {
        // SAFETY: the mutex was initialized by `init` before the region was shared (the
        // `Shared` contract) and lives in a mapping that outlives `&self`.
        let rc = unsafe {
            match deadline {
                None => libc::pthread_mutex_lock(self.0.get()),
                Some(d) => timed_lock(self.0.get(), d),
            }
        };
        outcome(rc, "pthread_mutex_lock")
    }

    /// Locks if nobody holds the mutex.
    pub(crate) fn try_lock(&self) -> Locked {
        // SAFETY: as in `lock`.
        outcome(
            unsafe { libc::pthread_mutex_trylock(self.0.get()) },
            "pthread_mutex_trylock",
        )
    }

    /// Marks the state guarded by a mutex whose owner died as repaired; the mutex then
    /// works normally. Only the thread that got [`Locked::OwnerDied`] calls this.
    pub(crate) fn consistent(&self) {
        // SAFETY: as in `lock`; the call fails harmlessly (EINVAL) if the mutex was not
        // inconsistent.
        unsafe {
            libc::pthread_mutex_consistent(self.0.get());
        }
    }

    /// Unlocks. Returns false if this thread does not hold the mutex (robust mutexes check
    /// their owner), in which case nothing changes.
    pub(crate) fn unlock(&self) -> bool {
        // SAFETY: as in `lock`; unlocking a robust mutex we do not own fails with EPERM
        // instead of corrupting it.
        unsafe { libc::pthread_mutex_unlock(self.0.get()) == 0 }
    }

    /// Locks for the length of `f`, repairing the mutex if a previous owner died in it: for
    /// headers whose critical sections are single stores, always consistent.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Held<'_>) -> T) -> T {
        if self.lock(None) == Locked::OwnerDied {
            self.consistent();
        }
        let held = Held(PhantomData);
        let _unlock = Unlock(self);
        f(&held)
    }
}

/// `pthread_mutex_clocklock` on the monotonic clock where glibc has it.
///
/// # Safety
///
/// `m` points to an initialized mutex.
unsafe fn timed_lock(m: *mut libc::pthread_mutex_t, deadline: Instant) -> libc::c_int {
    #[cfg(target_env = "gnu")]
    {
        let ts = abs_time(libc::CLOCK_MONOTONIC, deadline);
        // SAFETY: the caller passes an initialized mutex; `ts` is a valid timespec.
        unsafe { pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, &ts) }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let ts = abs_time(libc::CLOCK_REALTIME, deadline);
        // SAFETY: as above.
        unsafe { libc::pthread_mutex_timedlock(m, &ts) }
    }
}

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

/// A plain value in a header, read and written only under one of the header's mutexes.
///
/// `T` is plain data (`Pod`): whatever bytes another process left there are a valid `T`
/// (a flag is a [`GuardedFlag`], not a `bool`).
#[repr(transparent)]
pub(crate) struct Guarded<T: bytemuck::Pod>(UnsafeCell<T>);

impl<T: bytemuck::Pod> Guarded<T> {
    /// Reads the value; the caller holds the mutex that guards it.
    pub(crate) fn get(&self, _held: &Held<'_>) -> T {
        // SAFETY: the value is only accessed under its mutex, which the caller holds, so no
        // other thread or process writes it now; any bytes are a valid `T` (`Pod`).
        unsafe { *self.0.get() }
    }

    /// Writes the value; the caller holds the mutex that guards it.
    pub(crate) fn set(&self, _held: &Held<'_>, v: T) {
        // SAFETY: as in `get`.
        unsafe { *self.0.get() = v }
    }
}

/// A flag in a header, under one of the header's mutexes: a byte read as "not 0", so that
/// any byte another process left there is a valid value.
#[repr(transparent)]
pub(crate) struct GuardedFlag(Guarded<u8>);

impl GuardedFlag {
    /// Reads the flag; the caller holds the mutex that guards it.
    pub(crate) fn get(&self, held: &Held<'_>) -> bool {
        self.0.get(held) != 0
    }

    /// Writes the flag; the caller holds the mutex that guards it.
    pub(crate) fn set(&self, held: &Held<'_>, v: bool) {
        self.0.set(held, u8::from(v));
    }
}

/// A header mutex held by this thread, with the region's tail seen as `[T]`: the access
/// to a [`Value`](super::Value)'s or an [`Array`](super::Array)'s elements. Unlocks on drop.
pub(crate) struct TailLock<'a, T> {
    mutex: &'a RawMutex,
    elems: *mut T,
    len: usize,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: bytemuck::Pod> TailLock<'a, T> {
    /// Locks `mutex`, which must be the header mutex that guards the tail of `shared` (every
    /// access to that tail goes through it), and returns the lock and whether a previous
    /// holder died in it (the mutex is then already marked consistent).
    pub(crate) fn lock<H: Layout>(shared: &'a Shared<H>, mutex: &'a RawMutex) -> (Self, bool) {
        assert!(align_of::<T>() <= 64, "[internal] element over-aligned");
        let died = match mutex.lock(None) {
            Locked::Yes => false,
            Locked::OwnerDied => {
                mutex.consistent();
                true
            }
            Locked::No => unreachable!("[internal] a blocking lock gave up"),
        };
        let lock = TailLock {
            mutex,
            // SAFETY: the tail starts at `tail_offset`, inside the mapping; computing the
            // address reads nothing.
            elems: unsafe { shared.base.add(tail_offset::<H>()) } as *mut T,
            len: shared.tail_len() / size_of::<T>().max(1),
            _not_send: PhantomData,
        };
        (lock, died)
    }

    pub(crate) fn slice(&self) -> &[T] {
        // SAFETY: the tail is 64-byte aligned (enough for `T`, asserted), lies inside the
        // mapping and holds `len` elements of `T`; `T` is plain data, so any bytes are a
        // valid `T`; the mutex, held until this lock drops, makes us the only accessor of
        // the tail in any process, and the borrow ends before the lock does.
        unsafe { std::slice::from_raw_parts(self.elems, self.len) }
    }

    pub(crate) fn slice_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `slice`; `&mut self` makes this the only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.elems, self.len) }
    }
}

impl<T> Drop for TailLock<'_, T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

/// Unlocks a [`RawMutex`] when dropped (for a mutex locked with [`RawMutex::lock`]).
pub(crate) struct Unlock<'a>(pub(crate) &'a RawMutex);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// The instant `timeout` from now (far in the future for huge timeouts, instead of
/// overflowing).
pub(crate) fn deadline_of(timeout: std::time::Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(86_400 * 365))
}

/// Wait for the death of a child process without polling: `pidfd_open` (Linux 5.3+).
pub(crate) mod pidfd {
    use std::os::fd::OwnedFd;
    use std::time::Instant;

    /// A file descriptor that becomes readable when process `pid` exits.
    pub(crate) fn open(pid: u32) -> Option<OwnedFd> {
        crate::os::shared::pidfd_open(pid)
    }

    /// Waits until the process exits or `deadline` passes; true if it exited.
    pub(crate) fn wait(fd: &OwnedFd, deadline: Option<Instant>) -> bool {
        crate::os::shared::poll_readable(fd, deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    struct Plain {
        m: RawMutex,
    }

    // SAFETY: one robust mutex; all-zero before `init`.
    unsafe impl Layout for Plain {
        const KIND: u32 = 0x7e57;
    }

    #[test]
    fn the_tail_length_is_read_once_and_checked_against_the_mapping() {
        let shared = Shared::new(16, |h: &Plain, init| h.m.init(init, Reentrant::No));
        // Another process rewrites the length word of the prefix.
        shared.prefix().tail.store(1 << 40, Ordering::Relaxed);
        assert_eq!(shared.tail_len(), 16, "the handle keeps what it read");
        // A process receiving the region now refuses it instead of trusting the word.
        assert!(Shared::<Plain>::from_shm(shared.shm.clone()).is_err());
        shared.prefix().tail.store(u64::MAX, Ordering::Relaxed);
        assert!(Shared::<Plain>::from_shm(shared.shm.clone()).is_err());
        shared.prefix().tail.store(16, Ordering::Relaxed);
        let again = Shared::<Plain>::from_shm(shared.shm.clone()).expect("a sound region");
        assert_eq!(again.tail_len(), 16);
    }

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
