//! `/etc/pew/powerd.toml`: the power manager's policy (handed to pew-power as it is) plus where
//! measurements come from and what the service may drive.

use std::path::{Path, PathBuf};

use pew_daemon::config::{self as file, ConfigError};
use pew_power::chemistry::BatterySpec;
use pew_power::manager::{Policy, PowerConfig, SolarConfig};
use pew_power::mode::ModeThresholds;
use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/pew/powerd.toml";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowerdConfig {
    /// Where the state file lives (on the data partition).
    pub state_dir: PathBuf,
    /// Seconds between measurements.
    pub sample_interval_s: f64,
    /// Seconds between routine state saves. Mode changes and lease changes save at once; the
    /// interval only bounds how much coulomb counting a power cut can lose, while keeping SD
    /// card writes to a few hundred a day.
    pub save_interval_s: u64,
    pub battery: BatterySpec,
    pub solar: SolarConfig,
    pub policy: Policy,
    pub modes: ModeThresholds,
    pub source: SourceConfig,
    /// Used when `source.kind = "simulated"` or the kernel command line has `pew.simulate`.
    pub simulation: SimulationConfig,
    pub rtc: RtcConfig,
    pub cpufreq: CpufreqConfig,
    pub power_off: PowerOffConfig,
}

impl Default for PowerdConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/pew/power"),
            sample_interval_s: 5.0,
            save_interval_s: 300,
            battery: BatterySpec::default(),
            solar: SolarConfig::default(),
            policy: Policy::default(),
            modes: ModeThresholds::default(),
            source: SourceConfig::Simulated,
            simulation: SimulationConfig::default(),
            rtc: RtcConfig::default(),
            cpufreq: CpufreqConfig::default(),
            power_off: PowerOffConfig::default(),
        }
    }
}

/// Where battery, solar and load measurements come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceConfig {
    /// INA219 monitors on an I2C bus driven from user space.
    Ina219 {
        #[serde(default = "default_i2c_bus")]
        bus: PathBuf,
        battery: InaChannel,
        solar: Option<InaChannel>,
    },
    /// INA226 monitors on an I2C bus driven from user space.
    Ina226 {
        #[serde(default = "default_i2c_bus")]
        bus: PathBuf,
        battery: InaChannel,
        solar: Option<InaChannel>,
    },
    /// INA2xx chips owned by the kernel's ina2xx hwmon driver.
    Hwmon {
        #[serde(default = "default_hwmon_root")]
        root: PathBuf,
        battery: HwmonChannel,
        solar: Option<HwmonChannel>,
    },
    /// A fuel gauge or charger with a kernel power_supply driver.
    PowerSupply {
        #[serde(default = "default_power_supply_root")]
        root: PathBuf,
        name: String,
        /// true when the driver reports discharge as positive current.
        #[serde(default)]
        discharge_positive: bool,
    },
    /// The simulated battery and panel of `[simulation]`.
    Simulated,
}

/// One INA2xx monitor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InaChannel {
    pub address: u8,
    pub shunt_ohm: f64,
    pub max_current_a: f64,
    /// The shunt is wired so that charging current reads negative.
    #[serde(default)]
    pub reversed: bool,
}

/// One hwmon device: its driver name and, when several exist, its I2C address.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwmonChannel {
    pub name: String,
    pub i2c_bus: Option<u8>,
    pub address: Option<u8>,
    #[serde(default)]
    pub reversed: bool,
}

fn default_i2c_bus() -> PathBuf {
    PathBuf::from("/dev/i2c-1")
}
fn default_hwmon_root() -> PathBuf {
    PathBuf::from("/sys/class/hwmon")
}
fn default_power_supply_root() -> PathBuf {
    PathBuf::from("/sys/class/power_supply")
}

/// The simulated node: a battery and panel replaying a real typical meteorological year.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulationConfig {
    /// "greensboro" or "sand-point".
    pub site: String,
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Simulated start time, seconds since the Unix epoch; 0 means now.
    pub start: i64,
    /// True state of charge of the simulated battery at start, 0..1.
    pub initial_soc: f64,
    /// Node power when not computing, W.
    pub idle_w: f64,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            site: "greensboro".into(),
            speed: 1.0,
            start: 0,
            initial_soc: 0.7,
            idle_w: 2.7,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtcConfig {
    /// The RTC whose wake alarm powers the node back on (on a HAT, the HAT's RTC).
    pub device: PathBuf,
    /// Arm the wake alarm and power off in Shutdown mode. Off on boards with no way back.
    pub enabled: bool,
}

impl Default for RtcConfig {
    fn default() -> Self {
        Self {
            device: PathBuf::from("/sys/class/rtc/rtc0"),
            enabled: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpufreqConfig {
    pub root: PathBuf,
    /// CPU frequency cap in Eco and Critical, kHz.
    pub eco_max_khz: u32,
    pub enabled: bool,
}

impl Default for CpufreqConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/sys/devices/system/cpu/cpufreq"),
            eco_max_khz: 600_000,
            enabled: true,
        }
    }
}

/// How the node powers itself off once the wake alarm is armed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowerOffConfig {
    /// The command and its arguments. Power HATs whose MCU cuts power after a handshake (a
    /// GPIO line, an I2C command) put their tool here; it must end in a halt.
    pub command: Vec<String>,
}

impl Default for PowerOffConfig {
    fn default() -> Self {
        Self {
            command: vec!["systemctl".into(), "poweroff".into(), "--no-wall".into()],
        }
    }
}

impl PowerdConfig {
    /// Reads, parses and validates the file; a missing file means all defaults (simulation).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = file::read(path, true)?;
        let config: Self = file::parse(path, &text)?;
        config
            .validate()
            .map_err(|(key, message)| file::rejected(path, &text, &key, message))?;
        Ok(config)
    }

    /// The part pew-power needs.
    pub fn power(&self) -> PowerConfig {
        PowerConfig {
            battery: self.battery.clone(),
            solar: self.solar.clone(),
            policy: self.policy.clone(),
            modes: self.modes.clone(),
        }
    }

    fn validate(&self) -> Result<(), (String, String)> {
        self.power()
            .validate()
            .map_err(|e| (e.key().to_owned(), e.requirement().to_owned()))?;
        let positive = |key: &str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err((
                    key.to_owned(),
                    format!("must be a positive number, got {value}"),
                ))
            }
        };
        positive("sample_interval_s", self.sample_interval_s)?;
        positive("simulation.speed", self.simulation.speed)?;
        positive("simulation.idle_w", self.simulation.idle_w)?;
        if !(0.0..=1.0).contains(&self.simulation.initial_soc) {
            return Err((
                "simulation.initial_soc".into(),
                format!("must be within 0..1, got {}", self.simulation.initial_soc),
            ));
        }
        if self
            .simulation
            .site
            .parse::<pew_sim::weather::SiteName>()
            .is_err()
        {
            return Err((
                "simulation.site".into(),
                format!(
                    "unknown site {:?}; known: greensboro, sand-point",
                    self.simulation.site
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<PowerdConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("powerd.toml");
        std::fs::write(&path, text).unwrap();
        PowerdConfig::load(&path)
    }

    #[test]
    fn shipped_example_is_valid_and_describes_the_seed_hardware() {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../overlays/etc/pew/powerd.toml");
        let config = PowerdConfig::load(&example).unwrap();
        assert_eq!(config.battery, BatterySpec::default());
        assert_eq!(config.policy, Policy::default());
        assert_eq!(config.modes, ModeThresholds::default());
        match config.source {
            SourceConfig::Ina219 { battery, solar, .. } => {
                assert_eq!(battery.address, 0x40);
                assert_eq!(solar.map(|s| s.address), Some(0x41));
            }
            other => panic!("the example uses INA219s, got {other:?}"),
        }
    }

    #[test]
    fn missing_file_means_the_simulated_defaults() {
        let config = PowerdConfig::load(Path::new("/nonexistent/powerd.toml")).unwrap();
        assert_eq!(config, PowerdConfig::default());
    }

    #[test]
    fn unknown_key_in_a_source_is_named_with_its_line() {
        let error = load_text("[source]\nkind = \"ina219\"\nbattery = { address = 0x40, shunt_ohm = 0.1, max_current_a = 2.0 }\nshunt = 3\n").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("line 4") || message.contains("line 1"),
            "{message}"
        );
        assert!(message.contains("shunt"), "{message}");
    }

    #[test]
    fn impossible_value_is_rejected_naming_file_line_and_key() {
        let error = load_text("# the seed bank\n[battery]\ncapacity_wh = -185.0\n").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("powerd.toml line 3 key `battery.capacity_wh`"),
            "{message}"
        );
    }

    #[test]
    fn unknown_simulation_site_is_rejected() {
        let message = load_text("[simulation]\nsite = \"atlantis\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("simulation.site") && message.contains("atlantis"),
            "{message}"
        );
    }

    #[test]
    fn hex_addresses_and_hwmon_sources_parse() {
        let config = load_text("[source]\nkind = \"hwmon\"\nbattery = { name = \"ina226\", i2c_bus = 1, address = 0x44 }\n").unwrap();
        match config.source {
            SourceConfig::Hwmon {
                battery,
                solar: None,
                ..
            } => assert_eq!(battery.address, Some(0x44)),
            other => panic!("{other:?}"),
        }
    }
}
