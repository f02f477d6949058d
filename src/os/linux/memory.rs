//! Large allocations: kept in the heap of a worker, and copied with their pages mapped in
//! one call.

/// Keeps large allocations of this (worker) process in its heap, so that a buffer freed by
/// one task is reused by the next instead of being unmapped and faulted in again.
pub(crate) fn keep_large_allocations() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `mallopt` only tunes glibc's allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// A copy of `src` in a new `Vec`, its pages mapped in one call before the copy rather than
/// by a fault per 4 KiB page while copying (for large buffers).
pub(crate) fn copy_large(src: &[u8]) -> Vec<u8> {
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    const PAGE: usize = 4096;
    let mut out = Vec::<u8>::with_capacity(src.len());
    let start = out.as_mut_ptr() as usize;
    let first = start.next_multiple_of(PAGE);
    let end = (start + src.len()) & !(PAGE - 1);
    // (Miri runs no `madvise`; the copy below is the same without it.)
    if end > first && !cfg!(miri) {
        // SAFETY: `[first, end)` is page-aligned and lies inside the allocation `out` owns
        // (its capacity is `src.len()` bytes from `start`); `madvise` only makes the kernel
        // back those pages now, never changes what they hold, and an error (a kernel without
        // this advice) is ignored.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, MADV_POPULATE_WRITE);
        }
    }
    out.extend_from_slice(src);
    out
}
