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
    /// The SD card image: cold and warm build times, sizes, boot to ready in emulation.
    Image {
        /// Skip the cold build (it drops the cached root filesystems and takes ~20 minutes).
        #[arg(long)]
        no_cold: bool,
        /// Warm rebuilds after touching one service's source.
        #[arg(long, default_value_t = 3)]
        warm_runs: usize,
        /// Boots of the built image to every service ready.
        #[arg(long, default_value_t = 3)]
        boots: usize,
    },
}

pub fn run(area: Area) -> Result<()> {
    match area {
        Area::Power { seconds } => power(seconds),
        Area::Image {
            no_cold,
            warm_runs,
            boots,
        } => image(!no_cold, warm_runs, boots),
    }
}

/// The service whose source a warm rebuild touches: the one every image contains.
const TOUCHED_SOURCE: &str = "services/pew-powerd/src/main.rs";

fn image(cold: bool, warm_runs: usize, boots: usize) -> Result<()> {
    let inputs = crate::image::Inputs::load(false)?;
    let mut cold_seconds = None;
    let mut sizes = None;
    if cold {
        inputs.forget_cached_trees()?;
        let report = inputs.build()?;
        cold_seconds = Some(report.total_seconds());
        sizes = Some((report.compressed_image_bytes(), report.system_bytes()));
    }
    let mut warm = Vec::new();
    for _ in 0..warm_runs {
        let source = process::workspace_root().join(TOUCHED_SOURCE);
        std::fs::File::options()
            .append(true)
            .open(&source)
            .and_then(|file| file.set_modified(std::time::SystemTime::now()))
            .with_context(|| format!("cannot touch {}", source.display()))?;
        let report = inputs.build()?;
        sizes = Some((report.compressed_image_bytes(), report.system_bytes()));
        warm.push(report.total_seconds());
    }
    let image = crate::image::built_image()?;
    let mut ready = Vec::new();
    for run in 0..boots {
        let milestones = crate::qemu::boot_to_ready_once(&image, &format!("bench {}", run + 1))?;
        ready.push(milestones.ready.as_secs_f64());
    }

    println!(
        "\nimage benchmark ({} warm builds, {} boots)",
        warm.len(),
        ready.len()
    );
    if let Some(seconds) = cold_seconds {
        println!("  cold build (no cached trees)  {:>8.0} s", seconds);
    }
    if !warm.is_empty() {
        println!(
            "  warm rebuild, median          {:>8.0} s  (touching {TOUCHED_SOURCE})",
            median(&mut warm)
        );
    }
    if let Some((compressed, system)) = sizes {
        println!(
            "  compressed image (.img.zst)   {:>8.1} MB",
            compressed as f64 / 1e6
        );
        println!(
            "  root filesystem (EROFS slot)  {:>8.1} MB",
            system as f64 / 1e6
        );
    }
    if !ready.is_empty() {
        println!(
            "  boot to ready, median         {:>8.0} s  (QEMU TCG, from power-on)",
            median(&mut ready)
        );
    }
    Ok(())
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
