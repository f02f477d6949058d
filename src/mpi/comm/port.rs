//! [`Port`]: one rank's sends in flight (`MPI_Isend`, tested later) and its probes
//! (`MPI_Improbe` + `MPI_Mrecv`): nothing blocks in MPI.

use ::mpi::ffi;

use super::{Comm, serial};

/// A send in flight: the buffer must stay where it is, untouched, until MPI is done with it.
struct InFlight {
    request: ffi::MPI_Request,
    /// Owned here so that it lives as long as the request; never read or written meanwhile.
    _buf: Vec<u8>,
}

/// One rank's sends in flight and its probes. Used by one thread at a time, under the process's MPI
/// lock (held with [`serial`], or by owning it inside a [`Serial`](super::Serial)).
pub(crate) struct Port {
    comm: Comm,
    sends: Vec<InFlight>,
}

// SAFETY: a `Port` holds MPI request handles and the buffers they read. It is only used
// through `&mut`, under the process's MPI lock (so its calls never overlap another MPI call),
// and it only moves off the MPI thread (to a session's thread, a worker's task thread) where
// the library granted `MPI_THREAD_SERIALIZED` (`Env::serialized`), which allows any thread
// to call MPI as long as calls do not overlap. The buffers are plain bytes.
unsafe impl Send for Port {}

/// The largest message MPI can count in one send (`int` elements of one byte).
pub(crate) const MAX_MESSAGE: usize = i32::MAX as usize;

impl Port {
    pub(crate) fn new(comm: Comm) -> Self {
        Port {
            comm,
            sends: Vec::new(),
        }
    }

    /// The session's communicator.
    pub(crate) fn comm(&self) -> Comm {
        self.comm
    }

    /// Starts sending `buf` to `rank` with `tag`; the buffer is kept until the send is done.
    /// The caller checks the size first (at most [`MAX_MESSAGE`]).
    pub(crate) fn send(&mut self, rank: i32, tag: i32, buf: Vec<u8>) {
        assert!(
            buf.len() <= MAX_MESSAGE,
            "[internal] message too large for MPI"
        );
        let mut request = std::mem::MaybeUninit::<ffi::MPI_Request>::uninit();
        // SAFETY: (1) `buf` points to `buf.len()` initialized bytes, sent as MPI_UINT8_T
        // with the matching count; (2) the heap buffer does not move when the `Vec` is
        // moved into `self.sends`, and it is neither read, written nor freed until
        // `MPI_Test` reports the request complete (see `test_sends` and `Drop`);
        // (3) `request` is written by `MPI_Isend` before it is read.
        unsafe {
            ffi::MPI_Isend(
                buf.as_ptr() as *const std::ffi::c_void,
                buf.len() as i32,
                ffi::RSMPI_UINT8_T,
                rank,
                tag,
                self.comm.raw,
                request.as_mut_ptr(),
            );
            self.sends.push(InFlight {
                request: request.assume_init(),
                _buf: buf,
            });
        }
        self.test_sends();
    }

    /// Lets MPI progress the sends in flight and frees the finished ones; true if some
    /// are still in flight.
    pub(crate) fn test_sends(&mut self) -> bool {
        self.sends.retain_mut(|s| {
            let mut flag = 0;
            // SAFETY: `s.request` is a live request from `MPI_Isend` (completed requests are
            // removed right here, so none is tested twice); the status is ignored.
            unsafe {
                ffi::MPI_Test(&mut s.request, &mut flag, ffi::RSMPI_STATUS_IGNORE);
            }
            flag == 0
        });
        !self.sends.is_empty()
    }

    /// True if sends are in flight.
    pub(crate) fn sending(&self) -> bool {
        !self.sends.is_empty()
    }

    /// Receives a message with `tag` from any rank if one has arrived: its source and bytes.
    /// Never waits for one.
    pub(crate) fn probe(&mut self, tag: i32) -> Option<(i32, Vec<u8>)> {
        let mut flag = 0;
        let mut message = std::mem::MaybeUninit::<ffi::MPI_Message>::uninit();
        let mut status = std::mem::MaybeUninit::<ffi::MPI_Status>::uninit();
        // SAFETY: the out-pointers are valid for writes; `message` and `status` are read
        // only when `flag` says a message was matched, in which case MPI wrote both.
        unsafe {
            ffi::MPI_Improbe(
                ffi::RSMPI_ANY_SOURCE,
                tag,
                self.comm.raw,
                &mut flag,
                message.as_mut_ptr(),
                status.as_mut_ptr(),
            );
            if flag == 0 {
                return None;
            }
            let mut message = message.assume_init();
            let mut status = status.assume_init();
            let mut count = 0;
            ffi::MPI_Get_count(&status, ffi::RSMPI_UINT8_T, &mut count);
            let len = usize::try_from(count).unwrap_or(0);
            let mut buf = Vec::<u8>::with_capacity(len);
            // SAFETY (cont.): `buf` has room for `len` bytes, the size of the matched
            // message, which `MPI_Mrecv` writes in full before `set_len` exposes them; the
            // matched message is received exactly once.
            ffi::MPI_Mrecv(
                buf.as_mut_ptr() as *mut std::ffi::c_void,
                len as i32,
                ffi::RSMPI_UINT8_T,
                &mut message,
                &mut status,
            );
            buf.set_len(len);
            Some((status.MPI_SOURCE, buf))
        }
    }

    /// Waits (yielding) until every send in flight is done.
    pub(crate) fn flush(&mut self) {
        while self.test_sends() {
            std::thread::yield_now();
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // The buffers must outlive their sends. (A port dropped with sends in flight takes
        // the MPI lock: it is never dropped under it.)
        if self.sending() {
            let _mpi = serial();
            self.flush();
        }
    }
}
