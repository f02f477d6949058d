//! Recovers the message of a `Serialize` implementation that fails with
//! `S::Error::custom(msg)`: postcard keeps only that a custom error happened. On that error
//! path only, the value is serialized again into [`Probe`], a serializer that writes
//! nothing and keeps the first custom message.

use std::fmt::Display;

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
