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

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytemuck::Pod;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

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

// ===== the shared block =====

/// Numbers the tables of this process; never reused, so a stale id names nothing.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A table's bytes, and (in the parent of a process pool) its sealed file and the pools
/// whose workers may hold it.
struct TableData {
    /// (Read by the process pool, on Linux only.)
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    id: u64,
    data: Data,
    /// The sealed copy sent to workers, made on the first encoding that needs it.
    #[cfg(target_os = "linux")]
    file: std::sync::OnceLock<crate::os::Memfd>,
    /// The pools that sent it (or are about to send it) to their workers: told when the
    /// last handle is dropped.
    #[cfg(target_os = "linux")]
    holders: parking_lot::Mutex<Vec<std::sync::Weak<dyn Releaser>>>,
}

enum Data {
    /// A `Vec<T>` of the program's, or a worker rank's copy of the parent's table.
    Heap(Box<dyn AsBytes>),
    /// A worker's read-only mapping of the parent's sealed file, and the table's length.
    #[cfg(target_os = "linux")]
    Mapped(crate::os::Mapping, usize),
}

/// A `Vec<T: Pod>`, seen as bytes.
trait AsBytes: Send + Sync {
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
struct Aligned {
    words: Vec<u128>,
    len: usize,
}

#[cfg(all(feature = "mpi", target_os = "linux"))]
impl AsBytes for Aligned {
    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

impl TableData {
    fn new(data: Data) -> TableData {
        TableData {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            data,
            #[cfg(target_os = "linux")]
            file: std::sync::OnceLock::new(),
            #[cfg(target_os = "linux")]
            holders: parking_lot::Mutex::new(Vec::new()),
        }
    }

    fn bytes(&self) -> &[u8] {
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

// ===== encoding =====

/// Variant indices of the encoding (an enum: `Id(id, len)` or `Bytes(bytes)`).
const BY_ID: u32 = 0;
const BY_VALUE: u32 = 1;

impl<T: Pod + Send + Sync> Serialize for Shared<[T]> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.block.bytes();
        #[cfg(target_os = "linux")]
        if !bytes.is_empty() {
            match context::register(&self.block) {
                Ok(true) => {
                    let len = bytes.len() as u64;
                    return s.serialize_newtype_variant(
                        "Shared",
                        BY_ID,
                        "Id",
                        &(self.block.id, len),
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    return Err(serde::ser::Error::custom(format_args!(
                        "cannot put a shared table in shared memory: {e}"
                    )));
                }
            }
        }
        s.serialize_newtype_variant("Shared", BY_VALUE, "Bytes", serde_bytes::Bytes::new(bytes))
    }
}

impl<'de, T: Pod + Send + Sync> Deserialize<'de> for Shared<[T]> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_enum("Shared", &["Id", "Bytes"], EnumVisitor(PhantomData::<T>))
    }
}

struct EnumVisitor<T>(PhantomData<T>);

impl<'de, T: Pod + Send + Sync> Visitor<'de> for EnumVisitor<T> {
    type Value = Shared<[T]>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a shared table")
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        use de::VariantAccess;
        let (variant, access): (u32, _) = data.variant()?;
        match variant {
            BY_ID => {
                let (id, len): (u64, u64) = access.newtype_variant()?;
                by_id::<T, A::Error>(id, len)
            }
            BY_VALUE => access.newtype_variant_seed(BytesSeed(PhantomData::<T>)),
            other => Err(de::Error::invalid_value(
                de::Unexpected::Unsigned(u64::from(other)),
                &"a shared table's encoding",
            )),
        }
    }
}

/// The table `id` that this worker was given, checked against the length and type the
/// sender names.
#[cfg(target_os = "linux")]
fn by_id<T: Pod + Send + Sync, E: de::Error>(id: u64, len: u64) -> Result<Shared<[T]>, E> {
    let block = match registry::get(id) {
        Some(Ok(block)) => block,
        Some(Err(why)) => return Err(E::custom(why)),
        None => {
            return Err(E::custom(format_args!(
                "shared table {id} is unknown in this process"
            )));
        }
    };
    let have = block.bytes().len() as u64;
    if have != len || !have.is_multiple_of(size_of::<T>() as u64) {
        return Err(E::custom(format_args!(
            "shared table {id} holds {have} bytes, not {len} bytes of {}",
            std::any::type_name::<T>()
        )));
    }
    // (A mapping is page-aligned, a received copy 16-byte aligned.)
    if !(block.bytes().as_ptr() as usize).is_multiple_of(align_of::<T>()) {
        return Err(E::custom(format_args!(
            "shared table {id} is not aligned for {}",
            std::any::type_name::<T>()
        )));
    }
    Ok(Shared {
        block,
        _of: PhantomData,
    })
}

#[cfg(not(target_os = "linux"))]
fn by_id<T: Pod + Send + Sync, E: de::Error>(id: u64, _len: u64) -> Result<Shared<[T]>, E> {
    Err(E::custom(format_args!(
        "shared table {id} is unknown in this process"
    )))
}

/// Decodes a table sent by value: one copy, into a new `Vec<T>`.
struct BytesSeed<T>(PhantomData<T>);

impl<'de, T: Pod + Send + Sync> de::DeserializeSeed<'de> for BytesSeed<T> {
    type Value = Shared<[T]>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_byte_buf(self)
    }
}

impl<T: Pod + Send + Sync> BytesSeed<T> {
    fn copy<E: de::Error>(bytes: &[u8]) -> Result<Shared<[T]>, E> {
        if !bytes.len().is_multiple_of(size_of::<T>()) {
            return Err(E::custom(format_args!(
                "a shared table of {} bytes is not made of {}",
                bytes.len(),
                std::any::type_name::<T>()
            )));
        }
        let mut items = Vec::new();
        items
            .try_reserve_exact(bytes.len() / size_of::<T>())
            .map_err(|_| E::custom("no memory for a shared table"))?;
        items.resize(bytes.len() / size_of::<T>(), T::zeroed());
        bytemuck::cast_slice_mut::<T, u8>(&mut items).copy_from_slice(bytes);
        Ok(Shared::new(items))
    }
}

impl<'de, T: Pod + Send + Sync> Visitor<'de> for BytesSeed<T> {
    type Value = Shared<[T]>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the bytes of a shared table")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Self::copy(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        Self::copy(&v)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Formats that write bytes as a sequence of numbers.
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            v.push(b);
        }
        Self::copy(&v)
    }
}

// ===== the process pool's side =====

/// A pool whose workers may hold tables: told when a table's last handle is dropped, so
/// that it tells them to let it go.
#[cfg(target_os = "linux")]
pub(crate) trait Releaser: Send + Sync {
    fn release(&self, id: u64);
}

/// A table a task's argument names by id: kept with the task until it is over, so that
/// its file lives until every worker that needs it has it.
#[cfg(target_os = "linux")]
#[derive(Clone)]
pub(crate) struct TableRef(Arc<TableData>);

#[cfg(target_os = "linux")]
impl std::fmt::Debug for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TableRef").field(&self.0.id).finish()
    }
}

#[cfg(target_os = "linux")]
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
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The process pool: a sealed memory file, which the workers map.
    File,
    /// The MPI pool: the bytes, in a message (ranks may be on other machines).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    Bytes,
}

/// Runs `encode` with the process pool's encoding context set on this thread: the tables
/// it meets are encoded by id (each gets its sealed file) and returned with its result.
#[cfg(target_os = "linux")]
pub(crate) fn collect<R>(encode: impl FnOnce() -> R) -> (R, Vec<TableRef>) {
    context::collect(Kind::File, encode)
}

/// Runs `encode` with the MPI pool's encoding context set on this thread: the tables it
/// meets are encoded by id and returned with its result (no file is made: the pool sends
/// their bytes).
#[cfg(all(feature = "mpi", target_os = "linux"))]
pub(crate) fn collect_bytes<R>(encode: impl FnOnce() -> R) -> (R, Vec<TableRef>) {
    context::collect(Kind::Bytes, encode)
}

/// Runs `encode` in an encoding context of its own, of the same kind, if a pool is
/// encoding on this thread (the tables it meets are then encoded by id and returned), else
/// as it is (tables encoded by value, none returned). A task's captures are encoded this
/// way.
#[cfg(target_os = "linux")]
pub(crate) fn collect_if_encoding<R>(encode: impl FnOnce() -> R) -> (R, Vec<TableRef>) {
    match context::active() {
        Some(kind) => context::collect(kind, encode),
        None => (encode(), Vec::new()),
    }
}

#[cfg(target_os = "linux")]
mod context {
    use std::cell::RefCell;
    use std::sync::Arc;

    use super::{Kind, TableData, TableRef};

    thread_local! {
        /// Set while a pool encodes a task's argument: its kind, and the tables met so far.
        static TABLES: RefCell<Option<(Kind, Vec<TableRef>)>> = const { RefCell::new(None) };
    }

    pub(super) fn collect<R>(kind: Kind, encode: impl FnOnce() -> R) -> (R, Vec<TableRef>) {
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
}

/// A worker process's tables, by id: installed when the parent sends them (or why they
/// could not be), removed when it says so.
#[cfg(target_os = "linux")]
mod registry {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::TableData;

    pub(super) type Entry = Result<Arc<TableData>, Arc<str>>;

    pub(super) static TABLES: parking_lot::Mutex<BTreeMap<u64, Entry>> =
        parking_lot::Mutex::new(BTreeMap::new());

    /// Tables installed in this process so far (for tests).
    pub(super) static INSTALLED: std::sync::atomic::AtomicU64 =
        std::sync::atomic::AtomicU64::new(0);

    pub(super) fn get(id: u64) -> Option<Entry> {
        TABLES.lock().get(&id).cloned()
    }

    pub(super) fn insert(id: u64, entry: Entry) {
        INSTALLED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TABLES.lock().insert(id, entry);
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
        (
            registry::TABLES.lock().len(),
            registry::INSTALLED.load(Ordering::Relaxed),
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        (0, 0)
    }
}

/// Keeps the table `id` of `len` bytes, sent by the parent as the sealed file `file`,
/// mapped read-only. The file is closed here: the mapping keeps it. A table that cannot be
/// kept (not sealed, out of bounds, no memory to map it) is remembered with the reason,
/// which fails the tasks that read it.
#[cfg(target_os = "linux")]
pub(crate) fn install(id: u64, len: u64, file: std::io::Result<crate::os::Memfd>) {
    let entry = map(id, len, file).map_err(|e| Arc::from(format!("shared table {id}: {e}")));
    registry::insert(id, entry);
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
    registry::insert(id, entry);
}

#[cfg(target_os = "linux")]
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
#[cfg(target_os = "linux")]
pub(crate) fn uninstall(ids: &[u64]) {
    let gone: Vec<_> = {
        let mut tables = registry::TABLES.lock();
        ids.iter().filter_map(|id| tables.remove(id)).collect()
    };
    drop(gone);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_value_round_trip_outside_a_pool() {
        let table = Shared::from((0..10_000u32).collect::<Vec<_>>());
        let bytes = postcard::to_allocvec(&table).unwrap();
        let back: Shared<[u32]> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, table);
        // Not whole `u32`s: an error, not a panic.
        let odd = postcard::to_allocvec(&Shared::from(vec![1u8, 2, 3])).unwrap();
        assert!(postcard::from_bytes::<Shared<[u32]>>(&odd).is_err());
        let empty = postcard::to_allocvec(&Shared::<[u64]>::new(Vec::new())).unwrap();
        assert!(
            postcard::from_bytes::<Shared<[u64]>>(&empty)
                .unwrap()
                .is_empty()
        );
    }

    #[cfg(all(target_os = "linux", not(miri)))]
    #[test]
    fn by_id_in_a_context_and_an_unknown_id_is_an_error() {
        let table = Shared::from(vec![5u64; 1000]);
        let (bytes, tables) = collect(|| postcard::to_allocvec(&(table.clone(), table.clone())));
        let bytes = bytes.unwrap();
        assert!(bytes.len() < 40, "{} bytes", bytes.len());
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].len(), 8000);
        let file = tables[0].file().unwrap();
        assert!(file.write_sealed());
        assert!(file.write_at(0, b"x").is_err());
        // This process was never given the table: its id names nothing here.
        assert!(postcard::from_bytes::<(Shared<[u64]>, Shared<[u64]>)>(&bytes).is_err());
    }

    #[cfg(all(feature = "mpi", target_os = "linux", not(miri)))]
    #[test]
    fn mpi_context_makes_no_file_and_a_received_copy_is_found_by_id() {
        let table = Shared::from((0..1000u64).collect::<Vec<_>>());
        let (bytes, tables) = collect_bytes(|| postcard::to_allocvec(&table.clone()));
        let bytes = bytes.unwrap();
        assert!(bytes.len() < 40, "{} bytes", bytes.len());
        assert_eq!(tables.len(), 1);
        assert!(tables[0].file().is_none(), "no sealed file for MPI");
        // A rank's copy: taken from an unaligned buffer, found by id, then let go.
        let mut sent = vec![0u8];
        sent.extend_from_slice(tables[0].bytes());
        install_bytes(tables[0].id(), &sent[1..]);
        let back: Shared<[u64]> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, table);
        assert!(
            postcard::from_bytes::<Shared<[[u8; 3]]>>(&bytes).is_err(),
            "not whole items"
        );
        drop(back);
        uninstall(&[tables[0].id()]);
        assert!(postcard::from_bytes::<Shared<[u64]>>(&bytes).is_err());
    }

    #[cfg(all(target_os = "linux", not(miri)))]
    #[test]
    fn a_panic_while_encoding_leaves_no_context_behind() {
        let table = Shared::from(vec![1u8; 64]);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            collect(|| {
                let _ = postcard::to_allocvec(&table);
                panic!("an encoding panics");
            })
        }));
        assert!(panicked.is_err());
        assert!(context::active().is_none());
        // Outside a context, by value again.
        let bytes = postcard::to_allocvec(&table).unwrap();
        assert_eq!(postcard::from_bytes::<Shared<[u8]>>(&bytes).unwrap(), table);
    }
}
