//! Just enough proleptic-Gregorian calendar arithmetic to map a UTC timestamp onto the 365-day
//! typical meteorological year, without pulling a date crate into an embedded workspace.

use pew_power::Timestamp;
use pew_power::calendar::{days_from_civil, is_leap_year, year_of_day};

/// Seconds in a day.
pub const DAY_S: i64 = pew_power::calendar::DAY_S;
/// Seconds in an hour.
pub const HOUR_S: i64 = 3_600;
/// Days in a typical meteorological year: TMY files never contain February 29.
pub const TYPICAL_YEAR_DAYS: i64 = 365;
/// Hours in a typical meteorological year.
pub const TYPICAL_YEAR_HOURS: usize = 8_760;

/// Day of year (0-based) of March 1 in a non-leap year; in a leap year it is February 29.
const MARCH_1_DAY_OF_YEAR: i64 = 59;

/// Cumulative days before each month in a non-leap year.
pub const DAYS_BEFORE_MONTH: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];

/// 0-based day of a non-leap year for a month (1..=12) and day, or `None` if the date does not
/// exist in a non-leap year (February 29 included).
pub fn typical_day_of_year(month: u32, day: u32) -> Option<i64> {
    const DAYS_IN_MONTH: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let index = usize::try_from(month.checked_sub(1)?).ok()?;
    let month_length = *DAYS_IN_MONTH.get(index)?;
    (1..=month_length)
        .contains(&day)
        .then(|| DAYS_BEFORE_MONTH[index] + i64::from(day) - 1)
}

/// Seconds into the 365-day typical year (UTC) at which the weather for `t` is found: the
/// typical year repeats every calendar year, and February 29 replays February 28, so the only
/// discontinuity is at the midnight between them — at night, where it is harmless.
pub fn typical_year_second(t: Timestamp) -> i64 {
    let days = t.div_euclid(DAY_S);
    let second_of_day = t.rem_euclid(DAY_S);
    let year = year_of_day(days);
    let mut day_of_year = days - days_from_civil(year, 1, 1);
    if is_leap_year(year) && day_of_year >= MARCH_1_DAY_OF_YEAR {
        day_of_year -= 1;
    }
    day_of_year * DAY_S + second_of_day
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_day_of_year_rejects_dates_missing_from_a_typical_year() {
        assert_eq!(typical_day_of_year(1, 1), Some(0));
        assert_eq!(typical_day_of_year(3, 1), Some(59));
        assert_eq!(typical_day_of_year(12, 31), Some(364));
        assert_eq!(typical_day_of_year(2, 29), None);
        assert_eq!(typical_day_of_year(4, 31), None);
        assert_eq!(typical_day_of_year(13, 1), None);
        assert_eq!(typical_day_of_year(0, 1), None);
    }

    #[test]
    fn leap_day_replays_february_28_and_march_matches_a_common_year() {
        let at = |y, m, d| days_from_civil(y, m, d) * DAY_S + 12 * HOUR_S;
        assert_eq!(
            typical_year_second(at(2024, 2, 29)),
            typical_year_second(at(2024, 2, 28))
        );
        assert_eq!(
            typical_year_second(at(2024, 3, 1)),
            typical_year_second(at(2025, 3, 1))
        );
        assert_eq!(
            typical_year_second(at(2024, 12, 31)),
            (TYPICAL_YEAR_DAYS - 1) * DAY_S + 12 * HOUR_S
        );
        assert_eq!(typical_year_second(days_from_civil(2025, 1, 1) * DAY_S), 0);
    }
}
