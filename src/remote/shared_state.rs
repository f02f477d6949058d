//! Shared state never crosses to another process silently: a task's argument or result, or
//! an initializer's argument, whose type names `Arc`, `Rc`, a cell, a lock or an atomic is
//! refused by the process and MPI pools with [`SubmitError::SharedState`].
//!
//! Such a value is a `Payload` as soon as serde can encode it: `Mutex`, `RwLock`, `Cell`,
//! `RefCell` and the atomics always, `Arc` and `Rc` once any crate of the program turns on
//! serde's `rc` feature. Encoded, it reaches the worker as a copy, and whatever the task
//! does to it is lost. Refusing it at compile time would take negative reasoning over every
//! field of every type (an auto trait), which stable Rust does not offer; serde's impls
//! forward to the inner value and leave no trace in the encoding either. What remains is
//! the type's name: [`std::any::type_name`] spells out the type and all its generic
//! arguments (tuples, `Vec`, `Option`, `HashMap`, generic structs), though not the fields of
//! a struct of your own.
//!
//! The verdict for a pair of types is computed once and cached in a small table of atomic
//! words, keyed by the pair's `TypeId` (a generic function's `static` is one for all its
//! instances, so a per-type `static` is not possible); a submission then pays one relaxed
//! load. Only clean verdicts are cached: a refusal is computed again each time.

use std::any::{TypeId, type_name};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::SubmitError;

/// Path prefixes (as `type_name` spells them) of the types that hold shared state.
const SHARED: [&str; 7] = [
    "alloc::sync::",        // Arc, Weak
    "alloc::rc::",          // Rc, Weak
    "core::cell::",         // Cell, RefCell, OnceCell, UnsafeCell, LazyCell
    "core::sync::atomic::", // AtomicU64, AtomicBool, ...
    "std::sync::",          // Mutex, RwLock, OnceLock, LazyLock, Condvar, Barrier
    "lock_api::",           // parking_lot's Mutex and RwLock (serde feature)
    "parking_lot::",
];

/// The outermost shared-state type `name` mentions (the first in the name), as a short
/// name (`"Arc"`, `"Mutex"`).
fn shared_in(name: &str) -> Option<&str> {
    let at = SHARED
        .iter()
        .filter_map(|prefix| {
            name.match_indices(prefix)
                // A path segment starts here (not in the middle of `my_alloc::sync::`).
                .find(|(i, _)| {
                    *i == 0 || !name[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                })
                .map(|(i, p)| (i, p.len()))
        })
        .min()?;
    let rest = &name[at.0 + at.1..];
    // The type's own name: the last segment of its path.
    let end = rest
        .find(['<', ',', '>', ')', ';', ']', ' '])
        .unwrap_or(rest.len());
    rest[..end].rsplit("::").next()
}

/// Slots of the verdict cache (a power of two). A collision only costs a recomputation.
const SLOTS: usize = 64;
static CLEAN: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

/// Reads the 64 bits `TypeId` hashes.
#[derive(Default)]
struct Capture(u64);

impl Hasher for Capture {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(29) ^ n;
    }
}

/// The cache key of `T` (never 0, the empty slot).
fn key_of<T: 'static>() -> u64 {
    let mut h = Capture::default();
    TypeId::of::<T>().hash(&mut h);
    h.finish() | 1
}

/// Refuses a task (or an initializer) whose argument type `A` or result type `R` holds
/// shared state (see the module docs); `R = ()` for an initializer.
pub(crate) fn refuse_shared_state<A: 'static, R: 'static>() -> Result<(), SubmitError> {
    let key = key_of::<(A, R)>();
    let slot = &CLEAN[(key >> 1) as usize % SLOTS];
    if slot.load(Ordering::Relaxed) == key {
        return Ok(());
    }
    for name in [type_name::<A>(), type_name::<R>()] {
        if let Some(shared) = shared_in(name) {
            return Err(SubmitError::SharedState {
                type_name: Arc::from(name),
                shared: Arc::from(shared),
            });
        }
    }
    slot.store(key, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;
    use std::sync::{Mutex, RwLock};

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Wrapper<T>(T);

    fn refused<A: 'static>() -> Option<String> {
        match refuse_shared_state::<A, ()>() {
            Ok(()) => None,
            Err(SubmitError::SharedState { shared, .. }) => Some(shared.to_string()),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn shared_state_is_found_anywhere_in_the_type() {
        assert_eq!(refused::<Arc<Mutex<u64>>>().as_deref(), Some("Arc"));
        assert_eq!(refused::<Mutex<u64>>().as_deref(), Some("Mutex"));
        assert_eq!(refused::<RwLock<Vec<u8>>>().as_deref(), Some("RwLock"));
        assert_eq!(refused::<AtomicU64>().as_deref(), Some("AtomicU64"));
        assert_eq!(refused::<(u8, Arc<str>)>().as_deref(), Some("Arc"));
        assert_eq!(
            refused::<Vec<Option<std::rc::Rc<u8>>>>().as_deref(),
            Some("Rc")
        );
        assert_eq!(refused::<Wrapper<Cell<u8>>>().as_deref(), Some("Cell"));
        assert_eq!(
            refused::<Wrapper<Mutex<Cell<u8>>>>().as_deref(),
            Some("Mutex")
        );
        assert_eq!(
            refused::<HashMap<String, RefCell<u8>>>().as_deref(),
            Some("RefCell")
        );
        assert_eq!(refused::<[Mutex<u8>; 2]>().as_deref(), Some("Mutex"));
    }

    #[test]
    fn plain_values_pass_and_stay_cached() {
        for _ in 0..3 {
            assert_eq!(refused::<(u64, String, Vec<u8>)>(), None);
            assert_eq!(refused::<Wrapper<HashMap<String, Vec<f64>>>>(), None);
            assert_eq!(refused::<Option<Box<[u8]>>>(), None);
        }
        // Look-alike names of other crates are not std's.
        assert_eq!(shared_in("my_alloc::sync::Thing"), None);
        assert_eq!(shared_in("mycrate::cell::Cell<u8>"), None);
        assert_eq!(shared_in("alloc::sync::Arc<u8>"), Some("Arc"));
        // The result type is checked too.
        assert!(refuse_shared_state::<u8, Arc<Mutex<u8>>>().is_err());
        // A refusal is not cached as clean.
        assert!(refuse_shared_state::<u8, Arc<Mutex<u8>>>().is_err());
    }
}
