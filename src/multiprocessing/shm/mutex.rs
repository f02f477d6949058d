//! [`RawMutex`]: a robust, process-shared pthread mutex in a shared header, and what it
//! guards ([`Guarded`], [`GuardedFlag`]); [`Held`] proves it is held.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::time::Instant;

use super::Init;

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

// SAFETY: (1) a process-shared pthread mutex (`init` sets `PTHREAD_PROCESS_SHARED`) is
// used through `&Self` from every process that maps it, as POSIX defines; (2) the only
// addresses glibc stores in it are the robust-list links of its current owner, written and
// followed by the owner's process alone (and by the kernel when that process dies), never by
// another; (3) all-zero bytes are glibc's `PTHREAD_MUTEX_INITIALIZER`, and `init` runs
// before the region is shared.
unsafe impl super::SharedField for RawMutex {}

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

/// Unlocks a [`RawMutex`] when dropped (for a mutex locked with [`RawMutex::lock`]).
pub(crate) struct Unlock<'a>(pub(crate) &'a RawMutex);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

// SAFETY: (1) the value is only touched under one of the header's mutexes (`get` and `set`
// take the proof `Held`), so never by two threads or processes at once; (2) an integer holds
// no pointer; (3) all-zero bytes are the integer 0. (Only the integers the headers use.)
unsafe impl super::SharedField for Guarded<u8> {}
// SAFETY: as for `Guarded<u8>`.
unsafe impl super::SharedField for Guarded<u32> {}
// SAFETY: as for `Guarded<u8>`.
unsafe impl super::SharedField for Guarded<u64> {}
// SAFETY: a `Guarded<u8>` (see above); zero is `false`.
unsafe impl super::SharedField for GuardedFlag {}
