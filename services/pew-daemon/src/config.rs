//! Configuration files in `/etc/pew/<service>.toml`.
//!
//! Operators edit these by hand on a node they may never see again, so a mistake must be reported
//! precisely: the file, the line, and the dotted key (`battery.capacity_wh`), for syntax errors,
//! unknown keys (every config struct uses `deny_unknown_fields`), wrong types and values that parse
//! but make no sense (the service's own validation, which names the key it rejects).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration file that could not be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{location}: {message}")]
    Invalid { location: Location, message: String },
}

/// Where in a configuration file a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    /// 1-based; `None` when the problem is a key that is missing from the file.
    pub line: Option<usize>,
    /// Dotted key such as `battery.capacity_wh`, when one can be named.
    pub key: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, " key `{key}`")?;
        }
        Ok(())
    }
}

/// Reads a configuration file's text. With `missing_is_empty`, a file that does not exist reads
/// as empty, so every key takes its default (services that run with no configuration at all);
/// otherwise a missing file is an error (inputs that must exist, such as the image recipe).
/// The text is returned so that validation errors can be located with [`rejected`].
pub fn read(path: &Path, missing_is_empty: bool) -> Result<String, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if missing_is_empty && e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ConfigError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Parses configuration text that came from `path`.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, key) = match e.span() {
            Some(span) => {
                let (line, key) = key_at_line(text, line_of_offset(text, span.start), e.message());
                (Some(line), key)
            }
            None => (None, None),
        };
        ConfigError::Invalid {
            location: Location {
                path: path.to_owned(),
                line,
                key,
            },
            message: e.message().trim().to_owned(),
        }
    })
}

/// Builds the error for a value that parsed but was rejected by the service's validation.
/// `key` is the dotted key the validation named; the line is looked up in the file text.
pub fn rejected(path: &Path, text: &str, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        location: Location {
            path: path.to_owned(),
            line: line_of_key(text, key),
            key: Some(key.to_owned()),
        },
        message: message.into(),
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key defined on `line`: the enclosing `[table]` header plus the key before `=`.
/// Serde reports an unknown field of a table (or of an internally tagged enum) at the table's
/// header; then the key is the table plus the field the message names, and the line is moved to
/// where that field is written.
fn key_at_line(text: &str, line: usize, message: &str) -> (usize, Option<String>) {
    let mut table = String::new();
    for (index, raw) in text.lines().enumerate() {
        let content = strip_comment(raw).trim();
        if let Some(header) = table_header(content) {
            table = header.to_owned();
        }
        if index + 1 != line {
            continue;
        }
        if let Some((key, _)) = content.split_once('=') {
            return (line, Some(join_key(&table, key.trim())));
        }
        if table_header(content).is_none() {
            return (line, None);
        }
        let Some(field) = unknown_field_name(message) else {
            return (line, Some(table));
        };
        // `[batery]` itself is the unknown field of its parent.
        if table.rsplit('.').next() == Some(field) {
            return (line, Some(table));
        }
        let key = join_key(&table, field);
        return (line_of_key(text, &key).unwrap_or(line), Some(key));
    }
    (line, None)
}

/// The line defining `dotted`, or else its nearest parent (a key inside an inline table,
/// `snapshot = { url = … }`, is found at the table's line).
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let mut key = dotted;
    loop {
        if let Some(line) = line_of_exact_key(text, key) {
            return Some(line);
        }
        key = key.rsplit_once('.')?.0;
    }
}

fn line_of_exact_key(text: &str, dotted: &str) -> Option<usize> {
    let mut table = String::new();
    for (index, raw) in text.lines().enumerate() {
        let content = strip_comment(raw).trim();
        if let Some(header) = table_header(content) {
            table = header.to_owned();
            if table == dotted {
                return Some(index + 1);
            }
        } else if let Some((key, _)) = content.split_once('=')
            && join_key(&table, key.trim()) == dotted
        {
            return Some(index + 1);
        }
    }
    None
}

fn table_header(content: &str) -> Option<&str> {
    let inner = content.strip_prefix('[')?.strip_suffix(']')?;
    Some(inner.trim_matches(|c| c == '[' || c == ']').trim())
}

fn strip_comment(line: &str) -> &str {
    // Configuration strings never contain '#' in pew's files; a quoted '#' would only make the
    // located line less precise, never wrong about the file.
    line.split_once('#').map_or(line, |(before, _)| before)
}

fn join_key(table: &str, key: &str) -> String {
    let key = key.trim_matches('"');
    if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    }
}

fn unknown_field_name(message: &str) -> Option<&str> {
    let rest = message.split_once("unknown field `")?.1;
    Some(rest.split_once('`')?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields)]
    struct Battery {
        capacity_wh: f64,
        #[serde(default)]
        cells_in_series: u32,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields)]
    struct Example {
        #[serde(default)]
        name: String,
        battery: Battery,
    }

    fn error_of(text: &str) -> (Location, String) {
        match parse::<Example>(Path::new("/etc/pew/powerd.toml"), text) {
            Err(ConfigError::Invalid { location, message }) => (location, message),
            other => panic!("expected an invalid-config error, got {other:?}"),
        }
    }

    #[test]
    fn valid_file_parses() {
        let parsed: Example = parse(
            Path::new("x.toml"),
            "name = \"a\"\n[battery]\ncapacity_wh = 185.0\n",
        )
        .unwrap();
        assert_eq!(parsed.battery.capacity_wh, 185.0);
    }

    #[test]
    fn unknown_key_names_file_line_and_dotted_key() {
        let (location, message) =
            error_of("name = \"n\"\n\n[battery]\ncapacity_wh = 185.0\ncapacity_mah = 50000\n");
        assert_eq!(location.line, Some(5));
        assert_eq!(location.key.as_deref(), Some("battery.capacity_mah"));
        assert!(
            message.contains("unknown field `capacity_mah`"),
            "{message}"
        );
        let shown = ConfigError::Invalid { location, message }.to_string();
        assert!(
            shown.starts_with("/etc/pew/powerd.toml line 5 key `battery.capacity_mah`: "),
            "{shown}"
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let (location, message) = error_of("[battery]\ncapacity_wh = \"lots\"\n");
        assert_eq!(location.line, Some(2));
        assert_eq!(location.key.as_deref(), Some("battery.capacity_wh"));
        assert!(message.contains("invalid type"), "{message}");
    }

    #[test]
    fn unknown_table_is_named() {
        let (location, _) = error_of("[battery]\ncapacity_wh = 1.0\n[batery]\ncells = 2\n");
        assert_eq!(location.line, Some(3));
        assert_eq!(location.key.as_deref(), Some("batery"));
    }

    #[test]
    fn unknown_key_reported_at_its_table_header_is_moved_to_its_own_line() {
        #[derive(Debug, Deserialize)]
        #[serde(tag = "kind", deny_unknown_fields)]
        enum Source {
            #[serde(rename = "ina219")]
            Ina219 {
                #[allow(dead_code)]
                address: u8,
            },
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct WithSource {
            source: Source,
        }
        let text = "[source]\nkind = \"ina219\"\naddress = 0x40\nshunt = 3\n";
        match parse::<WithSource>(Path::new("p.toml"), text) {
            Err(ConfigError::Invalid { location, .. }) => {
                assert_eq!(location.key.as_deref(), Some("source.shunt"));
                assert_eq!(location.line, Some(4));
            }
            other => panic!("expected an invalid-config error, got {other:?}"),
        }
    }

    #[test]
    fn syntax_error_gives_the_line() {
        let (location, _) = error_of("[battery]\ncapacity_wh = = 3\n");
        assert_eq!(location.line, Some(2));
    }

    #[test]
    fn missing_required_key_is_reported() {
        let (_, message) = error_of("name = \"x\"\n[battery]\ncells_in_series = 1\n");
        assert!(message.contains("capacity_wh"), "{message}");
    }

    #[test]
    fn rejected_value_is_located_by_key() {
        let text = "# comment\n[battery]\n  capacity_wh = -3 # oops\n";
        let error = rejected(
            Path::new("p.toml"),
            text,
            "battery.capacity_wh",
            "must be > 0, got -3",
        );
        assert_eq!(
            error.to_string(),
            "p.toml line 3 key `battery.capacity_wh`: must be > 0, got -3"
        );
    }

    #[test]
    fn missing_file_is_an_error_unless_it_may_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        assert!(matches!(read(&path, false), Err(ConfigError::Read { .. })));
        assert_eq!(read(&path, true).unwrap(), "");
        std::fs::write(&path, "name = \"x\"\n").unwrap();
        assert_eq!(read(&path, false).unwrap(), "name = \"x\"\n");
    }
}
