//! `cargo xtask bench <area>`: figures, measured on the real binaries.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::process;

#[derive(clap::Subcommand)]
pub enum Area {
    /// pew-powerd on the dev node: resident memory and CPU seconds per hour.
    Power {
        /// How long to measure, seconds.
        #[arg(long, default_value_t = 120)]
        seconds: u64,
    },
}

pub fn run(area: Area) -> Result<()> {
    match area {
        Area::Power { seconds } => power(seconds),
    }
}

/// Runs the release pew-powerd as on a node (5 s samples, real-time clock, simulated hardware)
/// and reads its memory and CPU time from /proc.
fn power(seconds: u64) -> Result<()> {
    crate::host::ensure_tools()?;
    let bin = process::build_binaries(&["pew-powerd"], "release")?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("powerd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\nsample_interval_s = 5.0\n[source]\nkind = \"simulated\"\n",
            dir.path().join("state").display().to_string()
        ),
    )?;
    let bus = pew_devbus::DevBus::start()?;
    let mut daemon = Command::new(bin.join("pew-powerd"))
        .arg("--config")
        .arg(&config)
        .arg("--bus")
        .arg(bus.address())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start pew-powerd")?;
    let result = measure(&daemon, Duration::from_secs(seconds));
    let _ = daemon.kill();
    let _ = daemon.wait();
    let figures = result?;
    println!(
        "pew-powerd (release, simulated hardware, 5 s samples), {} s measured after a 5 s warm-up",
        seconds
    );
    println!(
        "  RSS median        {:>8.2} MB  (max {:.2} MB, {} samples)",
        figures.rss_median_mb, figures.rss_max_mb, figures.samples
    );
    println!(
        "  CPU per hour      {:>8.3} s  (median of {} s windows)",
        figures.cpu_s_per_hour,
        WINDOW.as_secs()
    );
    Ok(())
}

struct Figures {
    rss_median_mb: f64,
    rss_max_mb: f64,
    samples: usize,
    cpu_s_per_hour: f64,
}

/// Length of one CPU measurement window; the figure is the median over windows, so a single
/// burst (a state save, a forecast refresh at a slot boundary) does not decide it.
const WINDOW: Duration = Duration::from_secs(10);

fn measure(daemon: &Child, duration: Duration) -> Result<Figures> {
    let proc_dir = Path::new("/proc").join(daemon.id().to_string());
    // Start-up (state load, first forecast) is not idle running.
    std::thread::sleep(Duration::from_secs(5));
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

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn rss_mb(proc_dir: &Path) -> Result<f64> {
    let status = std::fs::read_to_string(proc_dir.join("status")).context("process gone")?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(kb / 1024.0)
}

/// CPU time of all the process's threads, in seconds, from the scheduler's nanosecond counters
/// (/proc/<pid>/task/*/schedstat, first field): /proc's utime and stime count 10 ms ticks, too
/// coarse for a daemon that uses milliseconds a minute.
fn cpu_seconds(proc_dir: &Path) -> Result<f64> {
    let mut nanoseconds = 0.0;
    for task in std::fs::read_dir(proc_dir.join("task")).context("process gone")? {
        let schedstat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        nanoseconds += schedstat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    Ok(nanoseconds / 1e9)
}
