//! The MPI layer: the process's MPI thread (which initializes and finalizes MPI), sends that
//! never block, probes that never spin, and the idle backoff. Every call into the MPI
//! library and every `unsafe` of the MPI backend is in this module: this file (the MPI
//! thread), `state.rs` (the environment, sessions, a lost rank, exiting), `serial.rs` (the
//! MPI lock), `finalize.rs` (hooks, finalize or abort at exit), `idle_yield.rs` (Open MPI's
//! yield in empty polls), `communicator.rs` (`Comm`), `port.rs` (`Port`), `backoff.rs`
//! (`Backoff`).
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
mod state;

pub(crate) use backoff::Backoff;
pub(crate) use communicator::{Comm, SPAWNED_WORKER_ARG};
pub(crate) use finalize::{abort, before_finalize};
pub(crate) use port::{MAX_MESSAGE, Port};
pub(crate) use serial::{Serial, serial};
pub(crate) use state::{Env, Session, exiting, mark_lost};

use finalize::finalize_at_exit;
use state::{ENV, Job};

use super::error::MpiError;
use std::sync::{Mutex, mpsc};
use std::time::Duration;

/// The MPI environment, initialized on first use (on the MPI thread). `MPI_Init` returns
/// only once every rank has called it; if that takes longer than `timeout`, this fails (and
/// the MPI thread is left waiting in `MPI_Init`, so the process can still exit).
pub(crate) fn env(timeout: Duration) -> Result<&'static Env, MpiError> {
    ENV.get_or_init(|| start_mpi_thread(timeout))
        .as_ref()
        .map_err(Clone::clone)
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
