//! Open MPI's yield in empty polls.
//!
//! On a node with more processes than cores, Open MPI turns on `mpi_yield_when_idle`: every MPI
//! call that progresses nothing (an `MPI_Improbe` that finds no message) then calls `sched_yield`.
//! Nothing here waits inside MPI: the pool's loops poll, and wait with [`Backoff`](super::Backoff),
//! which spins, yields and sleeps on its own; a system call in every empty poll only delays
//! noticing the next message (a task's round trip, with 3 ranks on 2 cores, went from 3.0 to 2.2 µs
//! without it). So once MPI is initialized the pool turns it off, unless
//! `OMPI_MCA_mpi_yield_when_idle` was set (by the user or `mpirun --mca`), and turns it back on
//! around the calls that do block in MPI (spawn, disconnect, finalize), where yielding lets the
//! processes being waited for run. With another MPI library, nothing changes.

use std::sync::atomic::{AtomicBool, Ordering};

/// Open MPI yielded when idle, and the pool turned it off.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Open MPI's setter, exported by libopen-pal since Open MPI 1.x
/// (`opal/runtime/opal_progress.h`): `bool opal_progress_set_yield_when_idle(bool)`,
/// which returns the previous setting.
fn setter() -> Option<extern "C" fn(bool) -> bool> {
    // SAFETY: `dlsym` with `RTLD_DEFAULT` looks a name up in the loaded libraries and
    // returns null when it is absent. The name is Open MPI's own, with the type above (a
    // C `bool` is a Rust `bool`), so the pointer has exactly this type; the library stays
    // loaded (libmpi links it) until the process exits.
    unsafe {
        let set = libc::dlsym(
            libc::RTLD_DEFAULT,
            c"opal_progress_set_yield_when_idle".as_ptr(),
        );
        (!set.is_null())
            .then(|| std::mem::transmute::<*mut libc::c_void, extern "C" fn(bool) -> bool>(set))
    }
}

/// Right after `MPI_Init`, on the MPI thread (no other MPI call can run yet).
pub(super) fn take_over() {
    if std::env::var_os("OMPI_MCA_mpi_yield_when_idle").is_some() {
        return;
    }
    if let Some(set) = setter()
        && set(false)
    {
        TAKEN.store(true, Ordering::Release);
    }
}

/// Before `MPI_Finalize`, which blocks: Open MPI yields when idle again, as it chose
/// (nothing of the library is called after it).
pub(super) fn give_back() {
    if TAKEN.swap(false, Ordering::AcqRel)
        && let Some(set) = setter()
    {
        set(true);
    }
}

/// Runs `f`, a call that blocks in MPI, with Open MPI yielding when idle as it would
/// have (if the pool turned it off).
pub(super) fn while_blocked<T>(f: impl FnOnce() -> T) -> T {
    let taken = TAKEN.load(Ordering::Acquire);
    let set = if taken { setter() } else { None };
    if let Some(set) = set {
        set(true);
    }
    let out = f();
    if let Some(set) = set {
        set(false);
    }
    out
}
