//! [`Poller`]: `epoll` over sockets and process descriptors, with a wake-up `eventfd`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::cvt;

/// `epoll` over sockets and process descriptors, each registered under a key, plus an
/// `eventfd` that [`Poller::wake`] makes readable, to interrupt a wait from another thread.
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: OwnedFd,
    wake: OwnedFd,
}

/// The key [`Poller::wait`] reports for a [`Poller::wake`].
pub(crate) const WAKE_KEY: u64 = u64::MAX;

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: both calls return new descriptors that we own, or an error.
        let (epoll, wake) = unsafe {
            let epoll = OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?);
            let wake = OwnedFd::from_raw_fd(cvt(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?);
            (epoll, wake)
        };
        let poller = Poller { epoll, wake };
        poller.add(poller.wake.as_fd(), WAKE_KEY)?;
        Ok(poller)
    }

    /// Watches `fd` for reading (and hang-up) under `key`.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, key: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: key,
        };
        // SAFETY: `epoll_ctl` reads the event we pass; `fd` is open (borrowed).
        cvt(unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        })
        .map(drop)
    }

    /// Stops watching `fd`.
    pub(crate) fn remove(&self, fd: BorrowedFd<'_>) {
        // SAFETY: as in `add`; a descriptor not watched gives an error, ignored.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            );
        }
    }

    /// Makes a wait in progress (or the next one) return with [`WAKE_KEY`].
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one` to the eventfd; a full counter gives EAGAIN,
        // which still leaves it readable, which is all a wake-up needs.
        unsafe {
            libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    /// Waits for events, at most `timeout` (forever with `None`), and puts the keys of the
    /// ready descriptors into `keys`. A wake-up is consumed and reported as [`WAKE_KEY`].
    pub(crate) fn wait(&self, keys: &mut Vec<u64>, timeout: Option<Duration>) -> io::Result<()> {
        keys.clear();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 32];
        let ms = timeout.map_or(-1, |t| {
            // Round up: a wait of 0.5 ms must not become a busy poll.
            t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
        });
        // SAFETY: `epoll_wait` writes at most `events.len()` entries into the array.
        let n = match cvt(unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                ms,
            )
        }) {
            // A signal: report nothing; the caller looks again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            other => other? as usize,
        };
        for ev in &events[..n] {
            let key = ev.u64;
            if key == WAKE_KEY {
                let mut count: u64 = 0;
                // SAFETY: reads the 8-byte counter of our eventfd into `count`.
                unsafe {
                    libc::read(self.wake.as_raw_fd(), (&mut count as *mut u64).cast(), 8);
                }
            }
            keys.push(key);
        }
        Ok(())
    }
}
