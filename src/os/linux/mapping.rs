//! [`Mapping`]: a shared mapping of a [`Memfd`](super::Memfd).

/// A shared mapping of a [`Memfd`](super::Memfd), unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    pub(super) ptr: *mut u8,
    pub(super) len: usize,
}

// SAFETY: a mapping is plain memory owned by this handle; moving the handle to another
// thread moves that ownership.
unsafe impl Send for Mapping {}
// SAFETY: shared references only give `&[u8]` (see `bytes`), and writes need `&mut self`.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The start of the mapping, for code that shares it with other processes through
    /// atomics (`multiprocessing::SharedMemory`): every access through it is that code's
    /// own `unsafe`.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The mapped bytes.
    ///
    /// The file's other users must not write to it while the slice lives: the crate maps
    /// for reading only files that their writer has finished with (a payload the parent
    /// sent, which it does not touch until the task is over).
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is a live mapping owned by `self` (sealed against
        // shrinking, so every page stays backed); see the contract above for writers.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The mapped bytes, writable. Same contract as [`Mapping::bytes`]: nobody else reads or
    /// writes them meanwhile, or (for the result log) nobody reads them until this process
    /// is dead.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` makes this the only borrow in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Stores `value` at `offset` (a multiple of 8) with release ordering: bytes written
    /// through [`Mapping::bytes_mut`] before it are in the file before it is.
    pub(crate) fn store_u64(&self, offset: usize, value: u64) {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.len,
            "[internal] bad offset"
        );
        // SAFETY: the mapping is page-aligned, so `ptr + offset` is 8-byte aligned, and in
        // bounds (checked above); atomics are the right way to share a word with another
        // process that reads the same memory.
        let word = unsafe { std::sync::atomic::AtomicU64::from_ptr(self.ptr.add(offset).cast()) };
        word.store(value, std::sync::atomic::Ordering::Release);
    }

    /// Loads the word at `offset` (a multiple of 8) with acquire ordering: what its writer
    /// stored before a release store of it is visible after (see [`Mapping::store_u64`]).
    pub(crate) fn load_u64(&self, offset: usize) -> u64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= self.len,
            "[internal] bad offset"
        );
        // SAFETY: as in `store_u64`: aligned, in bounds, and an atomic is the way to read a
        // word another process may be writing.
        let word = unsafe { std::sync::atomic::AtomicU64::from_ptr(self.ptr.add(offset).cast()) };
        word.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Maps in all pages, writable, in one call (Linux 5.14+; a no-op elsewhere), instead of
    /// one fault per page while they are first written.
    pub(crate) fn prefault_write(&mut self) {
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        if self.len > 0 {
            // SAFETY: as in `prefault`; the mapping is writable (it was made by
            // `Memfd::map(true)`, or the call fails with an error, which is ignored).
            unsafe {
                libc::madvise(self.ptr.cast(), self.len, MADV_POPULATE_WRITE);
            }
        }
    }

    /// Maps in all pages in one call (Linux 5.14+; a no-op elsewhere), instead of one
    /// fault per page while they are read.
    pub(crate) fn prefault(&self) {
        const MADV_POPULATE_READ: libc::c_int = 22;
        if self.len > 0 {
            // SAFETY: `madvise` only changes how the kernel backs this live mapping; an
            // unsupported advice returns an error, which is ignored.
            unsafe {
                libc::madvise(self.ptr.cast(), self.len, MADV_POPULATE_READ);
            }
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: `ptr..ptr+len` is a mapping this handle made and nobody borrows any
            // more (borrows are tied to `&self`).
            unsafe {
                libc::munmap(self.ptr.cast(), self.len);
            }
        }
    }
}
