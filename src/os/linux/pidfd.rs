//! [`Pidfd`]: a process's descriptor, readable once it has exited.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A process descriptor (`pidfd_open`): readable once the process has exited, and never
/// confused with another process that reuses the pid.
#[derive(Debug)]
pub(crate) struct Pidfd(OwnedFd);

impl Pidfd {
    pub(crate) fn open(pid: u32) -> io::Result<Pidfd> {
        // SAFETY: `pidfd_open(pid, 0)` returns a new descriptor that we own, or an error.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor, owned by no one else.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    /// True once the process has exited (the descriptor is readable); never waits.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))] // used by the MPI backend
    pub(crate) fn exited(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid `pollfd` for a descriptor we own; a timeout of 0 never blocks.
        let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
        rc > 0 && pfd.revents != 0
    }

    /// Sends `signal` to the process, if it has not been reaped yet.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        // SAFETY: `pidfd_send_signal` takes the descriptor, a signal number and a null info.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
