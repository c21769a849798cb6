//! Proleptic Gregorian calendar arithmetic on UTC timestamps: just what the sun's position and
//! the typical-year weather replay need, without a date crate in an embedded workspace.

/// Seconds in a day.
pub const DAY_S: i64 = 86_400;

/// Whether `year` has a February 29.
pub fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days since 1970-01-01 of a civil date. `month` is 1..=12, `day` 1..=31 (not validated).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Count from 0000-03-01 so that the leap day is the last day of the shifted year, which
    // makes every month but February a fixed length and the leap rule a plain division.
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year - era * 400;
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_shifted_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_shifted_year;
    const DAYS_0000_03_01_TO_1970_01_01: i64 = 719_468;
    era * 146_097 + day_of_era - DAYS_0000_03_01_TO_1970_01_01
}

/// Calendar year containing the UTC day `days` since 1970-01-01.
pub fn year_of_day(days: i64) -> i64 {
    // An estimate from the mean year length is at most one year off; correct it exactly.
    let mut year = 1970 + (days * 400).div_euclid(146_097);
    while days_from_civil(year, 1, 1) > days {
        year -= 1;
    }
    while days_from_civil(year + 1, 1, 1) <= days {
        year += 1;
    }
    year
}

/// Calendar year and zero-based day of that year for the UTC day `days` since 1970-01-01.
pub fn year_and_day_of_year(days: i64) -> (i64, i64) {
    let year = year_of_day(days);
    (year, days - days_from_civil(year, 1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_match_known_epochs() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        // 2000-03-01 is 11017 days after the epoch (2000 is a 400-year leap year).
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(
            days_from_civil(2024, 2, 29) + 1,
            days_from_civil(2024, 3, 1)
        );
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn year_of_day_handles_boundaries_on_both_sides_of_the_epoch() {
        for year in [1900, 1969, 1970, 2000, 2024, 2100] {
            let first = days_from_civil(year, 1, 1);
            assert_eq!(year_of_day(first), year);
            assert_eq!(year_of_day(first - 1), year - 1);
        }
    }

    #[test]
    fn leap_rule_includes_century_exceptions() {
        assert!(is_leap_year(2024));
        assert!(is_leap_year(2000));
        assert!(!is_leap_year(1900));
        assert!(!is_leap_year(2025));
    }

    #[test]
    fn day_of_year_counts_from_january_first() {
        assert_eq!(year_and_day_of_year(0), (1970, 0));
        assert_eq!(year_and_day_of_year(11_016), (2000, 59), "2000-02-29");
        assert_eq!(
            year_and_day_of_year(-25_508),
            (1900, 59),
            "1900-03-01: no leap day"
        );
        assert_eq!(
            year_and_day_of_year(days_from_civil(2024, 12, 31)),
            (2024, 365)
        );
        assert_eq!(year_and_day_of_year(-1), (1969, 364));
    }
}
