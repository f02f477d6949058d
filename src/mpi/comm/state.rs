//! What this process knows of MPI and of its own end: the environment ([`Env`], set once by
//! the MPI thread, with the queue of the thread's jobs), the sessions in progress, whether a
//! rank was lost, whether the process is exiting. Read by the MPI thread (`mod.rs`) and by
//! the end of MPI (`finalize.rs`); it calls neither.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

use crate::mpi::error::MpiError;

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
    pub(super) jobs: Mutex<mpsc::Sender<Job>>,
}

pub(super) enum Job {
    Run(Box<dyn FnOnce() + Send>),
    Finalize(mpsc::Sender<()>),
}

pub(super) static ENV: OnceLock<Result<Env, MpiError>> = OnceLock::new();

/// A rank stopped answering: finalizing would wait for it forever, so the job is aborted.
pub(super) static LOST: AtomicBool = AtomicBool::new(false);
/// The process is exiting: a session still running ends now.
pub(super) static EXITING: AtomicBool = AtomicBool::new(false);
/// Sessions running in this process (a worker rank serving, or rank 0's dispatcher).
pub(super) static SESSIONS: AtomicUsize = AtomicUsize::new(0);

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
