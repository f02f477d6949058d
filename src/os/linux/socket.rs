//! [`Socket`]: one end of a `SOCK_SEQPACKET` socket pair, the wire between a parent and a
//! child it started.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::descriptors::descriptor_shortage;
use super::{cvt, cvt_size};

/// Most descriptors one message carries.
pub(crate) const MAX_FDS: usize = 64;
/// Most parts one message is sent from.
const MAX_PARTS: usize = 4;

/// What [`Socket::recv`] got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recv {
    /// A message of this many bytes is in the buffer.
    Message(usize),
    /// The other side closed its end (every message it sent has been read).
    Closed,
    /// Non-blocking and nothing there.
    Empty,
    /// A message of this many bytes is in the buffer, but the descriptors attached to it
    /// from the first not in `fds` on were lost: this process could not take them (it has as
    /// many open as `RLIMIT_NOFILE` allows, or the system is short of files or memory: the
    /// kernel truncates the message's descriptors, `MSG_CTRUNC`). `errno` says which
    /// shortage, as far as it can be told after the fact (see [`descriptor_shortage`]).
    LostFds(usize, i32),
}

/// One end of an `AF_UNIX`, `SOCK_SEQPACKET` socket pair.
#[derive(Debug)]
pub(crate) struct Socket(OwnedFd);

impl Socket {
    /// A connected pair, both ends close-on-exec.
    pub(crate) fn pair() -> io::Result<(Socket, Socket)> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `socketpair` writes two descriptors into the array it is given, which has
        // room for exactly two; on success we own both.
        unsafe {
            cvt(libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            ))?;
            Ok((
                Socket(OwnedFd::from_raw_fd(fds[0])),
                Socket(OwnedFd::from_raw_fd(fds[1])),
            ))
        }
    }

    /// Takes a descriptor received in a message, after checking that it is a
    /// `SOCK_SEQPACKET` socket.
    pub(crate) fn from_received(fd: OwnedFd) -> io::Result<Socket> {
        check_seqpacket(fd.as_raw_fd())?;
        Ok(Socket(fd))
    }

    /// Takes over the socket a parent gave this process as its standard input (checked to
    /// be a `SOCK_SEQPACKET` socket), moves it to a descriptor of its own (close-on-exec),
    /// and puts `/dev/null` in its place, so that code reading stdin sees an empty input.
    /// Handing the socket over as stdin lets the parent start the child with `posix_spawn`
    /// (no `fork` of a large parent, no code between fork and exec).
    pub(crate) fn from_stdin() -> io::Result<Socket> {
        check_seqpacket(0)?;
        // SAFETY: `fcntl(F_DUPFD_CLOEXEC)` returns a new descriptor that we own, or an
        // error; `open` likewise; `dup2` replaces descriptor 0 (which we just duplicated)
        // with `/dev/null`, and the temporary descriptor is closed by its `OwnedFd`.
        unsafe {
            let fd = OwnedFd::from_raw_fd(cvt(libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3))?);
            let null = cvt(libc::open(
                c"/dev/null".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            ))?;
            let null = OwnedFd::from_raw_fd(null);
            cvt(libc::dup2(null.as_raw_fd(), 0))?;
            Ok(Socket(fd))
        }
    }
}

fn check_seqpacket(fd: RawFd) -> io::Result<()> {
    {
        let mut kind: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `getsockopt` writes at most `len` bytes into `kind`, a c_int; on a number
        // that is not an open socket it fails with an error.
        cvt(unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                (&mut kind as *mut libc::c_int).cast(),
                &mut len,
            )
        })?;
        if kind != libc::SOCK_SEQPACKET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the descriptor is not the expected socket",
            ));
        }
        Ok(())
    }
}

impl Socket {
    /// Sends one message made of `parts`, with `fds` attached. Blocks while the other side's
    /// buffer is full. A closed peer is an error (`EPIPE`), never a `SIGPIPE`.
    pub(crate) fn send(&self, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        assert!(fds.len() <= MAX_FDS, "[internal] too many descriptors");
        assert!(parts.len() <= MAX_PARTS, "[internal] too many parts");
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_PARTS];
        for (slot, part) in iov.iter_mut().zip(parts) {
            slot.iov_base = part.as_ptr() as *mut libc::c_void;
            slot.iov_len = part.len();
        }
        // On the stack: a message is sent per batch of tasks, and this is its only buffer.
        let mut control = [0u64; CONTROL_WORDS];
        // SAFETY: `msg` points at the first `parts.len()` entries of `iov` (which point at
        // the borrowed parts) and at `control`, all alive for the call; the control buffer
        // (`CONTROL_WORDS`) has room for the one header and up to `MAX_FDS` descriptors
        // written into it (checked against `CMSG_SPACE`); `sendmsg` only reads them.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = parts.len() as _;
            if !fds.is_empty() {
                let bytes = std::mem::size_of_val(fds);
                msg.msg_control = control.as_mut_ptr().cast();
                let space = libc::CMSG_SPACE(bytes as u32) as usize;
                debug_assert!(space <= control.len() * 8, "[internal] control buffer");
                msg.msg_controllen = space as _;
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(bytes as u32) as _;
                let data = libc::CMSG_DATA(cmsg) as *mut libc::c_int;
                for (i, fd) in fds.iter().enumerate() {
                    data.add(i).write_unaligned(fd.as_raw_fd());
                }
            }
            loop {
                match cvt_size(libc::sendmsg(self.0.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                    Ok(_) => return Ok(()),
                }
            }
        }
    }

    /// Receives one message into `buf` (up to its capacity; its length is set to the
    /// message's) and the descriptors attached to it into `fds`. A message longer than the
    /// capacity, or with more than [`MAX_FDS`] descriptors, is an `InvalidData` error (its
    /// descriptors are closed): nothing is allocated by what the other side claims.
    pub(crate) fn recv(
        &self,
        buf: &mut Vec<u8>,
        fds: &mut Vec<OwnedFd>,
        nonblocking: bool,
    ) -> io::Result<Recv> {
        buf.clear();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.capacity(),
        };
        let mut control = [0u64; CONTROL_WORDS];
        let flags = libc::MSG_CMSG_CLOEXEC | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: `msg` points at `iov` (the spare capacity of `buf`, writable for its whole
        // length) and at `control` (room for `MAX_FDS` descriptors: `CONTROL_WORDS`), alive
        // for the call. After it, the kernel has written `n` bytes into `buf` (so `set_len(n)`
        // exposes initialized bytes only) and the control messages into `control`, which we
        // walk with the CMSG macros within `msg_controllen`. Each descriptor received is new
        // in this process and owned by no one else, so wrapping it in `OwnedFd` is sound.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = (control.len() * 8) as _;
            let n = loop {
                match cvt_size(libc::recvmsg(self.0.as_raw_fd(), &mut msg, flags)) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Recv::Empty),
                    Err(e) => return Err(e),
                    Ok(n) => break n,
                }
            };
            let first = fds.len();
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg) as *const libc::c_int;
                    let header = data as usize - cmsg as usize;
                    let count = ((*cmsg).cmsg_len as usize).saturating_sub(header)
                        / std::mem::size_of::<libc::c_int>();
                    for i in 0..count {
                        fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            // The kernel sets `MSG_CTRUNC` both when the control buffer has no room for the
            // descriptors sent (more than `MAX_FDS`: the sender broke the protocol) and when
            // it cannot install one in this process (`EMFILE`, `ENFILE`, `ENOMEM`: it stops
            // at the first failure and drops the rest). Fewer than `MAX_FDS` received tells
            // the second case: the buffer still had room.
            let truncated = msg.msg_flags & libc::MSG_TRUNC != 0;
            let lost = msg.msg_flags & libc::MSG_CTRUNC != 0;
            if truncated || (lost && fds.len() - first >= MAX_FDS) {
                fds.truncate(first);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a message longer than the largest allowed",
                ));
            }
            buf.set_len(n);
            if lost {
                return Ok(Recv::LostFds(n, descriptor_shortage(self.0.as_fd())));
            }
            if n == 0 && fds.len() == first {
                buf.clear();
                return Ok(Recv::Closed);
            }
            Ok(Recv::Message(n))
        }
    }

    /// Waits until a message (or the close) can be read, at most `timeout`. True if one can.
    pub(crate) fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        let n = loop {
            // SAFETY: `poll` reads and writes the one `pollfd` it is given.
            match cvt(unsafe { libc::poll(&mut pfd, 1, ms) }) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        Ok(n > 0)
    }

    /// Gives the descriptor up (to hand it to a child as its standard input).
    pub(crate) fn into_owned(self) -> OwnedFd {
        self.0
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// 8-byte words of a control buffer for [`MAX_FDS`] descriptors: a control message header
/// (16 bytes on 64-bit Linux, rounded up generously) and the descriptors, 8-byte aligned.
const CONTROL_WORDS: usize = (32 + MAX_FDS * std::mem::size_of::<libc::c_int>()).div_ceil(8);
