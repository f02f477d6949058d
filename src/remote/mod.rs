//! The layer every backend whose workers are other processes stands on (the process pool,
//! the MPI pool, `multiprocessing::Process`): naming a function so that another process of
//! the same program can call it ([`naming`]), encoding values and completing futures from
//! bytes ([`codec`]), and turning a re-executed program into a worker before `main`
//! ([`bootstrap`]). It imports nothing from the backends' own modules but the entry points
//! `bootstrap` hands a started process to.

pub(crate) mod bootstrap;
pub(crate) mod codec;
pub(crate) mod naming;
mod probe;
pub(crate) mod window;

pub(crate) use codec::{Completion, Slot};
pub(crate) use naming::FnRef;
