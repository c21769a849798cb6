//! TI INA226 current/power monitor with alert, 16-bit ADC and ±81.92 mV shunt range.
//!
//! Like the INA219 driver this runs the chip in continuous shunt-and-bus mode. Unlike the
//! INA219, the INA226 has identification registers, which `init` checks so that a wrong chip
//! (or a different monitor strapped to the same address) fails loudly instead of being
//! programmed with a foreign register layout.

use embedded_hal::i2c::I2c;

use crate::Reading;
use crate::ina::{
    Calibration, ChipModel, ConfigError, Error, PowerMonitor, RegisterBus, check_address,
};

const CHIP: ChipModel = ChipModel {
    name: "INA226",
    calibration_constant: 0.00512,
    // Bit 15 is reserved; the calibration field is bits 14:0.
    calibration_max: 0x7FFF,
    calibration_void_bits: 0,
    power_lsb_per_current_lsb: 25.0,
    shunt_lsb_v: 2.5e-6,
};

/// Full-scale shunt voltage (fixed; the INA226 has no gain stage).
const SHUNT_FULL_SCALE_V: f64 = 0.08192;
/// Volts per LSB of the bus voltage register.
const BUS_LSB_V: f64 = 1.25e-3;

const MASK_ENABLE: u8 = 0x06;
/// Mask/Enable: math overflow flag.
const MASK_ENABLE_OVF: u16 = 1 << 2;
const MANUFACTURER_ID: u8 = 0xFE;
const DIE_ID: u8 = 0xFF;
/// "TI" in ASCII.
pub const EXPECTED_MANUFACTURER_ID: u16 = 0x5449;
/// Die ID 0x226, revision 0.
pub const EXPECTED_DIE_ID: u16 = 0x2260;

/// CONFIG bits 14:12 are reserved and read 0b100; written back unchanged.
const CONFIG_RESERVED: u16 = 0x4000;
const AVG_SHIFT: u32 = 9;
const VBUSCT_SHIFT: u32 = 6;
const VSHCT_SHIFT: u32 = 3;
/// CONFIG: MODE = shunt and bus, continuous.
const MODE_SHUNT_AND_BUS_CONTINUOUS: u16 = 0b111;

/// Number of conversions averaged per result (CONFIG field AVG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Averaging {
    /// 1 sample (power-on default).
    X1,
    /// 4 samples.
    X4,
    /// 16 samples.
    X16,
    /// 64 samples.
    X64,
    /// 128 samples.
    X128,
    /// 256 samples.
    X256,
    /// 512 samples.
    X512,
    /// 1024 samples.
    X1024,
}

impl Averaging {
    fn bits(self) -> u16 {
        match self {
            Averaging::X1 => 0b000,
            Averaging::X4 => 0b001,
            Averaging::X16 => 0b010,
            Averaging::X64 => 0b011,
            Averaging::X128 => 0b100,
            Averaging::X256 => 0b101,
            Averaging::X512 => 0b110,
            Averaging::X1024 => 0b111,
        }
    }
}

/// Conversion time of one ADC sample (CONFIG fields VBUSCT and VSHCT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversionTime {
    /// 140 µs.
    Us140,
    /// 204 µs.
    Us204,
    /// 332 µs.
    Us332,
    /// 588 µs.
    Us588,
    /// 1.1 ms (power-on default).
    Us1100,
    /// 2.116 ms.
    Us2116,
    /// 4.156 ms.
    Us4156,
    /// 8.244 ms.
    Us8244,
}

impl ConversionTime {
    fn bits(self) -> u16 {
        match self {
            ConversionTime::Us140 => 0b000,
            ConversionTime::Us204 => 0b001,
            ConversionTime::Us332 => 0b010,
            ConversionTime::Us588 => 0b011,
            ConversionTime::Us1100 => 0b100,
            ConversionTime::Us2116 => 0b101,
            ConversionTime::Us4156 => 0b110,
            ConversionTime::Us8244 => 0b111,
        }
    }
}

/// How an INA226 is wired and should be programmed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ina226Config {
    /// 7-bit I2C address, 0x40..=0x4F.
    pub address: u8,
    /// Shunt resistance in ohms.
    pub shunt_ohms: f64,
    /// Largest current the application expects, in amperes; at most 81.92 mV / `shunt_ohms`.
    pub max_current_a: f64,
    /// Samples averaged per result.
    pub averaging: Averaging,
    /// Bus voltage conversion time.
    pub bus_conversion: ConversionTime,
    /// Shunt voltage conversion time.
    pub shunt_conversion: ConversionTime,
}

impl Ina226Config {
    /// Checks the configuration and derives the calibration it implies.
    pub fn validate(&self) -> Result<Calibration, ConfigError> {
        check_address(self.address)?;
        Calibration::derive(
            &CHIP,
            self.shunt_ohms,
            self.max_current_a,
            SHUNT_FULL_SCALE_V,
        )
    }

    /// The CONFIG register word: averaging, conversion times, continuous shunt-and-bus mode.
    pub fn config_word(&self) -> u16 {
        CONFIG_RESERVED
            | self.averaging.bits() << AVG_SHIFT
            | self.bus_conversion.bits() << VBUSCT_SHIFT
            | self.shunt_conversion.bits() << VSHCT_SHIFT
            | MODE_SHUNT_AND_BUS_CONTINUOUS
    }
}

/// An INA226 on an I2C bus.
#[derive(Debug)]
pub struct Ina226<I2C> {
    bus: RegisterBus<I2C>,
    config_word: u16,
    calibration: Calibration,
}

impl<I2C: I2c> Ina226<I2C> {
    /// Validates `config` without touching the bus; call [`PowerMonitor::init`] next.
    pub fn new(i2c: I2C, config: &Ina226Config) -> Result<Self, ConfigError> {
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

    fn check_identity(&mut self) -> Result<(), Error<I2C::Error>> {
        let manufacturer_id = self.bus.read(MANUFACTURER_ID)?;
        let die_id = self.bus.read(DIE_ID)?;
        if (manufacturer_id, die_id) == (EXPECTED_MANUFACTURER_ID, EXPECTED_DIE_ID) {
            Ok(())
        } else {
            Err(Error::UnexpectedChip {
                chip: CHIP.name,
                address: self.bus.address(),
                manufacturer_id,
                die_id,
            })
        }
    }
}

impl<I2C: I2c> PowerMonitor for Ina226<I2C> {
    type BusError = I2C::Error;

    /// Checks the manufacturer and die IDs, then writes CONFIG and CALIBRATION.
    fn init(&mut self) -> Result<(), Error<I2C::Error>> {
        self.check_identity()?;
        self.bus.program(self.config_word, &self.calibration)
    }

    /// Checks the overflow flag (Mask/Enable), then reads the measurement registers. Reading
    /// Mask/Enable also clears the alert latch and conversion-ready flag, neither of which this
    /// driver uses.
    fn read(&mut self) -> Result<Reading, Error<I2C::Error>> {
        if self.bus.read(MASK_ENABLE)? & MASK_ENABLE_OVF != 0 {
            return Err(Error::Overflow {
                chip: CHIP.name,
                address: self.bus.address(),
            });
        }
        let raw = self.bus.read_measurements()?;
        let bus_v = f64::from(raw.bus) * BUS_LSB_V;
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
    use crate::ina::Access;
    use crate::test_support::{assert_close, read_register};

    const ADDRESS: u8 = 0x40;

    /// 2 mΩ shunt on a 12 V battery, 20 A expected, 16 × 1.1 ms averaging.
    fn battery_channel() -> Ina226Config {
        Ina226Config {
            address: ADDRESS,
            shunt_ohms: 0.002,
            max_current_a: 20.0,
            averaging: Averaging::X16,
            bus_conversion: ConversionTime::Us1100,
            shunt_conversion: ConversionTime::Us1100,
        }
    }

    fn identity_reads(manufacturer_id: u16, die_id: u16) -> [Transaction; 2] {
        [
            read_register(ADDRESS, 0xFE, manufacturer_id),
            read_register(ADDRESS, 0xFF, die_id),
        ]
    }

    fn init_script() -> Vec<Transaction> {
        let mut script = identity_reads(0x5449, 0x2260).to_vec();
        script.extend([
            Transaction::write(ADDRESS, vec![0x00, 0x45, 0x27]),
            Transaction::write(ADDRESS, vec![0x05, 0x0A, 0x00]),
        ]);
        script
    }

    /// Mask/Enable, then the four measurement reads in the driver's order.
    fn measurement_reads(shunt: u16, bus: u16, current: u16, power: u16) -> [Transaction; 5] {
        [
            read_register(ADDRESS, 0x06, 0x0008),
            read_register(ADDRESS, 0x01, shunt),
            read_register(ADDRESS, 0x02, bus),
            read_register(ADDRESS, 0x04, current),
            read_register(ADDRESS, 0x03, power),
        ]
    }

    #[test]
    fn calibration_follows_datasheet_formula() {
        // 20 A / 2^15 = 610 µA → Current_LSB 1 mA; Cal = 0.00512 / (1 mA · 2 mΩ) = 2560.
        let calibration = battery_channel().validate().unwrap();
        assert_eq!(calibration.register, 2560);
        assert_close(calibration.current_lsb_a, 1e-3);
        assert_close(calibration.power_lsb_w, 25e-3);

        // A 0.1 Ω module at 0.8 A: 24.4 µA → 50 µA; Cal 1024.
        let module = Ina226Config {
            shunt_ohms: 0.1,
            max_current_a: 0.8,
            ..battery_channel()
        };
        assert_eq!(module.validate().unwrap().register, 1024);
    }

    #[test]
    fn config_word_encodes_averaging_and_conversion_times() {
        // AVG 16 (010), 1.1 ms (100) for both, continuous: the Linux ina2xx default 0x4527.
        assert_eq!(battery_channel().config_word(), 0x4527);
        let power_on_default = Ina226Config {
            averaging: Averaging::X1,
            ..battery_channel()
        };
        assert_eq!(power_on_default.config_word(), 0x4127);
        let slowest = Ina226Config {
            averaging: Averaging::X1024,
            bus_conversion: ConversionTime::Us8244,
            shunt_conversion: ConversionTime::Us140,
            ..battery_channel()
        };
        assert_eq!(
            slowest.config_word(),
            0x4000 | 0b111 << 9 | 0b111 << 6 | 0b111
        );
    }

    #[test]
    fn init_checks_ids_then_writes_config_and_calibration() {
        let mut i2c = Mock::new(&init_script());
        let mut ina = Ina226::new(i2c.clone(), &battery_channel()).unwrap();
        ina.init().unwrap();
        i2c.done();
    }

    #[test]
    fn wrong_die_id_is_refused_without_writing() {
        // An INA260 answers with the TI manufacturer ID but die ID 0x2270.
        let mut i2c = Mock::new(&identity_reads(0x5449, 0x2270));
        let mut ina = Ina226::new(i2c.clone(), &battery_channel()).unwrap();
        let error = ina.init().unwrap_err();
        assert!(matches!(
            error,
            Error::UnexpectedChip {
                manufacturer_id: 0x5449,
                die_id: 0x2270,
                ..
            }
        ));
        assert_eq!(
            error.to_string(),
            "device at 0x40 is not an INA226: manufacturer ID 0x5449, die ID 0x2270"
        );
        i2c.done();
    }

    #[test]
    fn wrong_manufacturer_is_refused() {
        let mut i2c = Mock::new(&identity_reads(0x0000, 0x2260));
        let mut ina = Ina226::new(i2c.clone(), &battery_channel()).unwrap();
        assert!(matches!(
            ina.init(),
            Err(Error::UnexpectedChip {
                manufacturer_id: 0,
                ..
            })
        ));
        i2c.done();
    }

    #[test]
    fn reading_converts_charge_and_discharge() {
        // 12.000 V = 9600 × 1.25 mV. 5 A through 2 mΩ = 10 mV = 4000 × 2.5 µV;
        // current 4000·2560/2048 = 5000 × 1 mA; power 5000·9600/20000 = 2400 × 25 mW = 60 W.
        let mut script = measurement_reads(4000, 9600, 5000, 2400).to_vec();
        script.extend(measurement_reads(
            (-4000i16).cast_unsigned(),
            9600,
            (-5000i16).cast_unsigned(),
            2400,
        ));
        let mut i2c = Mock::new(&script);
        let mut ina = Ina226::new(i2c.clone(), &battery_channel()).unwrap();

        let charging = ina.read().unwrap();
        assert_close(charging.bus_v, 12.0);
        assert_close(charging.shunt_v, 0.01);
        assert_close(charging.current_a, 5.0);
        assert_close(charging.power_w, 60.0);

        let discharging = ina.read().unwrap();
        assert_close(discharging.shunt_v, -0.01);
        assert_close(discharging.current_a, -5.0);
        assert_close(discharging.power_w, 60.0);
        i2c.done();
    }

    #[test]
    fn overflow_flag_is_an_error_and_skips_the_measurement_reads() {
        let mut i2c = Mock::new(&[read_register(ADDRESS, 0x06, 0x0004)]);
        let mut ina = Ina226::new(i2c.clone(), &battery_channel()).unwrap();
        assert!(matches!(
            ina.read(),
            Err(Error::Overflow {
                chip: "INA226",
                address: ADDRESS
            })
        ));
        i2c.done();
    }

    #[test]
    fn i2c_error_propagates_from_identity_read() {
        let mut i2c =
            Mock::new(&[read_register(ADDRESS, 0xFE, 0).with_error(ErrorKind::ArbitrationLoss)]);
        let mut ina = Ina226::new(i2c.clone(), &battery_channel()).unwrap();
        assert!(matches!(
            ina.init(),
            Err(Error::Bus {
                register: 0xFE,
                access: Access::Read,
                cause: ErrorKind::ArbitrationLoss,
                ..
            })
        ));
        i2c.done();
    }

    #[test]
    fn lost_calibration_after_reset_is_reprogrammed() {
        let mut script = vec![read_register(ADDRESS, 0x05, 0)];
        script.extend(init_script());
        script.extend(measurement_reads(400, 10240, 500, 256));
        let mut i2c = Mock::new(&script);
        let mut ina = Ina226::new(i2c.clone(), &battery_channel()).unwrap();
        let recovered = ina.read_recovering().unwrap();
        assert!(recovered.chip_was_reset);
        // 12.8 V, 0.5 A → 6.4 W = 256 × 25 mW.
        assert_close(recovered.reading.bus_v, 12.8);
        assert_close(recovered.reading.current_a, 0.5);
        assert_close(recovered.reading.power_w, 6.4);
        i2c.done();
    }

    #[test]
    fn invalid_configs_are_rejected() {
        // 81.92 mV across 2 mΩ is 40.96 A.
        let too_much = Ina226Config {
            max_current_a: 41.0,
            ..battery_channel()
        };
        assert!(matches!(
            too_much.validate(),
            Err(ConfigError::CurrentBeyondShuntRange { limit_a, .. }) if (limit_a - 40.96).abs() < 1e-9
        ));
        // 0.05 Ω at 0.1 A: Current_LSB 5 µA → Cal 20480 fits; at 0.05 A: 2 µA → Cal 51200
        // exceeds the 15-bit field.
        let fits = Ina226Config {
            shunt_ohms: 0.05,
            max_current_a: 0.1,
            ..battery_channel()
        };
        assert_eq!(fits.validate().unwrap().register, 20480);
        let overflow = Ina226Config {
            max_current_a: 0.05,
            ..fits
        };
        assert_eq!(
            overflow.validate(),
            Err(ConfigError::CalibrationOverflow {
                value: 51200,
                max: 0x7FFF
            })
        );
        let bad_address = Ina226Config {
            address: 0x68,
            ..battery_channel()
        };
        assert_eq!(bad_address.validate(), Err(ConfigError::Address(0x68)));
    }
}
