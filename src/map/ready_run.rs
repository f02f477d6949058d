//! [`ReadyRun`]: results written in place, lent to the consumer who moves them out in order.

/// Results that an [`OrderedMap`](crate::OrderedMap) wrote in place and lends to its
/// consumer, who moves them out in order without a call per result.
///
/// ```
/// use concurrent_futures::ReadyRun;
/// let mut run = ReadyRun::<u8>::empty();
/// assert_eq!(run.next(), None);
/// ```
#[doc(hidden)]
pub struct ReadyRun<R> {
    /// `left` results from `ptr` on, not moved out yet.
    ptr: *mut R,
    left: usize,
}

// SAFETY: a run is the right to move `R: Send` values out of memory its map keeps alive
// (`ReadyRun::new`); moving the run moves that right.
unsafe impl<R: Send> Send for ReadyRun<R> {}
// SAFETY: `&ReadyRun` never dereferences `ptr`.
unsafe impl<R: Send> Sync for ReadyRun<R> {}

impl<R> ReadyRun<R> {
    /// No results.
    pub const fn empty() -> Self {
        ReadyRun {
            ptr: std::ptr::null_mut(),
            left: 0,
        }
    }

    /// A run of the `left` results from `ptr` on.
    ///
    /// # Safety
    ///
    /// They are initialized, no one else moves them out or frees them, and their memory
    /// stays alive and untouched by the lender whenever the run is read, until it comes back
    /// to the lender (a run an [`OrderedMap`](crate::OrderedMap) lends: at the map's next
    /// call with this run, or its `stop`).
    pub unsafe fn new(ptr: *mut R, left: usize) -> Self {
        ReadyRun { ptr, left }
    }

    /// Results left.
    pub fn len(&self) -> usize {
        self.left
    }

    /// Whether no result is left.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    /// Gives back what is left (`ptr`, `left`); the run is empty after.
    pub fn take_back(&mut self) -> (*mut R, usize) {
        std::mem::replace(self, ReadyRun::empty()).into_raw()
    }

    fn into_raw(self) -> (*mut R, usize) {
        (self.ptr, self.left)
    }
}

/// Moves the results out, in order.
impl<R> Iterator for ReadyRun<R> {
    type Item = R;

    #[inline]
    fn next(&mut self) -> Option<R> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // SAFETY: `left > 0`: `ptr` points at an initialized result that is moved out only
        // here, once, as `ptr` moves past it; its memory is alive (the contract of `new`).
        let v = unsafe { self.ptr.read() };
        self.ptr = self.ptr.wrapping_add(1);
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}
