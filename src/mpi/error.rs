//! What can go wrong in an MPI session, inside the backend (users see these as
//! `BuildError::Mpi` or in the messages of a job that is aborted).

use crate::remote::naming::BadTarget;

/// A session's failure.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum MpiError {
    /// MPI, or the thread that drives it, could not start (or not in time).
    #[error("{0}")]
    Start(String),
    /// The MPI thread could not be started (the operating system refused the thread).
    #[error("cannot start the MPI thread: {0}")]
    Thread(#[source] crate::error::OsError),
    /// A message does not parse.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A rank sent what the protocol does not allow.
    #[error("rank {rank} {what}")]
    Protocol { rank: i32, what: &'static str },
    /// A message of a kind not expected now.
    #[error("rank {rank} sent message kind {kind} {when}")]
    UnexpectedKind {
        rank: i32,
        kind: u8,
        when: &'static str,
    },
    /// The session could not be set up: ranks missing, or running another build.
    #[error("{0}")]
    Session(String),
    /// Rank 0 named a function outside the executable.
    #[error(transparent)]
    Target(#[from] BadTarget),
}

#[cfg(test)]
mod tests {
    use super::MpiError;
    use crate::error::{BuildError, StartFailure};
    use crate::remote::FnRef;
    use crate::remote::naming::BadTarget;
    use std::error::Error;

    #[test]
    fn an_mpi_start_failure_shows_its_cause_and_chains_to_it() {
        let cause = MpiError::Start("MPI_Init did not return within 1s".into());
        let err = BuildError::Mpi(StartFailure::new(cause));
        assert_eq!(
            err.to_string(),
            "could not start the MPI pool: MPI_Init did not return within 1s"
        );
        let failure = err.source().expect("BuildError::Mpi has a source");
        assert_eq!(failure.to_string(), "MPI_Init did not return within 1s");
        assert!(
            failure.source().is_none(),
            "a message has nothing beneath it"
        );
        // A typed cause stays reachable: the target refused by a worker rank.
        let target = BadTarget(FnRef { func: 1, tramp: 2 });
        let err = BuildError::Mpi(StartFailure::new(MpiError::from(target.clone())));
        assert_eq!(
            err.to_string(),
            format!("could not start the MPI pool: {target}")
        );
    }

    #[test]
    fn a_refused_mpi_thread_keeps_the_os_error() {
        let io = std::io::Error::from_raw_os_error(libc::EAGAIN);
        let shown = io.to_string();
        let err = BuildError::Mpi(StartFailure::new(MpiError::Thread(io.into())));
        assert_eq!(
            err.to_string(),
            format!("could not start the MPI pool: cannot start the MPI thread: {shown}")
        );
        let mut cause = err.source();
        let mut os = None;
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                os = io.raw_os_error();
            }
            cause = e.source();
        }
        assert_eq!(os, Some(libc::EAGAIN));
    }
}
