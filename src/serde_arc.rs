//! serde for the crate's own `Arc` fields, by value.
//!
//! serde's `rc` feature is off on purpose: with it, any `Arc` would be a `Payload`, and an
//! `Arc<Mutex<_>>` given to a task would be copied into each worker process without a word.
//! The crate's types that hold an `Arc` and cross on purpose (error messages, the handles of
//! shared-memory primitives, which cross as a file descriptor) say so field by field with
//! `#[serde(with = ...)]`.

/// `Arc<T>` as a `T`: encoded as the value, decoded into a new `Arc`.
#[cfg(target_os = "linux")] // (for the shared-memory primitives of `multiprocessing`)
pub(crate) mod by_value {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<T: Serialize, S: Serializer>(
        v: &Arc<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        T::serialize(v, s)
    }

    pub(crate) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(d).map(Arc::new)
    }
}

/// `Arc<str>` as a string.
pub(crate) mod arc_str {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(d).map(Arc::from)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::sync::Arc;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Both {
        #[serde(with = "arc_str")]
        text: Arc<str>,
        #[serde(with = "by_value")]
        value: Arc<Vec<u8>>,
    }

    #[test]
    fn arcs_cross_by_value() {
        let v = Both {
            text: Arc::from("message"),
            value: Arc::new(vec![1, 2, 3]),
        };
        let bytes = postcard::to_stdvec(&v).unwrap();
        let back: Both = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, v);
    }
}
