//! How values cross a process boundary: arguments and outcomes as bytes (postcard: a
//! compact, maintained serde format; chosen over bincode 2, unmaintained, and bitcode by
//! measuring both ways on the crate's payloads: small values and outcomes, vectors, byte
//! buffers), and the one way a
//! future is completed from bytes another process sent ([`Completion`], [`Slot`]), shared by
//! every transport (worker processes, MPI ranks).
//!
//! Decoding never trusts its input: a malformed encoding is an error, trailing bytes are an
//! error, and a `Serialize` or `Deserialize` implementation that panics (on either side)
//! fails only the task whose value it was, with the panic's message.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::TaskError;
use crate::future::Future;

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct CodecError(String);

/// Why `value` failed to encode with `error`: the message of its `Serialize` if it gave one.
fn encode_error<T: Serialize + ?Sized>(value: &T, error: postcard::Error) -> CodecError {
    match error {
        postcard::Error::SerdeSerCustom => {
            CodecError(super::probe::failure(value).unwrap_or_else(|| error.to_string()))
        }
        other => CodecError(other.to_string()),
    }
}

/// The length `value` encodes to.
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, CodecError> {
    postcard::experimental::serialized_size(value).map_err(|e| encode_error(value, e))
}

/// Encodes `value` into `buf`, which must be exactly [`encoded_len`] long.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut [u8],
) -> Result<(), CodecError> {
    let len = buf.len();
    match postcard::to_slice(value, buf) {
        Ok(written) if written.len() == len => Ok(()),
        Ok(_) => Err(CodecError(
            "the value encoded to another length than measured".into(),
        )),
        Err(e) => Err(encode_error(value, e)),
    }
}

/// Encodes a value for the other process.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = vec![0; encoded_len(value)?];
    encode_into(value, &mut buf)?;
    Ok(buf)
}

/// Decodes a value from the other process; trailing bytes are an error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match postcard::take_from_bytes(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(CodecError(format!(
            "{} trailing bytes after the value",
            rest.len()
        ))),
        Err(e) => Err(CodecError(e.to_string())),
    }
}

/// Encodes the outcome of a task. If the value cannot be encoded, the task fails with
/// `TaskError::Codec` instead; if its `Serialize` panics, with that panic (message and
/// location), as if the task itself had panicked. That outcome always encodes.
pub(crate) fn encode_outcome<R: Serialize>(outcome: &Result<R, TaskError>) -> Vec<u8> {
    let failed = match crate::unwind::catch(|| encode(outcome)) {
        Ok(Ok(bytes)) => return bytes,
        Ok(Err(e)) => {
            TaskError::Codec(format!("the task's result could not be encoded: {e}").into())
        }
        Err(panicked) => panicked,
    };
    encode(&Err::<(), _>(failed)).unwrap_or_default()
}

/// Decodes the outcome of a task; a malformed encoding, or a `Deserialize` that panics,
/// fails the task (never the thread that decodes).
pub(crate) fn decode_outcome<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, TaskError> {
    match crate::unwind::catch(|| decode::<Result<R, TaskError>>(bytes)) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Err(TaskError::Codec(
            format!("the task's result could not be decoded: {e}").into(),
        )),
        Err(panicked) => Err(panicked),
    }
}

/// A task's future, seen without its result type: claim it, cancel it, or complete it from
/// the bytes a worker sent. Every remote transport completes futures through it.
pub(crate) trait Completion: Send {
    /// PENDING → RUNNING; false if it was cancelled (it must not be sent).
    fn claim(&self) -> bool;
    fn cancel(self: Box<Self>);
    fn complete(self: Box<Self>, outcome: Result<&[u8], TaskError>);
}

/// The `Completion` of a `Future<T>` whose worker sends an encoded `Result<T, TaskError>`.
pub(crate) struct Slot<T>(pub(crate) Future<T>);

impl<T: DeserializeOwned + Send + Sync + 'static> Completion for Slot<T> {
    fn claim(&self) -> bool {
        self.0.core().claim()
    }
    fn cancel(self: Box<Self>) {
        self.0.cancel();
    }
    fn complete(self: Box<Self>, outcome: Result<&[u8], TaskError>) {
        let value = outcome.and_then(decode_outcome::<T>);
        self.0.finish_claimed(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Debug)]
    struct Bomb;
    impl Serialize for Bomb {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            panic!("cannot serialize a bomb")
        }
    }
    impl<'de> Deserialize<'de> for Bomb {
        fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            panic!("cannot deserialize a bomb")
        }
    }

    #[test]
    fn a_panicking_serialize_fails_the_task_with_its_message() {
        crate::unwind::install_hook();
        let bytes = encode_outcome(&Ok::<_, TaskError>(Bomb));
        let err = decode_outcome::<()>(&bytes).unwrap_err();
        assert_eq!(err.panic().unwrap().message(), "cannot serialize a bomb");
    }

    #[test]
    fn a_panicking_deserialize_fails_the_task_with_its_message() {
        crate::unwind::install_hook();
        let bytes = encode_outcome(&Ok::<_, TaskError>(()));
        let err = decode_outcome::<Bomb>(&bytes).unwrap_err();
        assert_eq!(err.panic().unwrap().message(), "cannot deserialize a bomb");
    }

    #[test]
    fn malformed_and_trailing_bytes_are_errors() {
        assert!(matches!(
            decode_outcome::<u64>(&[0xff; 3]),
            Err(TaskError::Codec(_))
        ));
        let mut bytes = encode(&5u32).unwrap();
        bytes.push(0);
        assert!(decode::<u32>(&bytes).is_err());
        // A length prefix claiming far more than there is allocates nothing.
        let huge = encode(&(u64::MAX / 2)).unwrap();
        assert!(decode::<Vec<u8>>(&huge).is_err());
    }
}
