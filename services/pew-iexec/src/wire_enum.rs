//! Fieldless enums whose wire form is the Java enum constant name.
//!
//! Jackson writes a Java enum as its constant name and, by default, refuses an unknown name.
//! Some of our enums only list the subset of constants a standard (non-TEE) worker meets; those
//! declare a fallback so that a value only the full Java enum knows does not reject the whole
//! message around it (see each type's documentation for the choice made).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};

/// A name received on the wire that the enum does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownVariant {
    /// The Java type the value was meant for, e.g. `ReplicateStatus`.
    pub kind: &'static str,
    /// The name as received.
    pub value: String,
}

/// Reads a JSON string and maps it through `FromStr`; unknown names become `fallback` when one
/// is given, otherwise an error naming the type and the value.
pub(crate) fn deserialize_name<'de, D, T>(
    deserializer: D,
    fallback: Option<T>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = UnknownVariant>,
{
    struct NameVisitor<T>(PhantomData<T>);

    impl<T: FromStr<Err = UnknownVariant>> Visitor<'_> for NameVisitor<T> {
        type Value = Result<T, UnknownVariant>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an enum constant name as a string")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(value.parse())
        }
    }

    match deserializer.deserialize_str(NameVisitor(PhantomData))? {
        Ok(value) => Ok(value),
        Err(unknown) => fallback.ok_or_else(|| de::Error::custom(unknown)),
    }
}

/// Declares the enum, its `ALL` table in Java declaration order, `as_str`, `Display`, `FromStr`
/// and serde. `fallback = Variant` makes deserialization tolerant of unknown names.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident as $kind:literal $(, fallback = $fallback:ident)? {
            $( $(#[$variant_meta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every value, in the declaration order of the Java enum (so `Ord` is Java's ordinal).
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The Java constant name, as written on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::wire_enum::UnknownVariant;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                match name {
                    $($wire => Ok($name::$variant),)+
                    _ => Err($crate::wire_enum::UnknownVariant { kind: $kind, value: name.to_owned() }),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let fallback: Option<$name> = None $(.or(Some($name::$fallback)))?;
                $crate::wire_enum::deserialize_name(deserializer, fallback)
            }
        }
    };
}

pub(crate) use wire_enum;
