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
        format!("state_dir = {:?}\nsample_interval_s = 5.0\n[source]\nkind = \"simulated\"\n", dir.path().join("state").display().to_string()),
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
    println!("pew-powerd (release, simulated hardware, 5 s samples), {} s measured after a 5 s warm-up", seconds);
    println!("  RSS median        {:>8.2} MB  (max {:.2} MB, {} samples)", figures.rss_median_mb, figures.rss_max_mb, figures.samples);
    println!("  CPU per hour      {:>8.3} s", figures.cpu_s_per_hour);
    Ok(())
}

struct Figures {
    rss_median_mb: f64,
    rss_max_mb: f64,
    samples: usize,
    cpu_s_per_hour: f64,
}

fn measure(daemon: &Child, duration: Duration) -> Result<Figures> {
    let proc_dir = Path::new("/proc").join(daemon.id().to_string());
    // Start-up (state load, first forecast) is not idle running.
    std::thread::sleep(Duration::from_secs(5));
    let cpu_start = cpu_seconds(&proc_dir)?;
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < duration {
        rss.push(rss_mb(&proc_dir)?);
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu = cpu_seconds(&proc_dir)? - cpu_start;
    rss.sort_by(f64::total_cmp);
    Ok(Figures {
        rss_median_mb: rss[rss.len() / 2],
        rss_max_mb: rss[rss.len() - 1],
        samples: rss.len(),
        cpu_s_per_hour: cpu / started.elapsed().as_secs_f64() * 3600.0,
    })
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

/// User plus system CPU time from /proc/<pid>/stat (fields 14 and 15, in clock ticks).
fn cpu_seconds(proc_dir: &Path) -> Result<f64> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).context("process gone")?;
    // The command name (field 2) may contain spaces; fields are counted after its ')'.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> Result<f64> { fields.get(index).and_then(|f| f.parse::<f64>().ok()).context("malformed stat") };
    // After ')' the first field is field 3 (state), so utime (14) is index 11 and stime (15) 12.
    Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
