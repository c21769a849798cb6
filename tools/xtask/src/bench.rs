//! `cargo xtask bench <area>`: figures, measured on the real binaries.

use std::process::{Command, Stdio};
use std::time::Duration;

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
    /// pew-workerd on the host testbed (podman, anvil + PoCo, dev-core): idle memory and CPU,
    /// overhead per task around the app container.
    Worker {
        /// How long to measure the idle worker, seconds.
        #[arg(long, default_value_t = 120)]
        idle_seconds: u64,
        /// Tasks whose overhead is measured.
        #[arg(long, default_value_t = 20)]
        tasks: u32,
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
        Area::Worker {
            idle_seconds,
            tasks,
        } => worker(idle_seconds, tasks),
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
    let inputs = crate::image::Inputs::load(&crate::image::LockArgs::default())?;
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
            pew_procstat::median(&mut warm)
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
            pew_procstat::median(&mut ready)
        );
    }
    Ok(())
}

/// The release worker and power manager on the testbed, measured by its `bench-worker` program
/// (the testbed's dependencies stay out of xtask).
fn worker(idle_seconds: u64, tasks: u32) -> Result<()> {
    crate::host::ensure_tools()?;
    let bin = process::build_binaries(&["pew-powerd", "pew-workerd", "bench-worker"], "release")?;
    process::run(
        Command::new(bin.join("bench-worker"))
            .arg(&bin)
            .arg(idle_seconds.to_string())
            .arg(tasks.to_string()),
    )
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
    // Start-up (state load, first forecast) is not idle running.
    std::thread::sleep(Duration::from_secs(5));
    let result = pew_procstat::measure(daemon.id(), Duration::from_secs(seconds));
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
        pew_procstat::WINDOW.as_secs()
    );
    Ok(())
}
