//! The layer every backend whose workers are other processes stands on (the process pool,
//! the MPI pool, `multiprocessing::Process`): naming a function so that another process of
//! the same program can call it ([`naming`]), encoding values and completing futures from
//! bytes ([`codec`]), and the environment that marks a re-executed program as a worker or
//! child, and the parent's side of its start ([`bootstrap`]). It imports nothing from the
//! backends' own modules: the pre-main hook that hands a started process to its role is
//! above them all (`src/entry.rs`).

pub(crate) mod bootstrap;
pub(crate) mod codec;
pub(crate) mod naming;
mod probe;
pub(crate) mod recording;
pub(crate) mod scheduler;
pub(crate) mod shared_state;

pub(crate) use codec::{Completion, Slot};
pub(crate) use naming::FnRef;

/// A pool's initializer as its workers get it: the function (`naming::init_target_of` for a
/// `fn()`, `naming::target_of` for a `fn(A)`, whose outcome is a `Result<(), TaskError>`)
/// and its encoded argument (empty for a `fn()`).
#[derive(Debug, Clone)]
pub(crate) struct InitCall {
    pub(crate) target: FnRef,
    pub(crate) arg: Vec<u8>,
}

impl InitCall {
    /// A `fn()` initializer.
    pub(crate) fn plain(init: fn()) -> Result<InitCall, crate::SubmitError> {
        Ok(InitCall {
            target: naming::init_target_of(init)?,
            arg: Vec::new(),
        })
    }

    /// A `fn(A)` initializer and its argument, encoded once here for every worker. Refused
    /// as a task would be: shared state, a function outside the executable, an argument
    /// that does not encode (or whose `Serialize` panics).
    pub(crate) fn with<A: crate::Payload>(
        init: fn(A),
        arg: &A,
    ) -> Result<InitCall, crate::SubmitError> {
        use crate::SubmitError;
        shared_state::refuse_shared_state::<A, ()>()?;
        let target = naming::target_of(init)?;
        let arg = crate::unwind::catch(|| codec::encode(&codec::Wire(arg)))
            .map_err(|e| {
                SubmitError::Codec(format!("the argument's encoding panicked: {e}").into())
            })?
            .map_err(|e| SubmitError::Codec(e.to_string().into()))?;
        Ok(InitCall { target, arg })
    }
}

/// A map keyed by task id. Ids are numbered by the pool from 1, so a multiplicative hash
/// spreads them evenly; SipHash, the default, costs more than the rest of a lookup. An id
/// a worker sends that the pool never gave is looked up like any other (and not found):
/// the table's own keys are the pool's, so a hostile worker cannot crowd them.
pub(crate) type IdMap<V> =
    std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`]: the id times a 64-bit odd constant (Fibonacci hashing), whose
/// high bits, which the table uses first, depend on every bit of the id.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; any other input still hashes, byte by byte.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0 ^ id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::IdMap;

    #[test]
    fn an_id_map_finds_what_it_holds_and_nothing_else() {
        let mut m: IdMap<u64> = IdMap::default();
        for id in 1..=10_000u64 {
            m.insert(id, id * 2);
        }
        assert!((1..=10_000u64).all(|id| m.get(&id) == Some(&(id * 2))));
        assert!([0, 10_001, u64::MAX].iter().all(|id| !m.contains_key(id)));
        for id in (1..=10_000u64).step_by(2) {
            assert_eq!(m.remove(&id), Some(id * 2));
        }
        assert_eq!(m.len(), 5_000);
    }
}
