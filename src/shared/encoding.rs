//! How a [`Shared`] table is encoded: by id inside a pool's encoding context (the table
//! registered with the task), else by value, its bytes as one block; and decoded: an id
//! through this process's installed tables, bytes into a new `Vec`.

use std::fmt;
use std::marker::PhantomData;

use bytemuck::Pod;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::Shared;
#[cfg(target_os = "linux")]
use super::{context, installed};

/// Variant indices of the encoding (an enum: `Id(id, len)` or `Bytes(bytes)`).
const BY_ID: u32 = 0;
const BY_VALUE: u32 = 1;

impl<T: Pod + Send + Sync> Serialize for Shared<[T]> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.block.bytes();
        #[cfg(target_os = "linux")]
        if !bytes.is_empty() {
            match context::register(&self.block) {
                Ok(true) => {
                    let len = bytes.len() as u64;
                    return s.serialize_newtype_variant(
                        "Shared",
                        BY_ID,
                        "Id",
                        &(self.block.id, len),
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    return Err(serde::ser::Error::custom(format_args!(
                        "cannot put a shared table in shared memory: {e}"
                    )));
                }
            }
        }
        s.serialize_newtype_variant("Shared", BY_VALUE, "Bytes", serde_bytes::Bytes::new(bytes))
    }
}

impl<'de, T: Pod + Send + Sync> Deserialize<'de> for Shared<[T]> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_enum("Shared", &["Id", "Bytes"], EnumVisitor(PhantomData::<T>))
    }
}

struct EnumVisitor<T>(PhantomData<T>);

impl<'de, T: Pod + Send + Sync> Visitor<'de> for EnumVisitor<T> {
    type Value = Shared<[T]>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a shared table")
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        use de::VariantAccess;
        let (variant, access): (u32, _) = data.variant()?;
        match variant {
            BY_ID => {
                let (id, len): (u64, u64) = access.newtype_variant()?;
                by_id::<T, A::Error>(id, len)
            }
            BY_VALUE => access.newtype_variant_seed(BytesSeed(PhantomData::<T>)),
            other => Err(de::Error::invalid_value(
                de::Unexpected::Unsigned(u64::from(other)),
                &"a shared table's encoding",
            )),
        }
    }
}

/// The table `id` that this worker was given, checked against the length and type the
/// sender names.
#[cfg(target_os = "linux")]
fn by_id<T: Pod + Send + Sync, E: de::Error>(id: u64, len: u64) -> Result<Shared<[T]>, E> {
    let block = match installed::get(id) {
        Some(Ok(block)) => block,
        Some(Err(why)) => return Err(E::custom(why)),
        None => {
            return Err(E::custom(format_args!(
                "shared table {id} is unknown in this process"
            )));
        }
    };
    let have = block.bytes().len() as u64;
    if have != len || !have.is_multiple_of(size_of::<T>() as u64) {
        return Err(E::custom(format_args!(
            "shared table {id} holds {have} bytes, not {len} bytes of {}",
            std::any::type_name::<T>()
        )));
    }
    // (A mapping is page-aligned, a received copy 16-byte aligned.)
    if !(block.bytes().as_ptr() as usize).is_multiple_of(align_of::<T>()) {
        return Err(E::custom(format_args!(
            "shared table {id} is not aligned for {}",
            std::any::type_name::<T>()
        )));
    }
    Ok(Shared {
        block,
        _of: PhantomData,
    })
}

#[cfg(not(target_os = "linux"))]
fn by_id<T: Pod + Send + Sync, E: de::Error>(id: u64, _len: u64) -> Result<Shared<[T]>, E> {
    Err(E::custom(format_args!(
        "shared table {id} is unknown in this process"
    )))
}

/// Decodes a table sent by value: one copy, into a new `Vec<T>`.
struct BytesSeed<T>(PhantomData<T>);

impl<'de, T: Pod + Send + Sync> de::DeserializeSeed<'de> for BytesSeed<T> {
    type Value = Shared<[T]>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_byte_buf(self)
    }
}

impl<T: Pod + Send + Sync> BytesSeed<T> {
    fn copy<E: de::Error>(bytes: &[u8]) -> Result<Shared<[T]>, E> {
        if !bytes.len().is_multiple_of(size_of::<T>()) {
            return Err(E::custom(format_args!(
                "a shared table of {} bytes is not made of {}",
                bytes.len(),
                std::any::type_name::<T>()
            )));
        }
        let mut items = Vec::new();
        items
            .try_reserve_exact(bytes.len() / size_of::<T>())
            .map_err(|_| E::custom("no memory for a shared table"))?;
        items.resize(bytes.len() / size_of::<T>(), T::zeroed());
        bytemuck::cast_slice_mut::<T, u8>(&mut items).copy_from_slice(bytes);
        Ok(Shared::new(items))
    }
}

impl<'de, T: Pod + Send + Sync> Visitor<'de> for BytesSeed<T> {
    type Value = Shared<[T]>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the bytes of a shared table")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Self::copy(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        Self::copy(&v)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Formats that write bytes as a sequence of numbers.
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            v.push(b);
        }
        Self::copy(&v)
    }
}
