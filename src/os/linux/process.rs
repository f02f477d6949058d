//! The child's side (dying with the parent, signal dispositions, the environment) and
//! signals to other processes.

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
