//! Dynamic mode (`MpiPoolBuilder::max_workers`): workers started by `MPI_Comm_spawn`.
//!
//! * **A spawned worker** runs this very executable with one argument,
//!   [`SPAWNED_WORKER_ARG`]; before `main`, it joins MPI and serves the sessions of the
//!   process that spawned it, until that process says `Quit`; then it disconnects and
//!   exits. So the program's own `main` never runs there, whatever it does with its
//!   arguments (as in a process pool's workers).
//! * **The client keeps its workers.** When a dynamic pool's session ends, its workers wait
//!   for the next one, kept here as an idle [`Group`]; the next dynamic pool with the same
//!   size and spawn hints takes them instead of spawning. Spawning is slow (a few hundred
//!   ms), and Open MPI 4.1 with PMIx 4 can hang inside `MPI_Comm_spawn` when a process calls
//!   it many times. At exit, idle groups are told to quit and disconnected, before MPI is
//!   finalized.

use std::time::Duration;

use super::comm::{self, Comm, Port, SPAWNED_WORKER_ARG};
use super::error::MpiError;
use super::wire::{self, kind};
use super::worker;
use crate::os::Pidfd;
use crate::sync::{Mutex, lock};

/// How long a spawned worker waits in `MPI_Init`: its parent is already initialized, so
/// this only bounds a broken MPI installation.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often an idle spawned worker looks for the next session, at most.
const IDLE_CAP: Duration = Duration::from_millis(10);

/// This process was spawned as a worker: its first argument says so. Called by the crate's
/// one pre-main hook (`src/entry.rs`), which then runs [`serve_parent`] and exits. (`/proc`
/// is read because std's own copy of the arguments may not be set up yet before `main`.)
pub(crate) fn asked() -> bool {
    let Ok(cmdline) = std::fs::read("/proc/self/cmdline") else {
        return false;
    };
    cmdline.split(|b| *b == 0).nth(1) == Some(SPAWNED_WORKER_ARG.as_bytes())
}

/// Serves the parent's sessions until it says `Quit`; the exit status of the process. MPI
/// is finalized at exit.
pub(crate) fn serve_parent() -> i32 {
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
        // The first session starts at once; between sessions, look less often.
        let mut cap = super::DEFAULT_BACKOFF_CAP;
        while worker::serve(env, parent, cap) {
            cap = IDLE_CAP;
        }
    }
    env.call(move || parent.disconnect());
    0
}

/// What identifies interchangeable workers: how many, spawned with which hints.
pub(crate) type SpawnKey = (usize, Vec<(String, String)>);

/// Spawned workers between two sessions.
pub(crate) struct Group {
    key: SpawnKey,
    comm: Comm,
    /// The workers' processes, where they run on this host.
    processes: Vec<Pidfd>,
}

static IDLE: Mutex<Vec<Group>> = Mutex::new(Vec::new());

/// The workers for a new dynamic session: an idle group with this key, else `n` new ones.
/// On the MPI thread.
pub(crate) fn take_or_spawn(key: &SpawnKey) -> Result<Comm, MpiError> {
    let idle = {
        let mut groups = lock(&IDLE);
        groups
            .iter()
            .position(|g| g.key == *key)
            .map(|i| groups.swap_remove(i))
    };
    if let Some(group) = idle {
        if group.processes.iter().any(Pidfd::exited) {
            // A worker died between sessions: its group cannot be disconnected any more,
            // so MPI cannot be finalized; spawn a new one, and abort at exit.
            eprintln!(
                "concurrent_futures: a spawned MPI worker died while idle; spawning new ones \
                 (the process will end with status 1)"
            );
            comm::mark_lost();
        } else {
            return Ok(group.comm);
        }
    }
    Comm::spawn(key.0, &key.1)
}

/// Keeps the workers of a session that ended well for the next dynamic session; the first
/// time, asks `comm` to let idle groups go at exit, before `MPI_Finalize`.
pub(crate) fn keep(key: SpawnKey, comm: Comm, processes: Vec<Pidfd>) {
    static AT_FINALIZE: std::sync::Once = std::sync::Once::new();
    AT_FINALIZE.call_once(|| comm::before_finalize(release_idle));
    lock(&IDLE).push(Group {
        key,
        comm,
        processes,
    });
}

/// Tells every idle group to quit and disconnects it. On the MPI thread, at exit (a hook
/// `comm` runs before `MPI_Finalize`).
fn release_idle() {
    let groups = std::mem::take(&mut *lock(&IDLE));
    for g in groups {
        {
            let _mpi = comm::serial();
            let mut port = Port::new(g.comm);
            for rank in 0..g.key.0 as i32 {
                port.send(rank, wire::TO_WORKER, wire::bare(kind::QUIT));
            }
            port.flush();
        }
        g.comm.disconnect();
    }
}
