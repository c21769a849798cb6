//! Progress of long steps: a line when a step starts, a heartbeat with the elapsed time while
//! it runs, and its duration when it ends, so a first build that takes twenty minutes never
//! looks hung.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a running step says it is still running.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// A running step; dropping it ends the heartbeat and reports the duration.
pub struct Step {
    label: String,
    started: Instant,
    stop: Option<Sender<()>>,
    heartbeat: Option<JoinHandle<()>>,
}

impl Step {
    /// Announces `label` and starts its heartbeat.
    pub fn start(label: impl Into<String>) -> Self {
        Self::with_heartbeat(label, HEARTBEAT)
    }

    fn with_heartbeat(label: impl Into<String>, every: Duration) -> Self {
        let label = label.into();
        let started = Instant::now();
        println!("==> {label}");
        let (stop, stopped) = mpsc::channel::<()>();
        let beat_label = label.clone();
        let heartbeat = std::thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                println!("    … {beat_label}: {} elapsed", elapsed(started.elapsed()));
            }
        });
        Self {
            label,
            started,
            stop: Some(stop),
            heartbeat: Some(heartbeat),
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.join();
        }
        println!(
            "    {} took {}",
            self.label,
            elapsed(self.started.elapsed())
        );
    }
}

/// `42 s`, `3 min 07 s`.
pub fn elapsed(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds < 60 {
        format!("{:.1} s", duration.as_secs_f64())
    } else {
        format!("{} min {:02} s", seconds / 60, seconds % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_seconds_then_minutes() {
        assert_eq!(elapsed(Duration::from_millis(4_300)), "4.3 s");
        assert_eq!(elapsed(Duration::from_secs(59)), "59.0 s");
        assert_eq!(elapsed(Duration::from_secs(187)), "3 min 07 s");
    }
}
