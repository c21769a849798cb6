//! Where measurements come from: INA219/INA226 chips driven from user space, the kernel's hwmon
//! or power_supply classes, or the simulated node. Each yields one [`Measurement`] per sample.

use std::path::Path;

use anyhow::{Context, Result};
use linux_embedded_hal::I2cdev;
use pew_drivers::Reading;
use pew_drivers::hwmon::{HwmonIna2xx, I2cClient};
use pew_drivers::ina::PowerMonitor;
use pew_drivers::ina219::{Adc, BusRange, Ina219, Ina219Config, ShuntRange};
use pew_drivers::ina226::{Averaging, ConversionTime, Ina226, Ina226Config};
use pew_drivers::power_supply::{CurrentSign, PowerSupply};
use pew_power::manager::Measurement;

use crate::config::{HwmonChannel, InaChannel, SourceConfig};

/// A source of battery and solar measurements.
pub trait Meter: Send {
    /// Short name for the `Source` property and logs.
    fn name(&self) -> &'static str;
    fn read(&mut self) -> Result<Measurement>;
}

/// Opens the hardware source `config` describes. The simulated source is built by
/// [`crate::simulation`], since it also owns the clock.
pub fn open(config: &SourceConfig) -> Result<Box<dyn Meter>> {
    Ok(match config {
        SourceConfig::Ina219 {
            bus,
            battery,
            solar,
        } => ina_meter("ina219", bus, battery, solar.as_ref(), ina219)?,
        SourceConfig::Ina226 {
            bus,
            battery,
            solar,
        } => ina_meter("ina226", bus, battery, solar.as_ref(), ina226)?,
        SourceConfig::Hwmon {
            root,
            battery,
            solar,
        } => Box::new(HwmonMeter {
            battery: (hwmon(root, battery)?, battery.reversed),
            solar: solar
                .as_ref()
                .map(|s| Ok::<_, anyhow::Error>((hwmon(root, s)?, s.reversed)))
                .transpose()?,
        }),
        SourceConfig::PowerSupply {
            root,
            name,
            discharge_positive,
        } => {
            let sign = if *discharge_positive {
                CurrentSign::PositiveWhenDischarging
            } else {
                CurrentSign::PositiveWhenCharging
            };
            Box::new(SupplyMeter(PowerSupply::new(root, name, sign)))
        }
        SourceConfig::Simulated => anyhow::bail!("the simulated source is not hardware"),
    })
}

type Chip = Box<dyn PowerMonitor<BusError = linux_embedded_hal::I2CError> + Send>;

fn ina_meter(
    name: &'static str,
    bus: &Path,
    battery: &InaChannel,
    solar: Option<&InaChannel>,
    open_chip: fn(I2cdev, &InaChannel) -> Result<Chip>,
) -> Result<Box<dyn Meter>> {
    let channel = |channel: &InaChannel| -> Result<Channel> {
        let i2c = I2cdev::new(bus).with_context(|| format!("cannot open {}", bus.display()))?;
        let chip = open_chip(i2c, channel)
            .with_context(|| format!("{name} at {:#04x}", channel.address))?;
        Ok(Channel::new(chip, channel.reversed))
    };
    Ok(Box::new(InaMeter {
        name,
        battery: channel(battery)?,
        solar: solar.map(channel).transpose()?,
    }))
}

/// Programs a monitor (configuration, calibration) and boxes it.
fn programmed(
    mut chip: impl PowerMonitor<BusError = linux_embedded_hal::I2CError> + Send + 'static,
) -> Result<Chip> {
    chip.init().context("cannot program the chip")?;
    Ok(Box::new(chip))
}

fn ina219(i2c: I2cdev, channel: &InaChannel) -> Result<Chip> {
    let config = Ina219Config {
        address: channel.address,
        shunt_ohms: channel.shunt_ohm,
        max_current_a: channel.max_current_a,
        bus_range: BusRange::Volts32,
        shunt_range: smallest_ina219_range(channel),
        // Averaging 32 samples over ~17 ms smooths the Pi's bursty current draw.
        adc: Adc::Samples32,
    };
    programmed(Ina219::new(i2c, &config)?)
}

fn smallest_ina219_range(channel: &InaChannel) -> ShuntRange {
    let needed_v = channel.max_current_a * channel.shunt_ohm;
    [
        ShuntRange::Millivolts40,
        ShuntRange::Millivolts80,
        ShuntRange::Millivolts160,
    ]
    .into_iter()
    .find(|range| range.full_scale_v() >= needed_v)
    .unwrap_or(ShuntRange::Millivolts320)
}

fn ina226(i2c: I2cdev, channel: &InaChannel) -> Result<Chip> {
    let config = Ina226Config {
        address: channel.address,
        shunt_ohms: channel.shunt_ohm,
        max_current_a: channel.max_current_a,
        // 64 × 1.1 ms ≈ 140 ms per result: averages over several of the Pi's load bursts.
        averaging: Averaging::X64,
        bus_conversion: ConversionTime::Us1100,
        shunt_conversion: ConversionTime::Us1100,
    };
    programmed(Ina226::new(i2c, &config)?)
}

fn hwmon(root: &Path, channel: &HwmonChannel) -> Result<HwmonIna2xx> {
    let client = channel.address.map(|address| I2cClient {
        bus: u32::from(channel.i2c_bus.unwrap_or(1)),
        address: u16::from(address),
    });
    Ok(HwmonIna2xx::find(root, &channel.name, client)?)
}

/// A monitor chip and whether its shunt is wired so that charging reads negative.
struct Channel {
    chip: Chip,
    reversed: bool,
}

impl Channel {
    fn new(chip: Chip, reversed: bool) -> Self {
        Self { chip, reversed }
    }

    fn read(&mut self) -> Result<Reading> {
        let recovered = self.chip.read_recovering()?;
        if recovered.chip_was_reset {
            tracing::warn!(
                "power monitor lost its calibration (its supply dipped) and was reprogrammed"
            );
        }
        Ok(oriented(recovered.reading, self.reversed))
    }
}

fn oriented(mut reading: Reading, reversed: bool) -> Reading {
    if reversed {
        reading.current_a = -reading.current_a;
    }
    reading
}

/// Battery and solar readings into a measurement. The load is what the panel delivers minus
/// what goes into the battery: the node's own consumption, converter losses included.
fn measurement(battery: Reading, solar: Option<Reading>) -> Measurement {
    let solar_w = solar.map_or(0.0, |s| (s.bus_v * s.current_a).max(0.0));
    let battery_w = battery.bus_v * battery.current_a;
    Measurement {
        battery_v: battery.bus_v,
        battery_a: battery.current_a,
        solar_w,
        load_w: (solar_w - battery_w).max(0.0),
    }
}

struct InaMeter {
    name: &'static str,
    battery: Channel,
    solar: Option<Channel>,
}

impl Meter for InaMeter {
    fn name(&self) -> &'static str {
        self.name
    }

    fn read(&mut self) -> Result<Measurement> {
        let battery = self.battery.read().context("battery monitor")?;
        let solar = self
            .solar
            .as_mut()
            .map(Channel::read)
            .transpose()
            .context("solar monitor")?;
        Ok(measurement(battery, solar))
    }
}

struct HwmonMeter {
    battery: (HwmonIna2xx, bool),
    solar: Option<(HwmonIna2xx, bool)>,
}

impl Meter for HwmonMeter {
    fn name(&self) -> &'static str {
        "hwmon"
    }

    fn read(&mut self) -> Result<Measurement> {
        let battery = oriented(self.battery.0.read()?, self.battery.1);
        let solar = self
            .solar
            .as_ref()
            .map(|(device, reversed)| device.read().map(|r| oriented(r, *reversed)))
            .transpose()?;
        Ok(measurement(battery, solar))
    }
}

/// A fuel gauge knows the battery side only; solar input is unknown (reported as 0) and the
/// forecaster then learns from nothing, so such nodes should add a solar monitor.
struct SupplyMeter(PowerSupply);

impl Meter for SupplyMeter {
    fn name(&self) -> &'static str {
        "power-supply"
    }

    fn read(&mut self) -> Result<Measurement> {
        let reading = self.0.read()?;
        Ok(Measurement {
            battery_v: reading.voltage_v,
            battery_a: reading.current_a,
            solar_w: 0.0,
            load_w: (-reading.voltage_v * reading.current_a).max(0.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(bus_v: f64, current_a: f64) -> Reading {
        Reading {
            bus_v,
            shunt_v: 0.0,
            current_a,
            power_w: (bus_v * current_a).abs(),
        }
    }

    #[test]
    fn load_is_solar_minus_battery_charge() {
        // 12 W from the panel, 7 W into a 4 V battery: the node uses 5 W.
        let m = measurement(reading(4.0, 1.75), Some(reading(18.0, 12.0 / 18.0)));
        assert!((m.load_w - 5.0).abs() < 1e-9);
        assert!((m.solar_w - 12.0).abs() < 1e-9);
    }

    #[test]
    fn at_night_the_load_is_the_battery_discharge() {
        let m = measurement(reading(3.8, -1.0), None);
        assert!((m.load_w - 3.8).abs() < 1e-9);
        assert_eq!(m.solar_w, 0.0);
    }

    #[test]
    fn reversed_shunt_flips_the_current_only() {
        let r = oriented(reading(3.7, 0.5), true);
        assert_eq!(r.current_a, -0.5);
        assert_eq!(r.bus_v, 3.7);
    }

    #[test]
    fn ina219_range_is_the_smallest_that_fits() {
        let channel = |max_current_a, shunt_ohm| InaChannel {
            address: 0x40,
            shunt_ohm,
            max_current_a,
            reversed: false,
        };
        assert_eq!(
            smallest_ina219_range(&channel(0.3, 0.1)),
            ShuntRange::Millivolts40
        );
        assert_eq!(
            smallest_ina219_range(&channel(2.0, 0.05)),
            ShuntRange::Millivolts160
        );
        assert_eq!(
            smallest_ina219_range(&channel(3.2, 0.1)),
            ShuntRange::Millivolts320
        );
    }
}
