//! Real measured weather replayed at any instant: the compact typical-year files committed under
//! `services/pew-sim/weather/`, embedded in the binary, interpolated between hours and repeated
//! every calendar year.

use std::fmt;
use std::str::FromStr;

use pew_power::Timestamp;

use crate::calendar::{HOUR_S, TYPICAL_YEAR_HOURS, typical_year_second};
use crate::weather_file::{self, Station, WeatherFileError, WeatherTable};

/// The sites whose typical year ships with pew.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SiteName {
    /// Greensboro, North Carolina (36.1 N): a typical temperate climate.
    Greensboro,
    /// Sand Point, Alaska (55.3 N): dark, cloudy winters — the stress case.
    SandPoint,
}

impl SiteName {
    /// Every shipped site.
    pub const ALL: [SiteName; 2] = [SiteName::Greensboro, SiteName::SandPoint];

    /// The kebab-case name used on command lines and in file names.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteName::Greensboro => "greensboro",
            SiteName::SandPoint => "sand-point",
        }
    }

    /// The compact weather file of the site, as committed.
    fn compact_file(self) -> &'static str {
        match self {
            SiteName::Greensboro => include_str!("../weather/greensboro.csv"),
            SiteName::SandPoint => include_str!("../weather/sand-point.csv"),
        }
    }
}

impl fmt::Display for SiteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A site name that is not one of [`SiteName::ALL`].
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unknown site {0:?}: expected \"greensboro\" or \"sand-point\"")]
pub struct UnknownSite(String);

impl FromStr for SiteName {
    type Err = UnknownSite;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_lowercase().as_str() {
            "greensboro" => Ok(SiteName::Greensboro),
            "sand-point" | "sandpoint" => Ok(SiteName::SandPoint),
            _ => Err(UnknownSite(name.to_owned())),
        }
    }
}

/// Weather at one instant (or, in a [`WeatherTable`], of one hour).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conditions {
    /// Global horizontal irradiance, W/m².
    pub ghi_w_m2: f64,
    /// Dry-bulb air temperature, °C.
    pub temp_c: f64,
    /// Relative humidity, %.
    pub rh_pct: f64,
    /// Station pressure, hPa.
    pub pressure_hpa: f64,
}

/// A typical year of hourly weather that can be asked for the conditions at any instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Weather {
    table: WeatherTable,
}

/// Where an hourly value sits within its hour, for interpolation.
#[derive(Clone, Copy)]
enum Anchor {
    /// Observations are instantaneous readings at the start of the hour.
    HourStart,
    /// Irradiance is the hour's mean, best placed at its middle.
    HourMiddle,
}

impl Anchor {
    fn offset_s(self) -> i64 {
        match self {
            Anchor::HourStart => 0,
            Anchor::HourMiddle => HOUR_S / 2,
        }
    }
}

impl Weather {
    /// The shipped typical year of `site`.
    pub fn site(site: SiteName) -> Result<Self, WeatherFileError> {
        Self::parse(site.compact_file())
    }

    /// Reads a compact weather file (see [`weather_file`]).
    pub fn parse(text: &str) -> Result<Self, WeatherFileError> {
        weather_file::parse(text).map(|table| Self { table })
    }

    /// The station the year was recorded at (coordinates, UTC offset of local standard time).
    pub fn station(&self) -> &Station {
        &self.table.station
    }

    /// Conditions at `t`, linearly interpolated between hours. The typical year repeats every
    /// calendar year; February 29 replays February 28.
    pub fn at(&self, t: Timestamp) -> Conditions {
        let second = typical_year_second(t);
        let observed = self.interpolate(second, Anchor::HourStart);
        let irradiance = self.interpolate(second, Anchor::HourMiddle);
        Conditions {
            ghi_w_m2: irradiance.ghi_w_m2,
            ..observed
        }
    }

    fn interpolate(&self, second_of_year: i64, anchor: Anchor) -> Conditions {
        let year_s = (TYPICAL_YEAR_HOURS as i64) * HOUR_S;
        let since_anchor = (second_of_year - anchor.offset_s()).rem_euclid(year_s);
        let index = (since_anchor / HOUR_S) as usize;
        let weight = (since_anchor % HOUR_S) as f64 / HOUR_S as f64;
        let before = self.table.hours[index];
        // The hour after the last one of the year is the first one: the typical year repeats.
        let after = self.table.hours[(index + 1) % TYPICAL_YEAR_HOURS];
        let mix = |a: f64, b: f64| a + (b - a) * weight;
        Conditions {
            ghi_w_m2: mix(before.ghi_w_m2, after.ghi_w_m2),
            temp_c: mix(before.temp_c, after.temp_c),
            rh_pct: mix(before.rh_pct, after.rh_pct),
            pressure_hpa: mix(before.pressure_hpa, after.pressure_hpa),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::DAY_S;
    use pew_power::calendar::days_from_civil;

    fn weather(site: SiteName) -> Weather {
        Weather::site(site).expect("shipped weather file parses")
    }

    fn utc(year: i64, month: u32, day: u32, hour: i64, minute: i64) -> Timestamp {
        days_from_civil(year, month, day) * DAY_S + hour * HOUR_S + minute * 60
    }

    #[test]
    fn site_names_parse_in_both_spellings_and_round_trip() {
        assert_eq!("sand-point".parse(), Ok(SiteName::SandPoint));
        assert_eq!("SandPoint".parse(), Ok(SiteName::SandPoint));
        assert_eq!("greensboro".parse(), Ok(SiteName::Greensboro));
        assert!("miami".parse::<SiteName>().is_err());
        for site in SiteName::ALL {
            assert_eq!(site.to_string().parse(), Ok(site));
        }
    }

    #[test]
    fn shipped_files_carry_station_coordinates_and_offsets() {
        let greensboro = weather(SiteName::Greensboro);
        let station = greensboro.station();
        assert_eq!(
            (station.latitude, station.longitude, station.utc_offset_h),
            (36.1, -79.95, -5)
        );
        let sand_point = weather(SiteName::SandPoint);
        let station = sand_point.station();
        assert_eq!(
            (station.latitude, station.longitude, station.utc_offset_h),
            (55.317, -160.517, -9)
        );
    }

    /// Mean daily irradiation of a month, kWh/m², integrated from `at` in 5-minute steps.
    fn monthly_mean_kwh_m2(weather: &Weather, month: u32, days: u32) -> f64 {
        let start = utc(2025, month, 1, 0, 0);
        let step_s = 300;
        let steps = i64::from(days) * DAY_S / step_s;
        let wh: f64 = (0..steps)
            .map(|k| weather.at(start + k * step_s).ghi_w_m2 * step_s as f64 / 3600.0)
            .sum();
        wh / 1000.0 / f64::from(days)
    }

    #[test]
    fn interpolated_irradiance_reproduces_published_monthly_means() {
        // Daily-mean GHI of the TMY3 files, kWh/m²/day, computed from the source files in
        // shared/reference/power-sensors.md §3.4.
        let cases = [
            (SiteName::Greensboro, 12, 31, 2.24),
            (SiteName::Greensboro, 6, 30, 6.25),
            (SiteName::SandPoint, 12, 31, 0.46),
            (SiteName::SandPoint, 6, 30, 3.81),
        ];
        for (site, month, days, expected) in cases {
            let mean = monthly_mean_kwh_m2(&weather(site), month, days);
            assert!(
                (mean - expected).abs() < 0.03,
                "{site} month {month}: {mean:.3} vs {expected}"
            );
        }
    }

    #[test]
    fn greensboro_sun_peaks_near_local_solar_noon_not_at_utc_noon() {
        // Solar noon at −79.95° is about 17:20 UTC; a mis-applied UTC offset would move the
        // peak by hours.
        let weather = weather(SiteName::Greensboro);
        let day = utc(2025, 6, 1, 0, 0);
        let (mut best_ghi, mut best_minute) = (0.0, 0);
        for minute in (0..24 * 60).step_by(5) {
            let ghi: f64 = (0..30)
                .map(|d| weather.at(day + d * DAY_S + minute * 60).ghi_w_m2)
                .sum();
            if ghi > best_ghi {
                (best_ghi, best_minute) = (ghi, minute);
            }
        }
        assert!(
            (15 * 60..=19 * 60).contains(&best_minute),
            "peak at {best_minute} min UTC"
        );
        assert_eq!(
            weather.at(utc(2025, 6, 15, 8, 0)).ghi_w_m2,
            0.0,
            "03:00 local is night"
        );
    }

    #[test]
    fn observations_are_exact_on_the_hour_and_linear_between() {
        let weather = weather(SiteName::Greensboro);
        let t = utc(2025, 4, 10, 14, 0);
        let on_hour = weather.at(t);
        let next_hour = weather.at(t + HOUR_S);
        let halfway = weather.at(t + HOUR_S / 2);
        assert!((halfway.temp_c - (on_hour.temp_c + next_hour.temp_c) / 2.0).abs() < 1e-9);
        assert!((halfway.rh_pct - (on_hour.rh_pct + next_hour.rh_pct) / 2.0).abs() < 1e-9);
        // Irradiance is anchored mid-hour: exact at hh:30, the mean of neighbours at hh:00.
        let hour_of_year = (typical_year_second(t) / HOUR_S) as usize;
        assert_eq!(halfway.ghi_w_m2, weather.table.hours[hour_of_year].ghi_w_m2);
    }

    #[test]
    fn year_end_interpolates_into_the_start_of_the_typical_year() {
        let weather = weather(SiteName::SandPoint);
        let last = weather.table.hours[TYPICAL_YEAR_HOURS - 1];
        let first = weather.table.hours[0];
        let at = weather.at(utc(2025, 12, 31, 23, 30));
        assert!((at.temp_c - (last.temp_c + first.temp_c) / 2.0).abs() < 1e-9);
        assert_eq!(
            weather.at(utc(2026, 1, 1, 0, 0)),
            weather.at(utc(2030, 1, 1, 0, 0))
        );
    }

    #[test]
    fn leap_day_replays_february_28() {
        let weather = weather(SiteName::Greensboro);
        assert_eq!(
            weather.at(utc(2024, 2, 29, 17, 10)),
            weather.at(utc(2025, 2, 28, 17, 10))
        );
        assert_eq!(
            weather.at(utc(2024, 3, 1, 17, 10)),
            weather.at(utc(2025, 3, 1, 17, 10))
        );
    }
}
