//! The Linux system calls the process-based backends stand on, behind a small interface:
//!
//! * [`Socket`]: one end of a `SOCK_SEQPACKET` socket pair, the wire between a parent and a
//!   child it started (messages keep their boundaries, carry file descriptors, and a
//!   message longer than the reader's buffer is reported, never allocated for);
//! * [`Memfd`]: an anonymous shared-memory file, sealed against shrinking so that no mapping
//!   of it can fault with `SIGBUS`, read with `pread` when its writer is not trusted;
//! * [`Mapping`]: a mapping of such a file;
//! * [`Poller`]: `epoll` over sockets and process descriptors, with a wake-up `eventfd`;
//! * [`Pidfd`]: a process's descriptor, readable once it has exited;
//! * the child's side: inheriting descriptors through `exec`, dying with the parent,
//!   ignoring `SIGPIPE` and `SIGINT`; sending signals; the executable segments of the program;
//! * [`shared`]: futexes on shared words, and POSIX shared memory (the `multiprocessing`
//!   toolkit's waits and `SharedMemory`).
//!
//! A port to another OS writes a sibling of this file with the same items. Every `unsafe` of
//! these calls is in this file.

pub(crate) mod shared;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

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

/// 8-byte words of a control buffer for [`MAX_FDS`] descriptors: a control message header
/// (16 bytes on 64-bit Linux, rounded up generously) and the descriptors, 8-byte aligned.
const CONTROL_WORDS: usize = (32 + MAX_FDS * std::mem::size_of::<libc::c_int>()).div_ceil(8);

/// An anonymous shared-memory file (`memfd`) of a fixed size.
#[derive(Debug)]
pub(crate) struct Memfd {
    fd: OwnedFd,
    len: usize,
}

impl Memfd {
    /// A new zero-filled file of `len` bytes, sealed against shrinking, growing and further
    /// sealing: whoever maps it can never fault on a page that disappeared.
    pub(crate) fn new(len: usize) -> io::Result<Memfd> {
        let name = c"concurrent-futures";
        // SAFETY: `memfd_create` takes a valid C string and flags; on success we own the
        // descriptor. `ftruncate` and `fcntl(F_ADD_SEALS)` act on that descriptor only.
        unsafe {
            let fd = cvt(libc::memfd_create(
                name.as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            ))?;
            let fd = OwnedFd::from_raw_fd(fd);
            cvt(libc::ftruncate(fd.as_raw_fd(), len as libc::off_t))?;
            cvt(libc::fcntl(
                fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            ))?;
            Ok(Memfd { fd, len })
        }
    }

    /// A new file holding a copy of `data`, sealed against writing, shrinking, growing and
    /// further sealing: whoever maps it reads `data` and nothing else, ever (a read-only
    /// table shared with workers, see `Shared`). Its name in `/proc/<pid>/maps` and
    /// `/proc/<pid>/fd` is `memfd:concurrent-futures-shared`.
    pub(crate) fn sealed_copy(data: &[u8]) -> io::Result<Memfd> {
        let name = c"concurrent-futures-shared";
        // SAFETY: `memfd_create` takes a valid C string and flags; on success we own the
        // descriptor. `ftruncate` acts on that descriptor only.
        let file = unsafe {
            let fd = cvt(libc::memfd_create(
                name.as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            ))?;
            let fd = OwnedFd::from_raw_fd(fd);
            cvt(libc::ftruncate(fd.as_raw_fd(), data.len() as libc::off_t))?;
            Memfd {
                fd,
                len: data.len(),
            }
        };
        // Written with `pwrite`: nothing of this process maps the file writable, which the
        // write seal requires.
        file.write_at(0, data)?;
        // SAFETY: `fcntl(F_ADD_SEALS)` changes the state of our descriptor's file only.
        cvt(unsafe {
            libc::fcntl(
                file.fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            )
        })?;
        Ok(file)
    }

    /// True if the file can never be written again (sealed against writing and against the
    /// removal of that seal): a read-only mapping of it shows what every other process
    /// sees, and nobody can change it.
    pub(crate) fn write_sealed(&self) -> bool {
        // SAFETY: `fcntl(F_GET_SEALS)` only reads the descriptor's state.
        let seals = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_GET_SEALS) };
        let want = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        seals >= 0 && seals & want == want
    }

    /// Takes a descriptor received from another process. Its size is read once here; with
    /// `require_sealed`, a file that could still shrink is refused (a mapping of it could
    /// fault with `SIGBUS`).
    pub(crate) fn from_received(fd: OwnedFd, require_sealed: bool) -> io::Result<Memfd> {
        // SAFETY: `fcntl(F_GET_SEALS)` and `fstat` only read the descriptor's state into
        // the integer / the `stat` buffer we own.
        unsafe {
            if require_sealed {
                let seals = cvt(libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS))?;
                if seals & libc::F_SEAL_SHRINK == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a shared block that is not sealed against shrinking",
                    ));
                }
            }
            let mut st: libc::stat = std::mem::zeroed();
            cvt(libc::fstat(fd.as_raw_fd(), &mut st))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a shared block that is not a memory file",
                ));
            }
            Ok(Memfd {
                fd,
                len: st.st_size.max(0) as usize,
            })
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copies `buf.len()` bytes from `offset` (with `pread`: no mapping, so a file that was
    /// shrunk meanwhile gives a short read, reported as an error, not a `SIGBUS`).
    pub(crate) fn read_at(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            // SAFETY: `pread` writes at most `buf.len() - done` bytes into the rest of `buf`.
            let n = unsafe {
                libc::pread(
                    self.fd.as_raw_fd(),
                    buf[done..].as_mut_ptr().cast(),
                    buf.len() - done,
                    (offset + done) as libc::off_t,
                )
            };
            match cvt_size(n) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "a shared block shorter than announced",
                    ));
                }
                Ok(n) => done += n,
            }
        }
        Ok(())
    }

    /// Copies `data` to `offset` (with `pwrite`).
    pub(crate) fn write_at(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < data.len() {
            // SAFETY: `pwrite` reads at most `data.len() - done` bytes from the rest of `data`.
            let n = unsafe {
                libc::pwrite(
                    self.fd.as_raw_fd(),
                    data[done..].as_ptr().cast(),
                    data.len() - done,
                    (offset + done) as libc::off_t,
                )
            };
            match cvt_size(n) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(n) => done += n,
            }
        }
        Ok(())
    }

    /// Maps the whole file (readable; writable with `writable`).
    pub(crate) fn map(&self, writable: bool) -> io::Result<Mapping> {
        if self.len == 0 {
            return Ok(Mapping {
                ptr: std::ptr::NonNull::<u8>::dangling().as_ptr(),
                len: 0,
            });
        }
        let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        // SAFETY: a fresh shared mapping of `len` bytes of our descriptor; the kernel picks
        // the address. The result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                self.len,
                prot,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len: self.len,
        })
    }
}

impl AsFd for Memfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A shared mapping of a [`Memfd`], unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a mapping is plain memory owned by this handle; moving the handle to another
// thread moves that ownership.
unsafe impl Send for Mapping {}
// SAFETY: shared references only give `&[u8]` (see `bytes`), and writes need `&mut self`.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The start of the mapping, for code that shares it with other processes through
    /// atomics (`multiprocessing::SharedMemory`): every access through it is that code's
    /// own `unsafe`.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The mapped bytes.
    ///
    /// The file's other users must not write to it while the slice lives: the crate maps
    /// for reading only files that their writer has finished with (a payload the parent
    /// sent, which it does not touch until the task is over).
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is a live mapping owned by `self` (sealed against
        // shrinking, so every page stays backed); see the contract above for writers.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The mapped bytes, writable. Same contract as [`Mapping::bytes`]: nobody else reads or
    /// writes them meanwhile, or (for the result log) nobody reads them until this process
    /// is dead.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` makes this the only borrow in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Stores `value` at `offset` (a multiple of 8) with release ordering: bytes written
    /// through [`Mapping::bytes_mut`] before it are in the file before it is.
    pub(crate) fn store_u64(&self, offset: usize, value: u64) {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.len,
            "[internal] bad offset"
        );
        // SAFETY: the mapping is page-aligned, so `ptr + offset` is 8-byte aligned, and in
        // bounds (checked above); atomics are the right way to share a word with another
        // process that reads the same memory.
        let word = unsafe { std::sync::atomic::AtomicU64::from_ptr(self.ptr.add(offset).cast()) };
        word.store(value, std::sync::atomic::Ordering::Release);
    }

    /// Loads the word at `offset` (a multiple of 8) with acquire ordering: what its writer
    /// stored before a release store of it is visible after (see [`Mapping::store_u64`]).
    pub(crate) fn load_u64(&self, offset: usize) -> u64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.len,
            "[internal] bad offset"
        );
        // SAFETY: as in `store_u64`: aligned, in bounds, and an atomic is the way to read a
        // word another process may be writing.
        let word = unsafe { std::sync::atomic::AtomicU64::from_ptr(self.ptr.add(offset).cast()) };
        word.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Maps in all pages, writable, in one call (Linux 5.14+; a no-op elsewhere), instead of
    /// one fault per page while they are first written.
    pub(crate) fn prefault_write(&mut self) {
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        if self.len > 0 {
            // SAFETY: as in `prefault`; the mapping is writable (it was made by
            // `Memfd::map(true)`, or the call fails with an error, which is ignored).
            unsafe {
                libc::madvise(self.ptr.cast(), self.len, MADV_POPULATE_WRITE);
            }
        }
    }

    /// Maps in all pages in one call (Linux 5.14+; a no-op elsewhere), instead of one
    /// fault per page while they are read.
    pub(crate) fn prefault(&self) {
        const MADV_POPULATE_READ: libc::c_int = 22;
        if self.len > 0 {
            // SAFETY: `madvise` only changes how the kernel backs this live mapping; an
            // unsupported advice returns an error, which is ignored.
            unsafe {
                libc::madvise(self.ptr.cast(), self.len, MADV_POPULATE_READ);
            }
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: `ptr..ptr+len` is a mapping this handle made and nobody borrows any
            // more (borrows are tied to `&self`).
            unsafe {
                libc::munmap(self.ptr.cast(), self.len);
            }
        }
    }
}

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

// ===== the child's side =====

/// Asks the kernel to kill this process with SIGKILL when the thread that started it dies,
/// and sets the signal dispositions of a worker: `SIGPIPE` ignored (a write to a closed
/// pipe fails with an error, as in any Rust program: the crate's code runs before Rust's
/// runtime would have ignored it), and `SIGINT` ignored if `ignore_sigint` (the parent
/// decides what Ctrl-C means for its workers).
pub(crate) fn become_child(ignore_sigint: bool) {
    // SAFETY: `prctl(PR_SET_PDEATHSIG, sig)` and `signal(sig, SIG_IGN)` take plain
    // integers and change only this process's own state.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        if ignore_sigint {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
        }
    }
}

/// Nanoseconds of the system's monotonic clock: the same clock in every process of the
/// machine, so a time one process stores another can compare with its own.
pub(crate) fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec`, which we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The parent's pid as the kernel sees it now.
pub(crate) fn parent_pid() -> u32 {
    // SAFETY: `getppid` has no preconditions.
    unsafe { libc::getppid() as u32 }
}

/// Sends `signal` to process `pid`.
pub(crate) fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: `kill` takes plain integers; at worst it fails with an error we ignore.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Keeps large allocations of this (worker) process in its heap, so that a buffer freed by
/// one task is reused by the next instead of being unmapped and faulted in again.
pub(crate) fn keep_large_allocations() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `mallopt` only tunes glibc's allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// An executable segment of the main program: its address range in memory, and how many of
/// its first bytes come from the file (the rest, if any, is zero-filled).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) start: usize,
    pub(crate) end: usize,
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) file_len: usize,
}

#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
impl Segment {
    /// The bytes of the segment that come from the file.
    pub(crate) fn code(&self) -> &'static [u8] {
        // SAFETY: `dl_iterate_phdr` reported this range as a loaded, executable `PT_LOAD`
        // segment of the main program, and its first `file_len` bytes are mapped from the
        // file (readable: x86-64 and AArch64 Linux map code readable and executable). The
        // main program is never unmapped while the process runs, and code is not written
        // to, so the bytes are valid and unchanging for the life of the process.
        unsafe { std::slice::from_raw_parts(self.start as *const u8, self.file_len) }
    }
}

/// The executable segments of the main program (not of shared libraries).
pub(crate) fn executable_segments() -> Vec<Segment> {
    let mut ranges: Vec<Segment> = Vec::new();
    unsafe extern "C" fn collect(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: (1) `dl_iterate_phdr` passes a valid `info` for the duration of the
        // call, whose `dlpi_phdr` points to `dlpi_phnum` program headers; (2) `data` is
        // the `&mut Vec` passed below, alive and not otherwise borrowed during the call.
        unsafe {
            let info = &*info;
            let ranges = &mut *(data as *mut Vec<Segment>);
            let headers = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
            for h in headers {
                if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0 {
                    let start = info.dlpi_addr as usize + h.p_vaddr as usize;
                    ranges.push(Segment {
                        start,
                        end: start + h.p_memsz as usize,
                        file_len: h.p_filesz.min(h.p_memsz) as usize,
                    });
                }
            }
        }
        1 // the first object is the main program: stop there
    }
    // SAFETY: `collect` matches the callback type and only touches `ranges` through
    // `data`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(collect), &mut ranges as *mut _ as *mut libc::c_void);
    }
    ranges
}

/// Removes environment variables.
///
/// # Safety
///
/// No other thread may read or write the environment meanwhile: call it before `main`
/// (in the pre-main hook, single-threaded) or first thing in `main`.
pub(crate) unsafe fn remove_env(names: &[&str]) {
    for name in names {
        // SAFETY: see the function's contract.
        unsafe { std::env::remove_var(name) };
    }
}

/// A copy of `src` in a new `Vec`, its pages mapped in one call before the copy rather than
/// by a fault per 4 KiB page while copying (for large buffers).
pub(crate) fn copy_large(src: &[u8]) -> Vec<u8> {
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    const PAGE: usize = 4096;
    let mut out = Vec::<u8>::with_capacity(src.len());
    let start = out.as_mut_ptr() as usize;
    let first = start.next_multiple_of(PAGE);
    let end = (start + src.len()) & !(PAGE - 1);
    // (Miri runs no `madvise`; the copy below is the same without it.)
    if end > first && !cfg!(miri) {
        // SAFETY: `[first, end)` is page-aligned and lies inside the allocation `out` owns
        // (its capacity is `src.len()` bytes from `start`); `madvise` only makes the kernel
        // back those pages now, never changes what they hold, and an error (a kernel without
        // this advice) is ignored.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, MADV_POPULATE_WRITE);
        }
    }
    out.extend_from_slice(src);
    out
}

/// Registers `$hook` to run before `main` in every process of the program (the loader
/// calls the `.init_array` entries once, single-threaded). The hook must not unwind.
macro_rules! before_main {
    ($name:ident = $hook:path) => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        // SAFETY: an `.init_array` entry must be an `extern "C" fn()` that the loader may
        // call once, single-threaded, before `main`; the hook has that type and, by the
        // macro's contract, does not unwind.
        static $name: extern "C" fn() = $hook;
    };
}
pub(crate) use before_main;
