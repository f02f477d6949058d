//! [`TableData`]: a shared table's bytes (the program's `Vec`, a worker's mapping of the
//! parent's sealed file, or a rank's aligned copy), its id, and (in a pool's parent) its
//! sealed file and the pools to tell when it is gone.

use std::sync::atomic::{AtomicU64, Ordering};

use bytemuck::Pod;

/// A pool whose workers may hold tables: told when a table's last handle is dropped, so
/// that it tells them to let it go.
#[cfg(target_os = "linux")]
pub(crate) trait Releaser: Send + Sync {
    fn release(&self, id: u64);
}

/// Numbers the tables of this process; never reused, so a stale id names nothing.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A table's bytes, and (in the parent of a process pool) its sealed file and the pools
/// whose workers may hold it.
pub(super) struct TableData {
    /// (Read by the process pool, on Linux only.)
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(super) id: u64,
    data: Data,
    /// The sealed copy sent to workers, made on the first encoding that needs it.
    #[cfg(target_os = "linux")]
    pub(super) file: std::sync::OnceLock<crate::os::Memfd>,
    /// The pools that sent it (or are about to send it) to their workers: told when the
    /// last handle is dropped.
    #[cfg(target_os = "linux")]
    pub(super) holders: parking_lot::Mutex<Vec<std::sync::Weak<dyn Releaser>>>,
}

pub(super) enum Data {
    /// A `Vec<T>` of the program's, or a worker rank's copy of the parent's table.
    Heap(Box<dyn AsBytes>),
    /// A worker's read-only mapping of the parent's sealed file, and the table's length.
    #[cfg(target_os = "linux")]
    Mapped(crate::os::Mapping, usize),
}

/// A `Vec<T: Pod>`, seen as bytes.
pub(super) trait AsBytes: Send + Sync {
    fn bytes(&self) -> &[u8];
}

impl<T: Pod + Send + Sync> AsBytes for Vec<T> {
    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self)
    }
}

/// Bytes at an address aligned for 16 bytes (a table received as a message, copied out of
/// it): `len` bytes at the start of `words`.
#[cfg(all(feature = "mpi", target_os = "linux"))]
pub(super) struct Aligned {
    pub(super) words: Vec<u128>,
    pub(super) len: usize,
}

#[cfg(all(feature = "mpi", target_os = "linux"))]
impl AsBytes for Aligned {
    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

impl TableData {
    pub(super) fn new(data: Data) -> TableData {
        TableData {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            data,
            #[cfg(target_os = "linux")]
            file: std::sync::OnceLock::new(),
            #[cfg(target_os = "linux")]
            holders: parking_lot::Mutex::new(Vec::new()),
        }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Heap(v) => v.bytes(),
            #[cfg(target_os = "linux")]
            Data::Mapped(map, len) => &map.bytes()[..*len],
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for TableData {
    fn drop(&mut self) {
        for pool in self.holders.get_mut().drain(..) {
            if let Some(pool) = pool.upgrade() {
                pool.release(self.id);
            }
        }
    }
}
