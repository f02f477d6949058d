//! [`Bytes`]: a byte buffer that crosses process boundaries as one block.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `Vec<u8>` that serde encodes as one block of bytes.
///
/// serde encodes a plain `Vec<u8>` element by element, which costs a few nanoseconds per
/// byte; `Bytes` is copied as a whole (like `serde_bytes::ByteBuf`). Use it for large
/// arguments and results of process-pool tasks: a 64 MiB `Bytes` argument moves at
/// gigabytes per second.
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
        serde_bytes::deserialize(d).map(Bytes)
    }
}
