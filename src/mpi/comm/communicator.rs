//! [`Comm`]: the communicator of a session (the world, or an intercommunicator made by
//! `MPI_Comm_spawn` or found by `MPI_Comm_get_parent`), and how it is spawned and
//! disconnected.

use ::mpi::ffi;

use super::{idle_yield, serial};
use crate::mpi::error::MpiError;

/// The communicator of a session: the world (the workers are the job's other ranks), or an
/// intercommunicator to workers this process spawned (dynamic mode), or, in a spawned
/// worker, the one to its parent. Rank 0 of the other side is the client in every case.
#[derive(Clone, Copy)]
pub(crate) struct Comm {
    pub(super) raw: ffi::MPI_Comm,
    /// An intercommunicator made by `MPI_Comm_spawn` (or its other side): disconnected
    /// when its workers quit (see `spawned`).
    spawned: bool,
}

// SAFETY: an `MPI_Comm` is a handle (a pointer in Open MPI) that MPI lets any thread use,
// one call at a time under `MPI_THREAD_SERIALIZED`; calls through it are made under the
// process's MPI lock, by the MPI thread or, when the library granted SERIALIZED, by another
// thread. The handle itself is never written after it is made.
unsafe impl Send for Comm {}
// SAFETY: as above: shared references only copy the handle.
unsafe impl Sync for Comm {}

/// The first argument of a worker started by `MPI_Comm_spawn`: it serves its parent before
/// `main` (see `spawned`), so the program's own `main` never runs there.
pub(crate) const SPAWNED_WORKER_ARG: &str = "--concurrent-futures-mpi-worker";

impl Comm {
    /// `MPI_COMM_WORLD`.
    pub(crate) fn world() -> Comm {
        // SAFETY: reads a constant handle the MPI library exports.
        let raw = unsafe { ffi::RSMPI_COMM_WORLD };
        Comm {
            raw,
            spawned: false,
        }
    }

    /// The communicator to the process that spawned this one, if it was spawned
    /// (`MPI_Comm_get_parent`). MPI must be initialized.
    pub(crate) fn parent() -> Option<Comm> {
        let mut raw = std::mem::MaybeUninit::<ffi::MPI_Comm>::uninit();
        let _mpi = serial();
        // SAFETY: MPI is initialized (the caller holds an `Env`); `raw` is written by
        // `MPI_Comm_get_parent` before it is read, and compared with the null handle.
        unsafe {
            ffi::MPI_Comm_get_parent(raw.as_mut_ptr());
            let raw = raw.assume_init();
            (raw != ffi::RSMPI_COMM_NULL).then_some(Comm { raw, spawned: true })
        }
    }

    /// Starts `n` copies of this executable as workers, from this process alone
    /// (`MPI_Comm_spawn` over `MPI_COMM_SELF`), with `info`'s keys (placement hints: `host`,
    /// `map_by`, ...). Their `main` never runs: each serves the session before it (see
    /// `SPAWNED_WORKER_ARG`). Must be called on the MPI thread; takes the MPI lock (so the
    /// sessions of other pools of this process pause while it runs).
    pub(crate) fn spawn(n: usize, info: &[(String, String)]) -> Result<Comm, MpiError> {
        use std::ffi::CString;
        let fail = |what: String| MpiError::Start(format!("cannot spawn {n} MPI workers: {what}"));
        let count = i32::try_from(n).map_err(|_| fail("too many".into()))?;
        let exe = std::env::current_exe()
            .map_err(|e| fail(format!("this program's path is unknown ({e})")))?;
        let exe = CString::new(exe.into_os_string().into_encoded_bytes())
            .map_err(|_| fail("this program's path contains a NUL byte".into()))?;
        let arg = CString::new(SPAWNED_WORKER_ARG).expect("no NUL in a constant");
        let pairs = info
            .iter()
            .map(|(k, v)| Ok((CString::new(k.as_str())?, CString::new(v.as_str())?)))
            .collect::<Result<Vec<_>, std::ffi::NulError>>()
            .map_err(|_| fail("an info key or value contains a NUL byte".into()))?;
        let mut argv = [arg.as_ptr() as *mut std::ffi::c_char, std::ptr::null_mut()];
        let mut codes = vec![0i32; n];
        let mut raw = std::mem::MaybeUninit::<ffi::MPI_Comm>::uninit();
        let _mpi = serial();
        // SAFETY: MPI is initialized and this is the MPI thread (the caller's contract).
        // Every pointer handed to MPI outlives the calls: `exe`, `argv` (NUL-terminated, its
        // strings in `arg`), the info strings in `pairs`, and `codes` with room for `n`
        // error codes. The info object is created, read by `MPI_Comm_spawn`, and freed
        // here. Errors on `MPI_COMM_SELF` are made to return (rather than abort the
        // process) so that a refused spawn is an error for the caller; `raw` is read only
        // when the spawn succeeded, which is when MPI wrote it.
        unsafe {
            ffi::MPI_Comm_set_errhandler(ffi::RSMPI_COMM_SELF, ffi::RSMPI_ERRORS_RETURN);
            let mut handle = ffi::RSMPI_INFO_NULL;
            if !pairs.is_empty() {
                ffi::MPI_Info_create(&mut handle);
                for (k, v) in &pairs {
                    ffi::MPI_Info_set(handle, k.as_ptr(), v.as_ptr());
                }
            }
            let rc = idle_yield::while_blocked(|| {
                ffi::MPI_Comm_spawn(
                    exe.as_ptr(),
                    argv.as_mut_ptr(),
                    count,
                    handle,
                    0,
                    ffi::RSMPI_COMM_SELF,
                    raw.as_mut_ptr(),
                    codes.as_mut_ptr(),
                )
            });
            if !pairs.is_empty() {
                ffi::MPI_Info_free(&mut handle);
            }
            if rc != 0 {
                return Err(fail(error_string(rc)));
            }
            if let Some(code) = codes.iter().find(|c| **c != 0) {
                return Err(fail(error_string(*code)));
            }
            Ok(Comm {
                raw: raw.assume_init(),
                spawned: true,
            })
        }
    }

    /// Ends a spawned session's connection (`MPI_Comm_disconnect`, which waits for the
    /// other side to disconnect too); nothing for the world. Takes the MPI lock.
    pub(crate) fn disconnect(mut self) {
        if self.spawned {
            let _mpi = serial();
            // SAFETY: `raw` is a live intercommunicator from `MPI_Comm_spawn` or
            // `MPI_Comm_get_parent`. It is disconnected once and not used after: the two
            // callers (`spawned::release_idle` on the client, `spawned::serve_parent` on a
            // worker) call this on the last copy in use, after every `Port` over it was
            // dropped (which waits for its sends), and it is an MPI call made on the MPI
            // thread.
            idle_yield::while_blocked(|| unsafe {
                ffi::MPI_Comm_disconnect(&mut self.raw);
            });
        }
    }
}

/// The text of an MPI error code.
fn error_string(code: i32) -> String {
    let mut buf = vec![0u8; ffi::MPI_MAX_ERROR_STRING as usize + 1];
    let mut len = 0;
    // SAFETY: `buf` has room for `MPI_MAX_ERROR_STRING` characters and the NUL, as
    // `MPI_Error_string` requires; it writes `len` of them.
    unsafe {
        ffi::MPI_Error_string(code, buf.as_mut_ptr() as *mut std::ffi::c_char, &mut len);
    }
    buf.truncate(usize::try_from(len).unwrap_or(0));
    let text = String::from_utf8_lossy(&buf).trim().to_string();
    if text.is_empty() {
        format!("MPI error {code}")
    } else {
        text
    }
}
