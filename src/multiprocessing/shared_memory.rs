//! [`SharedMemory`]: Python's `multiprocessing.shared_memory.SharedMemory`, a named block
//! of memory that unrelated processes attach to by name.

use std::ffi::CString;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use super::error::SharedMemoryError;
use crate::os::{Mapping, shared};

/// Python's `multiprocessing.shared_memory.SharedMemory`: a block of bytes with a name (a
/// POSIX shared memory object, in `/dev/shm` on Linux) that any process of the same user
/// can attach to, related or not.
///
/// [`create`](SharedMemory::create) makes a new block (`SharedMemory(name, create=True,
/// size=n)`), [`attach`](SharedMemory::attach) maps an existing one
/// (`SharedMemory(name)`). Dropping the handle, or [`close`](SharedMemory::close), unmaps
/// it in this process; the block itself lives on until [`unlink`](SharedMemory::unlink)
/// removes its name and every process has closed it. Nothing unlinks a block
/// automatically (Python's resource tracker does, at the creator's exit, with a warning):
/// call `unlink` once, from the process that owns the block's lifetime.
///
/// The bytes are reached through [`buf`](SharedMemory::buf) (atomic bytes: sound whatever
/// other processes do at the same time), [`read`](SharedMemory::read) and
/// [`write`](SharedMemory::write), or, for bulk access while no other process touches the
/// block, [`as_mut_slice`](SharedMemory::as_mut_slice). The size is read once, when the
/// block is created or attached. As in Python, a process that shrinks the block's file
/// behind everyone's back (`ftruncate`) makes access past the new end fault.
///
/// ```
/// use concurrent_futures::multiprocessing::SharedMemory;
///
/// let block = SharedMemory::create(None, 16).unwrap(); // a fresh name
/// block.write(0, b"hello").unwrap();
///
/// // Any process can now attach by name.
/// let other = SharedMemory::attach(block.name()).unwrap();
/// let mut got = [0u8; 5];
/// other.read(0, &mut got).unwrap();
/// assert_eq!(&got, b"hello");
/// assert_eq!(other.size(), 16);
///
/// other.close();
/// block.unlink().unwrap(); // the name is gone; the mapping stays until `block` drops
/// assert!(SharedMemory::attach(block.name()).is_err());
/// ```
pub struct SharedMemory {
    name: String,
    map: Mapping,
}

impl std::fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size())
            .finish()
    }
}

/// The POSIX name (`/name`) of a block named `name` (with or without the leading slash).
fn posix_name(name: &str) -> Result<(String, CString), SharedMemoryError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let invalid = bare.is_empty()
        || bare.len() > 250
        || bare.contains('/')
        || bare.contains('\0')
        || bare == "."
        || bare == "..";
    if invalid {
        return Err(SharedMemoryError::InvalidName(name.to_string()));
    }
    let posix = CString::new(format!("/{bare}"))
        .map_err(|_| SharedMemoryError::InvalidName(name.to_string()))?;
    Ok((bare.to_string(), posix))
}

/// A name nobody uses yet, probably: `psm_` (as Python's), the pid and a counter mixed
/// with the clock.
fn fresh_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("psm_{}_{n}_{clock:08x}", std::process::id())
}

fn os_error(op: &'static str, name: &str, e: std::io::Error) -> SharedMemoryError {
    match e.kind() {
        std::io::ErrorKind::AlreadyExists => SharedMemoryError::Exists(name.to_string()),
        std::io::ErrorKind::NotFound => SharedMemoryError::NotFound(name.to_string()),
        _ => SharedMemoryError::Os { op, source: e },
    }
}

impl SharedMemory {
    /// Creates a new block of `size` bytes (zero-filled) named `name`, or with a fresh name
    /// if `None`. Python's `SharedMemory(name, create=True, size=size)`. Fails with
    /// [`SharedMemoryError::Exists`] if the name is taken, and
    /// [`SharedMemoryError::ZeroSize`] for a size of 0 (Python's `ValueError`).
    ///
    /// ```
    /// use concurrent_futures::multiprocessing::{SharedMemory, SharedMemoryError};
    /// let name = format!("doc_create_{}", std::process::id());
    /// let block = SharedMemory::create(Some(&name), 4096).unwrap();
    /// assert_eq!(block.name(), name);
    /// assert!(matches!(
    ///     SharedMemory::create(Some(&name), 1),
    ///     Err(SharedMemoryError::Exists(_))
    /// ));
    /// block.unlink().unwrap();
    /// ```
    pub fn create(name: Option<&str>, size: usize) -> Result<SharedMemory, SharedMemoryError> {
        if size == 0 {
            return Err(SharedMemoryError::ZeroSize);
        }
        let explicit = name.is_some();
        for _ in 0..100 {
            let candidate = match name {
                Some(n) => n.to_string(),
                None => fresh_name(),
            };
            let (bare, posix) = posix_name(&candidate)?;
            match shared::shm_open_map(&posix, Some(size)) {
                Ok(map) => return Ok(SharedMemory { name: bare, map }),
                Err(e) if !explicit && e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(os_error("create", &bare, e)),
            }
        }
        Err(SharedMemoryError::Exists(
            "(no free name found for a new block)".into(),
        ))
    }

    /// Attaches to the existing block named `name`. Python's `SharedMemory(name)`. Fails
    /// with [`SharedMemoryError::NotFound`] if there is none.
    ///
    /// ```
    /// use concurrent_futures::multiprocessing::{SharedMemory, SharedMemoryError};
    /// assert!(matches!(
    ///     SharedMemory::attach("no_such_block_here"),
    ///     Err(SharedMemoryError::NotFound(_))
    /// ));
    /// ```
    pub fn attach(name: &str) -> Result<SharedMemory, SharedMemoryError> {
        let (bare, posix) = posix_name(name)?;
        let map = shared::shm_open_map(&posix, None).map_err(|e| os_error("attach", &bare, e))?;
        Ok(SharedMemory { name: bare, map })
    }

    /// The block's name (without a leading `/`), to give to [`attach`](Self::attach) in
    /// another process. Python's `name`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::SharedMemory;
    /// let block = SharedMemory::create(None, 8).unwrap();
    /// assert!(block.name().starts_with("psm_"));
    /// # block.unlink().unwrap();
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size in bytes (as it was when this handle was made). Python's `size`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::SharedMemory;
    /// let block = SharedMemory::create(None, 100).unwrap();
    /// assert_eq!(block.size(), 100);
    /// # block.unlink().unwrap();
    /// ```
    pub fn size(&self) -> usize {
        self.map.len()
    }

    /// The bytes, as atomics: usable while other processes read and write them. Python's
    /// `buf`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::SharedMemory;
    /// use std::sync::atomic::Ordering;
    /// let block = SharedMemory::create(None, 4).unwrap();
    /// block.buf()[3].store(7, Ordering::Relaxed);
    /// assert_eq!(block.buf()[3].load(Ordering::Relaxed), 7);
    /// # block.unlink().unwrap();
    /// ```
    pub fn buf(&self) -> &[AtomicU8] {
        if self.map.len() == 0 {
            return &[];
        }
        // SAFETY: the mapping holds `len` bytes, readable and writable, and lives as long
        // as `self` (the borrow cannot outlive it); `AtomicU8` has the size and alignment of
        // `u8`, and atomics make concurrent access from other threads or processes sound.
        unsafe { std::slice::from_raw_parts(self.map.ptr() as *const AtomicU8, self.map.len()) }
    }

    /// Copies `dst.len()` bytes from offset `offset` into `dst`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::SharedMemory;
    /// let block = SharedMemory::create(None, 4).unwrap();
    /// let mut two = [9u8; 2];
    /// block.read(2, &mut two).unwrap();
    /// assert_eq!(two, [0, 0]);
    /// assert!(block.read(3, &mut two).is_err()); // past the end
    /// # block.unlink().unwrap();
    /// ```
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), SharedMemoryError> {
        let src = self.range(offset, dst.len())?;
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s.load(Ordering::Relaxed);
        }
        Ok(())
    }

    /// Copies `src` into the block at offset `offset`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::SharedMemory;
    /// let block = SharedMemory::create(None, 4).unwrap();
    /// block.write(1, &[1, 2, 3]).unwrap();
    /// assert!(block.write(2, &[1, 2, 3]).is_err()); // past the end
    /// # block.unlink().unwrap();
    /// ```
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<(), SharedMemoryError> {
        let dst = self.range(offset, src.len())?;
        for (d, s) in dst.iter().zip(src) {
            d.store(*s, Ordering::Relaxed);
        }
        Ok(())
    }

    fn range(&self, offset: usize, len: usize) -> Result<&[AtomicU8], SharedMemoryError> {
        let size = self.size();
        offset
            .checked_add(len)
            .filter(|&end| end <= size)
            .map(|end| &self.buf()[offset..end])
            .ok_or(SharedMemoryError::OutOfRange { offset, len, size })
    }

    /// The bytes as a plain mutable slice, for bulk work.
    ///
    /// # Safety
    ///
    /// While the slice lives, no other thread or process may read or write the block
    /// (through any handle), and no other slice of it may exist in this process: the
    /// caller arranges that, typically with a [`Lock`](super::Lock) all users take.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::SharedMemory;
    /// let block = SharedMemory::create(None, 3).unwrap();
    /// // SAFETY: the block was just created and nobody else knows its name.
    /// unsafe { block.as_mut_slice() }.copy_from_slice(&[1, 2, 3]);
    /// let mut got = [0u8; 3];
    /// block.read(0, &mut got).unwrap();
    /// assert_eq!(got, [1, 2, 3]);
    /// # block.unlink().unwrap();
    /// ```
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        if self.map.len() == 0 {
            return &mut [];
        }
        // SAFETY: the mapping holds `len` writable bytes for as long as `self`; the caller
        // promises exclusive access for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.map.ptr(), self.map.len()) }
    }

    /// Unmaps the block in this process (the same as dropping the handle). Python's
    /// `close()`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::SharedMemory;
    /// let block = SharedMemory::create(None, 8).unwrap();
    /// let name = block.name().to_string();
    /// block.close();
    /// let again = SharedMemory::attach(&name).unwrap(); // still there: not unlinked
    /// again.unlink().unwrap();
    /// ```
    pub fn close(self) {}

    /// Removes the block's name: no process can attach any more, and the memory is freed
    /// once every process has closed it. Python's `unlink()`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{SharedMemory, SharedMemoryError};
    /// let block = SharedMemory::create(None, 8).unwrap();
    /// block.unlink().unwrap();
    /// assert!(matches!(block.unlink(), Err(SharedMemoryError::NotFound(_))));
    /// ```
    pub fn unlink(&self) -> Result<(), SharedMemoryError> {
        let (bare, posix) = posix_name(&self.name)?;
        shared::shm_unlink(&posix).map_err(|e| os_error("unlink", &bare, e))
    }
}
