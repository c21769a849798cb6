//! Where the sun is, and how much sunlight reaches the ground under a clear sky.
//!
//! Sun position uses NOAA's "General Solar Position Calculations" (Spencer's 1971 Fourier
//! series for declination and equation of time, then the hour angle from true solar time).
//! It is good to a fraction of a degree, far below what a clear-sky envelope needs, and it
//! needs no tables. Clear-sky irradiance is the Haurwitz model, which needs only the zenith.

use std::f64::consts::TAU;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::calendar::{DAY_S, is_leap_year, year_and_day_of_year};
use crate::chemistry::ConfigError;

/// A place on Earth, in degrees; north and east are positive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// Latitude in degrees, −90..=90.
    pub latitude: f64,
    /// Longitude in degrees, −180..=180.
    pub longitude: f64,
}

impl Site {
    /// Rejects coordinates off the globe, naming the `[solar]` keys they come from.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ConfigError::require_within("solar.latitude", self.latitude, -90.0, 90.0)?;
        ConfigError::require_within("solar.longitude", self.longitude, -180.0, 180.0)
    }
}

/// Quadrature step for irradiance integrals. The Haurwitz curve is smooth, so Simpson's rule
/// at 5 minutes is exact to well under 0.1 % of a day's total.
const INTEGRATION_STEP_S: f64 = 300.0;

/// Cosine of the solar zenith angle at `t` (negative when the sun is below the horizon).
pub fn cos_zenith(site: Site, t: Timestamp) -> f64 {
    cos_zenith_at(site, t.div_euclid(DAY_S), t.rem_euclid(DAY_S) as f64)
}

/// Clear-sky global horizontal irradiance in W/m² (Haurwitz 1945, with pvlib's constants):
/// 1098 · cos z · exp(−0.059 / cos z), zero with the sun below the horizon.
pub fn clear_sky_ghi(site: Site, t: Timestamp) -> f64 {
    haurwitz(cos_zenith(site, t))
}

/// Clear-sky horizontal irradiation in Wh/m² between `start` and `end` (zero if `end <= start`).
pub fn clear_sky_wh_per_m2(site: Site, start: Timestamp, end: Timestamp) -> f64 {
    if end <= start {
        return 0.0;
    }
    let span_s = (end - start) as f64;
    // Simpson's rule needs an even number of intervals.
    let intervals = ((span_s / INTEGRATION_STEP_S).ceil() as i64).max(1);
    let intervals = intervals + intervals % 2;
    let step_s = span_s / intervals as f64;
    let ghi_at = |offset_s: f64| {
        let since_epoch_s = start as f64 + offset_s;
        let day = (since_epoch_s / DAY_S as f64).floor();
        let second_of_day = since_epoch_s - day * DAY_S as f64;
        haurwitz(cos_zenith_at(site, day as i64, second_of_day))
    };
    let interior: f64 = (1..intervals)
        .map(|i| {
            let weight = if i % 2 == 1 { 4.0 } else { 2.0 };
            weight * ghi_at(i as f64 * step_s)
        })
        .sum();
    let joule_per_m2 = step_s / 3.0 * (ghi_at(0.0) + interior + ghi_at(span_s));
    joule_per_m2 / 3600.0
}

fn haurwitz(cos_zenith: f64) -> f64 {
    if cos_zenith <= 0.0 {
        return 0.0;
    }
    1098.0 * cos_zenith * (-0.059 / cos_zenith).exp()
}

/// NOAA / Spencer solar geometry for day `day` (days since the epoch) at `second_of_day` UTC.
fn cos_zenith_at(site: Site, day: i64, second_of_day: f64) -> f64 {
    let (year, day_of_year) = year_and_day_of_year(day);
    let days_in_year = if is_leap_year(year) { 366.0 } else { 365.0 };
    let hour = second_of_day / 3600.0;
    // Fractional year in radians, zero at noon on 1 January.
    let gamma = TAU / days_in_year * (day_of_year as f64 + (hour - 12.0) / 24.0);

    let equation_of_time_min = 229.18
        * (0.000075 + 0.001868 * gamma.cos()
            - 0.032077 * gamma.sin()
            - 0.014615 * (2.0 * gamma).cos()
            - 0.040849 * (2.0 * gamma).sin());
    let declination = 0.006918 - 0.399912 * gamma.cos() + 0.070257 * gamma.sin()
        - 0.006758 * (2.0 * gamma).cos()
        + 0.000907 * (2.0 * gamma).sin()
        - 0.002697 * (3.0 * gamma).cos()
        + 0.00148 * (3.0 * gamma).sin();

    // The Earth turns 1° every 4 minutes; timestamps are UTC, so no time-zone term.
    let true_solar_min = second_of_day / 60.0 + equation_of_time_min + 4.0 * site.longitude;
    let hour_angle = (true_solar_min / 4.0 - 180.0).to_radians();

    let latitude = site.latitude.to_radians();
    let cos_zenith =
        latitude.sin() * declination.sin() + latitude.cos() * declination.cos() * hour_angle.cos();
    cos_zenith.clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-03-20 00:00 UTC (the March equinox fell at 03:06 UTC that day).
    const EQUINOX_2024: Timestamp = 1_710_892_800;
    /// 2024-06-20 00:00 UTC (solstice at 20:51 UTC).
    const JUNE_SOLSTICE_2024: Timestamp = 1_718_841_600;
    /// 2024-12-21 00:00 UTC (solstice at 09:20 UTC).
    const DECEMBER_SOLSTICE_2024: Timestamp = 1_734_739_200;
    /// 2023-11-03 00:00 UTC, near the equation of time's maximum (+16.4 min).
    const NOVEMBER_3_2023: Timestamp = 1_698_969_600;

    fn elevation_deg(site: Site, t: Timestamp) -> f64 {
        cos_zenith(site, t).asin().to_degrees()
    }

    /// Highest elevation over the UTC day starting at `midnight`, and when it happens.
    fn solar_noon(site: Site, midnight: Timestamp) -> (f64, Timestamp) {
        (0..DAY_S / 30)
            .map(|step| midnight + step * 30)
            .map(|t| (elevation_deg(site, t), t))
            .fold((f64::NEG_INFINITY, midnight), |best, candidate| {
                if candidate.0 > best.0 {
                    candidate
                } else {
                    best
                }
            })
    }

    fn daylight_hours(site: Site, midnight: Timestamp) -> f64 {
        let sunlit_minutes = (0..1440)
            .filter(|minute| cos_zenith(site, midnight + minute * 60) > 0.0)
            .count();
        sunlit_minutes as f64 / 60.0
    }

    #[test]
    fn equinox_noon_elevation_is_the_colatitude() {
        // Las Vegas, 36.1 N: 90 − 36.1 = 53.9°, the declination being ~0 at the equinox.
        let site = Site {
            latitude: 36.1,
            longitude: -115.1,
        };
        let (elevation, _) = solar_noon(site, EQUINOX_2024);
        assert!((elevation - 53.9).abs() < 0.5, "{elevation}");
    }

    #[test]
    fn solstice_noon_elevations_add_and_remove_the_tilt() {
        let site = Site {
            latitude: 36.1,
            longitude: -115.1,
        };
        let (summer, _) = solar_noon(site, JUNE_SOLSTICE_2024);
        assert!((summer - (53.9 + 23.44)).abs() < 0.5, "{summer}");
        let (winter, _) = solar_noon(site, DECEMBER_SOLSTICE_2024);
        assert!((winter - (53.9 - 23.44)).abs() < 0.5, "{winter}");
    }

    #[test]
    fn solar_noon_follows_longitude_and_equation_of_time() {
        // Greenwich on 3 November: the sun culminates ~16.4 min before 12:00 UTC.
        let (_, greenwich_noon) = solar_noon(
            Site {
                latitude: 51.5,
                longitude: 0.0,
            },
            NOVEMBER_3_2023,
        );
        let early_by_min = (NOVEMBER_3_2023 + 43_200 - greenwich_noon) as f64 / 60.0;
        assert!((early_by_min - 16.4).abs() < 1.0, "{early_by_min}");
        // 90° east culminates six hours earlier.
        let (_, east_noon) = solar_noon(
            Site {
                latitude: 51.5,
                longitude: 90.0,
            },
            NOVEMBER_3_2023,
        );
        assert!(((greenwich_noon - east_noon) as f64 / 3600.0 - 6.0).abs() < 0.02);
    }

    #[test]
    fn polar_night_and_midnight_sun_at_70_north() {
        let tromso = Site {
            latitude: 70.0,
            longitude: 19.0,
        };
        assert_eq!(daylight_hours(tromso, DECEMBER_SOLSTICE_2024), 0.0);
        assert_eq!(
            clear_sky_wh_per_m2(
                tromso,
                DECEMBER_SOLSTICE_2024,
                DECEMBER_SOLSTICE_2024 + DAY_S
            ),
            0.0
        );
        assert_eq!(daylight_hours(tromso, JUNE_SOLSTICE_2024), 24.0);
    }

    #[test]
    fn day_length_is_plausible() {
        // Geometric day length (centre of the disc, no refraction).
        let equator = Site {
            latitude: 0.0,
            longitude: 0.0,
        };
        assert!((daylight_hours(equator, EQUINOX_2024) - 12.0).abs() < 0.1);
        let helsinki = Site {
            latitude: 60.2,
            longitude: 24.9,
        };
        let summer = daylight_hours(helsinki, JUNE_SOLSTICE_2024);
        let winter = daylight_hours(helsinki, DECEMBER_SOLSTICE_2024);
        assert!((18.3..19.0).contains(&summer), "{summer}");
        assert!((5.3..6.0).contains(&winter), "{winter}");
        // A solstice day and the opposite one sum to 24 h (symmetric declination).
        assert!((summer + winter - 24.0).abs() < 0.2);
    }

    #[test]
    fn haurwitz_at_zenith_and_below_horizon() {
        let expected = 1098.0 * (-0.059f64).exp();
        assert!((haurwitz(1.0) - expected).abs() < 1e-9);
        assert!((expected - 1035.1).abs() < 0.1);
        assert_eq!(haurwitz(0.0), 0.0);
        assert_eq!(haurwitz(-0.5), 0.0);
        // At noon on the equinox the equator has the sun nearly overhead.
        let noon = EQUINOX_2024 + 43_200 + 7 * 60;
        assert!(
            (clear_sky_ghi(
                Site {
                    latitude: 0.0,
                    longitude: 0.0
                },
                noon
            ) - expected)
                .abs()
                < 2.0
        );
    }

    #[test]
    fn integral_matches_a_fine_riemann_sum_and_is_additive() {
        let site = Site {
            latitude: 36.1,
            longitude: -115.1,
        };
        let day_start = JUNE_SOLSTICE_2024;
        let day_end = day_start + DAY_S;
        let fine: f64 = (day_start..day_end)
            .step_by(10)
            .map(|t| clear_sky_ghi(site, t + 5) * 10.0)
            .sum::<f64>()
            / 3600.0;
        let simpson = clear_sky_wh_per_m2(site, day_start, day_end);
        assert!((simpson - fine).abs() / fine < 1e-3, "{simpson} vs {fine}");
        let by_halves = clear_sky_wh_per_m2(site, day_start, day_start + 50_000)
            + clear_sky_wh_per_m2(site, day_start + 50_000, day_end);
        assert!((by_halves - simpson).abs() / simpson < 1e-3);
        assert_eq!(clear_sky_wh_per_m2(site, day_end, day_start), 0.0);
    }

    #[test]
    fn daily_clear_sky_totals_are_realistic() {
        // Clear-sky horizontal irradiation is ~8 kWh/m² in a mid-latitude June and roughly a
        // third of that in December.
        let site = Site {
            latitude: 36.1,
            longitude: -115.1,
        };
        let june = clear_sky_wh_per_m2(site, JUNE_SOLSTICE_2024, JUNE_SOLSTICE_2024 + DAY_S);
        let december =
            clear_sky_wh_per_m2(site, DECEMBER_SOLSTICE_2024, DECEMBER_SOLSTICE_2024 + DAY_S);
        assert!((7_000.0..9_500.0).contains(&june), "{june}");
        assert!((2_500.0..4_000.0).contains(&december), "{december}");
    }

    #[test]
    fn site_validation_names_the_key() {
        let off_globe = Site {
            latitude: 91.0,
            longitude: 0.0,
        };
        assert_eq!(
            off_globe
                .validate()
                .err()
                .map(|e| e.key().to_owned())
                .as_deref(),
            Some("solar.latitude")
        );
        let nan = Site {
            latitude: 0.0,
            longitude: f64::NAN,
        };
        assert_eq!(
            nan.validate().err().map(|e| e.key().to_owned()).as_deref(),
            Some("solar.longitude")
        );
        assert_eq!(
            Site {
                latitude: -33.9,
                longitude: 151.2
            }
            .validate(),
            Ok(())
        );
    }
}
