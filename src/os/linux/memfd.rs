//! [`Memfd`]: an anonymous shared-memory file, sealed against shrinking.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::mapping::Mapping;
use super::{cvt, cvt_size};

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
