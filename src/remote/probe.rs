//! Recovers the message of a `Serialize` or `Deserialize` implementation that fails with
//! `Error::custom(msg)`: postcard keeps only that a custom error happened. On that error
//! path only, the value is serialized again into [`Probe`], a serializer that writes
//! nothing and keeps the first custom message; or decoded again through [`Keep`], which
//! wraps postcard's deserializer and gives the value's `Deserialize` an error type that
//! keeps its message (the first custom message, where the value's own code made it).

use std::cell::RefCell;
use std::fmt::Display;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde::ser::{self, Serialize};

/// The message of a custom serialization error (or why serialization failed otherwise).
#[derive(Debug)]
pub(crate) struct Message(pub(crate) String);

impl Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl ser::Error for Message {
    fn custom<T: Display>(msg: T) -> Self {
        Message(msg.to_string())
    }
}

impl de::Error for Message {
    fn custom<T: Display>(msg: T) -> Self {
        Message(msg.to_string())
    }
}

/// The message `value`'s serialization fails with, if it fails.
pub(crate) fn failure<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    value.serialize(Probe).err().map(|m| m.0)
}

/// A serializer that accepts everything and writes nothing.
struct Probe;

type R = Result<(), Message>;

macro_rules! accept {
    ($($name:ident($($arg:ty),*);)*) => {
        $(fn $name(self, $(_: $arg),*) -> R { Ok(()) })*
    };
}

impl ser::Serializer for Probe {
    type Ok = ();
    type Error = Message;
    type SerializeSeq = Probe;
    type SerializeTuple = Probe;
    type SerializeTupleStruct = Probe;
    type SerializeTupleVariant = Probe;
    type SerializeMap = Probe;
    type SerializeStruct = Probe;
    type SerializeStructVariant = Probe;

    accept! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_u128(u128);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> R {
        value.serialize(Probe)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> R {
        value.serialize(Probe)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> R {
        value.serialize(Probe)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Probe, Message> {
        Ok(Probe)
    }
    fn serialize_tuple(self, _: usize) -> Result<Probe, Message> {
        Ok(Probe)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Probe, Message> {
        Ok(Probe)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Probe, Message> {
        Ok(Probe)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Probe, Message> {
        Ok(Probe)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Probe, Message> {
        Ok(Probe)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Probe, Message> {
        Ok(Probe)
    }
}

macro_rules! compound {
    ($($trait:ident: $($method:ident),*;)*) => {
        $(impl ser::$trait for Probe {
            type Ok = ();
            type Error = Message;
            $(fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
                value.serialize(Probe)
            })*
            fn end(self) -> R {
                Ok(())
            }
        })*
    };
}

compound! {
    SerializeSeq: serialize_element;
    SerializeTuple: serialize_element;
    SerializeTupleStruct: serialize_field;
    SerializeTupleVariant: serialize_field;
}

impl ser::SerializeMap for Probe {
    type Ok = ();
    type Error = Message;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> R {
        key.serialize(Probe)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        value.serialize(Probe)
    }
    fn end(self) -> R {
        Ok(())
    }
}

macro_rules! named {
    ($($trait:ident),*) => {
        $(impl ser::$trait for Probe {
            type Ok = ();
            type Error = Message;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> R {
                value.serialize(Probe)
            }
            fn end(self) -> R {
                Ok(())
            }
        })*
    };
}

named!(SerializeStruct, SerializeStructVariant);

// ===== decoding =====

/// The message decoding `bytes` as a `T` fails with, if it fails.
pub(crate) fn decode_failure<T: DeserializeOwned>(bytes: &[u8]) -> Option<String> {
    let first = RefCell::new(None);
    let mut de = postcard::Deserializer::from_bytes(bytes);
    match T::deserialize(Keep {
        inner: &mut de,
        first: &first,
    }) {
        Ok(_) => None,
        Err(m) => Some(first.into_inner().unwrap_or(m.0)),
    }
}

/// The first message that had to be handed to postcard's error type (which drops it).
type First = RefCell<Option<String>>;

/// Our error, handed to postcard as its own type: the message is kept in `first`.
fn lower<E: de::Error>(first: &First, m: Message) -> E {
    first.borrow_mut().get_or_insert_with(|| m.0.clone());
    E::custom(m.0)
}

/// Postcard's error, as ours.
fn raise<E: Display>(e: E) -> Message {
    Message(e.to_string())
}

/// A deserializer whose error type keeps custom messages, over postcard's.
struct Keep<'a, D> {
    inner: D,
    first: &'a First,
}

/// The value's visitor, seen by postcard.
struct Wrap<'a, V> {
    inner: V,
    first: &'a First,
}

/// A seed (an element, key, value or variant), seen by postcard.
struct Seed<'a, S> {
    inner: S,
    first: &'a First,
}

/// Postcard's access to a sequence, map, enum or variant, seen by the value.
struct Access<'a, A> {
    inner: A,
    first: &'a First,
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Message> {
            let first = self.first;
            self.inner
                .$method($($arg,)* Wrap { inner: visitor, first })
                .map_err(raise)
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Keep<'_, D> {
    type Error = Message;

    forward! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! visit {
    ($($method:ident($ty:ty);)*) => {
        $(fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method::<Message>(v).map_err(|m| lower(self.first, m))
        })*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner
            .visit_none::<Message>()
            .map_err(|m| lower(self.first, m))
    }
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner
            .visit_unit::<Message>()
            .map_err(|m| lower(self.first, m))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let first = self.first;
        let keep = Keep { inner: d, first };
        self.inner.visit_some(keep).map_err(|m| lower(first, m))
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let first = self.first;
        let keep = Keep { inner: d, first };
        self.inner
            .visit_newtype_struct(keep)
            .map_err(|m| lower(first, m))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let first = self.first;
        let access = Access { inner: seq, first };
        self.inner.visit_seq(access).map_err(|m| lower(first, m))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let first = self.first;
        let access = Access { inner: map, first };
        self.inner.visit_map(access).map_err(|m| lower(first, m))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let first = self.first;
        let access = Access { inner: data, first };
        self.inner.visit_enum(access).map_err(|m| lower(first, m))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        let first = self.first;
        let keep = Keep { inner: d, first };
        self.inner.deserialize(keep).map_err(|m| lower(first, m))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<'_, A> {
    type Error = Message;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Message> {
        let first = self.first;
        self.inner
            .next_element_seed(Seed { inner: seed, first })
            .map_err(raise)
    }
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<'_, A> {
    type Error = Message;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Message> {
        let first = self.first;
        self.inner
            .next_key_seed(Seed { inner: seed, first })
            .map_err(raise)
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Message> {
        let first = self.first;
        self.inner
            .next_value_seed(Seed { inner: seed, first })
            .map_err(raise)
    }
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Access<'a, A> {
    type Error = Message;
    type Variant = Access<'a, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), Message> {
        let first = self.first;
        let (value, variant) = self
            .inner
            .variant_seed(Seed { inner: seed, first })
            .map_err(raise)?;
        Ok((
            value,
            Access {
                inner: variant,
                first,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<'_, A> {
    type Error = Message;

    fn unit_variant(self) -> Result<(), Message> {
        self.inner.unit_variant().map_err(raise)
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Message> {
        let first = self.first;
        self.inner
            .newtype_variant_seed(Seed { inner: seed, first })
            .map_err(raise)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Message> {
        let first = self.first;
        self.inner
            .tuple_variant(
                len,
                Wrap {
                    inner: visitor,
                    first,
                },
            )
            .map_err(raise)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Message> {
        let first = self.first;
        self.inner
            .struct_variant(
                fields,
                Wrap {
                    inner: visitor,
                    first,
                },
            )
            .map_err(raise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serializer;

    struct Refuses;
    impl Serialize for Refuses {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom("this value refuses to cross"))
        }
    }

    struct RefusesToDecode;
    impl<'de> de::Deserialize<'de> for RefusesToDecode {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            u8::deserialize(d)?;
            Err(de::Error::custom("Error in unpickle"))
        }
    }

    /// Fails in a visitor method, with the visitor's error type.
    struct RefusesInAVisitor;
    impl<'de> de::Deserialize<'de> for RefusesInAVisitor {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = RefusesInAVisitor;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a small number")
                }
                fn visit_u32<E: de::Error>(self, v: u32) -> Result<RefusesInAVisitor, E> {
                    Err(E::custom(format!("{v} is too large")))
                }
            }
            d.deserialize_u32(V)
        }
    }

    #[test]
    fn finds_a_decoding_message_deep_inside_a_value() {
        use serde::Deserialize;
        #[derive(Deserialize)]
        #[allow(dead_code)]
        enum Outer {
            A(u8),
            B {
                x: Vec<Option<(String, RefusesToDecode)>>,
            },
        }
        let bytes =
            crate::remote::codec::encode(&(1u8, vec![Some(("a".to_string(), 7u8))])).unwrap();
        // As `Outer::B { x: [Some(("a", _))] }`: variant 1, then the same layout.
        let mut as_b = vec![1u8];
        as_b.extend_from_slice(&bytes[1..]);
        assert_eq!(
            decode_failure::<Outer>(&as_b).as_deref(),
            Some("Error in unpickle")
        );
        let big = crate::remote::codec::encode(&500u32).unwrap();
        assert_eq!(
            decode_failure::<RefusesInAVisitor>(&big).as_deref(),
            Some("500 is too large")
        );
        assert_eq!(decode_failure::<u8>(&[7]), None);
        // Postcard's own errors keep their message.
        assert!(decode_failure::<String>(&[9, b'a']).is_some());
    }

    #[test]
    fn finds_the_message_deep_inside_a_value() {
        let value = (1u8, vec![Some(("a", Refuses))]);
        assert_eq!(
            failure(&value).as_deref(),
            Some("this value refuses to cross")
        );
        assert_eq!(failure(&(1u8, "fine")), None);
    }
}
