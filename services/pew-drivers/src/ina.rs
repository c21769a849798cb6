//! What the TI INA219 and INA226 drivers share: the register map below 0x06, big-endian 16-bit
//! register access, the calibration arithmetic, the error types and the [`PowerMonitor`] trait.
//!
//! Both chips turn the shunt voltage into a current register through a calibration word
//! (`Cal = K / (Current_LSB · R_shunt)`); they differ only in the constant `K`, the shunt and
//! bus LSB sizes, which calibration bits exist, and the power LSB multiplier. Those numbers
//! live in a `ChipModel` per chip; everything else is here once.

use core::fmt;
use core::ops::RangeInclusive;

use embedded_hal::i2c::I2c;

use crate::Reading;

/// The addresses the A0/A1 strap pins can select on both chips.
pub const ADDRESS_RANGE: RangeInclusive<u8> = 0x40..=0x4F;

/// Register pointers common to the INA219 and INA226.
pub(crate) mod register {
    pub const CONFIG: u8 = 0x00;
    pub const SHUNT_VOLTAGE: u8 = 0x01;
    pub const BUS_VOLTAGE: u8 = 0x02;
    pub const POWER: u8 = 0x03;
    pub const CURRENT: u8 = 0x04;
    pub const CALIBRATION: u8 = 0x05;
}

/// Largest magnitude of the signed current register: the datasheets size Current_LSB so that
/// the maximum expected current spans 2^15 counts.
const CURRENT_REGISTER_SPAN: f64 = 32768.0;

/// Relative slack for floating-point representation error in the calibration arithmetic:
/// `0.04096 / (0.0001 * 0.1)` evaluates to 4095.999…, and truncating that would program 4095
/// instead of the datasheet's 4096. A real calibration is never this close to an integer by
/// design, so the slack only ever absorbs rounding noise.
const ROUNDING_SLACK: f64 = 1e-9;

/// Direction of a failed register access, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading a register (pointer write followed by a repeated-start read).
    Read,
    /// Writing a register.
    Write,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
        })
    }
}

/// A run-time failure of an INA2xx driver; `E` is the I2C bus error type.
#[derive(Debug, thiserror::Error)]
pub enum Error<E> {
    /// The I2C transfer itself failed (no ACK, arbitration loss, …).
    #[error("I2C {access} of register {register:#04x} at address {address:#04x} failed: {cause:?}")]
    Bus {
        /// 7-bit device address.
        address: u8,
        /// Register pointer of the failed access.
        register: u8,
        /// Whether it was a read or a write.
        access: Access,
        /// What the I2C implementation reported.
        cause: E,
    },
    /// The chip flagged that its current or power arithmetic overflowed, so both registers hold
    /// garbage: the real current exceeds what the calibration can represent.
    #[error(
        "{chip} at {address:#04x} reports a math overflow: the current exceeds the calibrated range"
    )]
    Overflow {
        /// Chip name.
        chip: &'static str,
        /// 7-bit device address.
        address: u8,
    },
    /// The identification registers do not hold the values of the expected chip.
    #[error(
        "device at {address:#04x} is not an {chip}: manufacturer ID {manufacturer_id:#06x}, die ID {die_id:#06x}"
    )]
    UnexpectedChip {
        /// Chip the driver expected.
        chip: &'static str,
        /// 7-bit device address.
        address: u8,
        /// Content of the manufacturer ID register.
        manufacturer_id: u16,
        /// Content of the die ID register.
        die_id: u16,
    },
}

/// A configuration the chip cannot be programmed with; found before any I2C traffic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The address is outside what the strap pins can select.
    #[error("I2C address {0:#04x} is outside 0x40..=0x4F, the range the address pins can select")]
    Address(u8),
    /// The shunt resistance is zero, negative, NaN or infinite.
    #[error("shunt resistance {0} Ω must be a positive, finite number")]
    ShuntResistance(f64),
    /// The maximum expected current is zero, negative, NaN or infinite.
    #[error("maximum expected current {0} A must be a positive, finite number")]
    MaxCurrent(f64),
    /// The shunt ADC would clip before the maximum expected current is reached.
    #[error(
        "maximum expected current {max_current_a} A exceeds the {limit_a} A that a {full_scale_v} V shunt range allows across {shunt_ohms} Ω"
    )]
    CurrentBeyondShuntRange {
        /// Requested maximum current.
        max_current_a: f64,
        /// Largest current the shunt range can measure.
        limit_a: f64,
        /// Full-scale shunt voltage of the chosen range.
        full_scale_v: f64,
        /// Shunt resistance.
        shunt_ohms: f64,
    },
    /// The calibration word is wider than the register; the maximum expected current is so far
    /// below the shunt range that the current LSB cannot be made small enough.
    #[error(
        "calibration {value} exceeds the register maximum {max}: raise the maximum expected current or use a larger shunt"
    )]
    CalibrationOverflow {
        /// Calibration the arithmetic asked for.
        value: u64,
        /// Largest value the register holds.
        max: u16,
    },
}

/// The per-chip numbers behind the shared arithmetic.
#[derive(Debug)]
pub(crate) struct ChipModel {
    /// Name used in errors.
    pub name: &'static str,
    /// `K` in `Cal = K / (Current_LSB · R_shunt)`.
    pub calibration_constant: f64,
    /// Largest value the calibration register holds.
    pub calibration_max: u16,
    /// Calibration bits the chip does not implement (they read back 0).
    pub calibration_void_bits: u16,
    /// Power LSB as a multiple of Current_LSB.
    pub power_lsb_per_current_lsb: f64,
    /// Volts per LSB of the shunt voltage register.
    pub shunt_lsb_v: f64,
}

/// The calibration derived from a configuration: what is written to the CALIBRATION register
/// and how the CURRENT and POWER registers scale as a result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// The word written to the CALIBRATION register.
    pub register: u16,
    /// Amperes per LSB of the CURRENT register.
    pub current_lsb_a: f64,
    /// Watts per LSB of the POWER register.
    pub power_lsb_w: f64,
}

impl Calibration {
    /// Derives the calibration for a shunt, a maximum expected current and the full-scale shunt
    /// voltage of the chosen range.
    ///
    /// Current_LSB is the smallest 1-2-5 step at or above `max_current / 2^15`, as in the
    /// datasheet examples (2 A → 0.1 mA): round steps keep raw register dumps readable.
    /// The chip scales its CURRENT register by the calibration word it was actually given, so
    /// the returned `current_lsb_a` is recomputed from the truncated word rather than the round
    /// step; that keeps readings exact whatever truncation (and dropping of void bits) did.
    pub(crate) fn derive(
        chip: &ChipModel,
        shunt_ohms: f64,
        max_current_a: f64,
        full_scale_shunt_v: f64,
    ) -> Result<Self, ConfigError> {
        if !(shunt_ohms.is_finite() && shunt_ohms > 0.0) {
            return Err(ConfigError::ShuntResistance(shunt_ohms));
        }
        if !(max_current_a.is_finite() && max_current_a > 0.0) {
            return Err(ConfigError::MaxCurrent(max_current_a));
        }
        let limit_a = full_scale_shunt_v / shunt_ohms;
        if max_current_a > limit_a {
            return Err(ConfigError::CurrentBeyondShuntRange {
                max_current_a,
                limit_a,
                full_scale_v: full_scale_shunt_v,
                shunt_ohms,
            });
        }
        // Within the shunt range, a 1-2-5 step is at most 2.5× the minimum LSB, which is well
        // under the datasheets' upper bound of (full-scale current / 4096), so only the lower
        // bound needs enforcing.
        let current_lsb_a = round_up_to_1_2_5(max_current_a / CURRENT_REGISTER_SPAN);
        let ideal = chip.calibration_constant / (current_lsb_a * shunt_ohms);
        // Saturating float-to-int cast: anything beyond u64 is an overflow either way.
        let truncated = (ideal * (1.0 + ROUNDING_SLACK)).floor() as u64;
        let word = u16::try_from(truncated)
            .ok()
            .filter(|word| *word <= chip.calibration_max)
            .ok_or(ConfigError::CalibrationOverflow {
                value: truncated,
                max: chip.calibration_max,
            })?;
        let register = word & !chip.calibration_void_bits;
        let current_lsb_a = chip.calibration_constant / (f64::from(register) * shunt_ohms);
        Ok(Self {
            register,
            current_lsb_a,
            power_lsb_w: chip.power_lsb_per_current_lsb * current_lsb_a,
        })
    }
}

/// Smallest value of the form {1, 2, 5}·10^n that is not below `value` (which must be > 0).
fn round_up_to_1_2_5(value: f64) -> f64 {
    let decade = 10f64.powf(value.log10().floor());
    let mantissa = value / decade * (1.0 - ROUNDING_SLACK);
    let step = if mantissa <= 1.0 {
        1.0
    } else if mantissa <= 2.0 {
        2.0
    } else if mantissa <= 5.0 {
        5.0
    } else {
        10.0
    };
    step * decade
}

/// Rejects addresses outside [`ADDRESS_RANGE`].
pub(crate) fn check_address(address: u8) -> Result<(), ConfigError> {
    if ADDRESS_RANGE.contains(&address) {
        Ok(())
    } else {
        Err(ConfigError::Address(address))
    }
}

/// Big-endian 16-bit register access to one chip, plus the register sequences both chips share.
#[derive(Debug)]
pub(crate) struct RegisterBus<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C: I2c> RegisterBus<I2C> {
    pub fn new(i2c: I2C, address: u8) -> Self {
        Self { i2c, address }
    }

    pub fn address(&self) -> u8 {
        self.address
    }

    pub fn release(self) -> I2C {
        self.i2c
    }

    pub fn read(&mut self, register: u8) -> Result<u16, Error<I2C::Error>> {
        let mut word = [0u8; 2];
        self.i2c
            .write_read(self.address, &[register], &mut word)
            .map_err(|cause| self.bus_error(register, Access::Read, cause))?;
        Ok(u16::from_be_bytes(word))
    }

    pub fn write(&mut self, register: u8, value: u16) -> Result<(), Error<I2C::Error>> {
        let [high, low] = value.to_be_bytes();
        self.i2c
            .write(self.address, &[register, high, low])
            .map_err(|cause| self.bus_error(register, Access::Write, cause))
    }

    fn bus_error(&self, register: u8, access: Access, cause: I2C::Error) -> Error<I2C::Error> {
        Error::Bus {
            address: self.address,
            register,
            access,
            cause,
        }
    }

    /// Writes CONFIG, then CALIBRATION: the chip computes current and power only once both are
    /// in place.
    pub fn program(
        &mut self,
        config_word: u16,
        calibration: &Calibration,
    ) -> Result<(), Error<I2C::Error>> {
        self.write(register::CONFIG, config_word)?;
        self.write(register::CALIBRATION, calibration.register)
    }

    /// Whether CALIBRATION reads 0, its power-on value.
    pub fn calibration_lost(&mut self) -> Result<bool, Error<I2C::Error>> {
        Ok(self.read(register::CALIBRATION)? == 0)
    }

    /// Reads the four measurement registers. These are separate transfers, so in continuous
    /// mode a conversion can complete between them: voltage and current may come from adjacent
    /// conversion periods, which at the averaging times used is far below the power manager's
    /// time resolution.
    pub fn read_measurements(&mut self) -> Result<RawMeasurements, Error<I2C::Error>> {
        Ok(RawMeasurements {
            shunt: self.read(register::SHUNT_VOLTAGE)?,
            bus: self.read(register::BUS_VOLTAGE)?,
            current: self.read(register::CURRENT)?,
            power: self.read(register::POWER)?,
        })
    }
}

/// The measurement registers as read from the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawMeasurements {
    pub shunt: u16,
    pub bus: u16,
    pub current: u16,
    pub power: u16,
}

impl RawMeasurements {
    /// Scales the shunt, current and power registers (two's complement where signed); the bus
    /// voltage is decoded by the caller because its layout differs per chip.
    pub fn scale(self, chip: &ChipModel, calibration: &Calibration, bus_v: f64) -> Reading {
        Reading {
            bus_v,
            shunt_v: f64::from(self.shunt.cast_signed()) * chip.shunt_lsb_v,
            current_a: f64::from(self.current.cast_signed()) * calibration.current_lsb_a,
            power_w: f64::from(self.power) * calibration.power_lsb_w,
        }
    }
}

/// Outcome of [`PowerMonitor::read_recovering`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recovered {
    /// The measurement, taken after any re-initialisation.
    pub reading: Reading,
    /// The chip had lost its calibration (it was reset, typically by a brown-out) and was
    /// re-initialised; worth logging, since it means the monitor's supply dipped.
    pub chip_was_reset: bool,
}

/// What the power manager needs from a shunt monitor chip.
pub trait PowerMonitor {
    /// The I2C implementation's error type.
    type BusError;

    /// Programs the chip (configuration, then calibration).
    fn init(&mut self) -> Result<(), Error<Self::BusError>>;

    /// Reads bus voltage, shunt voltage, current and power.
    fn read(&mut self) -> Result<Reading, Error<Self::BusError>>;

    /// Whether the CALIBRATION register reads 0, which is its power-on value: the chip was reset
    /// since [`init`](Self::init) and would report zero current and power until reprogrammed.
    fn calibration_lost(&mut self) -> Result<bool, Error<Self::BusError>>;

    /// Reads, re-initialising first if the chip lost its calibration, so a brown-out of the
    /// monitor never turns into a run of plausible-looking zero-current readings.
    fn read_recovering(&mut self) -> Result<Recovered, Error<Self::BusError>> {
        let chip_was_reset = self.calibration_lost()?;
        if chip_was_reset {
            self.init()?;
        }
        Ok(Recovered {
            reading: self.read()?,
            chip_was_reset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_two_five_rounding_picks_next_step_up() {
        let cases = [
            (2.0 / 32768.0, 1e-4),
            (1.0 / 32768.0, 5e-5),
            (20.0 / 32768.0, 1e-3),
            (1.5e-4, 2e-4),
            (3e-4, 5e-4),
            (1e-4, 1e-4),
            (2e-3, 2e-3),
        ];
        for (value, expected) in cases {
            let step = round_up_to_1_2_5(value);
            assert!(
                (step - expected).abs() < expected * 1e-12,
                "{value} rounded to {step}, expected {expected}"
            );
        }
    }

    #[test]
    fn address_range_is_the_strap_pin_range() {
        assert_eq!(check_address(0x40), Ok(()));
        assert_eq!(check_address(0x4F), Ok(()));
        assert_eq!(check_address(0x3F), Err(ConfigError::Address(0x3F)));
        assert_eq!(check_address(0x50), Err(ConfigError::Address(0x50)));
    }
}
