//! Field readers that accept what Jackson accepts by default when it fills a Java field:
//! numbers written as strings, `"true"`/`"false"` strings, `null` for a primitive (read as its
//! zero), and the several spellings of a `Duration`. Used with `#[serde(deserialize_with)]`.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};

use crate::java_duration;

/// A Java `String`: `null` reads as empty, which every caller treats as "not set".
pub(crate) fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

/// A Java primitive integer: a JSON integer, an integral float, or a string holding one;
/// `null` and `""` read as zero.
pub(crate) fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Integer,
{
    Ok(deserializer
        .deserialize_any(IntegerVisitor(PhantomData))?
        .unwrap_or_default())
}

/// A Java boxed integer (`Integer`, `Long`): like [`integer`] but `null` stays `None`.
pub(crate) fn optional_integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Integer,
{
    deserializer.deserialize_any(IntegerVisitor(PhantomData))
}

/// A Java primitive `boolean`: `true`, `"true"` (any case), `null` as false.
pub(crate) fn boolean<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    deserializer.deserialize_any(BooleanVisitor)
}

/// A `java.time.Duration`: ISO-8601 text, decimal seconds as text, or a JSON number of seconds.
pub(crate) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

/// Writes a `Duration` as Spring Boot does (ISO-8601, `WRITE_DURATIONS_AS_TIMESTAMPS` off).
pub(crate) fn serialize_duration<S: Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&java_duration::format(*duration))
}

/// The integer types the model uses, with their conversions from JSON's two integer kinds.
pub(crate) trait Integer: Default + FromStr + TryFrom<u64> + TryFrom<i64> {
    const NAME: &'static str;
}

macro_rules! integer_names {
    ($($ty:ty),+) => { $(impl Integer for $ty { const NAME: &'static str = stringify!($ty); })+ };
}
integer_names!(u32, u64, i32, i64);

struct IntegerVisitor<T>(PhantomData<T>);

impl<T: Integer> IntegerVisitor<T> {
    fn out_of_range<E: de::Error>(value: impl fmt::Display) -> E {
        E::custom(format_args!("{value} does not fit in {}", T::NAME))
    }
}

impl<T: Integer> Visitor<'_> for IntegerVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an integer ({}) or a string holding one", T::NAME)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        T::try_from(value)
            .map(Some)
            .map_err(|_| Self::out_of_range(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        T::try_from(value)
            .map(Some)
            .map_err(|_| Self::out_of_range(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        // Jackson truncates a float into an integer field; we only take the integral ones,
        // because a fractional period or block number means the sender got the unit wrong.
        let integral = value.fract() == 0.0 && value.abs() < 2f64.powi(63);
        if !integral {
            return Err(E::invalid_value(de::Unexpected::Float(value), &self));
        }
        // Exact: `value` is integral and within i64.
        self.visit_i64(value as i64)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        trimmed
            .parse()
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(value), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

struct BooleanVisitor;

impl Visitor<'_> for BooleanVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean or the string \"true\" or \"false\"")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<bool, E> {
        Ok(value)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<bool, E> {
        match value.trim() {
            text if text.eq_ignore_ascii_case("true") => Ok(true),
            text if text.eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(E::invalid_value(de::Unexpected::Str(value), &self)),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ISO-8601 duration (\"PT5S\") or seconds (5.000000000)")
    }

    fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(seconds))
    }

    fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Duration, E> {
        u64::try_from(seconds)
            .map(Duration::from_secs)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(seconds), &self))
    }

    fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<Duration, E> {
        // Going through the shortest decimal text keeps 0.1 at exactly 100 ms instead of the
        // binary float's 0.1000000000000000055…
        java_duration::parse(&seconds.to_string()).map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        java_duration::parse(text).map_err(E::custom)
    }
}
