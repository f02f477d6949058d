//! Program end waits for the work that pools still alive have accepted, as Python's
//! interpreter exit does for `concurrent.futures` executors.
//!
//! A dropped pool already waits (its `Drop` is `shutdown(true)`); this is for the pools that
//! are never dropped: kept in a `static`, leaked, or owned by a thread that is still running
//! when `main` returns. Every pool registers itself here when it is built (a weak reference:
//! the registry keeps no pool alive). The first registration installs an `atexit` handler;
//! `exit` (after `main` returns, or `std::process::exit`) runs it, and it:
//!
//! 1. stops every live pool of this process from accepting work (`shutdown(wait=false)`:
//!    submissions fail with `SubmitError::Shutdown` from then on; pending tasks still run);
//! 2. waits until each has run its accepted work and its workers have exited, for at most
//!    the exit timeout ([`set_exit_timeout`], 60 s by default);
//! 3. past the timeout, says on stderr how many pools it gave up on, kills their worker
//!    processes (no orphan outlives the program), and lets the program end: a thread-pool
//!    task still running ends with the process.
//!
//! The handler runs on the thread that called `exit`, whose thread-local storage is already
//! destroyed by then (glibc runs thread-local destructors before `atexit` handlers), and the
//! pools' wait paths use thread-locals. So the waiting happens on a fresh thread, and the
//! exiting thread only blocks on a `Mutex`/`Condvar` pair, which use none. A thread pool
//! whose own worker called `exit` (a task or a callback ending the program) is not waited
//! for: its workers would wait for that thread, which never returns. (A process pool's
//! callback threads are not recognised: a callback that calls `exit` there waits out the
//! exit timeout.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// A pool that program end waits for.
pub(crate) trait Watched: Send + Sync + 'static {
    /// Stops accepting work; what was accepted still runs.
    fn stop_accepting(&self);
    /// Blocks until the accepted work has run and the workers have exited.
    fn wait_done(&self);
    /// Gives up on the work still running: ends what would otherwise outlive the program.
    fn abandon(&self) {}
}

struct Entry {
    pool: Weak<dyn Watched>,
    /// The pool's own threads: if one of them is the thread that exits, the pool is not
    /// waited for.
    threads: Vec<ThreadId>,
    /// The process that built the pool (a forked child inherits the list, not the threads).
    pid: u32,
}

static POOLS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

/// No limit, in `EXIT_TIMEOUT_NANOS`.
const NO_LIMIT: u64 = u64::MAX;
/// 60 s.
static EXIT_TIMEOUT_NANOS: AtomicU64 = AtomicU64::new(60_000_000_000);

/// How long the end of the program waits for work that live pools have accepted; `None`
/// waits as long as it takes (as Python does). Default: 60 seconds.
///
/// When `main` returns (or `std::process::exit` is called), every pool still alive, such as
/// one in a `static` or a leaked one, stops accepting work and the program waits until the
/// tasks it accepted have run, as Python's interpreter exit does. A pool dropped earlier has
/// already waited (`Drop` is `shutdown(true)`); one shut down with `shutdown(false)` still
/// runs its accepted tasks, and the program end waits for them, as in Python
/// (`shutdown_with(false, true)` cancels the pending ones: only the running ones are waited
/// for).
///
/// A task that never ends would hold the program forever; past this limit the program ends
/// anyway: it prints on stderr how many pools it stopped waiting for, kills the worker
/// processes of process pools, and exits (thread-pool tasks end with the process). An
/// `exit` called from a thread pool's task (or a callback run by one of its workers) does
/// not wait for that pool; from a callback of a process pool's future (run on the pool's
/// callback threads), it waits until this timeout.
///
/// Covered: [`ThreadPoolExecutor`](crate::ThreadPoolExecutor), `ProcessPoolExecutor`,
/// `MpiPoolExecutor` (its session ends as by `shutdown(true)` before MPI is finalized; the
/// worker ranks of a job return from `start`) and `multiprocessing::Pool` (which Python
/// terminates at exit instead: here its accepted tasks run too). Rayon pools are not waited
/// for (rayon has no shutdown). Past the timeout, an MPI job is aborted.
///
/// ```
/// use std::time::Duration;
/// // A program whose pools may run long tasks: wait for them as long as Python would.
/// concurrent_futures::set_exit_timeout(None);
/// # concurrent_futures::set_exit_timeout(Some(Duration::from_secs(60)));
/// ```
pub fn set_exit_timeout(limit: Option<Duration>) {
    let nanos = limit.map_or(NO_LIMIT, |d| {
        u64::try_from(d.as_nanos()).map_or(NO_LIMIT - 1, |n| n.min(NO_LIMIT - 1))
    });
    EXIT_TIMEOUT_NANOS.store(nanos, Ordering::Relaxed);
}

fn exit_timeout() -> Option<Duration> {
    match EXIT_TIMEOUT_NANOS.load(Ordering::Relaxed) {
        NO_LIMIT => None,
        n => Some(Duration::from_nanos(n)),
    }
}

/// Registers a pool for the wait at program end. `threads`: the pool's own threads.
pub(crate) fn watch<T: Watched>(pool: &Arc<T>, threads: Vec<ThreadId>) {
    // Miri cannot run `atexit`; under Miri the wait of program end is not installed.
    #[cfg(not(miri))]
    HOOK.call_once(|| {
        // SAFETY: `atexit` takes a plain `extern "C" fn()`; `at_exit` catches every panic,
        // so nothing unwinds into the C caller.
        unsafe {
            libc::atexit(at_exit);
        }
    });
    let pool: Weak<dyn Watched> = Arc::downgrade(pool) as Weak<dyn Watched>;
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    // Forget the dropped pools once the list has doubled since the last sweep, so a program
    // that builds pools in a loop keeps a list as long as its live pools (amortised O(1)).
    if pools.len() >= 16 && pools.len().is_power_of_two() {
        pools.retain(|e| e.pool.strong_count() > 0);
    }
    pools.push(Entry {
        pool,
        threads,
        pid: std::process::id(),
    });
}

/// Set by the waiting thread once every pool it waits for is done.
struct Done {
    done: Mutex<bool>,
    cv: Condvar,
}

extern "C" fn at_exit() {
    wait_now();
}

/// Runs the wait of program end now, if it has not run (another `atexit` handler that must
/// come after it calls this first: the MPI backend's, which finalizes MPI).
pub(crate) fn wait_now() {
    // A panic must not unwind into libc; there is nothing better to do with one here than
    // to let the program end.
    let _ = std::panic::catch_unwind(wait_for_pools);
}

fn wait_for_pools() {
    let me = std::process::id();
    let exiting = std::thread::current().id();
    let pools: Vec<Arc<dyn Watched>> = {
        let mut list = POOLS.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *list)
            .into_iter()
            .filter(|e| e.pid == me && !e.threads.contains(&exiting))
            .filter_map(|e| e.pool.upgrade())
            .collect()
    };
    if pools.is_empty() {
        return;
    }
    let done = Arc::new(Done {
        done: Mutex::new(false),
        cv: Condvar::new(),
    });
    let waiter = {
        let pools = pools.clone();
        let done = done.clone();
        std::thread::Builder::new()
            .name("cf-exit".into())
            .spawn(move || {
                for p in &pools {
                    p.stop_accepting();
                }
                for p in &pools {
                    p.wait_done();
                }
                *done.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
                done.cv.notify_all();
            })
    };
    if waiter.is_err() {
        eprintln!(
            "concurrent_futures: at exit, could not start a thread to wait for {} live \
             pool(s); ending the program without their unfinished tasks",
            pools.len()
        );
        abandon(&pools);
        return;
    }
    let deadline = exit_timeout().map(|d| Instant::now() + d);
    let mut finished = done.done.lock().unwrap_or_else(|e| e.into_inner());
    while !*finished {
        match deadline {
            None => finished = done.cv.wait(finished).unwrap_or_else(|e| e.into_inner()),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                finished = done
                    .cv
                    .wait_timeout(finished, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
    if !*finished {
        drop(finished);
        eprintln!(
            "concurrent_futures: at exit, waited {:?} for the tasks of {} live pool(s) \
             (concurrent_futures::set_exit_timeout); ending the program without the \
             unfinished ones",
            exit_timeout().unwrap_or_default(),
            pools.len()
        );
        abandon(&pools);
    }
}

/// Ends what would outlive the program. Called on the exiting thread: `abandon` must not
/// use thread-locals (killing worker processes needs only a lock and `kill`).
fn abandon(pools: &[Arc<dyn Watched>]) {
    for p in pools {
        p.abandon();
    }
}
