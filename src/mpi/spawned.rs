//! Workers started by `MPI_Comm_spawn` (dynamic mode, `MpiPoolBuilder::max_workers`). Such a
//! process runs this very executable with one argument, [`SPAWNED_WORKER_ARG`]; before
//! `main`, it joins MPI, serves the session of the process that spawned it, disconnects,
//! and exits. So the program's own `main` never runs there, whatever it does with its
//! arguments (as in a process pool's workers).

use std::time::Duration;

use super::comm::{self, Comm, SPAWNED_WORKER_ARG};
use super::worker;
use crate::os;

/// How long a spawned worker waits in `MPI_Init`: its parent is already initialized, so
/// this only bounds a broken MPI installation.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);

os::before_main!(SPAWNED_WORKER = before_main);

/// Makes sure the hook above is linked into any program that spawns MPI workers.
pub(crate) fn ensure_linked() {
    std::hint::black_box(&SPAWNED_WORKER);
}

extern "C" fn before_main() {
    if !asked() {
        return;
    }
    let code = std::panic::catch_unwind(serve_parent).unwrap_or(101);
    std::process::exit(code);
}

/// This process was spawned as a worker: its first argument says so. (`/proc` is read
/// because std's own copy of the arguments may not be set up yet before `main`.)
fn asked() -> bool {
    let Ok(cmdline) = std::fs::read("/proc/self/cmdline") else {
        return false;
    };
    cmdline.split(|b| *b == 0).nth(1) == Some(SPAWNED_WORKER_ARG.as_bytes())
}

/// Serves the parent's session; the exit status of the process. MPI is finalized at exit.
fn serve_parent() -> i32 {
    crate::unwind::install_hook();
    let env = match comm::env(INIT_TIMEOUT) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("concurrent_futures: a spawned MPI worker could not start MPI: {e}");
            return 3;
        }
    };
    let Some(parent) = env.call(Comm::parent) else {
        eprintln!(
            "concurrent_futures: {SPAWNED_WORKER_ARG} is for processes started by an \
             MpiPoolExecutor (MPI_Comm_spawn); this one has no parent to serve"
        );
        return 3;
    };
    {
        let _session = comm::Session::begin();
        worker::serve(env, parent);
    }
    env.call(move || parent.disconnect());
    0
}
