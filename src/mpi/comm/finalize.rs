//! The end of MPI in this process: the hooks registered to run before `MPI_Finalize`, the
//! `atexit` handler that finalizes (or aborts when a rank was lost or a session is still
//! running), and [`abort`].

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use ::mpi::ffi;

use super::state::{ENV, EXITING, Job, LOST, SESSIONS};

/// How long `exit` waits for the MPI thread to finalize before it aborts the job.
const FINALIZE_WAIT: Duration = Duration::from_secs(30);

/// Work to do on the MPI thread at exit, before `MPI_Finalize`, registered by the code that
/// uses this binding (`spawned` lets its idle workers go), so that this file calls nothing
/// above it.
static BEFORE_FINALIZE: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

/// Runs `hook` on the MPI thread at exit, after the wait for live pools and before
/// `MPI_Finalize` (in the order of registration). Not at an abort.
pub(crate) fn before_finalize(hook: fn()) {
    if let Ok(mut hooks) = BEFORE_FINALIZE.lock() {
        hooks.push(hook);
    }
}

pub(super) extern "C" fn finalize_at_exit() {
    // Pools still alive end their sessions first (the wait of program end, which may have
    // been registered before this handler, and so would run after it).
    crate::exit::wait_now();
    EXITING.store(true, Ordering::Release);
    let Some(Ok(env)) = ENV.get() else { return };
    if LOST.load(Ordering::Acquire) {
        eprintln!(
            "concurrent_futures: rank {} lost a worker rank; aborting the MPI job (MPI cannot \
             finalize with a rank gone)",
            env.rank
        );
        abort(1);
    }
    if SESSIONS.load(Ordering::Acquire) > 0 {
        eprintln!(
            "concurrent_futures: rank {} is exiting in the middle of a pool session (did a task \
             call std::process::exit, or did the wait for a live pool time out?); aborting the MPI job",
            env.rank
        );
        abort(1);
    }
    // The registered hooks run first (idle spawned workers quit and disconnect), each a
    // job queued before `Finalize`.
    let hooks = BEFORE_FINALIZE
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    for hook in hooks {
        env.run(hook);
    }
    let (done, finalized) = mpsc::channel();
    if let Ok(jobs) = env.jobs.lock() {
        let _ = jobs.send(Job::Finalize(done));
    }
    if finalized.recv_timeout(FINALIZE_WAIT).is_err() {
        eprintln!(
            "concurrent_futures: rank {} could not finalize MPI within {FINALIZE_WAIT:?}; \
             aborting the MPI job",
            env.rank
        );
        abort(1);
    }
}

/// Ends the whole MPI job (`MPI_Abort` on the world communicator). A process that is the
/// whole job (a singleton, or `mpirun -n 1`, with spawned workers) just exits: its spawned
/// workers end with it, and `MPI_Abort` there can wait long for a worker already dead.
pub(crate) fn abort(code: i32) -> ! {
    if matches!(ENV.get(), Some(Ok(env)) if env.size == 1) {
        // SAFETY: `_exit` ends the process at once; nothing is left to run or to finalize.
        unsafe { libc::_exit(code) }
    }
    // SAFETY: MPI is initialized (an `Env` exists) and `MPI_Abort` may be called from any
    // thread in an emergency; it does not return when it succeeds.
    unsafe {
        ffi::MPI_Abort(ffi::RSMPI_COMM_WORLD, code);
    }
    std::process::abort()
}
