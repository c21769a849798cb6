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

/// Named phases of a long command, each shown as a [`Step`], then summed up at the end.
#[derive(Default)]
pub struct Phases {
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    /// Runs `phase`, recording how long it took (also when it fails).
    pub fn run<T>(&mut self, name: &'static str, phase: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let step = Step::start(name);
        let result = phase();
        drop(step);
        self.done.push((name, started.elapsed()));
        result
    }

    /// One line per phase and the total.
    pub fn summary(&self) -> String {
        let total: Duration = self.done.iter().map(|(_, took)| *took).sum();
        self.done
            .iter()
            .chain(std::iter::once(&("total", total)))
            .map(|(name, took)| format!("  {name:<48} {:>12}\n", elapsed(*took)))
            .collect()
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

    #[test]
    fn phases_keep_their_order_and_add_up() {
        let mut phases = Phases::default();
        assert_eq!(phases.run("first", || 7), 7);
        phases.run("second", || ());
        phases.done[0].1 = Duration::from_secs(61);
        phases.done[1].1 = Duration::from_secs(2);
        let summary = phases.summary();
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("  first ") && lines[0].ends_with("1 min 01 s"));
        assert!(lines[1].starts_with("  second ") && lines[1].ends_with("2.0 s"));
        assert!(lines[2].starts_with("  total ") && lines[2].ends_with("1 min 03 s"));
    }
}
