//! A daemon's footprint as the benchmarks report it: resident memory sampled every second and
//! CPU time per hour, the median over fixed windows so that one burst (a state save, a forecast
//! refresh) does not decide the figure.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Length of one CPU measurement window.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub rss_median_mb: f64,
    pub rss_max_mb: f64,
    pub samples: usize,
    pub cpu_s_per_hour: f64,
}

/// Samples process `pid` for `duration` (blocking).
pub fn measure(pid: u32, duration: Duration) -> io::Result<Figures> {
    let proc_dir = Path::new("/proc").join(pid.to_string());
    let started = Instant::now();
    let mut rss = Vec::new();
    let mut cpu_rates = Vec::new();
    while started.elapsed() < duration {
        let window_start = Instant::now();
        let cpu_start = cpu_seconds(&proc_dir)?;
        while window_start.elapsed() < WINDOW {
            rss.push(rss_mb(&proc_dir)?);
            std::thread::sleep(Duration::from_secs(1));
        }
        let cpu = cpu_seconds(&proc_dir)? - cpu_start;
        cpu_rates.push(cpu / window_start.elapsed().as_secs_f64() * 3600.0);
    }
    Ok(Figures {
        rss_median_mb: median(&mut rss),
        rss_max_mb: rss.iter().copied().fold(0.0, f64::max),
        samples: rss.len(),
        cpu_s_per_hour: median(&mut cpu_rates),
    })
}

pub fn median(values: &mut [f64]) -> f64 {
    percentile(values, 0.5)
}

/// The `q` quantile (0..1) by nearest rank; NaN for no values.
pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    let index = ((values.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    values[index]
}

fn gone(proc_dir: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| {
        io::Error::new(
            e.kind(),
            format!("{}: process gone? {e}", proc_dir.display()),
        )
    }
}

fn rss_mb(proc_dir: &Path) -> io::Result<f64> {
    let status = std::fs::read_to_string(proc_dir.join("status")).map_err(gone(proc_dir))?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/<pid>/status"))?;
    Ok(kb / 1024.0)
}

/// CPU time of all the process's threads, in seconds, from the scheduler's nanosecond counters
/// (/proc/<pid>/task/*/schedstat, first field): /proc's utime and stime count 10 ms ticks, too
/// coarse for a daemon that uses milliseconds a minute.
fn cpu_seconds(proc_dir: &Path) -> io::Result<f64> {
    let tasks: PathBuf = proc_dir.join("task");
    let mut nanoseconds = 0.0;
    for task in std::fs::read_dir(&tasks).map_err(gone(proc_dir))? {
        let schedstat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        nanoseconds += schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    Ok(nanoseconds / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut values = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(median(&mut values), 3.0);
        assert_eq!(percentile(&mut values, 0.95), 5.0);
        assert_eq!(percentile(&mut values, 0.0), 1.0);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn this_process_has_memory_and_uses_cpu() {
        let proc_dir = Path::new("/proc/self");
        assert!(rss_mb(proc_dir).unwrap() > 0.0);
        let before = cpu_seconds(proc_dir).unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(proc_dir).unwrap() > before);
    }
}
