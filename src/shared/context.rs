//! The pools' side of shared tables: the encoding context a pool sets on the encoding
//! thread (the tables a task's argument names, by id; for the process pool, each with its
//! sealed file), [`TableRef`] (a table kept with its task), [`Releaser`] (a pool told when a
//! table's last handle is gone).

use std::cell::RefCell;
use std::sync::Arc;

use super::table::{Releaser, TableData};

/// A table a task's argument names by id: kept with the task until it is over, so that
/// its file lives until every worker that needs it has it.
#[derive(Clone)]
pub(crate) struct TableRef(pub(super) Arc<TableData>);

impl std::fmt::Debug for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TableRef").field(&self.0.id).finish()
    }
}

impl TableRef {
    /// Adds to `tables` those of `more` it does not hold yet.
    pub(crate) fn merge(tables: &mut Vec<TableRef>, more: &[TableRef]) {
        for t in more {
            if !tables.iter().any(|held| Arc::ptr_eq(&held.0, &t.0)) {
                tables.push(t.clone());
            }
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    /// The length of the table, in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.0.bytes().len() as u64
    }

    /// The table's bytes (what the MPI pool sends to a rank).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) fn bytes(&self) -> &[u8] {
        self.0.bytes()
    }

    /// The sealed file (made when the table was encoded for the pool).
    pub(crate) fn file(&self) -> Option<&crate::os::Memfd> {
        self.0.file.get()
    }

    /// `pool` is told when the last handle of the table is dropped.
    pub(crate) fn held_by(&self, pool: std::sync::Weak<dyn Releaser>) {
        let mut holders = self.0.holders.lock();
        if !holders.iter().any(|h| h.ptr_eq(&pool)) {
            holders.retain(|h| h.strong_count() > 0);
            holders.push(pool);
        }
    }
}

/// How a pool sends the tables of an encoding context to its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// The process pool: a sealed memory file, which the workers map.
    File,
    /// The MPI pool: the bytes, in a message (ranks may be on other machines).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    Bytes,
}

/// Runs `encode` with the process pool's encoding context set on this thread: the tables
/// it meets are encoded by id (each gets its sealed file) and returned with its result.
pub(crate) fn collect<R>(encode: impl FnOnce() -> R) -> (R, Vec<TableRef>) {
    collect_as(Kind::File, encode)
}

/// Runs `encode` with the MPI pool's encoding context set on this thread: the tables it
/// meets are encoded by id and returned with its result (no file is made: the pool sends
/// their bytes).
#[cfg(all(feature = "mpi", target_os = "linux"))]
pub(crate) fn collect_bytes<R>(encode: impl FnOnce() -> R) -> (R, Vec<TableRef>) {
    collect_as(Kind::Bytes, encode)
}

/// Runs `encode` in an encoding context of its own, of the same kind, if a pool is
/// encoding on this thread (the tables it meets are then encoded by id and returned), else
/// as it is (tables encoded by value, none returned). A task's captures are encoded this
/// way.
pub(crate) fn collect_if_encoding<R>(encode: impl FnOnce() -> R) -> (R, Vec<TableRef>) {
    match active() {
        Some(kind) => collect_as(kind, encode),
        None => (encode(), Vec::new()),
    }
}

thread_local! {
    /// Set while a pool encodes a task's argument: its kind, and the tables met so far.
    static TABLES: RefCell<Option<(Kind, Vec<TableRef>)>> = const { RefCell::new(None) };
}

fn collect_as<R>(kind: Kind, encode: impl FnOnce() -> R) -> (R, Vec<TableRef>) {
    /// Puts the outer context back, even if `encode` panics.
    struct Restore(Option<Option<(Kind, Vec<TableRef>)>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                TABLES.set(outer);
            }
        }
    }
    let mut restore = Restore(Some(TABLES.replace(Some((kind, Vec::new())))));
    let r = encode();
    let outer = restore.0.take().unwrap_or_default();
    let tables = TABLES.replace(outer).map(|(_, t)| t).unwrap_or_default();
    (r, tables)
}

pub(super) fn active() -> Option<Kind> {
    TABLES.with_borrow(|t| t.as_ref().map(|(kind, _)| *kind))
}

/// Registers `block` with the task being encoded, if one is: true if it is then to be
/// encoded by id. For the process pool, makes the table's sealed file on its first such
/// encoding.
pub(super) fn register(block: &Arc<TableData>) -> std::io::Result<bool> {
    TABLES.with_borrow_mut(|tables| {
        let Some((kind, tables)) = tables else {
            return Ok(false);
        };
        if !tables.iter().any(|t| Arc::ptr_eq(&t.0, block)) {
            if *kind == Kind::File && block.file.get().is_none() {
                // Two threads may race to make it: one file wins, the other is dropped.
                let _ = block
                    .file
                    .set(crate::os::Memfd::sealed_copy(block.bytes())?);
            }
            tables.push(TableRef(block.clone()));
        }
        Ok(true)
    })
}
