//! Scalar values: plugin parameters and feature properties.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// A boolean, integer, float or string.
///
/// In human-readable formats (JSON) a value is the plain JSON scalar; in
/// binary formats (postcard), which cannot describe themselves, it is a
/// tagged enum.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Value {
    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value's type with an article, for error messages ("an integer").
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            match self {
                Value::Bool(b) => s.serialize_bool(*b),
                Value::Int(i) => s.serialize_i64(*i),
                Value::Float(f) => s.serialize_f64(*f),
                Value::Str(v) => s.serialize_str(v),
            }
        } else {
            match self {
                Value::Bool(b) => s.serialize_newtype_variant("Value", 0, "Bool", b),
                Value::Int(i) => s.serialize_newtype_variant("Value", 1, "Int", i),
                Value::Float(f) => s.serialize_newtype_variant("Value", 2, "Float", f),
                Value::Str(v) => s.serialize_newtype_variant("Value", 3, "Str", v),
            }
        }
    }
}

#[derive(Deserialize)]
enum Tagged {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

struct PlainVisitor;

const EXPECTED: &str = "a boolean, number or string";

impl<'de> Visitor<'de> for PlainVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v).map(Value::Int).map_err(|_| E::custom("integer out of the 64-bit signed range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(de::Error::invalid_type(de::Unexpected::Map, &EXPECTED))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(de::Error::invalid_type(de::Unexpected::Seq, &EXPECTED))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Err(de::Error::invalid_type(de::Unexpected::Unit, &EXPECTED))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_any(PlainVisitor)
        } else {
            Ok(match Tagged::deserialize(d)? {
                Tagged::Bool(b) => Value::Bool(b),
                Tagged::Int(i) => Value::Int(i),
                Tagged::Float(f) => Value::Float(f),
                Tagged::Str(s) => Value::Str(s),
            })
        }
    }
}
