//! The iterators behind [`Executor::map`] and [`Executor::map_unordered`]: lazy, bounded,
//! adaptively chunked, cancelling what has not started when dropped.
//!
//! One concept per file: [`MapOptions`] (`options.rs`); the ordered [`Map`] (`ordered.rs`),
//! which runs by chunks submitted as tasks (`chunked.rs`, reading them in order:
//! `in_order.rs`) or as the backend's own ([`OrderedMap`] fed through [`MapInput`],
//! `backend.rs`, lending a [`ReadyRun`], `ready_run.rs`); [`MapUnordered`] (`unordered.rs`:
//! the same chunked iterator, reading chunks as they complete); what the chunked iterator
//! uses: the input and submission (`feed.rs`), the chunk sizing (`sizer.rs`), and the
//! reading of a finished chunk (`drain.rs`).
//!
//! [`Executor::map`]: crate::Executor::map
//! [`Executor::map_unordered`]: crate::Executor::map_unordered

mod backend;
mod chunked;
mod drain;
mod feed;
mod in_order;
mod options;
mod ordered;
mod ready_run;
mod sizer;
mod unordered;

pub use backend::{MapInput, OrderedMap};
pub(crate) use feed::plus;
pub use options::MapOptions;
pub use ordered::Map;
pub use ready_run::ReadyRun;
pub use unordered::MapUnordered;
