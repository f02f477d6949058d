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
//! One file per resource; this module re-exports their items. A port to another OS writes a
//! sibling of this module with the same items. Every `unsafe` of these calls is in this
//! directory.

mod clock;
mod descriptors;
mod mapping;
mod memfd;
mod memory;
mod pidfd;
mod poller;
mod pre_main;
mod process;
mod segments;
pub(crate) mod shared;
mod socket;

pub(crate) use clock::monotonic_nanos;
pub(crate) use descriptors::{
    is_shortage, original_nofile_limit, raise_nofile_limit, restore_nofile_limit,
};
pub(crate) use mapping::Mapping;
pub(crate) use memfd::Memfd;
pub(crate) use memory::{copy_large, keep_large_allocations};
pub(crate) use pidfd::Pidfd;
pub(crate) use poller::{Poller, WAKE_KEY};
pub(crate) use pre_main::before_main;
pub(crate) use process::{become_child, parent_pid, remove_env, signal};
pub(crate) use segments::{Segment, executable_segments};
pub(crate) use socket::{MAX_FDS, Recv, Socket};

use std::io;

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
