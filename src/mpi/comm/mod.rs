//! The MPI layer: the process's MPI thread (which initializes and finalizes MPI), sends that
//! never block, probes that never spin, and the idle backoff. Every call into the MPI
//! library and every `unsafe` of the MPI backend is in this module: this file (the MPI
//! thread, the environment, sessions), `serial.rs` (the MPI lock), `finalize.rs` (hooks,
//! finalize or abort at exit), `idle_yield.rs` (Open MPI's yield in empty polls),
//! `communicator.rs` (`Comm`), `port.rs` (`Port`), `backoff.rs` (`Backoff`).
//!
//! # One MPI thread per process
//!
//! MPI is initialized once per process and must be finalized before it exits, by the thread
//! that initialized it. So the first `MpiPoolExecutor::start` starts a thread, `cf-mpi`,
//! that calls `MPI_Init_thread` and lives until the process exits: an `atexit` handler asks
//! it to call `MPI_Finalize` (or `MPI_Abort`, when a rank was lost and finalizing would wait
//! for it forever). It also runs the calls that set a session up or take it down (spawn,
//! handshake, disconnect). With `MPI_THREAD_FUNNELED` only, it runs the client's dispatcher
//! too, one session at a time. When the library grants `MPI_THREAD_SERIALIZED` (Open MPI
//! and MPICH do), each session of the client runs on a thread of its own, so several pools
//! (and the spawn of another) go on at once; and two hand-offs per task are saved: on the
//! client, a user thread blocked on a future drives the dispatcher itself; on a worker, the
//! thread that runs the tasks probes and sends between them.
//!
//! # One MPI lock per process
//!
//! Every MPI call after `MPI_Init` is made under one lock ([`serial`], or a [`Serial`]
//! that guards a session's state with it), whichever thread makes it: that is what keeps
//! the calls of several sessions, and of the MPI thread's jobs, from overlapping, as
//! `MPI_THREAD_SERIALIZED` requires. A call that blocks in MPI (a spawn) holds it, so the
//! other sessions pause meanwhile.
//!
//! # No burnt cores
//!
//! A blocking `MPI_Recv` busy-polls (it keeps a core at ~90% while it waits), so nothing here
//! blocks in MPI: receives are `MPI_Improbe` + `MPI_Mrecv` of a message already there, sends
//! are `MPI_Isend` tested later, and an idle loop waits with [`Backoff`].

mod backoff;
mod communicator;
mod finalize;
mod idle_yield;
mod port;
mod serial;

pub(crate) use backoff::Backoff;
pub(crate) use communicator::{Comm, SPAWNED_WORKER_ARG};
pub(crate) use finalize::{abort, before_finalize};
pub(crate) use port::{MAX_MESSAGE, Port};
pub(crate) use serial::{Serial, serial};

use finalize::finalize_at_exit;

use super::error::MpiError;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

/// What the process knows of its MPI job.
pub(crate) struct Env {
    pub(crate) rank: i32,
    pub(crate) size: i32,
    /// `MPI_THREAD_SERIALIZED` or better was granted: any thread may call MPI, one at a time.
    pub(crate) serialized: bool,
    /// `MPI_Get_processor_name`.
    pub(crate) host: String,
    /// The MPI thread.
    pub(crate) thread: std::thread::ThreadId,
    jobs: Mutex<mpsc::Sender<Job>>,
}

enum Job {
    Run(Box<dyn FnOnce() + Send>),
    Finalize(mpsc::Sender<()>),
}

static ENV: OnceLock<Result<Env, MpiError>> = OnceLock::new();

/// A rank stopped answering: finalizing would wait for it forever, so the job is aborted.
static LOST: AtomicBool = AtomicBool::new(false);
/// The process is exiting: a session still running ends now.
static EXITING: AtomicBool = AtomicBool::new(false);
/// Sessions running in this process (a worker rank serving, or rank 0's dispatcher).
static SESSIONS: AtomicUsize = AtomicUsize::new(0);
/// How long `exit` waits for the MPI thread to finalize before it aborts the job.
const FINALIZE_WAIT: Duration = Duration::from_secs(30);

/// The MPI environment, initialized on first use (on the MPI thread). `MPI_Init` returns
/// only once every rank has called it; if that takes longer than `timeout`, this fails (and
/// the MPI thread is left waiting in `MPI_Init`, so the process can still exit).
pub(crate) fn env(timeout: Duration) -> Result<&'static Env, MpiError> {
    ENV.get_or_init(|| start_mpi_thread(timeout))
        .as_ref()
        .map_err(Clone::clone)
}

/// True once the process has begun to exit.
pub(crate) fn exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

/// Records that a rank is lost: at exit the job is aborted instead of finalized.
pub(crate) fn mark_lost() {
    LOST.store(true, Ordering::Release);
}

/// A session in progress on this rank. A process that exits during one (a task called
/// `std::process::exit`, or rank 0 leaked its pool) cannot finalize MPI, since the other
/// ranks are not finalizing: it aborts the job instead, with a message.
pub(crate) struct Session(());

impl Session {
    pub(crate) fn begin() -> Session {
        SESSIONS.fetch_add(1, Ordering::AcqRel);
        Session(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        SESSIONS.fetch_sub(1, Ordering::AcqRel);
    }
}

fn start_mpi_thread(timeout: Duration) -> Result<Env, MpiError> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let (ready, started) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("cf-mpi".into())
        .spawn(move || {
            let Some((universe, threading)) =
                ::mpi::initialize_with_threading(::mpi::Threading::Serialized)
            else {
                let _ = ready.send(Err(MpiError::Start(
                    "MPI was already initialized outside concurrent_futures".to_string(),
                )));
                return;
            };
            if threading < ::mpi::Threading::Funneled {
                let _ = ready.send(Err(MpiError::Start(format!(
                    "the MPI library grants only {threading:?} threading; at least Funneled is needed"
                ))));
                drop(universe);
                return;
            }
            idle_yield::take_over();
            use ::mpi::topology::Communicator;
            let world = universe.world();
            let info = (
                world.rank(),
                world.size(),
                threading >= ::mpi::Threading::Serialized,
                ::mpi::environment::processor_name().unwrap_or_else(|_| "?".into()),
            );
            drop(world);
            if ready.send(Ok(info)).is_err() {
                return;
            }
            let mut finalized = None;
            while let Ok(job) = queue.recv() {
                match job {
                    Job::Run(f) => f(),
                    Job::Finalize(done) => {
                        finalized = Some(done);
                        break;
                    }
                }
            }
            idle_yield::give_back();
            let mpi = serial();
            drop(universe); // MPI_Finalize
            drop(mpi);
            if let Some(done) = finalized {
                let _ = done.send(());
            }
        })
        .map_err(|e| MpiError::Thread(e.into()))?
        .thread()
        .id();
    let (rank, size, serialized, host) = match started.recv_timeout(timeout) {
        Ok(info) => info?,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            return Err(MpiError::Start(format!(
                "MPI_Init did not return within {timeout:?}: it waits for every rank of the \
                 job, so some rank did not call MpiPoolExecutor::start"
            )));
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return Err(MpiError::Start(
                "the MPI thread ended during MPI_Init".into(),
            ));
        }
    };
    // SAFETY: `atexit` takes a plain `extern "C" fn()`; `finalize_at_exit` does not unwind.
    unsafe {
        libc::atexit(finalize_at_exit);
    }
    Ok(Env {
        rank,
        size,
        serialized,
        host,
        thread,
        jobs: Mutex::new(jobs),
    })
}

impl Env {
    /// Runs `f` on the MPI thread, after the jobs before it.
    pub(crate) fn run(&self, f: impl FnOnce() + Send + 'static) {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        // The MPI thread lives until exit; a send can only fail after finalization.
        let _ = jobs.send(Job::Run(Box::new(f)));
    }

    /// Runs `f` on the MPI thread and waits for its value, for at most `limit`.
    pub(crate) fn call_timeout<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
        limit: Duration,
    ) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        self.run(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(limit).ok()
    }

    /// Runs `f` on the MPI thread and waits for its value.
    pub(crate) fn call<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        self.run(move || {
            let _ = tx.send(f());
        });
        rx.recv()
            .expect("[internal] the MPI thread ended while running a job")
    }
}
