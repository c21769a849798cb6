//! Reading and writing single-value sysfs attributes, with errors that name the file and, for
//! parse failures, the content found there.

use std::any::type_name;
use std::fmt::Display;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A sysfs attribute could not be read, written or understood.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    /// Opening or reading the file failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The attribute file.
        path: PathBuf,
        /// What the OS reported.
        source: io::Error,
    },
    /// Opening or writing the file failed (the kernel reports rejected values this way too,
    /// e.g. EBUSY or EINVAL).
    #[error("cannot write {value:?} to {}: {source}", path.display())]
    Write {
        /// The attribute file.
        path: PathBuf,
        /// What was being written.
        value: String,
        /// What the OS reported.
        source: io::Error,
    },
    /// The content is not a value of the expected type.
    #[error("{}: cannot parse {content:?} as {expected}: {reason}", path.display())]
    Parse {
        /// The attribute file.
        path: PathBuf,
        /// The offending content, trimmed.
        content: String,
        /// The type that was expected.
        expected: &'static str,
        /// Why parsing failed.
        reason: String,
    },
}

/// Reads an attribute, without the trailing newline the kernel appends.
pub(crate) fn read_trimmed(path: &Path) -> Result<String, SysfsError> {
    std::fs::read_to_string(path)
        .map(|content| content.trim().to_owned())
        .map_err(|source| SysfsError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Reads and parses an attribute holding one value.
pub(crate) fn read_value<T>(path: &Path) -> Result<T, SysfsError>
where
    T: FromStr,
    T::Err: Display,
{
    parse_value(path, &read_trimmed(path)?)
}

/// The SI prefix of an integer attribute's unit (hwmon uses mV, mA, µW; power_supply µV, µA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefix {
    Milli,
    Micro,
}

/// Reads an integer attribute in `prefix` units and returns it in base SI units.
pub(crate) fn read_si(path: &Path, prefix: Prefix) -> Result<f64, SysfsError> {
    let per_unit = match prefix {
        Prefix::Milli => 1e3,
        Prefix::Micro => 1e6,
    };
    // Dividing (rather than multiplying by 1e-3) keeps e.g. 8112 mV at exactly 8.112 V, and
    // sysfs values stay far below 2^53, so the conversion to f64 is exact.
    read_value::<i64>(path).map(|value| value as f64 / per_unit)
}

/// Turns "the file does not exist" into `None`: many attributes exist only for some drivers.
pub(crate) fn absent_as_none<T>(result: Result<T, SysfsError>) -> Result<Option<T>, SysfsError> {
    match result {
        Err(SysfsError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        other => other.map(Some),
    }
}

/// Reads an attribute holding a whitespace-separated list of values.
pub(crate) fn read_list<T>(path: &Path) -> Result<Vec<T>, SysfsError>
where
    T: FromStr,
    T::Err: Display,
{
    read_trimmed(path)?
        .split_whitespace()
        .map(|token| parse_value(path, token))
        .collect()
}

/// Writes a value in a single `write`, as sysfs stores expect. The file must already exist:
/// creating it would hide a wrong path in a test tree and is impossible in real sysfs anyway.
pub(crate) fn write_value(path: &Path, value: &str) -> Result<(), SysfsError> {
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut file| file.write_all(value.as_bytes()))
        .map_err(|source| SysfsError::Write {
            path: path.to_owned(),
            value: value.to_owned(),
            source,
        })
}

/// Parses attribute content that has already been read from `path`.
pub(crate) fn parse_value<T>(path: &Path, content: &str) -> Result<T, SysfsError>
where
    T: FromStr,
    T::Err: Display,
{
    content.parse().map_err(|reason: T::Err| SysfsError::Parse {
        path: path.to_owned(),
        content: content.to_owned(),
        expected: short_type_name::<T>(),
        reason: reason.to_string(),
    })
}

/// `i64` rather than `core::primitive::i64`, `ChargeStatus` rather than its module path.
fn short_type_name<T>() -> &'static str {
    let full = type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::SysfsTree;

    #[test]
    fn reads_integer_ignoring_newline() {
        let tree = SysfsTree::new(&[("in1_input", "12345\n")]);
        assert_eq!(read_value::<i64>(&tree.path("in1_input")).unwrap(), 12345);
    }

    #[test]
    fn si_conversion_divides_by_the_prefix() {
        let tree = SysfsTree::new(&[("curr1_input", "-260\n"), ("voltage_now", "3712000\n")]);
        assert_eq!(
            read_si(&tree.path("curr1_input"), Prefix::Milli).unwrap(),
            -0.26
        );
        assert_eq!(
            read_si(&tree.path("voltage_now"), Prefix::Micro).unwrap(),
            3.712
        );
    }

    #[test]
    fn parse_error_names_path_content_and_type() {
        let tree = SysfsTree::new(&[("curr1_input", "12.5mA\n")]);
        let path = tree.path("curr1_input");
        let error = read_value::<i64>(&path).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
        assert!(message.contains("\"12.5mA\" as i64"), "{message}");
    }

    #[test]
    fn missing_file_is_an_error_naming_it_unless_optional() {
        let tree = SysfsTree::new(&[]);
        let path = tree.path("capacity");
        let error = read_value::<u8>(&path).unwrap_err();
        assert!(error.to_string().contains(&path.display().to_string()));
        assert_eq!(absent_as_none(read_value::<u8>(&path)).unwrap(), None);
    }

    #[test]
    fn optional_value_still_reports_bad_content() {
        let tree = SysfsTree::new(&[("capacity", "lots\n")]);
        assert!(matches!(
            absent_as_none(read_value::<u8>(&tree.path("capacity"))),
            Err(SysfsError::Parse { .. })
        ));
    }

    #[test]
    fn list_tolerates_trailing_space_and_names_bad_token() {
        let tree = SysfsTree::new(&[("freqs", "600000 1500000 \n"), ("broken", "600000 fast\n")]);
        assert_eq!(
            read_list::<u32>(&tree.path("freqs")).unwrap(),
            [600_000, 1_500_000]
        );
        assert!(matches!(
            read_list::<u32>(&tree.path("broken")),
            Err(SysfsError::Parse { content, .. }) if content == "fast"
        ));
    }

    #[test]
    fn write_replaces_content_and_refuses_to_create() {
        let tree = SysfsTree::new(&[("scaling_max_freq", "1500000\n")]);
        write_value(&tree.path("scaling_max_freq"), "600000").unwrap();
        assert_eq!(tree.content("scaling_max_freq"), "600000");

        let missing = tree.path("scaling_max_freqq");
        assert!(matches!(
            write_value(&missing, "600000"),
            Err(SysfsError::Write { path, .. }) if path == missing
        ));
        assert!(!missing.exists());
    }
}
