//! Shared memory for the toolkit's primitives, and (in this module and its files) every
//! `unsafe` of the toolkit apart from its system calls (`os::shared`) and
//! [`SharedMemory`](super::SharedMemory)'s mapping.
//!
//! This file: the region ([`Shared`], [`Layout`], a primitive's [`Handle`], the `sharing`
//! scope, [`TailLock`]);
//! `mutex.rs`: [`RawMutex`] and what it guards; `cond.rs`: [`RawCond`] and its [`Wakeup`];
//! `wait_queue.rs`: [`WaitQueue`], a `Condition`'s waiters.
//! Why no death can wedge a wait: `README.md` in this directory.
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

use std::cell::Cell;
use std::marker::PhantomData;
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

mod cond;
mod mutex;
mod wait_queue;

pub(crate) use crate::os::shared::Woke;
pub(crate) use cond::{RawCond, Wakeup};
pub(crate) use mutex::{Guarded, GuardedFlag, Held, Locked, RawMutex, Reentrant, Unlock};
pub(crate) use wait_queue::WaitQueue;

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

/// A type a [`Layout`] header may hold as a field: the header types of this module
/// ([`RawMutex`], [`RawCond`], [`WaitQueue`], [`Guarded`], [`GuardedFlag`]) and the atomics.
///
/// # Safety
///
/// The implementor promises for itself the three conditions of [`Layout`]: usable through
/// `&Self` from several processes at once, no pointers, all-zero bytes a valid value.
pub(crate) unsafe trait SharedField {}

// SAFETY: (1) an atomic is usable through `&Self` from any thread, and its operations are
// lock-free instructions on the memory itself, so from any process mapping it; (2) it holds
// an integer, no pointer; (3) all-zero is the value 0.
unsafe impl SharedField for AtomicU32 {}
// SAFETY: as for `AtomicU32`.
unsafe impl SharedField for AtomicU64 {}

/// Compiles only for a [`SharedField`]: [`shared_header!`] calls it on every field type.
pub(crate) const fn assert_shared_field<F: SharedField>() {}

/// Declares a primitive's header: a `#[repr(C)]` struct whose fields are all
/// [`SharedField`]s (checked at compile time), and its [`Layout`] with the given `KIND`
/// (distinct per primitive). The one `unsafe impl Layout` of the toolkit's primitives.
macro_rules! shared_header {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident: KIND = $kind:expr;
        { $($(#[$fmeta:meta])* $fvis:vis $field:ident: $ty:ty),* $(,)? }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),*
        }

        // SAFETY: every field is a `SharedField` (checked by the constant below), which
        // promises the three conditions of `Layout` for itself, and a `repr(C)` struct of
        // them keeps them: (1) each field is usable through `&Self` from several processes,
        // so the struct is; (2) no field holds a pointer, so neither does the struct (its
        // padding is never read); (3) all-zero bytes are a valid value of every field, so
        // of the struct.
        unsafe impl $crate::multiprocessing::shm::Layout for $name {
            const KIND: u32 = $kind;
        }

        const _: () = {
            $($crate::multiprocessing::shm::assert_shared_field::<$ty>();)*
        };
    };
}
pub(crate) use shared_header;

/// A primitive's handle on its region: `Clone` shares the mapping between threads; another
/// process gets it through `Serialize` (the region itself, as [`Shared`] sends it). Derefs to
/// the [`Shared`] region.
pub(crate) struct Handle<H: Layout>(Arc<Shared<H>>);

impl<H: Layout> Handle<H> {
    /// A new region with `tail` bytes after the header, set up by `init` (see
    /// [`Shared::new`]).
    pub(crate) fn new(tail: usize, init: impl FnOnce(&H, &Init)) -> Handle<H> {
        Handle(Arc::new(Shared::new(tail, init)))
    }
}

impl<H: Layout> Clone for Handle<H> {
    fn clone(&self) -> Handle<H> {
        Handle(Arc::clone(&self.0))
    }
}

impl<H: Layout> std::ops::Deref for Handle<H> {
    type Target = Shared<H>;

    fn deref(&self) -> &Shared<H> {
        &self.0
    }
}

impl<H: Layout> Serialize for Handle<H> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::serde_arc::by_value::serialize(&self.0, serializer)
    }
}

impl<'de, H: Layout> Deserialize<'de> for Handle<H> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::serde_arc::by_value::deserialize(deserializer).map(Handle)
    }
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
}
