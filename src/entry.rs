//! The one entry point of a process the crate started: the pre-main hook, and the table of
//! roles it picks from.
//!
//! A process of the program may have been started to play a role: a process pool's worker,
//! a `multiprocessing` child, or (feature `mpi`) a worker spawned by `MPI_Comm_spawn`. Each
//! role says how it is recognised and what it runs; [`ROLES`] lists them here, above the
//! roles, so that the layers below (`remote/`, `os/`) name none of them. The hook runs
//! before `main` in every process of the program: it finds the first role whose mark is
//! present, runs its entry to the end and exits with its status, so that the program's own
//! `main` (or test harness) never runs there: no fork bomb, no stray output. Elsewhere it
//! returns at once.
//!
//! The hook is an `.init_array` entry of this library: rustc keeps `#[used]` statics of an
//! rlib in the program even when nothing refers to them (since Rust 1.62), so no code path
//! has to mention it for it to be linked.

use crate::os;
use crate::remote::bootstrap;

/// A role a started process may play.
struct Role {
    /// Whether this process was started for the role. Called before `main`, single-threaded:
    /// it only reads (the environment, `/proc/self/cmdline`).
    recognise: fn() -> bool,
    /// Runs the role to its end; the process's exit status. Runs under `catch_unwind` (a
    /// panic exits with 101).
    enter: fn() -> i32,
}

/// The roles, in the order they are looked for.
const ROLES: &[Role] = &[
    Role {
        recognise: bootstrap::started_as_worker,
        enter: pool_worker,
    },
    Role {
        recognise: bootstrap::started_as_child,
        enter: toolkit_child,
    },
    #[cfg(feature = "mpi")]
    Role {
        recognise: crate::mpi::spawned::asked,
        enter: crate::mpi::spawned::serve_parent,
    },
];

os::before_main!(BEFORE_MAIN = before_main);

/// Runs before `main` in every process of the program (see the module docs).
extern "C" fn before_main() {
    become_role_if_asked();
}

/// If this process was started to play a role, plays it and exits; returns otherwise.
fn become_role_if_asked() {
    let Some(role) = ROLES.iter().find(|role| (role.recognise)()) else {
        return;
    };
    let code = std::panic::catch_unwind(role.enter).unwrap_or(101);
    std::process::exit(code);
}

/// A process pool's worker: its socket is the one the environment names.
fn pool_worker() -> i32 {
    let started = bootstrap::take_start_environment();
    match started.worker {
        Some(socket) => crate::process::worker::run(socket, started.expected_parent),
        None => 0,
    }
}

/// A `multiprocessing` child: it connects to the server the environment names.
fn toolkit_child() -> i32 {
    let started = bootstrap::take_start_environment();
    match started.child {
        Some(server) => crate::multiprocessing::process::child_main(
            server,
            started.token,
            started.expected_parent,
        ),
        None => 0,
    }
}

/// Turns this process into a worker if it was started as one; returns otherwise.
///
/// The crate already does this before `main`, in a constructor (see
/// [`ProcessPoolExecutor`](crate::ProcessPoolExecutor)), so by the time `main` runs this
/// call has nothing left to do: it exists for clarity only, and, like the process pool, on
/// Linux only. If you call it, call it first in `main`, before starting any thread.
///
/// ```
/// // first thing in `main`, before any thread is started:
/// concurrent_futures::init();
/// // ... the rest of the program, which never runs in a worker
/// ```
pub fn init() {
    become_role_if_asked();
}
