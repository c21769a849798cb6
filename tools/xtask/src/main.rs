//! `cargo xtask`: pew's one entry point for building, running, simulating, benchmarking and testing.

mod bench;
mod debs;
mod host;
mod image;
mod node;
mod process;
mod progress;
mod qemu;
mod sim;
mod uboot;
mod weather;
mod workerpool;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run, simulate, benchmark and test pew"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the dev node: a private bus and every pew service on simulated hardware.
    Node(node::NodeArgs),
    /// Run every test (what CI runs).
    Test,
    /// Measure an area and print the figures.
    Bench {
        #[command(subcommand)]
        area: bench::Area,
    },
    /// Run simulations of a node against real measured weather.
    Sim {
        #[command(subcommand)]
        what: SimCommand,
    },
    /// Fetch the pinned pvlib wheel, verify it, and regenerate the compact weather files.
    Weather,
    /// Regenerate the D-Bus policy files in overlays/ from pew-bus's contract.
    Policies,
    /// Cross-compile pew for the Pi and package it as .debs (default: out/debs).
    Debs(debs::DebsArgs),
    /// Boot the generated A/B boot script on Debian's real U-Boot under QEMU, run after run,
    /// and check each choice and saved state against pew-image's BootState.
    UbootCheck,
    /// Build the SD card image: A/B system slots, boot and data partitions, bmap, SBOM.
    Image(image::ImageArgs),
    /// Boot the built image in qemu-system-aarch64 through U-Boot until every pew service is ready.
    Qemu(qemu::QemuArgs),
}

#[derive(Subcommand)]
enum SimCommand {
    /// Drive pew-powerd's logic through every hour of a typical meteorological year.
    Power(sim::PowerArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Node(args) => node::run(args),
        Command::Test => test(),
        Command::Bench { area } => bench::run(area),
        Command::Sim {
            what: SimCommand::Power(args),
        } => sim::power(args),
        Command::Weather => weather::refresh(),
        Command::Policies => policies(),
        Command::Debs(args) => debs::run(args),
        Command::UbootCheck => uboot::check(),
        Command::Image(args) => image::run(args),
        Command::Qemu(args) => qemu::run(args),
    }
}

/// Lints, unit tests, bus tests on a private dbus-daemon and doc tests for the whole
/// workspace, then the SD card image built and booted A, B, A under QEMU.
fn test() -> Result<()> {
    host::ensure_tools()?;
    host::ensure_nextest()?;
    host::ensure_lint_components()?;
    host::ensure_test_operator()?;
    let mut phases = progress::Phases::default();
    let result = run_tests(&mut phases);
    println!("\ncargo xtask test phases:\n{}", phases.summary());
    result
}

fn run_tests(phases: &mut progress::Phases) -> Result<()> {
    phases.run("lints: rustfmt and clippy (-D warnings)", || {
        process::cargo(&["fmt", "--all", "--check"])?;
        process::cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--quiet",
            "--",
            "-D",
            "warnings",
        ])
    })?;
    // The bus tests drive the real binaries (pewctl beside each service), which nextest does not
    // build for packages other than the one under test.
    phases.run("build the workspace's binaries", || {
        process::cargo(&["build", "--workspace", "--bins"])
    })?;
    phases.run("doc tests", || {
        process::cargo(&["test", "--workspace", "--doc", "--quiet"])
    })?;
    phases.run("unit, driver, bus and end-to-end tests (nextest)", || {
        process::cargo(&["nextest", "run", "--workspace", "--no-fail-fast"])
    })?;
    // The product itself, through the entry path of the README's `cargo xtask qemu`: the
    // image built (incrementally when its caches are warm, from nothing in a fresh clone) and
    // booted in emulation from slot A, from slot B after installing the update there, and
    // from A again.
    phases.run(
        "image built and booted A, B, A (qemu --check)",
        qemu::check_from_scratch,
    )?;
    // The recipe's snapshot path, on a file:// archive made from what that build fetched.
    phases.run("snapshot archive path", image::snapshot::check)
}

fn policies() -> Result<()> {
    let dir = pew_devbus::shipped_policy_dir();
    std::fs::create_dir_all(&dir)?;
    for service in &pew_bus::SERVICES {
        let path = dir.join(format!("{}.conf", service.bus_name));
        std::fs::write(&path, service.policy())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
