//! What can go wrong in an MPI session, inside the backend (users see these as
//! `BuildError::Mpi` or in the messages of a job that is aborted).

use crate::remote::naming::BadTarget;

/// A session's failure.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum MpiError {
    /// MPI, or the thread that drives it, could not start (or not in time).
    #[error("{0}")]
    Start(String),
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
