//! `java.time.Duration` as Jackson's `JavaTimeModule` reads and writes it.
//!
//! A Spring Boot config server writes ISO-8601 (`"PT5S"`, Java `Duration.toString`); a plain
//! Jackson mapper writes decimal seconds (`5.000000000`). Both reach the worker, so both parse.

use std::time::Duration;

const FRACTION_DIGITS: usize = 9;

/// Why a duration text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DurationError {
    #[error("{0:?} is neither an ISO-8601 duration (PT5S) nor decimal seconds (5.000000000)")]
    Malformed(String),
    #[error("{0:?} is negative; a duration here must not be")]
    Negative(String),
    #[error("{0:?} overflows a duration")]
    Overflow(String),
}

/// Parses ISO-8601 (`PnDTnHnMn.nS`, case-insensitive, as Java `Duration.parse`) or decimal
/// seconds (`5`, `5.000000000`).
pub(crate) fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let unsigned = trimmed.strip_prefix('+').unwrap_or(trimmed);
    if unsigned.starts_with('-') {
        return Err(DurationError::Negative(text.to_owned()));
    }
    let parsed = match unsigned.strip_prefix(['P', 'p']) {
        Some(iso) => parse_iso(iso),
        None => parse_decimal_seconds(unsigned),
    };
    parsed.map_err(|fault| fault.describe(text))
}

/// Formats like Java `Duration.toString`: `PT5S`, `PT0.5S`, `PT1H30M`, `PT0S`.
pub(crate) fn format(duration: Duration) -> String {
    let total_seconds = duration.as_secs();
    let nanos = duration.subsec_nanos();
    let hours = total_seconds / 3600;
    let minutes = total_seconds % 3600 / 60;
    let seconds = total_seconds % 60;
    let mut out = String::from("PT");
    if hours > 0 {
        out.push_str(&format!("{hours}H"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}M"));
    }
    if seconds == 0 && nanos == 0 && out.len() > 2 {
        return out;
    }
    out.push_str(&seconds.to_string());
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('S');
    out
}

/// Internal parse failure, turned into a [`DurationError`] naming the whole input.
enum Fault {
    Malformed,
    Overflow,
}

impl Fault {
    fn describe(self, text: &str) -> DurationError {
        match self {
            Fault::Malformed => DurationError::Malformed(text.to_owned()),
            Fault::Overflow => DurationError::Overflow(text.to_owned()),
        }
    }
}

/// `nD`, then optionally `T` followed by at least one of `nH`, `nM`, `n[.f]S` in that order.
fn parse_iso(after_p: &str) -> Result<Duration, Fault> {
    let upper = after_p.to_ascii_uppercase();
    let (date_part, time_part) = match upper.split_once('T') {
        Some((date, time)) if !time.is_empty() => (date, Some(time)),
        Some(_) => return Err(Fault::Malformed),
        None => (upper.as_str(), None),
    };
    if date_part.is_empty() && time_part.is_none() {
        return Err(Fault::Malformed);
    }
    let mut total = Duration::ZERO;
    if !date_part.is_empty() {
        let days = date_part.strip_suffix('D').ok_or(Fault::Malformed)?;
        total = add_units(total, parse_digits(days)?, 86_400)?;
    }
    let mut rest = time_part.unwrap_or("");
    for (unit, seconds_per_unit) in [('H', 3600), ('M', 60)] {
        if let Some(end) = rest.find(unit) {
            total = add_units(total, parse_digits(&rest[..end])?, seconds_per_unit)?;
            rest = &rest[end + 1..];
        }
    }
    if !rest.is_empty() {
        let seconds = rest.strip_suffix('S').ok_or(Fault::Malformed)?;
        total = total
            .checked_add(parse_decimal_seconds(seconds)?)
            .ok_or(Fault::Overflow)?;
    }
    Ok(total)
}

fn add_units(total: Duration, count: u64, seconds_per_unit: u64) -> Result<Duration, Fault> {
    let seconds = count.checked_mul(seconds_per_unit).ok_or(Fault::Overflow)?;
    total
        .checked_add(Duration::from_secs(seconds))
        .ok_or(Fault::Overflow)
}

/// `5`, `5.5`, `5,5` (Java accepts the comma too), at most nine fraction digits.
fn parse_decimal_seconds(text: &str) -> Result<Duration, Fault> {
    let (whole, fraction) = match text.split_once(['.', ',']) {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    if fraction.len() > FRACTION_DIGITS || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Fault::Malformed);
    }
    let seconds = parse_digits(whole)?;
    let nanos = if fraction.is_empty() {
        0
    } else {
        let padded = format!("{fraction:0<FRACTION_DIGITS$}");
        padded.parse::<u32>().map_err(|_| Fault::Malformed)?
    };
    Ok(Duration::new(seconds, nanos))
}

fn parse_digits(text: &str) -> Result<u64, Fault> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Fault::Malformed);
    }
    text.parse().map_err(|_| Fault::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_spellings_seen_on_the_wire() {
        assert_eq!(parse("PT5S"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("PT5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("pt5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("PT0.5S"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("PT0,25S"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("PT1H2M3.000000004S"), Ok(Duration::new(3723, 4)));
        assert_eq!(parse("P1D"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("P1DT1S"), Ok(Duration::from_secs(86_401)));
        assert_eq!(parse("PT2M"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("+PT5S"), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn decimal_seconds() {
        assert_eq!(parse("5.000000000"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("0.1"), Ok(Duration::from_millis(100)));
        assert_eq!(parse(" 12.5 "), Ok(Duration::from_millis(12_500)));
    }

    #[test]
    fn malformed_and_negative_inputs_name_the_text() {
        for bad in [
            "",
            "P",
            "PT",
            "PTS",
            "PT5",
            "PT5X",
            "PT1S2M",
            "P1H",
            "P1M",
            "5.0000000001",
            "abc",
            "PT.5S",
        ] {
            assert_eq!(
                parse(bad),
                Err(DurationError::Malformed(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse("-PT5S"),
            Err(DurationError::Negative("-PT5S".to_owned()))
        );
        assert_eq!(parse("-5"), Err(DurationError::Negative("-5".to_owned())));
        let huge = "P999999999999999999D";
        assert_eq!(parse(huge), Err(DurationError::Overflow(huge.to_owned())));
        let message = parse("PT5X").unwrap_err().to_string();
        assert!(message.contains("\"PT5X\""), "{message}");
    }

    #[test]
    fn formats_like_java_duration_to_string() {
        assert_eq!(format(Duration::from_secs(5)), "PT5S");
        assert_eq!(format(Duration::from_millis(500)), "PT0.5S");
        assert_eq!(format(Duration::ZERO), "PT0S");
        assert_eq!(format(Duration::from_secs(3600)), "PT1H");
        assert_eq!(format(Duration::from_secs(5400)), "PT1H30M");
        assert_eq!(format(Duration::new(90_061, 1)), "PT25H1M1.000000001S");
    }

    #[test]
    fn format_then_parse_is_identity() {
        for duration in [
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::new(7_261, 120_000_000),
        ] {
            assert_eq!(parse(&format(duration)), Ok(duration));
        }
    }
}
