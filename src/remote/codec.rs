//! How values cross a process boundary: arguments and outcomes as bytes (postcard: a
//! compact, maintained serde format; chosen over bincode 2, unmaintained, and bitcode by
//! measuring both ways on the crate's payloads: small values and outcomes, vectors, byte
//! buffers), and the one way a
//! future is completed from bytes another process sent ([`Completion`], [`Slot`]), shared by
//! every transport (worker processes, MPI ranks).
//!
//! A `Vec<u8>` argument or result travels through [`Wire`] and [`FromWire`] as one block
//! of bytes: serde hands a `Vec<u8>` to a format one byte at a time (about a nanosecond a
//! byte on each side), while postcard writes a byte sequence and a byte string the same way
//! (the length, then the bytes), so the bytes on the wire do not change.
//!
//! Decoding never trusts its input: a malformed encoding is an error, trailing bytes are an
//! error, and a `Serialize` or `Deserialize` implementation that panics (on either side)
//! fails only the task whose value it was, with the panic's message.

use std::any::Any;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::TaskError;
use crate::future::Future;
use crate::trace::{Pool, TaskTrace};

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

/// Encodes `value`, which must encode to exactly `len` bytes, handing the bytes in order to
/// `write` (the offset, then the bytes): small pieces are gathered in a buffer of
/// `SINK_BUFFER` bytes, large ones (a byte buffer) are handed over where they lie, uncopied.
pub(crate) fn encode_to<T: Serialize + ?Sized>(
    value: &T,
    len: usize,
    write: &mut dyn FnMut(usize, &[u8]) -> std::io::Result<()>,
) -> Result<(), EncodeToError> {
    let mut failed = None;
    let sink = Sink {
        buf: Vec::with_capacity(SINK_BUFFER.min(len)),
        offset: 0,
        write,
        failed: &mut failed,
    };
    let encoded = postcard::serialize_with_flavor(value, sink);
    if let Some(e) = failed {
        return Err(EncodeToError::Write(e));
    }
    match encoded {
        Ok(written) if written == len => Ok(()),
        Ok(_) => Err(EncodeToError::Codec(CodecError(
            "the value encoded to another length than measured".into(),
        ))),
        Err(e) => Err(EncodeToError::Codec(encode_error(value, e))),
    }
}

/// Why [`encode_to`] failed: the value, or the writing of its bytes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeToError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("cannot write the encoded value: {0}")]
    Write(std::io::Error),
}

/// How many bytes [`encode_to`] gathers before it writes them.
const SINK_BUFFER: usize = 64 << 10;

/// A postcard flavor that writes through `write` (see [`encode_to`]).
struct Sink<'a> {
    buf: Vec<u8>,
    /// Where `buf` starts in the output.
    offset: usize,
    write: &'a mut dyn FnMut(usize, &[u8]) -> std::io::Result<()>,
    /// The first failed write (it stops the encoding: postcard is told its buffer is full).
    failed: &'a mut Option<std::io::Error>,
}

impl Sink<'_> {
    fn flush(&mut self) -> postcard::Result<()> {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            let wrote = (self.write)(self.offset, &buf);
            self.offset += buf.len();
            self.buf = buf;
            self.buf.clear();
            if let Err(e) = wrote {
                *self.failed = Some(e);
                return Err(postcard::Error::SerializeBufferFull);
            }
        }
        Ok(())
    }
}

impl postcard::ser_flavors::Flavor for Sink<'_> {
    type Output = usize;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.buf.len() == SINK_BUFFER {
            self.flush()?;
        }
        self.buf.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if data.len() >= SINK_BUFFER / 4 {
            self.flush()?;
            if let Err(e) = (self.write)(self.offset, data) {
                *self.failed = Some(e);
                return Err(postcard::Error::SerializeBufferFull);
            }
            self.offset += data.len();
        } else {
            if self.buf.len() + data.len() > SINK_BUFFER {
                self.flush()?;
            }
            self.buf.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<usize> {
        self.flush()?;
        Ok(self.offset)
    }
}

/// Encodes a value for the other process.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let len = encoded_len(value)?;
    // Room for the header a transport appends (an MPI message's), without a reallocation.
    let mut buf = Vec::with_capacity(len + HEADER_ROOM);
    buf.resize(len, 0);
    encode_into(value, &mut buf)?;
    Ok(buf)
}

/// Spare capacity of an encoding, for a transport's header (an MPI call's is 37 bytes).
const HEADER_ROOM: usize = 64;

/// Decodes a value from the other process; trailing bytes are an error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match postcard::take_from_bytes(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(CodecError(format!(
            "{} trailing bytes after the value",
            rest.len()
        ))),
        // A custom message of the value's `Deserialize`, which postcard drops: decoded
        // again (on this error path only) to find it.
        Err(e @ postcard::Error::SerdeDeCustom) => Err(CodecError(
            super::probe::decode_failure::<T>(bytes).unwrap_or_else(|| e.to_string()),
        )),
        Err(e) => Err(CodecError(e.to_string())),
    }
}

/// A task's argument or result as it is encoded: the value itself, or, for a `Vec<u8>`, its
/// bytes as one byte string (see the module's documentation).
pub(crate) struct Wire<'a, T>(pub(crate) &'a T);

impl<T: Serialize + 'static> Serialize for Wire<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.0 as &dyn Any).downcast_ref::<Vec<u8>>() {
            Some(bytes) => s.serialize_bytes(bytes),
            None => self.0.serialize(s),
        }
    }
}

/// A task's argument (or a chunk's arguments) as a pool sends it: with the encoding of the
/// task's captures first, when it has some (a byte string, decoded by [`decode_captured`]),
/// else exactly as [`Wire`] encodes it.
pub(crate) struct TaskArg<'a, T> {
    pub(crate) captures: Option<&'a [u8]>,
    pub(crate) value: &'a T,
}

impl<T: Serialize + 'static> Serialize for TaskArg<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.captures {
            None => Wire(self.value).serialize(s),
            Some(captures) => (serde_bytes::Bytes::new(captures), Wire(self.value)).serialize(s),
        }
    }
}

/// Decodes what a [`TaskArg`] with captures encoded: the captures `C` (as [`Wire`] encoded
/// them), then the argument `T`.
pub(crate) fn decode_captured<C: DeserializeOwned + 'static, T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(C, T), CodecError> {
    let (captures, rest) = postcard::take_from_bytes::<&[u8]>(bytes)
        .map_err(|e| CodecError(format!("the captures' bytes: {e}")))?;
    let FromWire(captures) = decode::<FromWire<C>>(captures)?;
    Ok((captures, decode::<T>(rest)?))
}

/// A task's argument or result as it is decoded: the counterpart of [`Wire`] (a `Vec<u8>` is
/// taken as one byte string, and a large one is copied into memory mapped in one call).
pub(crate) struct FromWire<T>(pub(crate) T);

impl<'de, T: DeserializeOwned + 'static> Deserialize<'de> for FromWire<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut value: Option<T> = None;
        if let Some(bytes) = (&mut value as &mut dyn Any).downcast_mut::<Option<Vec<u8>>>() {
            *bytes = Some(crate::Bytes::deserialize(d)?.into_vec());
            // `value` is the `Option<Vec<u8>>` just filled.
            return value
                .map(FromWire)
                .ok_or_else(|| serde::de::Error::custom("a byte buffer was lost in decoding"));
        }
        T::deserialize(d).map(FromWire)
    }
}

/// Encodes the outcome of a task. If the value cannot be encoded, the task fails with
/// `TaskError::Codec` instead; if its `Serialize` panics, with that panic (message and
/// location), as if the task itself had panicked. That outcome always encodes.
pub(crate) fn encode_outcome<R: Serialize + 'static>(outcome: &Result<R, TaskError>) -> Vec<u8> {
    let failed = match crate::unwind::catch(|| encode(&outcome.as_ref().map(Wire))) {
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
pub(crate) fn decode_outcome<R: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<R, TaskError> {
    DECODING_LEN.set(bytes.len());
    let decoded = crate::unwind::catch(|| decode::<Result<FromWire<R>, TaskError>>(bytes));
    DECODING_LEN.set(0);
    match decoded {
        Ok(Ok(outcome)) => outcome.map(|v| v.0),
        Ok(Err(e)) => Err(TaskError::Codec(
            format!("the task's result could not be decoded: {e}").into(),
        )),
        Err(panicked) => Err(panicked),
    }
}

thread_local! {
    /// The length of the outcome `decode_outcome` is decoding on this thread (0 outside).
    static DECODING_LEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The length of the encoded outcome being decoded on this thread, for a value that wants
/// to know what it cost on the wire (`Chunk::bytes`, read by `map`'s byte bound); 0 when
/// nothing is being decoded.
pub(crate) fn decoding_len() -> usize {
    DECODING_LEN.get()
}

/// A task's future, seen without its result type: claim it, cancel it, or complete it from
/// the bytes a worker sent. Every remote transport completes futures through it.
pub(crate) trait Completion: Send {
    /// PENDING → RUNNING; false if it was cancelled (it must not be sent).
    fn claim(&self) -> bool;
    fn cancel(self: Box<Self>);
    /// Completes the future and runs its callbacks here (the MPI pool; the process pool
    /// defers them). Says how the task ended, for the pool's statistics.
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    fn complete(self: Box<Self>, outcome: Result<&[u8], TaskError>) -> crate::stats::Outcome;
    /// Completes the future but leaves its callbacks, if it has any, to the caller, to be
    /// run on a thread that does not move the pool's work (a callback may wait on it).
    /// Says how the task ended, for the pool's statistics: the decoded value decides (a
    /// task's panic arrives as bytes).
    fn settle_deferring(
        self: Box<Self>,
        outcome: Result<&[u8], TaskError>,
    ) -> (Option<crate::future::Deferred>, crate::stats::Outcome);
    /// The task's span (feature `tracing`).
    fn trace(&self) -> &TaskTrace;
}

/// The `Completion` of a `Future<T>` whose worker sends an encoded `Result<T, TaskError>`.
pub(crate) struct Slot<T>(pub(crate) Future<T>, pub(crate) TaskTrace);

impl<T> Slot<T> {
    /// The completion of `fut`, a task of a `pool` (its span opens).
    pub(crate) fn new(fut: Future<T>, pool: Pool) -> Self {
        Slot(fut, TaskTrace::submitted(pool))
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Completion for Slot<T> {
    fn claim(&self) -> bool {
        self.0.core().claim()
    }
    fn cancel(self: Box<Self>) {
        if self.0.cancel() {
            self.1.cancelled();
        }
    }
    fn complete(self: Box<Self>, outcome: Result<&[u8], TaskError>) -> crate::stats::Outcome {
        let value = outcome.and_then(decode_outcome::<T>);
        let ended = ended(&value);
        self.1.finished(&value);
        self.0.finish_claimed(value);
        ended
    }
    fn settle_deferring(
        self: Box<Self>,
        outcome: Result<&[u8], TaskError>,
    ) -> (Option<crate::future::Deferred>, crate::stats::Outcome) {
        let value = outcome.and_then(decode_outcome::<T>);
        let ended = ended(&value);
        self.1.finished(&value);
        (self.0.finish_claimed_deferring(value), ended)
    }
    fn trace(&self) -> &TaskTrace {
        &self.1
    }
}

/// How a task with this value ended, for the statistics.
fn ended<T>(value: &Result<T, TaskError>) -> crate::stats::Outcome {
    match value {
        Ok(_) => crate::stats::Outcome::Ok,
        Err(TaskError::Cancelled) => crate::stats::Outcome::Cancelled,
        Err(_) => crate::stats::Outcome::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// What `encode_to` writes, gathered at the offsets it names.
    fn encoded_through_sink<T: Serialize>(value: &T) -> Result<(Vec<u8>, usize), EncodeToError> {
        let len = encoded_len(value)?;
        let mut out = vec![0xEEu8; len];
        let mut writes = 0;
        encode_to(value, len, &mut |offset, bytes| {
            out[offset..offset + bytes.len()].copy_from_slice(bytes);
            writes += 1;
            Ok(())
        })?;
        Ok((out, writes))
    }

    #[test]
    fn encode_to_writes_what_encode_makes_in_few_pieces() {
        // Small fields gathered, a large byte buffer handed over whole, small fields after.
        let value = (
            7u32,
            "name".to_string(),
            crate::Bytes::from(vec![3u8; 300 << 10]),
            vec![1u64, 2, 3],
            (0..100_000u32).collect::<Vec<_>>(),
        );
        let (through, writes) = encoded_through_sink(&value).unwrap();
        assert_eq!(through, encode(&value).unwrap());
        assert!(writes <= 10, "{writes} writes");
        let back: (u32, String, crate::Bytes, Vec<u64>, Vec<u32>) = decode(&through).unwrap();
        assert_eq!(back.2.len(), 300 << 10);
        assert_eq!(back.4[99_999], 99_999);
    }

    #[test]
    fn encode_to_reports_a_failed_write_and_a_wrong_length() {
        let value = crate::Bytes::from(vec![1u8; 100 << 10]);
        let len = encoded_len(&value).unwrap();
        let failed = encode_to(&value, len, &mut |_, _| {
            Err(std::io::Error::other("disk full"))
        });
        match failed {
            Err(EncodeToError::Write(e)) => assert_eq!(e.to_string(), "disk full"),
            other => panic!("expected the write's error, got {other:?}"),
        }
        // A failure in a small piece, written when the buffer is flushed at the end.
        let small = (1u32, "x".to_string());
        let small_len = encoded_len(&small).unwrap();
        let failed = encode_to(&small, small_len, &mut |_, _| {
            Err(std::io::Error::other("no space"))
        });
        assert!(matches!(failed, Err(EncodeToError::Write(e)) if e.to_string() == "no space"));
        let short = encode_to(&value, len - 1, &mut |_, _| Ok(()));
        match short {
            Err(EncodeToError::Codec(e)) => assert!(e.0.contains("another length")),
            other => panic!("expected a length error, got {other:?}"),
        }
    }

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
    fn a_byte_vector_travels_as_bytes_with_the_same_encoding() {
        // (Under Miri, which interprets every byte, a smaller large one.)
        let large = if cfg!(miri) { 4096 + 5 } else { (2 << 20) + 5 };
        for len in [0usize, 3, 200, large] {
            let v: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let plain = encode(&v).unwrap();
            assert_eq!(encode(&Wire(&v)).unwrap(), plain, "{len} bytes");
            assert_eq!(encoded_len(&Wire(&v)).unwrap(), plain.len());
            let FromWire(back) = decode::<FromWire<Vec<u8>>>(&plain).unwrap();
            assert_eq!(back, v);
            // Outcomes, both ways, the failure too.
            let sent = encode_outcome(&Ok::<_, TaskError>(v.clone()));
            assert_eq!(sent, encode(&Ok::<_, TaskError>(v.clone())).unwrap());
            assert_eq!(decode_outcome::<Vec<u8>>(&sent), Ok(v));
        }
        let failed = encode_outcome(&Err::<Vec<u8>, _>(TaskError::Cancelled));
        assert_eq!(
            decode_outcome::<Vec<u8>>(&failed),
            Err(TaskError::Cancelled)
        );
        // Other types keep their own encoding.
        let other = (vec![1u16, 300], "x".to_string(), vec![vec![7u8; 3]]);
        assert_eq!(encode(&Wire(&other)).unwrap(), encode(&other).unwrap());
        let FromWire(back) =
            decode::<FromWire<(Vec<u16>, String, Vec<Vec<u8>>)>>(&encode(&other).unwrap()).unwrap();
        assert_eq!(back, other);
    }

    #[test]
    fn a_truncated_byte_vector_is_an_error() {
        let v = vec![9u8; if cfg!(miri) { 5000 } else { (1 << 20) + 1 }];
        let bytes = encode(&Wire(&v)).unwrap();
        assert!(decode::<FromWire<Vec<u8>>>(&bytes[..bytes.len() - 1]).is_err());
        assert!(matches!(
            decode_outcome::<Vec<u8>>(&encode_outcome(&Ok::<_, TaskError>(v))[..100]),
            Err(TaskError::Codec(_))
        ));
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
