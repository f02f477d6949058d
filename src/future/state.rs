//! [`State`]: where a future is in its life; [`InvalidStateError`], a setter called in the
//! wrong one; `Outcome`, how it ended (for wait sets).

use std::fmt;

use super::{FINISHED, STATE_MASK};

/// Where a future is in its life. Python's `_state`, minus the internal
/// `CANCELLED_AND_NOTIFIED` (here a cancelled future notifies at once).
///
/// ```
/// use concurrent_futures::{Future, State};
/// let fut: Future<u8> = Future::new();
/// assert_eq!(fut.state(), State::Pending);
/// fut.set_result(1).unwrap();
/// assert_eq!(fut.state(), State::Finished);
/// assert_eq!(State::Finished.to_string(), "finished");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Submitted, not started; may still be cancelled.
    Pending,
    /// Started; can no longer be cancelled.
    Running,
    /// Done, with a value or an error.
    Finished,
    /// Cancelled before it started; the task never runs.
    Cancelled,
}

impl State {
    pub(super) fn from_bits(s: u32) -> State {
        match s & STATE_MASK {
            0 => State::Pending,
            1 => State::Running,
            FINISHED => State::Finished,
            _ => State::Cancelled,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Finished => "finished",
            State::Cancelled => "cancelled",
        })
    }
}

/// A setter of [`Future`](crate::Future) was called in a state that forbids it (Python's
/// `InvalidStateError`, and the `RuntimeError` of `set_running_or_notify_cancel`).
///
/// ```
/// use concurrent_futures::Future;
/// let fut = Future::new();
/// fut.set_result(1).unwrap();
/// assert!(fut.set_result(2).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid state: the future is {state}")]
pub struct InvalidStateError {
    pub(crate) state: State,
}

/// How a future ended, as wait sets need to know it (`FirstException`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failed,
    Cancelled,
}
