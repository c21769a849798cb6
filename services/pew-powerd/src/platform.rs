//! What the service reads and drives: the real board (power monitors, RTC wake alarm, cpufreq,
//! poweroff) or the simulated node, behind one type so the service loop does not care which.

use std::path::Path;

use anyhow::{Context, Result};
use pew_drivers::cpufreq::Cpufreq;
use pew_drivers::rtc::Rtc;
use pew_power::Timestamp;
use pew_power::manager::Measurement;
use pew_power::mode::Mode;

use crate::config::PowerdConfig;
use crate::meter::{self, Meter};
use crate::simulation::Simulation;

/// What powering off did.
pub enum PowerOff {
    /// The real system is going down; systemd will stop this service.
    Requested,
    /// The simulated node slept until its alarm and is up again.
    Resumed,
}

pub struct Platform {
    backend: Backend,
    rtc: Option<Rtc>,
    cpufreq: Option<Cpufreq>,
    eco_max_khz: u32,
}

enum Backend {
    Hardware {
        meter: Box<dyn Meter>,
        power_off_command: Vec<String>,
    },
    Simulated {
        simulation: Box<Simulation>,
        halt_w: f64,
    },
}

/// The kernel command line flag that switches every pew service to simulated hardware (used by
/// the emulated image, where there is no INA219 to read).
pub const SIMULATE_FLAG: &str = "pew.simulate";

pub fn simulation_requested(config: &PowerdConfig) -> bool {
    matches!(config.source, crate::config::SourceConfig::Simulated)
        || std::fs::read_to_string("/proc/cmdline").is_ok_and(|cmdline| {
            cmdline
                .split_whitespace()
                .any(|word| word == SIMULATE_FLAG || word == "pew.simulate=1")
        })
}

impl Platform {
    pub fn open(config: &PowerdConfig) -> Result<Self> {
        if simulation_requested(config) {
            let now = wall_clock();
            let simulation = Simulation::new(
                &config.simulation,
                &config.battery,
                config.solar.panel_w,
                now,
            )?;
            // The simulated node's RTC is a directory laid out like sysfs, so the real driver,
            // with its clear-then-arm-then-verify sequence, is what runs.
            let rtc_root = config.state_dir.join("simulated-rtc");
            prepare_simulated_rtc(&rtc_root).context("simulated RTC")?;
            return Ok(Self {
                backend: Backend::Simulated {
                    simulation: Box::new(simulation),
                    halt_w: config.policy.sleep_load_w,
                },
                rtc: Some(Rtc::new(&rtc_root, "rtc0")),
                cpufreq: None,
                eco_max_khz: config.cpufreq.eco_max_khz,
            });
        }
        let rtc = config.rtc.enabled.then(|| {
            let root = config
                .rtc
                .device
                .parent()
                .unwrap_or(Path::new(pew_drivers::rtc::DEFAULT_ROOT));
            let name = config
                .rtc
                .device
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("rtc0");
            Rtc::new(root, name)
        });
        Ok(Self {
            backend: Backend::Hardware {
                meter: meter::open(&config.source)?,
                power_off_command: config.power_off.command.clone(),
            },
            rtc,
            cpufreq: config
                .cpufreq
                .enabled
                .then(|| Cpufreq::new(&config.cpufreq.root)),
            eco_max_khz: config.cpufreq.eco_max_khz,
        })
    }

    pub fn source_name(&self) -> &'static str {
        match &self.backend {
            Backend::Hardware { meter, .. } => meter.name(),
            Backend::Simulated { .. } => "simulated",
        }
    }

    /// The site of the replayed weather, when simulating, so the forecaster's sun is the sun of
    /// the data.
    pub fn simulated_site(&self) -> Option<(f64, f64)> {
        match &self.backend {
            Backend::Simulated { simulation, .. } => Some(simulation.site()),
            Backend::Hardware { .. } => None,
        }
    }

    pub fn now(&self) -> Timestamp {
        match &self.backend {
            Backend::Hardware { .. } => wall_clock(),
            Backend::Simulated { simulation, .. } => simulation.now(),
        }
    }

    /// Takes one measurement. `compute_w` is the power of the work currently leased, which only
    /// the simulation needs (real hardware measures it).
    pub fn measure(&mut self, compute_w: f64) -> Result<Measurement> {
        match &mut self.backend {
            Backend::Hardware { meter, .. } => meter.read(),
            Backend::Simulated { simulation, .. } => Ok(simulation.measure(compute_w)),
        }
    }

    /// Caps the CPU in Eco and Critical, lifts the cap otherwise.
    pub fn apply_mode(&self, mode: Mode) {
        let Some(cpufreq) = &self.cpufreq else { return };
        let cap = matches!(mode, Mode::Eco | Mode::Critical).then_some(self.eco_max_khz);
        match cpufreq.cap(cap) {
            Ok(applied) => {
                tracing::info!(?cap, policies = applied.len(), "CPU frequency cap applied")
            }
            Err(error) => tracing::warn!(%error, "cannot cap the CPU frequency"),
        }
    }

    /// Arms the wake alarm for `at` (clearing a pending one first) and verifies it by reading it
    /// back. Returns the time armed, or `None` where the board has no RTC to arm.
    pub fn arm_wake(&self, at: Timestamp) -> Result<Option<Timestamp>> {
        let Some(rtc) = &self.rtc else {
            return Ok(None);
        };
        let at = crate::wake::alarm_time(at);
        rtc.arm(at)
            .with_context(|| format!("cannot arm the wake alarm for {at}"))?;
        Ok(Some(at))
    }

    /// The alarm pending in the RTC, if any.
    pub fn armed_wake(&self) -> Result<Option<Timestamp>> {
        match &self.rtc {
            Some(rtc) => Ok(rtc.armed()?),
            None => Ok(None),
        }
    }

    /// Powers the node off until `wake_at`.
    pub async fn power_off(&mut self, wake_at: Timestamp) -> Result<PowerOff> {
        match &mut self.backend {
            Backend::Hardware {
                power_off_command, ..
            } => {
                let (program, arguments) = power_off_command
                    .split_first()
                    .context("power_off.command is empty")?;
                let shown = power_off_command.join(" ");
                let status = tokio::process::Command::new(program)
                    .args(arguments)
                    .status()
                    .await
                    .with_context(|| format!("cannot run {shown}"))?;
                anyhow::ensure!(status.success(), "{shown} failed: {status}");
                Ok(PowerOff::Requested)
            }
            Backend::Simulated { simulation, halt_w } => {
                simulation.power_off_until(wake_at, *halt_w);
                if let Some(rtc) = &self.rtc {
                    // The alarm is one-shot: firing clears it, as the kernel does.
                    rtc.clear().context("simulated RTC")?;
                }
                Ok(PowerOff::Resumed)
            }
        }
    }
}

fn wall_clock() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as Timestamp)
}

fn prepare_simulated_rtc(root: &Path) -> std::io::Result<()> {
    let dir = root.join("rtc0");
    std::fs::create_dir_all(&dir)?;
    for file in ["wakealarm", "since_epoch"] {
        let path = dir.join(file);
        if !path.exists() {
            std::fs::write(&path, "")?;
        }
    }
    Ok(())
}
