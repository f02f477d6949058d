//! A worker's side of shared tables: the tables this process was given by a pool's parent,
//! by id (a process pool worker's read-only mappings, an MPI rank's copies), installed when
//! the parent sends them (or why they could not be), removed when it says so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

#[cfg(feature = "mpi")]
use super::table::Aligned;
use super::table::{Data, TableData};

/// A table as installed: its data, or why it could not be kept.
type Entry = Result<Arc<TableData>, Arc<str>>;

/// This process's tables, by id.
static TABLES: parking_lot::Mutex<BTreeMap<u64, Entry>> = parking_lot::Mutex::new(BTreeMap::new());

/// Tables installed in this process so far (for tests).
static INSTALLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(super) fn get(id: u64) -> Option<Entry> {
    TABLES.lock().get(&id).cloned()
}

fn insert(id: u64, entry: Entry) {
    INSTALLED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    TABLES.lock().insert(id, entry);
}

/// Tables held now, and installed in all.
pub(super) fn counts() -> (usize, u64) {
    (TABLES.lock().len(), INSTALLED.load(Ordering::Relaxed))
}

/// Keeps the table `id` of `len` bytes, sent by the parent as the sealed file `file`,
/// mapped read-only. The file is closed here: the mapping keeps it. A table that cannot be
/// kept (not sealed, out of bounds, no memory to map it) is remembered with the reason,
/// which fails the tasks that read it.
pub(crate) fn install(id: u64, len: u64, file: std::io::Result<crate::os::Memfd>) {
    let entry = map(id, len, file).map_err(|e| Arc::from(format!("shared table {id}: {e}")));
    insert(id, entry);
}

/// Keeps the table `id`, sent by an MPI pool's parent as `bytes`, as a copy at an address
/// aligned for any `Pod` type up to 16 bytes (a received message's bytes are not). A table
/// that cannot be kept (no memory) is remembered with the reason, which fails the tasks
/// that read it.
#[cfg(all(feature = "mpi", target_os = "linux"))]
pub(crate) fn install_bytes(id: u64, bytes: &[u8]) {
    let mut words: Vec<u128> = Vec::new();
    let n = bytes.len().div_ceil(size_of::<u128>());
    let entry = match words.try_reserve_exact(n) {
        Ok(()) => {
            words.resize(n, 0);
            bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
            let mut block = TableData::new(Data::Heap(Box::new(Aligned {
                words,
                len: bytes.len(),
            })));
            block.id = id;
            Ok(Arc::new(block))
        }
        Err(_) => Err(Arc::from(format!(
            "shared table {id}: no memory for {} bytes",
            bytes.len()
        ))),
    };
    insert(id, entry);
}

fn map(
    id: u64,
    len: u64,
    file: std::io::Result<crate::os::Memfd>,
) -> std::io::Result<Arc<TableData>> {
    use std::io::{Error, ErrorKind};
    let file = file?;
    if !file.write_sealed() {
        return Err(Error::new(
            ErrorKind::InvalidData,
            "not sealed against writing",
        ));
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len > 0 && len <= file.len())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, "out of bounds"))?;
    let map = file.map(false)?;
    // Its pages in one call, not a fault for every 4 KiB the tasks read.
    map.prefault();
    let mut block = TableData::new(Data::Mapped(map, len));
    block.id = id;
    Ok(Arc::new(block))
}

/// Lets go of the tables `ids` (the parent dropped them): their mappings go once the tasks
/// that hold them are done with them.
pub(crate) fn uninstall(ids: &[u64]) {
    let gone: Vec<_> = {
        let mut tables = TABLES.lock();
        ids.iter().filter_map(|id| tables.remove(id)).collect()
    };
    drop(gone);
}
