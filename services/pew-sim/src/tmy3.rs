//! Reader for NREL TMY3 files (as shipped in pvlib's `pvlib/data/`) and their conversion to the
//! compact UTC weather table.
//!
//! TMY3 layout: line 1 is station metadata (`USAF,"Name",State,TZ,latitude,longitude,elevation`),
//! line 2 names the columns, then one row per hour stamped `MM/DD/YYYY,HH:MM` in local standard
//! time with the hour-ending convention (01:00 .. 24:00). Each month may come from a different
//! year, so the year in the stamp is ignored. Irradiance is the energy received during the hour
//! ending at the stamp; temperature, humidity and pressure are observed at the stamp.

use crate::calendar::{TYPICAL_YEAR_HOURS, typical_day_of_year};
use crate::weather::Conditions;
use crate::weather_file::{Station, WeatherTable};

const DATE_COLUMN: &str = "Date (MM/DD/YYYY)";
const TIME_COLUMN: &str = "Time (HH:MM)";
const GHI_COLUMN: &str = "GHI (W/m^2)";
const TEMP_COLUMN: &str = "Dry-bulb (C)";
const RH_COLUMN: &str = "RHum (%)";
const PRESSURE_COLUMN: &str = "Pressure (mbar)";

/// Physically possible ranges; TMY3 marks missing values as -9900, which these reject.
const GHI_RANGE: (f64, f64) = (0.0, 1_500.0);
const TEMP_RANGE: (f64, f64) = (-90.0, 60.0);
const RH_RANGE: (f64, f64) = (0.0, 100.0);
const PRESSURE_RANGE: (f64, f64) = (500.0, 1_100.0);

/// One row of a TMY3 file, in its own local standard time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tmy3Hour {
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    /// 1..=24: the row covers the hour ending at this local standard time.
    pub hour_ending: u32,
    /// Global horizontal irradiance received during the hour, Wh/m² (= mean W/m²).
    pub ghi_w_m2: f64,
    /// Dry-bulb temperature at the stamp, °C.
    pub temp_c: f64,
    /// Relative humidity at the stamp, %.
    pub rh_pct: f64,
    /// Station pressure at the stamp, hPa (the file's mbar).
    pub pressure_hpa: f64,
}

/// Why a TMY3 file could not be converted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Tmy3Error {
    /// The file ends before its two header lines.
    #[error("TMY3 file is missing its {0} line")]
    MissingLine(&'static str),
    /// The station metadata line is malformed.
    #[error("TMY3 station line: {0}")]
    BadStation(String),
    /// A required column is not in the column header.
    #[error("TMY3 column header lacks {0:?}")]
    MissingColumn(&'static str),
    /// A data row is malformed or holds an impossible value.
    #[error("TMY3 line {line}: {reason}")]
    BadRow { line: usize, reason: String },
    /// The rows do not cover each hour of a 365-day year exactly once.
    #[error("TMY3 data do not form one 365-day year: {0}")]
    IncompleteYear(String),
}

/// Reads the station line and every data row of a TMY3 file.
pub fn parse_tmy3(text: &str) -> Result<(Station, Vec<Tmy3Hour>), Tmy3Error> {
    let mut lines = text.lines();
    let station = parse_station(lines.next().ok_or(Tmy3Error::MissingLine("station"))?)?;
    let columns = ColumnIndices::locate(lines.next().ok_or(Tmy3Error::MissingLine("column"))?)?;
    let mut hours = Vec::with_capacity(TYPICAL_YEAR_HOURS);
    // Data start on the third line of the file.
    for (line_number, line) in (3..).zip(lines) {
        if line.trim().is_empty() {
            continue;
        }
        let hour = columns.read_row(line).map_err(|reason| Tmy3Error::BadRow {
            line: line_number,
            reason,
        })?;
        hours.push(hour);
    }
    Ok((station, hours))
}

/// Re-indexes a year of local-time TMY3 rows onto UTC hours of the typical year: the
/// irradiance of the row ending at local hour `k` belongs to the UTC hour starting at
/// `k − 1 − utc_offset`, and the observations stamped `k` belong to the start of the UTC hour
/// `k − utc_offset`. Hours shifted past either end of the year wrap around.
pub fn to_utc_year(station: Station, rows: &[Tmy3Hour]) -> Result<WeatherTable, Tmy3Error> {
    let year_hours = TYPICAL_YEAR_HOURS as i64;
    let offset = i64::from(station.utc_offset_h);
    let mut ghi = vec![None; TYPICAL_YEAR_HOURS];
    let mut observed = vec![None; TYPICAL_YEAR_HOURS];
    for row in rows {
        let day = typical_day_of_year(row.month, row.day).ok_or_else(|| {
            Tmy3Error::IncompleteYear(format!(
                "{:02}/{:02} is not a day of a 365-day year",
                row.month, row.day
            ))
        })?;
        if !(1..=24).contains(&row.hour_ending) {
            return Err(Tmy3Error::IncompleteYear(format!(
                "hour-ending {} on {:02}/{:02} is outside 1..=24",
                row.hour_ending, row.month, row.day
            )));
        }
        let local_hour_end = day * 24 + i64::from(row.hour_ending);
        let slot = |hour: i64| (hour - offset).rem_euclid(year_hours) as usize;
        let ghi_slot = slot(local_hour_end - 1);
        if ghi[ghi_slot].replace(row.ghi_w_m2).is_some() {
            return Err(Tmy3Error::IncompleteYear(format!(
                "{:02}/{:02} {:02}:00 appears twice",
                row.month, row.day, row.hour_ending
            )));
        }
        observed[slot(local_hour_end)] = Some((row.temp_c, row.rh_pct, row.pressure_hpa));
    }
    let hours = ghi
        .into_iter()
        .zip(observed)
        .map(|pair| match pair {
            (Some(ghi_w_m2), Some((temp_c, rh_pct, pressure_hpa))) => Ok(Conditions {
                ghi_w_m2,
                temp_c,
                rh_pct,
                pressure_hpa,
            }),
            _ => Err(()),
        })
        .collect::<Result<Vec<_>, ()>>()
        .map_err(|()| {
            Tmy3Error::IncompleteYear(format!(
                "{} rows for {TYPICAL_YEAR_HOURS} hours",
                rows.len()
            ))
        })?;
    Ok(WeatherTable { station, hours })
}

/// Parses a TMY3 file and converts it to the compact UTC table in one go.
pub fn convert(text: &str) -> Result<WeatherTable, Tmy3Error> {
    let (station, rows) = parse_tmy3(text)?;
    to_utc_year(station, &rows)
}

fn parse_station(line: &str) -> Result<Station, Tmy3Error> {
    let fields = split_quoted(line);
    let [id, name, state, tz, latitude, longitude, elevation] = &fields[..] else {
        return Err(Tmy3Error::BadStation(format!(
            "expected 7 fields, found {}",
            fields.len()
        )));
    };
    let number = |what: &str, text: &str| {
        text.parse::<f64>()
            .ok()
            .filter(|value| value.is_finite())
            .ok_or_else(|| Tmy3Error::BadStation(format!("{what} {text:?} is not a number")))
    };
    let tz_hours = number("time zone", tz)?;
    // Whole-hour offsets keep hourly rows on UTC hour boundaries; every TMY3 station has one.
    if tz_hours.fract() != 0.0 || tz_hours.abs() > 14.0 {
        return Err(Tmy3Error::BadStation(format!(
            "time zone {tz_hours} is not a whole-hour UTC offset"
        )));
    }
    Ok(Station {
        id: id.clone(),
        name: name.clone(),
        state: state.clone(),
        latitude: number("latitude", latitude)?,
        longitude: number("longitude", longitude)?,
        elevation_m: number("elevation", elevation)?,
        utc_offset_h: tz_hours as i32,
    })
}

/// Splits a CSV line whose fields may be wrapped in double quotes (TMY3 quotes the station
/// name, which could contain a comma). Embedded quotes do not occur in TMY3 files.
fn split_quoted(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for character in line.trim().chars() {
        match character {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    fields.push(current);
    fields
}

struct ColumnIndices {
    date: usize,
    time: usize,
    ghi: usize,
    temp: usize,
    rh: usize,
    pressure: usize,
}

impl ColumnIndices {
    fn locate(header: &str) -> Result<Self, Tmy3Error> {
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        let find = |wanted: &'static str| {
            names
                .iter()
                .position(|name| *name == wanted)
                .ok_or(Tmy3Error::MissingColumn(wanted))
        };
        Ok(Self {
            date: find(DATE_COLUMN)?,
            time: find(TIME_COLUMN)?,
            ghi: find(GHI_COLUMN)?,
            temp: find(TEMP_COLUMN)?,
            rh: find(RH_COLUMN)?,
            pressure: find(PRESSURE_COLUMN)?,
        })
    }

    fn read_row(&self, line: &str) -> Result<Tmy3Hour, String> {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let field = |index: usize| {
            fields
                .get(index)
                .copied()
                .ok_or_else(|| format!("only {} fields", fields.len()))
        };
        let number = |index: usize, name: &str, (low, high): (f64, f64)| -> Result<f64, String> {
            let text = field(index)?;
            let value: f64 = text
                .parse()
                .map_err(|_| format!("{name} {text:?} is not a number"))?;
            if (low..=high).contains(&value) {
                Ok(value)
            } else {
                Err(format!(
                    "{name} {value} outside {low}..={high} (missing data?)"
                ))
            }
        };
        let (month, day) = parse_date(field(self.date)?)?;
        Ok(Tmy3Hour {
            month,
            day,
            hour_ending: parse_hour_ending(field(self.time)?)?,
            ghi_w_m2: number(self.ghi, GHI_COLUMN, GHI_RANGE)?,
            temp_c: number(self.temp, TEMP_COLUMN, TEMP_RANGE)?,
            rh_pct: number(self.rh, RH_COLUMN, RH_RANGE)?,
            pressure_hpa: number(self.pressure, PRESSURE_COLUMN, PRESSURE_RANGE)?,
        })
    }
}

/// `MM/DD/YYYY` → (month, day); the year is meaningless in a typical year.
fn parse_date(text: &str) -> Result<(u32, u32), String> {
    let mut parts = text.split('/').map(str::parse::<u32>);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Ok(month)), Some(Ok(day)), Some(Ok(_year)), None) => Ok((month, day)),
        _ => Err(format!("date {text:?} is not MM/DD/YYYY")),
    }
}

/// `HH:MM` with `MM` = 00 → the hour-ending HH.
fn parse_hour_ending(text: &str) -> Result<u32, String> {
    match text.split_once(':') {
        Some((hour, "00")) => hour
            .parse()
            .map_err(|_| format!("time {text:?} is not HH:00")),
        _ => Err(format!("time {text:?} is not HH:00")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first two header lines and rows of pvlib 0.16.1's `pvlib/data/723170TYA.CSV`
    /// (Greensboro, NC), verbatim, plus the last row of the file.
    const GREENSBORO_EXCERPT: &str = "\
723170,\"GREENSBORO PIEDMONT TRIAD INT\",NC,-5.0,36.100,-79.950,273
Date (MM/DD/YYYY),Time (HH:MM),ETR (W/m^2),ETRN (W/m^2),GHI (W/m^2),GHI source,GHI uncert (%),DNI (W/m^2),DNI source,DNI uncert (%),DHI (W/m^2),DHI source,DHI uncert (%),GH illum (lx),GH illum source,Global illum uncert (%),DN illum (lx),DN illum source,DN illum uncert (%),DH illum (lx),DH illum source,DH illum uncert (%),Zenith lum (cd/m^2),Zenith lum source,Zenith lum uncert (%),TotCld (tenths),TotCld source,TotCld uncert (code),OpqCld (tenths),OpqCld source,OpqCld uncert (code),Dry-bulb (C),Dry-bulb source,Dry-bulb uncert (code),Dew-point (C),Dew-point source,Dew-point uncert (code),RHum (%),RHum source,RHum uncert (code),Pressure (mbar),Pressure source,Pressure uncert (code),Wdir (degrees),Wdir source,Wdir uncert (code),Wspd (m/s),Wspd source,Wspd uncert (code),Hvis (m),Hvis source,Hvis uncert (code),CeilHgt (m),CeilHgt source,CeilHgt uncert (code),Pwat (cm),Pwat source,Pwat uncert (code),AOD (unitless),AOD source,AOD uncert (code),Alb (unitless),Alb source,Alb uncert (code),Lprecip depth (mm),Lprecip quantity (hr),Lprecip source,Lprecip uncert (code),PresWth (METAR code),PresWth source,PresWth uncert (code)
01/01/1988,01:00,0,0,0,1,0,0,1,0,0,1,0,0,1,0,0,1,0,0,1,0,0,1,0,10,A,7,10,A,7,10.0,A,7,6.1,A,7,77,A,7,993,A,7,200,A,7,6.2,A,7,16100,B,7,1370,A,7,1.5,E,8,0.000,?,0,0.00,?,0,0,1,D,9,00,C,8
01/01/1988,02:00,0,0,0,1,0,0,1,0,0,1,0,0,1,0,0,1,0,0,1,0,0,1,0,10,A,7,10,A,7,10.0,A,7,6.7,A,7,80,A,7,993,A,7,230,A,7,5.2,A,7,16100,B,7,1370,A,7,1.6,E,8,0.000,?,0,0.00,?,0,0,1,D,9,00,C,8
12/31/1980,24:00,0,0,0,1,0,0,1,0,0,1,0,0,1,0,0,1,0,0,1,0,0,1,0,10,A,7,10,A,7,2.2,A,7,0.6,A,7,89,A,7,980,A,7,180,A,7,2.6,A,7,16100,B,7,550,A,7,1.1,E,8,0.000,?,0,0.00,?,0,0,1,D,9,00,C,8
";

    /// The header lines and the June 21 14:00 row of pvlib 0.16.1's `pvlib/data/703165TY.csv`
    /// (Sand Point, AK), verbatim; its precipitation columns hold TMY3's -9900 "missing" marker.
    const SAND_POINT_EXCERPT: &str = "\
703165,\"SAND POINT\",AK,-9.0,55.317,-160.517,7
Date (MM/DD/YYYY),Time (HH:MM),ETR (W/m^2),ETRN (W/m^2),GHI (W/m^2),GHI source,GHI uncert (%),DNI (W/m^2),DNI source,DNI uncert (%),DHI (W/m^2),DHI source,DHI uncert (%),GH illum (lx),GH illum source,Global illum uncert (%),DN illum (lx),DN illum source,DN illum uncert (%),DH illum (lx),DH illum source,DH illum uncert (%),Zenith lum (cd/m^2),Zenith lum source,Zenith lum uncert (%),TotCld (tenths),TotCld source,TotCld uncert (code),OpqCld (tenths),OpqCld source,OpqCld uncert (code),Dry-bulb (C),Dry-bulb source,Dry-bulb uncert (code),Dew-point (C),Dew-point source,Dew-point uncert (code),RHum (%),RHum source,RHum uncert (code),Pressure (mbar),Pressure source,Pressure uncert (code),Wdir (degrees),Wdir source,Wdir uncert (code),Wspd (m/s),Wspd source,Wspd uncert (code),Hvis (m),Hvis source,Hvis uncert (code),CeilHgt (m),CeilHgt source,CeilHgt uncert (code),Pwat (cm),Pwat source,Pwat uncert (code),AOD (unitless),AOD source,AOD uncert (code),Alb (unitless),Alb source,Alb uncert (code),Lprecip depth (mm),Lprecip quantity (hr),Lprecip source,Lprecip uncert (code)
06/21/1996,14:00,1120,1322,198,1,25,0,1,28,198,1,25,24300,1,25,0,1,28,24300,1,25,9950,1,45,10,E,9,10,A,7,8.3,A,7,6.6,A,7,89,A,7,1012,E,9,160,A,7,4.1,A,7,16100,A,7,390,A,7,1.8,E,8,0.135,F,8,0.110,F,8,-9900,-9900,?,0
";

    #[test]
    fn greensboro_station_line_gives_metadata_and_utc_offset() {
        let (station, _) = parse_tmy3(GREENSBORO_EXCERPT).expect("excerpt parses");
        assert_eq!(station.id, "723170");
        assert_eq!(station.name, "GREENSBORO PIEDMONT TRIAD INT");
        assert_eq!(station.state, "NC");
        assert_eq!(station.utc_offset_h, -5);
        assert_eq!(
            (station.latitude, station.longitude, station.elevation_m),
            (36.1, -79.95, 273.0)
        );
    }

    #[test]
    fn greensboro_rows_are_read_from_the_named_columns() {
        let (_, rows) = parse_tmy3(GREENSBORO_EXCERPT).expect("excerpt parses");
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1],
            Tmy3Hour {
                month: 1,
                day: 1,
                hour_ending: 2,
                ghi_w_m2: 0.0,
                temp_c: 10.0,
                rh_pct: 80.0,
                pressure_hpa: 993.0
            }
        );
        assert_eq!(
            (rows[2].month, rows[2].day, rows[2].hour_ending),
            (12, 31, 24)
        );
        assert_eq!(
            (rows[2].temp_c, rows[2].rh_pct, rows[2].pressure_hpa),
            (2.2, 89.0, 980.0)
        );
    }

    #[test]
    fn sand_point_row_with_missing_precipitation_still_parses() {
        let (station, rows) = parse_tmy3(SAND_POINT_EXCERPT).expect("row parses");
        assert_eq!(station.utc_offset_h, -9);
        assert_eq!(
            (rows[0].ghi_w_m2, rows[0].temp_c, rows[0].rh_pct),
            (198.0, 8.3, 89.0)
        );
    }

    #[test]
    fn missing_marker_in_a_required_column_is_rejected_with_its_line() {
        let text = SAND_POINT_EXCERPT.replace("1120,1322,198,", "1120,1322,-9900,");
        assert!(matches!(
            parse_tmy3(&text),
            Err(Tmy3Error::BadRow { line: 3, .. })
        ));
    }

    #[test]
    fn missing_column_is_named() {
        let text = GREENSBORO_EXCERPT.replace("RHum (%)", "RH (%)");
        assert_eq!(
            parse_tmy3(&text).err(),
            Some(Tmy3Error::MissingColumn(RH_COLUMN))
        );
    }

    fn synthetic_year() -> Vec<Tmy3Hour> {
        let days_in_month = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let mut rows = Vec::new();
        for (month, &days) in (1..).zip(days_in_month.iter()) {
            for day in 1..=days {
                for hour_ending in 1..=24 {
                    // Encode the row index so the re-indexing can be traced.
                    let index = rows.len() as f64;
                    rows.push(Tmy3Hour {
                        month,
                        day,
                        hour_ending,
                        ghi_w_m2: index,
                        temp_c: index,
                        rh_pct: 50.0,
                        pressure_hpa: 1000.0,
                    });
                }
            }
        }
        rows
    }

    fn station_at_offset(utc_offset_h: i32) -> Station {
        let (mut station, _) = parse_tmy3(GREENSBORO_EXCERPT).expect("excerpt parses");
        station.utc_offset_h = utc_offset_h;
        station
    }

    #[test]
    fn utc_conversion_shifts_by_the_offset_and_wraps_the_year_end() {
        let table = to_utc_year(station_at_offset(-5), &synthetic_year()).expect("full year");
        // Local 00:00–01:00 EST on January 1 (row 0) is 05:00–06:00 UTC.
        assert_eq!(table.hours[5].ghi_w_m2, 0.0);
        // The temperature stamped 01:00 EST (row 0) is the observation at 06:00 UTC.
        assert_eq!(table.hours[6].temp_c, 0.0);
        // The last five local hours of December 31 wrap to the start of the UTC year.
        assert_eq!(table.hours[0].ghi_w_m2, (TYPICAL_YEAR_HOURS - 5) as f64);
        // The 24:00 observation of December 31 (last row) lands at 05:00 UTC.
        assert_eq!(table.hours[5].temp_c, (TYPICAL_YEAR_HOURS - 1) as f64);
    }

    #[test]
    fn duplicate_and_missing_hours_are_rejected() {
        let mut rows = synthetic_year();
        rows[1].hour_ending = 1;
        assert!(matches!(
            to_utc_year(station_at_offset(-5), &rows),
            Err(Tmy3Error::IncompleteYear(_))
        ));
        let rows = synthetic_year();
        assert!(matches!(
            to_utc_year(station_at_offset(-5), &rows[..rows.len() - 1]),
            Err(Tmy3Error::IncompleteYear(_))
        ));
    }

    #[test]
    fn fractional_time_zone_is_rejected() {
        let text = GREENSBORO_EXCERPT.replace("NC,-5.0,", "NC,-5.5,");
        assert!(matches!(parse_tmy3(&text), Err(Tmy3Error::BadStation(_))));
    }
}
