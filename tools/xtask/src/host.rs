//! What the host needs for the dev node, the tests and the Pi build, installed when missing, so
//! that the README's commands work on a fresh Debian or Ubuntu machine.

use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use crate::process;

/// Commands the dev node and tests run, with the Debian package that provides each: the bus,
/// the test operator's identity switch, podman's Docker-compatible API for task containers
/// (runc for hosts with hybrid cgroups, which crun refuses), npm for the dev chain's anvil and
/// PoCo artifacts.
const TOOLS: [(&str, &str); 5] = [
    ("dbus-daemon", "dbus-daemon"),
    ("setpriv", "util-linux"),
    ("podman", "podman"),
    ("runc", "runc"),
    ("npm", "npm"),
];

/// Debian's aarch64 cross compiler and the arm64 glibc it links against (2.36 on bookworm).
const CROSS_PACKAGES: [&str; 2] = ["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"];

/// The unprivileged member of group `pew` the policy test calls as.
const TEST_OPERATOR: &str = "pew-operator";

fn present(command: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {command}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Runs this xtask command again as root through sudo and exits with its status, for steps
/// that need root (mmdebstrap's root mode, chroot, loop-free disk assembly as root's files).
pub fn become_root() -> Result<()> {
    if is_root() {
        return Ok(());
    }
    ensure!(
        present("sudo"),
        "this command needs root and sudo is not installed"
    );
    let exe = std::env::current_exe().context("cannot find the xtask binary")?;
    let status = Command::new("sudo")
        .arg("--preserve-env=PATH,CARGO_HOME,RUSTUP_HOME,CARGO_TARGET_DIR,HOME")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .status()
        .context("cannot run sudo")?;
    std::process::exit(status.code().unwrap_or(1));
}

/// Runs a command as root: directly when we are root, through sudo otherwise.
fn as_root(program: &str, args: &[&str]) -> Result<()> {
    let mut command = if is_root() {
        Command::new(program)
    } else if present("sudo") {
        let mut sudo = Command::new("sudo");
        sudo.arg(program);
        sudo
    } else {
        bail!(
            "{program} {} needs root and sudo is not installed",
            args.join(" ")
        );
    };
    let status = command
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    ensure!(
        status.success(),
        "{program} {} failed: {status}",
        args.join(" ")
    );
    Ok(())
}

/// Installs the Debian packages behind any missing tool.
pub fn ensure_tools() -> Result<()> {
    ensure_commands(&TOOLS)
}

/// Installs the Debian package behind each `(command, package)` whose command is missing.
pub fn ensure_commands(tools: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(command, _)| !present(command))
        .map(|(_, package)| *package)
        .collect();
    apt_install(&missing)
}

/// The rustup target and Debian's cross gcc and arm64 glibc for building the Pi's binaries
/// (.cargo/config.toml names the linker).
pub fn ensure_cross_toolchain(target: &str) -> Result<()> {
    let installed = process::output(
        Command::new("rustup")
            .args(["target", "list", "--installed"])
            .current_dir(process::workspace_root()),
    )?;
    if !installed.lines().any(|line| line == target) {
        process::run(
            Command::new("rustup")
                .args(["target", "add", target])
                .current_dir(process::workspace_root()),
        )?;
    }
    let missing: Vec<&str> = CROSS_PACKAGES
        .into_iter()
        .filter(|package| !package_installed(package))
        .collect();
    apt_install(&missing)
}

fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["--show", "--showformat=${db:Status-Status}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"installed")
}

/// Installs Debian packages that are not installed.
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !package_installed(p))
        .collect();
    apt_install(&missing)
}

fn apt_install(packages: &[&str]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    println!("installing {}", packages.join(" "));
    as_root("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(packages);
    as_root("apt-get", &args)
}

/// cargo-nextest runs each test in its own process, which the bus tests rely on for isolation.
pub fn ensure_nextest() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        crate::process::cargo(&["install", "--locked", "cargo-nextest"])?;
    }
    Ok(())
}

/// Group `pew` and a member of it, for the test that the shipped D-Bus policy lets group
/// members call mutating methods. Only created when we may (root), as the image does with
/// sysusers; otherwise that half of the test reports itself as not run.
pub fn ensure_test_operator() -> Result<()> {
    let exists = |database: &str, name: &str| {
        Command::new("getent")
            .args([database, name])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if exists("passwd", TEST_OPERATOR) || !is_root() {
        return Ok(());
    }
    if !exists("group", pew_bus::OPERATOR_GROUP) {
        as_root("groupadd", &["--system", pew_bus::OPERATOR_GROUP])?;
    }
    as_root(
        "useradd",
        &[
            "--system",
            "--no-create-home",
            "--user-group",
            "--groups",
            pew_bus::OPERATOR_GROUP,
            TEST_OPERATOR,
        ],
    )
}
