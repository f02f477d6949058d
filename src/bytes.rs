//! [`Bytes`]: a byte buffer that crosses process boundaries as one block.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `Vec<u8>` that serde encodes as one block of bytes.
///
/// serde encodes a `Vec<u8>` element by element, which costs about a nanosecond per byte on
/// each side; `Bytes` is copied as a whole (like `serde_bytes::ByteBuf`). A task's argument
/// or result that *is* a `Vec<u8>` already travels as one block (the pools send it as
/// `Bytes`); use `Bytes` for large byte buffers inside your own types (a field, a tuple, a
/// list of buffers). A 64 MiB buffer moves between processes at gigabytes per second.
///
/// # Examples
///
/// ```
/// use concurrent_futures::{Bytes, Executor, ProcessPoolExecutor};
///
/// fn checksum(data: Bytes) -> u64 {
///     data.iter().map(|&b| b as u64).sum()
/// }
///
/// let pool = ProcessPoolExecutor::new(1);
/// let data = Bytes::from(vec![1u8; 1 << 20]);
/// assert_eq!(pool.submit(checksum, data).result(), Ok(1 << 20));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// The bytes, as a `Vec<u8>`.
    ///
    /// ```
    /// let v: Vec<u8> = concurrent_futures::Bytes::from(vec![1, 2]).into_vec();
    /// assert_eq!(v, [1, 2]);
    /// ```
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Self {
        b.0
    }
}

impl Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

/// Takes bytes as the format has them: a buffer it owns is taken whole, a borrowed slice is
/// copied (a large one into memory mapped in one go, see `copy`).
struct BytesVisitor;

impl<'de> serde::de::Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte buffer")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(copy(v)))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(v))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        // Formats that write bytes as a sequence of numbers.
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element()? {
            v.push(b);
        }
        Ok(Bytes(v))
    }
}

/// A copy of `v`; from 1 MiB up (on Linux), into memory the kernel maps in one call instead
/// of a page fault for each 4 KiB while copying.
fn copy(v: &[u8]) -> Vec<u8> {
    #[cfg(target_os = "linux")]
    if v.len() >= 1 << 20 {
        return crate::os::copy_large(v);
    }
    v.to_vec()
}

#[cfg(test)]
mod tests {
    use super::Bytes;

    #[test]
    fn bytes_round_trip_small_and_large_and_from_a_sequence() {
        // (Under Miri, which interprets every byte, small sizes only.)
        let sizes: &[usize] = if cfg!(miri) {
            &[0, 5, 4099]
        } else {
            &[0, 5, 1 << 20, (3 << 20) + 17]
        };
        for &len in sizes {
            let b = Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>());
            let enc = postcard::to_allocvec(&b).unwrap();
            let back: Bytes = postcard::from_bytes(&enc).unwrap();
            assert_eq!(back, b, "{len} bytes");
        }
        // A format that writes bytes as a list of numbers.
        let back: Bytes = serde_json::from_str("[1,2,255]").unwrap();
        assert_eq!(back.into_vec(), vec![1, 2, 255]);
    }
}
