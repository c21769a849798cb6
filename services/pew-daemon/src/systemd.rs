//! systemd's notification protocol: READY once the service serves its bus name, STATUS lines
//! an operator sees in `systemctl status`, and WATCHDOG pings sent only while the service's own
//! loop is alive, so a wedged daemon is restarted. Outside systemd every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the service is ready, with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Updates the status line shown by `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Pings the watchdog. Call from the service's main loop, never from a detached timer, so that a
/// stuck loop stops the pings.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half of `WatchdogSec=`, or `None` when it is off.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2)
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}
