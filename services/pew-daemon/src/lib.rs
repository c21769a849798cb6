//! What every pew daemon shares, so each service binary is only its own wiring:
//! configuration files with errors that name file, line and key ([`config`]), logging to journald
//! or stderr ([`logging`]), systemd readiness, status and watchdog ([`systemd`]), a clean stop on
//! SIGTERM ([`shutdown_signal`]), and state written so that a power cut at any instant leaves
//! either the old or the new file, never a torn one ([`state`]).

pub mod config;
pub mod logging;
pub mod state;
pub mod systemd;

/// Resolves when the service is asked to stop (SIGTERM from systemd, SIGINT from a terminal).
pub async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
