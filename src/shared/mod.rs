//! [`Shared`]: a large read-only slice that tasks share without copies, on every backend.
//!
//! How it crosses (see also src/process/README.md and src/mpi/README.md, "Shared tables"):
//! - Threads (and rayon): it is an `Arc`; nothing is encoded.
//! - The process pool encodes a task's argument with an *encoding context* set on the
//!   encoding thread ([`collect`]): a table met there is written once, by the parent, to a
//!   memory file sealed against writing (made on its first such encoding), registered with
//!   the task, and encoded as its id alone. Before a worker gets the first call that needs a
//!   table, the pool sends it the file (`ToWorker::Tables`); the worker maps it read-only
//!   and keeps it by id ([`install`]) until the parent says the last handle is gone
//!   ([`Releaser`], `ToWorker::Release`). Decoding an id reads that mapping: no copy.
//! - The MPI pool encodes in a context of its own kind ([`collect_bytes`]): no file (ranks
//!   may be on other machines); before a rank gets the first call that needs a table, the
//!   pool sends it the table's bytes once, which the rank copies into an aligned buffer
//!   and keeps by id ([`install_bytes`]), until the parent says the last handle is gone.
//! - Anywhere else (an initializer's argument, a result, serde outside a pool), it is
//!   encoded by value: its bytes, as one block.
//!
//! One concept per file: the handle (here), the table's bytes ([`TableData`], `table.rs`),
//! the encoding and decoding (`encoding.rs`), the pools' encoding context and [`TableRef`]
//! (`context.rs`), a worker's installed tables (`installed.rs`).

#[cfg(target_os = "linux")]
mod context;
mod encoding;
#[cfg(target_os = "linux")]
mod installed;
mod table;
#[cfg(test)]
mod tests;

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use bytemuck::Pod;

#[cfg(all(feature = "mpi", target_os = "linux"))]
pub(crate) use context::collect_bytes;
#[cfg(target_os = "linux")]
pub(crate) use context::{TableRef, collect, collect_if_encoding};
#[cfg(all(feature = "mpi", target_os = "linux"))]
pub(crate) use installed::install_bytes;
#[cfg(target_os = "linux")]
pub(crate) use installed::{install, uninstall};
#[cfg(target_os = "linux")]
pub(crate) use table::Releaser;
use table::{Data, TableData};

/// A large read-only slice (`Shared<[T]>` for any [`Pod`] `T`, bytes included) that tasks
/// share without copying it, on every backend. Cloning it is cheap (a reference count), and
/// it derefs to the slice.
///
/// | backend | how it reaches a task |
/// |---|---|
/// | threads, rayon | an `Arc`: every task reads the same memory |
/// | processes | written once (by the parent, on the first submission that needs it) to a memory file sealed against writing; each worker gets the file once, with the first task that needs it, maps it read-only and keeps it for later tasks, which carry only the table's id. Dropping the last handle in the parent frees it in every worker |
/// | MPI | its bytes are sent once to each worker rank, before the first task that needs it (ranks may be on other machines); the rank keeps a copy for later tasks, which carry only the table's id. Dropping the last handle in the parent frees it in every rank |
///
/// No worker can change what the others read: the file is sealed against writing (a
/// `write` or a writable mapping of it fails with `EPERM`), and the workers' mappings are
/// read-only. A worker that dies while it reads a table fails only the task it ran; its
/// replacement gets the table again with its first task that needs it.
///
/// It is a [`Payload`](crate::Payload): pass it in a task's argument (alone, in a tuple, in
/// a struct field) as many times as you like; a `map` chunk that names it for each of its
/// items carries it once. It does not contain shared *mutable* state, so the process and
/// MPI pools accept it (see [`SubmitError::SharedState`](crate::SubmitError::SharedState)
/// for the types they refuse).
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Executor, ProcessPoolExecutor, Shared};
///
/// fn score((table, i): (Shared<[u64]>, usize)) -> u64 {
///     table.iter().skip(i).step_by(64).sum()
/// }
///
/// let table: Shared<[u64]> = Shared::from((0..1_000_000u64).collect::<Vec<_>>());
/// let pool = ProcessPoolExecutor::new(2);
/// let scores: Vec<u64> = pool
///     .map(score, (0..64).map(|i| (table.clone(), i)))
///     .map(Result::unwrap)
///     .collect();
/// assert_eq!(scores[0], (0..1_000_000u64).step_by(64).sum());
/// ```
///
/// On threads it is an `Arc`:
///
/// ```
/// use concurrent_futures::{Executor, Shared, ThreadPoolExecutor};
///
/// fn len(bytes: Shared<[u8]>) -> usize {
///     bytes.len()
/// }
///
/// let bytes = Shared::from(vec![7u8; 1 << 20]);
/// let pool = ThreadPoolExecutor::new(2);
/// assert_eq!(pool.submit(len, bytes.clone()).result(), Ok(1 << 20));
/// ```
pub struct Shared<T: ?Sized> {
    block: Arc<TableData>,
    _of: PhantomData<fn() -> Box<T>>,
}

impl<T: Pod + Send + Sync> Shared<[T]> {
    /// Shares `items` (taken, not copied).
    ///
    /// ```
    /// let table = concurrent_futures::Shared::new(vec![1.5f64, 2.5]);
    /// assert_eq!(table[1], 2.5);
    /// ```
    pub fn new(items: Vec<T>) -> Self {
        const { assert!(size_of::<T>() > 0, "Shared<[T]> needs a T of non-zero size") };
        Shared {
            block: Arc::new(TableData::new(Data::Heap(Box::new(items)))),
            _of: PhantomData,
        }
    }
}

impl<T: Pod + Send + Sync> From<Vec<T>> for Shared<[T]> {
    fn from(items: Vec<T>) -> Self {
        Shared::new(items)
    }
}

impl<T: Pod + Send + Sync> From<&[T]> for Shared<[T]> {
    fn from(items: &[T]) -> Self {
        Shared::new(items.to_vec())
    }
}

impl<T: Pod + Send + Sync> Deref for Shared<[T]> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        let bytes = self.block.bytes();
        if bytes.is_empty() {
            return &[];
        }
        // Every block of a `Shared<[T]>` holds whole `T`s (checked when it is decoded), at
        // an address aligned for `T` (a `Vec<T>`'s, or a page-aligned mapping).
        bytemuck::cast_slice(bytes)
    }
}

impl<T: Pod + Send + Sync> AsRef<[T]> for Shared<[T]> {
    fn as_ref(&self) -> &[T] {
        self
    }
}

impl<T: ?Sized> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            block: self.block.clone(),
            _of: PhantomData,
        }
    }
}

impl<T: Pod + Send + Sync + fmt::Debug> fmt::Debug for Shared<[T]> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Shared<[{}]>({} items)",
            std::any::type_name::<T>(),
            self.len()
        )
    }
}

impl<T: Pod + Send + Sync + PartialEq> PartialEq for Shared<[T]> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// The tables this process holds for a pool's parent (a process pool's or an MPI pool's
/// worker), and how many it was given in all: for tests that check that a table reaches a
/// worker once and is let go after the parent drops it.
///
/// ```
/// let (held, installed) = concurrent_futures::__shared_tables_here();
/// assert!(held as u64 <= installed);
/// ```
#[doc(hidden)]
pub fn tables_here() -> (usize, u64) {
    #[cfg(target_os = "linux")]
    {
        installed::counts()
    }
    #[cfg(not(target_os = "linux"))]
    {
        (0, 0)
    }
}
