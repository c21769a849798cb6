//! A private `dbus-daemon` that behaves like a node's system bus: the default policy of Debian's
//! `system.conf` (deny method calls and name ownership unless a policy file allows them) plus the
//! policy files pew ships in `overlays/usr/share/dbus-1/system.d/`. Bus tests and the dev node run
//! on it, so the tests exercise the very policies the image installs, without touching the
//! machine's own system bus.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The repository's directory of shipped D-Bus policies.
pub fn shipped_policy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../overlays/usr/share/dbus-1/system.d")
}

/// A running private bus; the daemon is stopped when this is dropped.
pub struct DevBus {
    daemon: Child,
    address: String,
    // Holds the socket and configuration until the daemon is gone.
    _dir: tempfile::TempDir,
}

#[derive(Debug, thiserror::Error)]
pub enum DevBusError {
    #[error("cannot start dbus-daemon (is package dbus-daemon installed?): {0}")]
    Io(#[from] std::io::Error),
    #[error("dbus-daemon exited without printing its address")]
    NoAddress,
}

impl DevBus {
    /// Starts a bus with the shipped policies.
    pub fn start() -> Result<Self, DevBusError> {
        Self::with_policies(&shipped_policy_dir())
    }

    /// Starts a bus whose policies are the `*.conf` files in `policy_dir`.
    pub fn with_policies(policy_dir: &Path) -> Result<Self, DevBusError> {
        let dir = tempfile::Builder::new().prefix("pew-bus-").tempdir()?;
        // The socket must be reachable by the unprivileged users the policy tests connect as.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, bus_config(&dir.path().join("socket"), policy_dir))?;
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        if let Some(stdout) = daemon.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let address = line.trim().to_owned();
        if address.is_empty() {
            let _ = daemon.kill();
            let _ = daemon.wait();
            return Err(DevBusError::NoAddress);
        }
        Ok(Self {
            daemon,
            address,
            _dir: dir,
        })
    }

    /// The address to give clients (`PEW_BUS_ADDRESS`, `--bus`).
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for DevBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn bus_config(socket: &Path, policy_dir: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>pew-dev</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <includedir>{policies}</includedir>
</busconfig>
"#,
        socket = socket.display(),
        policies = policy_dir.display(),
    )
}
