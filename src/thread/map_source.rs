//! [`Source`]: where a thread-pool map block's items come from; [`VecSource`], a vector's
//! items moved out by position.

use std::cell::UnsafeCell;
use std::mem::{ManuallyDrop, MaybeUninit};

/// Where a block's items come from: a position-addressed store whose items are taken out
/// once each, by any thread.
pub(crate) trait Source {
    /// The items.
    type Item;
    /// Number of items.
    fn len(&self) -> usize;
    /// Takes item `i` out.
    ///
    /// # Safety
    ///
    /// `i < len()`, and each `i` is taken at most once, by one thread.
    unsafe fn take(&self, i: usize) -> Self::Item;
    /// Drops item `i`, which was never taken.
    ///
    /// # Safety
    ///
    /// `i < len()` and item `i` was not taken.
    unsafe fn drop_untaken(&mut self, i: usize);
}

/// A vector's items, moved out by position.
pub(crate) struct VecSource<A> {
    slots: Vec<UnsafeCell<MaybeUninit<A>>>,
}

// SAFETY: `take` hands each slot to one thread once (its contract), so sharing the source
// only moves items between threads: `A: Send` suffices.
unsafe impl<A: Send> Sync for VecSource<A> {}

impl<A> VecSource<A> {
    pub(crate) fn new(items: Vec<A>) -> Self {
        VecSource {
            slots: cast_vec(items),
        }
    }

    /// The emptied allocation, for reuse.
    pub(super) fn into_empty_vec(mut self) -> Vec<A> {
        // SAFETY: the slots are `MaybeUninit`: shrinking the length only forgets them (the
        // owner dropped or took every item before).
        unsafe { self.slots.set_len(0) };
        cast_vec(self.slots)
    }
}

impl<A> Source for VecSource<A> {
    type Item = A;

    fn len(&self) -> usize {
        self.slots.len()
    }

    unsafe fn take(&self, i: usize) -> A {
        // SAFETY: `i` is in bounds and taken once (the caller's contract), so the slot is
        // initialised and no other thread touches it.
        unsafe { (*self.slots[i].get()).assume_init_read() }
    }

    unsafe fn drop_untaken(&mut self, i: usize) {
        // SAFETY: `i` is in bounds and was not taken (the caller's contract): initialised.
        unsafe { self.slots[i].get_mut().assume_init_drop() }
    }
}

/// Reinterprets an empty or `MaybeUninit`-compatible vector as one of a layout-identical
/// element type: `A` and `UnsafeCell<MaybeUninit<A>>` (both wrappers are
/// `repr(transparent)`). Only used between those pairs.
pub(super) fn cast_vec<T, U>(v: Vec<T>) -> Vec<U> {
    debug_assert!(
        std::mem::size_of::<T>() == std::mem::size_of::<U>()
            && std::mem::align_of::<T>() == std::mem::align_of::<U>()
    );
    let mut v = ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    // SAFETY: same size and alignment (the pairs below are layout-identical), so the allocation is valid for `cap`
    // elements of `U`. The callers cast between `X` and `UnsafeCell<MaybeUninit<X>>`, or
    // `MaybeUninit<X>` and `UnsafeCell<MaybeUninit<X>>` (same layout, `repr(transparent)`);
    // the `len` elements stay as initialised as they were: a cast to `Vec<A>` is only done
    // on vectors of length 0 (`recycle`), a cast to the `MaybeUninit` forms needs nothing.
    // `v` is never used again.
    unsafe { Vec::from_raw_parts(ptr.cast::<U>(), len, cap) }
}
