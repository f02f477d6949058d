//! The system calls of the `multiprocessing` toolkit's shared memory, behind a small safe
//! interface: futex waits and wakes on a shared word, `pidfd_open`, and the POSIX shared
//! memory calls behind `multiprocessing::SharedMemory`. (The toolkit's pthread mutexes and
//! clock go through glibc, in `multiprocessing/shm/mutex.rs`.)
//!
//! # Futexes
//!
//! [`futex_wait`] sleeps while a 32-bit word still holds an expected value; [`futex_wake`]
//! wakes sleepers on that word. Both use the process-shared form of the call (no
//! `FUTEX_PRIVATE_FLAG`): the kernel keys a shared mapping's word by its file and offset, so
//! processes that map the same region at different addresses meet on the same word. A
//! sleeper holds nothing: if it dies, the kernel drops it from the word's wait queue, so a
//! later wake reaches the live sleepers only.

use std::io;

use super::Mapping;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// Why [`futex_wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// Woken, or the word no longer held the expected value, or a signal or spurious
    /// wake-up: the caller re-checks its condition.
    Maybe,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `word` holds `expected`, until woken by [`futex_wake`] or `deadline` passes
/// (never, if `None`). Returns at once if `word` differs from `expected` (that is what
/// makes "check, then sleep" free of lost wake-ups: a waker changes the word before it
/// wakes). May return early for no reason; callers loop on their condition.
///
/// The timeout is relative and recomputed from `deadline` on each call, so interrupted
/// waits that the caller retries still end at the deadline.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Woke {
    let ts;
    let timeout: *const libc::timespec = match deadline {
        None => std::ptr::null(),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Woke::TimedOut;
            }
            ts = timespec(left);
            &ts
        }
    };
    // SAFETY: `word` is a valid, aligned 32-bit word for the duration of the call (the
    // borrow outlives it); the kernel only reads it (and compares it with `expected`);
    // `timeout` is null or points to `ts`, alive on this stack frame until the call returns.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            timeout,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
        Woke::TimedOut
    } else {
        // 0 (woken), EAGAIN (the word changed), EINTR (a signal): the caller re-checks.
        Woke::Maybe
    }
}

/// Wakes up to `n` sleepers on `word` (`u32::MAX`: all of them). The caller changes the word
/// before calling, so that a sleeper about to sleep sees the change instead.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    let n = n.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: `word` is a valid, aligned 32-bit word for the call; FUTEX_WAKE neither reads
    // nor writes it (it only keys the wait queue by its address) and takes no other pointer.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// A file descriptor that becomes readable when process `pid` exits (`pidfd_open`, Linux
/// 5.3+); `None` if the process is gone or the kernel is older.
pub(crate) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: `pidfd_open` takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the descriptor was just created for us and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until `fd` (a pidfd) is readable or `deadline` passes; true if readable.
pub(crate) fn poll_readable(fd: &OwnedFd, deadline: Option<Instant>) -> bool {
    loop {
        let timeout = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128) as i32
                    + i32::from(left.subsec_nanos() % 1_000_000 != 0)
            }
        };
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid `pollfd`, alive for the call.
        let rc = unsafe { libc::poll(&mut p, 1, timeout) };
        if rc > 0 {
            return true;
        }
        if rc == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
    }
}

/// Opens the POSIX shared memory object `name` (which starts with `/`): creates it
/// exclusively with `size` bytes if `create`, else opens an existing one; maps all of it.
/// The size is read once here (`fstat`) and kept in the mapping.
pub(crate) fn shm_open_map(name: &std::ffi::CStr, create: Option<usize>) -> io::Result<Mapping> {
    let flags = match create {
        Some(_) => libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
        None => libc::O_RDWR,
    };
    // SAFETY: `name` is a NUL-terminated string alive for the call; the call returns a new
    // descriptor or -1.
    let fd = unsafe { libc::shm_open(name.as_ptr(), flags | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just opened for us; the `OwnedFd` closes it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let unlink_on_error = |e: io::Error| {
        if create.is_some() {
            shm_unlink(name).ok();
        }
        e
    };
    let len = match create {
        Some(size) => {
            let size = libc::off_t::try_from(size)
                .map_err(|_| unlink_on_error(io::Error::from(io::ErrorKind::InvalidInput)))?;
            // SAFETY: a valid descriptor we own; `ftruncate` takes no pointer.
            if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
                return Err(unlink_on_error(io::Error::last_os_error()));
            }
            size as usize
        }
        None => {
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: a valid descriptor; `fstat` writes a `stat` to the pointer, valid.
            if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fstat` succeeded, so it wrote the whole structure.
            let size = unsafe { st.assume_init() }.st_size;
            usize::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?
        }
    };
    if len == 0 {
        return Ok(Mapping {
            ptr: std::ptr::NonNull::dangling().as_ptr(),
            len: 0,
        });
    }
    // SAFETY: a fresh shared mapping of `len` bytes of a descriptor we own, at an address
    // the kernel chooses; no existing memory is affected. The descriptor may close after
    // (the mapping keeps the object alive).
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(unlink_on_error(io::Error::last_os_error()));
    }
    Ok(Mapping {
        ptr: ptr.cast(),
        len,
    })
}

/// Removes the name `name` (which starts with `/`); mappings stay valid until unmapped.
pub(crate) fn shm_unlink(name: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    if unsafe { libc::shm_unlink(name.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
