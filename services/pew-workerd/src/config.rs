//! `/etc/pew/workerd.toml`: which scheduler the worker serves, where its wallet and task files
//! live, what a task container may use, and how the worker spends energy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pew_daemon::config::{self as file, ConfigError};
use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/pew/workerd.toml";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerdConfig {
    /// The worker's name towards the scheduler and the prefix of its containers' names.
    pub name: String,
    /// Base URL of the iexec-core scheduler, e.g. `https://core.pool.example:13000`.
    pub scheduler_url: String,
    /// Task files, the replicate journal and learned app profiles (on the data partition).
    pub data_dir: PathBuf,
    /// Seconds before a request to the scheduler, the result proxy or an input server gives up.
    pub http_timeout_s: u64,
    pub wallet: WalletConfig,
    pub chain: ChainConfig,
    pub engine: EngineConfig,
    pub energy: EnergyConfig,
}

impl Default for WorkerdConfig {
    fn default() -> Self {
        Self {
            name: "pew".into(),
            scheduler_url: String::new(),
            data_dir: PathBuf::from("/var/lib/pew/worker"),
            http_timeout_s: 30,
            wallet: WalletConfig::default(),
            chain: ChainConfig::default(),
            engine: EngineConfig::default(),
            energy: EnergyConfig::default(),
        }
    }
}

/// The worker's Ethereum identity: a keystore v3 file and the file holding its password, both
/// written by provisioning with mode 0600.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalletConfig {
    pub keystore: PathBuf,
    pub password_file: PathBuf,
}

impl Default for WalletConfig {
    fn default() -> Self {
        Self {
            keystore: PathBuf::from("/var/lib/pew/wallet/keystore.json"),
            password_file: PathBuf::from("/var/lib/pew/wallet/password"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    /// JSON-RPC endpoint used instead of the `chainNodeUrl` the scheduler publishes (a node near
    /// the worker, or the host's chain in emulation). Empty: use the published one.
    pub rpc_url: String,
    /// Highest gas price the worker pays, in gwei.
    pub gas_price_cap_gwei: f64,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            rpc_url: String::new(),
            gas_price_cap_gwei: 22.0,
        }
    }
}

/// Network given to task containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerNetwork {
    /// No network at all: an app cannot reach the node's LAN or the internet.
    None,
    /// The engine's default bridge (apps that fetch their own data).
    Bridge,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Docker Engine API socket: podman's Docker-compatible service on the node.
    pub socket: PathBuf,
    /// CPUs a task may use; 0 means all but one of the node's CPUs.
    pub cpus: f64,
    pub memory_mib: u64,
    pub pids: u32,
    pub network: ContainerNetwork,
    /// Upper bound for pulling an app image (the lower bound follows the category, §3.2).
    pub pull_timeout_s: u64,
    /// The unprivileged user and group apps run as (nobody/nogroup by default); they own the
    /// output folder and nothing else.
    pub app_uid: u32,
    pub app_gid: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/podman/podman.sock"),
            cpus: 0.0,
            memory_mib: 512,
            pids: 256,
            network: ContainerNetwork::None,
            pull_timeout_s: 1800,
            app_uid: 65534,
            app_gid: 65534,
        }
    }
}

/// What happens to a running task when the power manager enters critical mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CriticalPolicy {
    /// Let it finish: its energy was granted before it started.
    Finish,
    /// Abort it at once and keep the battery.
    Abort,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnergyConfig {
    /// Node power while a task computes, in watts, until the worker has measured its own.
    pub compute_power_w: f64,
    /// Factor applied to every energy estimate before asking for it.
    pub margin: f64,
    /// The longest task the worker asks for before knowing it, in seconds (the category of the
    /// tasks this pool sends; XS = 300 s). Energy for it is reserved before asking the scheduler.
    pub expected_task_s: u64,
    pub critical: CriticalPolicy,
}

impl Default for EnergyConfig {
    fn default() -> Self {
        Self {
            compute_power_w: 5.0,
            margin: 1.25,
            expected_task_s: 300,
            critical: CriticalPolicy::Finish,
        }
    }
}

impl WorkerdConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = file::read(path, false)?;
        let config: Self = file::parse(path, &text)?;
        config
            .validate()
            .map_err(|(key, message)| file::rejected(path, &text, key, message))?;
        Ok(config)
    }

    pub fn http_timeout(&self) -> Duration {
        Duration::from_secs(self.http_timeout_s)
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.scheduler_url.starts_with("http://")
            || self.scheduler_url.starts_with("https://"))
        {
            return Err((
                "scheduler_url",
                format!(
                    "must be an http:// or https:// URL, got {:?}",
                    self.scheduler_url
                ),
            ));
        }
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err((
                "name",
                format!(
                    "must be letters, digits, '-' or '_' (it names containers), got {:?}",
                    self.name
                ),
            ));
        }
        let positive = |key: &'static str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err((key, format!("must be a positive number, got {value}")))
            }
        };
        positive("energy.compute_power_w", self.energy.compute_power_w)?;
        positive("chain.gas_price_cap_gwei", self.chain.gas_price_cap_gwei)?;
        if !(self.energy.margin.is_finite() && self.energy.margin >= 1.0) {
            return Err((
                "energy.margin",
                format!("must be at least 1, got {}", self.energy.margin),
            ));
        }
        if !(self.engine.cpus.is_finite() && self.engine.cpus >= 0.0) {
            return Err((
                "engine.cpus",
                format!(
                    "must be 0 (automatic) or positive, got {}",
                    self.engine.cpus
                ),
            ));
        }
        if self.engine.memory_mib < 16 {
            return Err((
                "engine.memory_mib",
                format!("must be at least 16 MiB, got {}", self.engine.memory_mib),
            ));
        }
        if self.engine.pids < 8 {
            return Err((
                "engine.pids",
                format!("must be at least 8, got {}", self.engine.pids),
            ));
        }
        let at_least_one_second = |key: &'static str, value: u64| {
            if value >= 1 {
                Ok(())
            } else {
                Err((key, "must be at least 1 second".to_owned()))
            }
        };
        at_least_one_second("http_timeout_s", self.http_timeout_s)?;
        at_least_one_second("energy.expected_task_s", self.energy.expected_task_s)?;
        at_least_one_second("engine.pull_timeout_s", self.engine.pull_timeout_s)?;
        if self.engine.app_uid == 0 || self.engine.app_gid == 0 {
            return Err((
                "engine.app_uid",
                "apps must not run as root (uid or gid 0)".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<WorkerdConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("workerd.toml");
        std::fs::write(&path, text).unwrap();
        WorkerdConfig::load(&path)
    }

    #[test]
    fn shipped_example_is_valid() {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../overlays/etc/pew/workerd.toml");
        let config = WorkerdConfig::load(&example).unwrap();
        assert_eq!(config.engine.network, ContainerNetwork::None);
        assert_eq!(config.energy.critical, CriticalPolicy::Finish);
        assert!(config.scheduler_url.starts_with("http"));
    }

    #[test]
    fn a_missing_file_is_an_error_because_the_scheduler_has_no_default() {
        let error = WorkerdConfig::load(Path::new("/nonexistent/workerd.toml")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/workerd.toml"));
    }

    #[test]
    fn unknown_keys_are_rejected_with_line_and_key() {
        let error = load_text("scheduler_url = \"http://core:13000\"\n[engine]\nmemory = 3\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("engine.memory"), "{error}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("scheduler_url = \"core:13000\"\n", "scheduler_url"),
            ("scheduler_url = \"http://c\"\nname = \"a b\"\n", "name"),
            (
                "scheduler_url = \"http://c\"\n[energy]\nmargin = 0.5\n",
                "energy.margin",
            ),
            (
                "scheduler_url = \"http://c\"\n[engine]\npids = 2\n",
                "engine.pids",
            ),
            (
                "scheduler_url = \"http://c\"\n[energy]\ncritical = \"ignore\"\n",
                "energy.critical",
            ),
        ];
        for (text, key) in cases {
            let error = load_text(text).unwrap_err().to_string();
            assert!(error.contains(key), "{text:?} gave {error}");
        }
    }
}
