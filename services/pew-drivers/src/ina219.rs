//! TI INA219 bidirectional current/power monitor (the chip on the Waveshare UPS HATs).
//!
//! The driver runs the chip in continuous shunt-and-bus mode, so every register read returns the
//! latest completed conversion and no polling of the conversion-ready flag is needed.

use embedded_hal::i2c::I2c;

use crate::Reading;
use crate::ina::{
    Calibration, ChipModel, ConfigError, Error, PowerMonitor, RegisterBus, check_address,
};

const CHIP: ChipModel = ChipModel {
    name: "INA219",
    calibration_constant: 0.04096,
    calibration_max: u16::MAX,
    // FS0 does not exist: the register always reads bit 0 as 0.
    calibration_void_bits: 0x0001,
    power_lsb_per_current_lsb: 20.0,
    shunt_lsb_v: 10e-6,
};

/// Volts per LSB of the bus voltage field (register bits 15:3).
const BUS_LSB_V: f64 = 4e-3;
/// Bus voltage register: math overflow flag.
const BUS_OVF: u16 = 1 << 0;
/// Bus voltage register: the voltage field starts above CNVR (bit 1), a reserved bit and OVF.
const BUS_VOLTAGE_SHIFT: u32 = 3;

/// CONFIG: MODE = shunt and bus, continuous.
const MODE_SHUNT_AND_BUS_CONTINUOUS: u16 = 0b111;
const BRNG_SHIFT: u32 = 13;
const PG_SHIFT: u32 = 11;
const BADC_SHIFT: u32 = 7;
const SADC_SHIFT: u32 = 3;

/// Full-scale range of the bus voltage ADC (CONFIG bit BRNG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusRange {
    /// 0–16 V.
    Volts16,
    /// 0–32 V (the chip still tolerates no more than 26 V on its pins).
    Volts32,
}

/// Shunt voltage range selected by the programmable gain amplifier (CONFIG bits PG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShuntRange {
    /// ±40 mV (gain /1).
    Millivolts40,
    /// ±80 mV (gain /2).
    Millivolts80,
    /// ±160 mV (gain /4).
    Millivolts160,
    /// ±320 mV (gain /8, the power-on default).
    Millivolts320,
}

impl ShuntRange {
    /// Full-scale shunt voltage in volts.
    pub fn full_scale_v(self) -> f64 {
        match self {
            ShuntRange::Millivolts40 => 0.04,
            ShuntRange::Millivolts80 => 0.08,
            ShuntRange::Millivolts160 => 0.16,
            ShuntRange::Millivolts320 => 0.32,
        }
    }

    fn bits(self) -> u16 {
        match self {
            ShuntRange::Millivolts40 => 0b00,
            ShuntRange::Millivolts80 => 0b01,
            ShuntRange::Millivolts160 => 0b10,
            ShuntRange::Millivolts320 => 0b11,
        }
    }
}

/// ADC resolution or averaging (CONFIG fields BADC and SADC); conversion times per datasheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adc {
    /// 9-bit single sample, 84 µs.
    Bits9,
    /// 10-bit single sample, 148 µs.
    Bits10,
    /// 11-bit single sample, 276 µs.
    Bits11,
    /// 12-bit single sample, 532 µs.
    Bits12,
    /// 12-bit, average of 2 samples, 1.06 ms.
    Samples2,
    /// 12-bit, average of 4 samples, 2.13 ms.
    Samples4,
    /// 12-bit, average of 8 samples, 4.26 ms.
    Samples8,
    /// 12-bit, average of 16 samples, 8.51 ms.
    Samples16,
    /// 12-bit, average of 32 samples, 17.02 ms.
    Samples32,
    /// 12-bit, average of 64 samples, 34.05 ms.
    Samples64,
    /// 12-bit, average of 128 samples, 68.10 ms.
    Samples128,
}

impl Adc {
    fn bits(self) -> u16 {
        match self {
            Adc::Bits9 => 0b0000,
            Adc::Bits10 => 0b0001,
            Adc::Bits11 => 0b0010,
            Adc::Bits12 => 0b0011,
            Adc::Samples2 => 0b1001,
            Adc::Samples4 => 0b1010,
            Adc::Samples8 => 0b1011,
            Adc::Samples16 => 0b1100,
            Adc::Samples32 => 0b1101,
            Adc::Samples64 => 0b1110,
            Adc::Samples128 => 0b1111,
        }
    }
}

/// How an INA219 is wired and should be programmed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ina219Config {
    /// 7-bit I2C address, 0x40..=0x4F.
    pub address: u8,
    /// Shunt resistance in ohms.
    pub shunt_ohms: f64,
    /// Largest current the application expects, in amperes; sets the current resolution.
    pub max_current_a: f64,
    /// Bus voltage range.
    pub bus_range: BusRange,
    /// Shunt voltage range; must cover `max_current_a × shunt_ohms`.
    pub shunt_range: ShuntRange,
    /// Resolution/averaging, applied to both the bus and the shunt ADC so that voltage and
    /// current describe the same time window and their product is a meaningful power.
    pub adc: Adc,
}

impl Ina219Config {
    /// Checks the configuration and derives the calibration it implies.
    pub fn validate(&self) -> Result<Calibration, ConfigError> {
        check_address(self.address)?;
        Calibration::derive(
            &CHIP,
            self.shunt_ohms,
            self.max_current_a,
            self.shunt_range.full_scale_v(),
        )
    }

    /// The CONFIG register word: ranges, ADC settings, continuous shunt-and-bus mode.
    pub fn config_word(&self) -> u16 {
        let brng = match self.bus_range {
            BusRange::Volts16 => 0,
            BusRange::Volts32 => 1,
        };
        brng << BRNG_SHIFT
            | self.shunt_range.bits() << PG_SHIFT
            | self.adc.bits() << BADC_SHIFT
            | self.adc.bits() << SADC_SHIFT
            | MODE_SHUNT_AND_BUS_CONTINUOUS
    }
}

/// Decodes the bus voltage register, refusing a sample whose current/power math overflowed.
/// CNVR (bit 1) is ignored: in continuous mode the registers always hold the latest conversion.
fn decode_bus_voltage(raw: u16) -> Option<f64> {
    (raw & BUS_OVF == 0).then(|| f64::from(raw >> BUS_VOLTAGE_SHIFT) * BUS_LSB_V)
}

/// An INA219 on an I2C bus.
#[derive(Debug)]
pub struct Ina219<I2C> {
    bus: RegisterBus<I2C>,
    config_word: u16,
    calibration: Calibration,
}

impl<I2C: I2c> Ina219<I2C> {
    /// Validates `config` without touching the bus; call [`PowerMonitor::init`] next.
    pub fn new(i2c: I2C, config: &Ina219Config) -> Result<Self, ConfigError> {
        let calibration = config.validate()?;
        Ok(Self {
            bus: RegisterBus::new(i2c, config.address),
            config_word: config.config_word(),
            calibration,
        })
    }

    /// The calibration this driver programs and scales readings with.
    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    /// Gives the I2C bus back.
    pub fn release(self) -> I2C {
        self.bus.release()
    }
}

impl<I2C: I2c> PowerMonitor for Ina219<I2C> {
    type BusError = I2C::Error;

    fn init(&mut self) -> Result<(), Error<I2C::Error>> {
        self.bus.program(self.config_word, &self.calibration)
    }

    fn read(&mut self) -> Result<Reading, Error<I2C::Error>> {
        let raw = self.bus.read_measurements()?;
        let bus_v = decode_bus_voltage(raw.bus).ok_or(Error::Overflow {
            chip: CHIP.name,
            address: self.bus.address(),
        })?;
        Ok(raw.scale(&CHIP, &self.calibration, bus_v))
    }

    fn calibration_lost(&mut self) -> Result<bool, Error<I2C::Error>> {
        self.bus.calibration_lost()
    }
}

#[cfg(test)]
mod tests {
    use embedded_hal::i2c::ErrorKind;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};

    use super::*;
    use crate::ina::{Access, Recovered};
    use crate::test_support::{assert_close, read_register, write_register};

    const ADDRESS: u8 = 0x42;

    /// Waveshare UPS HAT: 0.1 Ω shunt, 32 V range, 2 A expected, /8 gain, 12-bit ×32 averaging.
    fn ups_hat() -> Ina219Config {
        Ina219Config {
            address: ADDRESS,
            shunt_ohms: 0.1,
            max_current_a: 2.0,
            bus_range: BusRange::Volts32,
            shunt_range: ShuntRange::Millivolts320,
            adc: Adc::Samples32,
        }
    }

    /// The four measurement reads in the driver's order.
    fn measurement_reads(shunt: u16, bus: u16, current: u16, power: u16) -> [Transaction; 4] {
        [
            read_register(ADDRESS, 0x01, shunt),
            read_register(ADDRESS, 0x02, bus),
            read_register(ADDRESS, 0x04, current),
            read_register(ADDRESS, 0x03, power),
        ]
    }

    #[test]
    fn ups_hat_calibration_matches_datasheet_example() {
        // Datasheet §8.5.1 example: Current_LSB 100 µA, Cal 4096, Power_LSB 2 mW.
        let calibration = ups_hat().validate().unwrap();
        assert_eq!(calibration.register, 4096);
        assert_close(calibration.current_lsb_a, 100e-6);
        assert_close(calibration.power_lsb_w, 2e-3);
    }

    #[test]
    fn config_word_matches_waveshare_and_power_on_default() {
        assert_eq!(ups_hat().config_word(), 0x3EEF);
        // Power-on default 0x399F = 32 V, /8, 12-bit single samples, continuous.
        let default = Ina219Config {
            adc: Adc::Bits12,
            ..ups_hat()
        };
        assert_eq!(default.config_word(), 0x399F);
        let low_range = Ina219Config {
            bus_range: BusRange::Volts16,
            shunt_range: ShuntRange::Millivolts40,
            adc: Adc::Bits9,
            ..ups_hat()
        };
        assert_eq!(low_range.config_word(), 0x0007);
    }

    #[test]
    fn init_writes_config_then_calibration() {
        let mut i2c = Mock::new(&[
            Transaction::write(ADDRESS, vec![0x00, 0x3E, 0xEF]),
            Transaction::write(ADDRESS, vec![0x05, 0x10, 0x00]),
        ]);
        let mut ina = Ina219::new(i2c.clone(), &ups_hat()).unwrap();
        ina.init().unwrap();
        i2c.done();
    }

    #[test]
    fn odd_calibration_drops_void_bit_and_rescales() {
        // 0.04096 / (100 µA · 12 mΩ) = 34133.3 → 34133, odd; the chip ignores bit 0.
        let config = Ina219Config {
            shunt_ohms: 0.012,
            max_current_a: 2.0,
            shunt_range: ShuntRange::Millivolts40,
            ..ups_hat()
        };
        let calibration = config.validate().unwrap();
        assert_eq!(calibration.register, 34132);
        // Current = shunt_raw·Cal/4096, shunt LSB 10 µV: 1 A through 12 mΩ is 1200 counts,
        // 1200·34132/4096 = 9999.61 current counts, which must still read as 1 A.
        let current_counts = 1200.0 * 34132.0 / 4096.0;
        assert_close(calibration.current_lsb_a * current_counts, 1.0);
    }

    #[test]
    fn reading_discharge_converts_registers() {
        // 2S pack at 8.000 V discharging 512 mA: shunt -51.2 mV = -5120 × 10 µV, current
        // -5120 × 0.1 mA, power 4.096 W = 2048 × 2 mW; bus 2000 × 4 mV with CNVR set.
        let mut i2c = Mock::new(&measurement_reads(
            (-5120i16).cast_unsigned(),
            (2000 << 3) | 0b10,
            (-5120i16).cast_unsigned(),
            2048,
        ));
        let mut ina = Ina219::new(i2c.clone(), &ups_hat()).unwrap();
        let reading = ina.read().unwrap();
        assert_close(reading.bus_v, 8.0);
        assert_close(reading.shunt_v, -0.0512);
        assert_close(reading.current_a, -0.512);
        assert_close(reading.power_w, 4.096);
        assert_close(reading.power_w, reading.bus_v * reading.current_a.abs());
        i2c.done();
    }

    #[test]
    fn full_bus_field_reads_32_v() {
        assert_close(decode_bus_voltage(0xFFF8).unwrap(), 8191.0 * 4e-3);
        assert_eq!(decode_bus_voltage(0xFFF9), None);
    }

    #[test]
    fn overflow_flag_is_an_error() {
        let mut i2c = Mock::new(&measurement_reads(
            0x7FFF,
            (3000 << 3) | 0b11,
            0x7FFF,
            0xFFFF,
        ));
        let mut ina = Ina219::new(i2c.clone(), &ups_hat()).unwrap();
        let error = ina.read().unwrap_err();
        assert!(matches!(
            error,
            Error::Overflow {
                chip: "INA219",
                address: ADDRESS
            }
        ));
        i2c.done();
    }

    #[test]
    fn i2c_error_names_register_and_address() {
        let mut i2c = Mock::new(&[
            Transaction::write(ADDRESS, vec![0x00, 0x3E, 0xEF]).with_error(
                ErrorKind::NoAcknowledge(embedded_hal::i2c::NoAcknowledgeSource::Address),
            ),
        ]);
        let mut ina = Ina219::new(i2c.clone(), &ups_hat()).unwrap();
        let error = ina.init().unwrap_err();
        assert!(matches!(
            error,
            Error::Bus {
                address: ADDRESS,
                register: 0x00,
                access: Access::Write,
                cause: ErrorKind::NoAcknowledge(_),
            }
        ));
        assert!(error.to_string().contains("register 0x00 at address 0x42"));
        i2c.done();
    }

    #[test]
    fn read_error_midway_stops_the_read() {
        let mut i2c = Mock::new(&[
            read_register(ADDRESS, 0x01, 0),
            read_register(ADDRESS, 0x02, 0).with_error(ErrorKind::Bus),
        ]);
        let mut ina = Ina219::new(i2c.clone(), &ups_hat()).unwrap();
        assert!(matches!(
            ina.read(),
            Err(Error::Bus {
                register: 0x02,
                access: Access::Read,
                cause: ErrorKind::Bus,
                ..
            })
        ));
        i2c.done();
    }

    #[test]
    fn lost_calibration_after_reset_is_reprogrammed_before_reading() {
        let mut script = vec![
            read_register(ADDRESS, 0x05, 0),
            write_register(ADDRESS, 0x00, 0x3EEF),
            write_register(ADDRESS, 0x05, 4096),
        ];
        script.extend(measurement_reads(1000, 2100 << 3, 1000, 420));
        let mut i2c = Mock::new(&script);
        let mut ina = Ina219::new(i2c.clone(), &ups_hat()).unwrap();
        let Recovered {
            reading,
            chip_was_reset,
        } = ina.read_recovering().unwrap();
        assert!(chip_was_reset);
        // Charging at 100 mA into 8.4 V: power register 1000·2100/5000 = 420 × 2 mW = 0.84 W.
        assert_close(reading.current_a, 0.1);
        assert_close(reading.bus_v, 8.4);
        assert_close(reading.power_w, 0.84);
        i2c.done();
    }

    #[test]
    fn intact_calibration_is_left_alone() {
        let mut script = vec![read_register(ADDRESS, 0x05, 4096)];
        script.extend(measurement_reads(0, 2100 << 3, 0, 0));
        let mut i2c = Mock::new(&script);
        let mut ina = Ina219::new(i2c.clone(), &ups_hat()).unwrap();
        assert!(!ina.read_recovering().unwrap().chip_was_reset);
        i2c.done();
    }

    #[test]
    fn release_returns_the_bus() {
        let ina = Ina219::new(Mock::new(&[]), &ups_hat()).unwrap();
        ina.release().done();
    }

    #[test]
    fn invalid_configs_are_rejected_before_bus_traffic() {
        let bad_address = Ina219Config {
            address: 0x3C,
            ..ups_hat()
        };
        assert_eq!(bad_address.validate(), Err(ConfigError::Address(0x3C)));

        for ohms in [0.0, -0.1, f64::NAN, f64::INFINITY] {
            let config = Ina219Config {
                shunt_ohms: ohms,
                ..ups_hat()
            };
            assert!(matches!(
                config.validate(),
                Err(ConfigError::ShuntResistance(_))
            ));
        }
        let no_current = Ina219Config {
            max_current_a: 0.0,
            ..ups_hat()
        };
        assert_eq!(no_current.validate(), Err(ConfigError::MaxCurrent(0.0)));

        // ±40 mV across 0.1 Ω is 0.4 A full scale: 2 A would clip the shunt ADC.
        let clipped = Ina219Config {
            shunt_range: ShuntRange::Millivolts40,
            ..ups_hat()
        };
        assert!(matches!(
            clipped.validate(),
            Err(ConfigError::CurrentBeyondShuntRange { limit_a, .. }) if (limit_a - 0.4).abs() < 1e-12
        ));

        // 0.1 A into 0.1 Ω: Current_LSB 5 µA → Cal 81920, beyond 16 bits.
        let tiny_current = Ina219Config {
            max_current_a: 0.1,
            ..ups_hat()
        };
        assert_eq!(
            tiny_current.validate(),
            Err(ConfigError::CalibrationOverflow {
                value: 81920,
                max: u16::MAX
            })
        );
    }
}
