//! Splitting a deal's `iexec_args` into the container command, as the Java worker does.
//!
//! The worker (iexec-commons-containers `ArgsUtils.stringArgsToArrayArgs`) calls
//! maven-shared-utils 3.4.2 `CommandLineUtils.translateCommandline`. Its rules are not a
//! shell's, and replicas must agree on the command byte for byte, so they are reproduced exactly:
//! - only the space character separates arguments (tabs and newlines are ordinary characters);
//! - `'…'` and `"…"` group text, and quoted text joins the unquoted text around it (`a'b c'd` is
//!   one argument `ab cd`);
//! - an empty argument cannot be produced (`''` alone yields nothing);
//! - a backslash makes the next quote character literal but is itself kept (`let\'s` stays
//!   `let\'s`), and it stays armed across spaces until the next non-space text;
//! - unbalanced quotes are an error, for which the worker runs the app with no arguments.

use thiserror::Error;

/// The argument string ends inside a quoted section.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unbalanced quotes in the task arguments {0:?}")]
pub struct UnbalancedQuotes(pub String);

/// Where the scanner is relative to quotes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    None,
    Single,
    Double,
}

/// Splits `command_line` with `translateCommandline`'s rules (see the module documentation).
pub fn translate_commandline(command_line: &str) -> Result<Vec<String>, UnbalancedQuotes> {
    let mut arguments = Vec::new();
    let mut current = String::new();
    let mut quoting = Quoting::None;
    // Set by a backslash token and cleared by the next non-space token, as upstream does.
    let mut escaping = false;

    for token in tokens(command_line) {
        let closing_quote = match quoting {
            Quoting::Single => "'",
            Quoting::Double => "\"",
            Quoting::None => "",
        };
        match (quoting, token) {
            (Quoting::Single | Quoting::Double, _) if token == closing_quote => {
                if escaping {
                    current.push_str(token);
                    escaping = false;
                } else {
                    quoting = Quoting::None;
                }
            }
            (Quoting::None, "'" | "\"") => {
                if escaping {
                    current.push_str(token);
                    escaping = false;
                } else if token == "'" {
                    quoting = Quoting::Single;
                } else {
                    quoting = Quoting::Double;
                }
            }
            (Quoting::None, " ") => {
                if !current.is_empty() {
                    arguments.push(std::mem::take(&mut current));
                }
            }
            _ => {
                current.push_str(token);
                escaping = token == "\\";
            }
        }
    }
    if quoting != Quoting::None {
        return Err(UnbalancedQuotes(command_line.to_owned()));
    }
    if !current.is_empty() {
        arguments.push(current);
    }
    Ok(arguments)
}

/// The container command for a deal's `iexec_args`: the translated arguments, or none at all
/// when the quotes are unbalanced (the Java worker logs the error and runs the image's default).
pub fn split_args(iexec_args: &str) -> Vec<String> {
    translate_commandline(iexec_args).unwrap_or_else(|error| {
        tracing::warn!(%error, "running the app without arguments");
        Vec::new()
    })
}

/// Java `StringTokenizer(s, "\"' \\", true)`: maximal runs of ordinary characters, and every
/// delimiter as a token of its own.
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    const DELIMITERS: [char; 4] = ['"', '\'', ' ', '\\'];
    let mut rest = text;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let length = if DELIMITERS.contains(&first) {
            first.len_utf8()
        } else {
            rest.find(DELIMITERS).unwrap_or(rest.len())
        };
        let (token, tail) = rest.split_at(length);
        rest = tail;
        Some(token)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Vec<String> {
        split_args(line)
    }

    #[test]
    fn quotes_group_words_like_the_iexec_protocol_example() {
        assert_eq!(split("a 'b c' \"d\""), ["a", "b c", "d"]);
    }

    #[test]
    fn blank_input_gives_no_command() {
        assert!(split("").is_empty());
        assert!(split("   ").is_empty());
        assert!(split("'' \"\"").is_empty());
    }

    #[test]
    fn only_spaces_separate() {
        assert_eq!(split("  foo   bar  "), ["foo", "bar"]);
        assert_eq!(split("a\tb\nc d"), ["a\tb\nc", "d"]);
    }

    #[test]
    fn quoted_text_keeps_spaces_and_the_other_quote() {
        assert_eq!(split("x ' y ' z"), ["x", " y ", "z"]);
        assert_eq!(split("x \" ' \" z"), ["x", " ' ", "z"]);
        assert_eq!(split("x ' \" ' z"), ["x", " \" ", "z"]);
        assert_eq!(split("echo \"let's go\""), ["echo", "let's go"]);
    }

    #[test]
    fn quoted_text_joins_its_neighbours() {
        assert_eq!(split("a'b c'd e"), ["ab cd", "e"]);
        assert_eq!(split("--name=\"x y\""), ["--name=x y"]);
    }

    #[test]
    fn backslash_makes_a_quote_literal_and_is_kept() {
        assert_eq!(split("echo \"let\\\"s go\""), ["echo", "let\\\"s go"]);
        assert_eq!(split("echo \"let\\'s go\""), ["echo", "let\\'s go"]);
        assert_eq!(split("it\\'s"), ["it\\'s"]);
        assert_eq!(split("a\\b"), ["a\\b"]);
    }

    #[test]
    fn an_escape_survives_spaces_until_the_next_text() {
        // The backslash ends "a\"; the armed escape then makes the next quote literal.
        assert_eq!(split("a\\ \"b"), ["a\\", "\"b"]);
        // Ordinary text disarms it, so this quote opens a section.
        assert_eq!(split("a\\ b \"c d\""), ["a\\", "b", "c d"]);
    }

    #[test]
    fn unbalanced_quotes_run_without_arguments() {
        assert_eq!(
            translate_commandline("a 'b"),
            Err(UnbalancedQuotes("a 'b".into()))
        );
        assert!(translate_commandline("\"x").is_err());
        assert!(split("one two 'three").is_empty());
    }

    #[test]
    fn multibyte_text_is_split_on_character_boundaries() {
        assert_eq!(split("héllo 'wörld ∑' ✓"), ["héllo", "wörld ∑", "✓"]);
    }
}
