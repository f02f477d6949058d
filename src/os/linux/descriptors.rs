//! Running short of descriptors: the errors of a shortage, and this process's
//! `RLIMIT_NOFILE`.

use std::io;
use std::os::fd::BorrowedFd;

/// True for the errors of a descriptor or memory shortage (`EMFILE`, `ENFILE`, `ENOMEM`):
/// transient conditions of this process or of the system, not faults of a peer.
pub(crate) fn is_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM)
    )
}

/// Which shortage made the kernel drop received descriptors: it does not say, so this
/// tries to take one more descriptor (a duplicate of `fd`, closed at once) and returns the
/// error that gets (`EMFILE`, `ENFILE` or `ENOMEM`), or `EMFILE` if it succeeds (the
/// shortage passed meanwhile; this process's own limit is the likely one).
pub(crate) fn descriptor_shortage(fd: BorrowedFd<'_>) -> i32 {
    match fd.try_clone_to_owned() {
        Ok(_) => libc::EMFILE,
        Err(e) => match e.raw_os_error() {
            Some(errno @ (libc::ENFILE | libc::ENOMEM)) => errno,
            _ => libc::EMFILE,
        },
    }
}

/// The soft limit on open descriptors found when [`raise_nofile_limit`] first ran, if it
/// raised it.
static ORIGINAL_NOFILE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit, once (later calls do
/// nothing), as Go's runtime does at start: the soft limit (often 1024) exists for programs
/// that use `select`, which this crate does not. Returns the soft limit found before, if it
/// was raised (to give back to the processes this one starts: [`restore_nofile_limit`]).
pub(crate) fn raise_nofile_limit() -> Option<u64> {
    *ORIGINAL_NOFILE.get_or_init(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` and `setrlimit` read or write the one `rlimit` they are given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
                return None;
            }
            let original = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            (libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0).then_some(original)
        }
    })
}

/// The soft `RLIMIT_NOFILE` this process had before [`raise_nofile_limit`] raised it.
pub(crate) fn original_nofile_limit() -> Option<u64> {
    ORIGINAL_NOFILE.get().copied().flatten()
}

/// Sets this process's soft `RLIMIT_NOFILE` back to `soft` (never above the hard limit): a
/// started worker or child gives back the limit its parent had before raising it.
pub(crate) fn restore_nofile_limit(soft: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as in `raise_nofile_limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && soft < lim.rlim_cur {
            lim.rlim_cur = soft;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
