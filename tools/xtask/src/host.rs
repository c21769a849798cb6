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

/// Installs `packages` without ever removing one the user has. When the plain install would
/// remove something (a newer build of a related package, such as qemu-utils from backports),
/// the install is retried from the backports suite that package came from; if that does not
/// help either, nothing is installed and the message says what conflicts and how to proceed.
fn apt_install(packages: &[&str]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    println!("installing {}", packages.join(" "));
    as_root("apt-get", &["update", "-qq"])?;
    let removals = simulated_removals(packages, &[])?;
    if removals.is_empty() {
        return install_without_removals(packages, &[]);
    }
    let from_backports = removals
        .iter()
        .any(|(_, version)| version.contains("~bpo"))
        .then(host_codename)
        .flatten();
    if let Some(codename) = &from_backports {
        let parts = backports_source_parts(codename)?;
        let options = [
            "-o".to_owned(),
            format!("Dir::Etc::SourceParts={}", parts.path().display()),
            "-t".to_owned(),
            format!("{codename}-backports"),
        ];
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        as_root("apt-get", &[&options[..2], &["update", "-qq"]].concat())?;
        if simulated_removals(packages, &options)?.is_empty() {
            println!(
                "installing from {codename}-backports, to match the installed {}",
                describe_removals(&removals)
            );
            return install_without_removals(packages, &options);
        }
    }
    bail!(
        "installing {} would remove {}, which this machine has. Nothing was changed. \
         Install versions of {} that match it yourself{}, then run again.",
        packages.join(" "),
        describe_removals(&removals),
        packages.join(" "),
        from_backports.map_or(String::new(), |codename| format!(
            " (for example: apt-get install -t {codename}-backports {})",
            packages.join(" ")
        ))
    )
}

fn install_without_removals(packages: &[&str], options: &[&str]) -> Result<()> {
    let mut args = options.to_vec();
    args.extend([
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "--no-remove",
    ]);
    args.extend(packages);
    as_root("apt-get", &args)
}

/// What `apt-get install` would remove, as `(package, installed version)`.
fn simulated_removals(packages: &[&str], options: &[&str]) -> Result<Vec<(String, String)>> {
    let plan = Command::new("apt-get")
        .args(options)
        .args(["install", "--simulate", "--no-install-recommends"])
        .args(packages)
        .env("LC_ALL", "C")
        .output()
        .context("cannot run apt-get")?;
    ensure!(
        plan.status.success(),
        "apt-get cannot install {}: {}",
        packages.join(" "),
        String::from_utf8_lossy(&plan.stdout).trim()
    );
    Ok(parse_removals(&String::from_utf8_lossy(&plan.stdout)))
}

/// The `Remv name [version]` lines of a simulated install.
fn parse_removals(plan: &str) -> Vec<(String, String)> {
    plan.lines()
        .filter_map(|line| line.strip_prefix("Remv "))
        .filter_map(|rest| {
            let (name, rest) = rest.split_once(' ')?;
            let version = rest.strip_prefix('[')?.split(']').next()?;
            Some((name.to_owned(), version.to_owned()))
        })
        .collect()
}

fn describe_removals(removals: &[(String, String)]) -> String {
    removals
        .iter()
        .map(|(name, version)| format!("{name} {version}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `VERSION_CODENAME` of a Debian host (`bookworm`).
fn host_codename() -> Option<String> {
    let release = std::fs::read_to_string("/etc/os-release").ok()?;
    let debian = release.lines().any(|line| line == "ID=debian");
    release
        .lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .filter(|_| debian)
        .map(|codename| codename.trim_matches('"').to_owned())
}

/// The host's own source parts plus `<codename>-backports`, in a directory of our own, so
/// the user's apt configuration is never changed.
fn backports_source_parts(codename: &str) -> Result<tempfile::TempDir> {
    let parts = tempfile::Builder::new().prefix("pew-apt-").tempdir()?;
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                std::fs::copy(&path, parts.path().join(entry.file_name()))?;
            }
        }
    }
    std::fs::write(
        parts.path().join("pew-backports.sources"),
        format!(
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {codename}-backports\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )?;
    Ok(parts)
}

/// clippy and rustfmt, which `cargo xtask test` runs as lints.
pub fn ensure_lint_components() -> Result<()> {
    let missing: Vec<&str> = [("clippy", "clippy"), ("fmt", "rustfmt")]
        .into_iter()
        .filter(|(subcommand, _)| {
            !Command::new("cargo")
                .args([subcommand, "--version"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(_, component)| component)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    process::run(
        Command::new("rustup")
            .args(["component", "add"])
            .args(&missing)
            .current_dir(process::workspace_root()),
    )
}

/// cargo-nextest runs each test in its own process, which the bus tests rely on for isolation.
pub fn ensure_nextest() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        process::cargo(&["install", "--locked", "cargo-nextest"])?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_install_names_what_it_would_remove() {
        let plan = "\
NOTE: This is only a simulation!
Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]
Inst libfdt1 (1.6.1-4+b1 Debian:12.15/oldstable [amd64])
Inst qemu-system-arm (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
Conf qemu-system-arm (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
";
        assert_eq!(
            parse_removals(plan),
            [(
                "qemu-utils".to_owned(),
                "1:10.0.2+ds-2+deb13u1~bpo12+1".to_owned()
            )]
        );
        assert!(parse_removals("Inst a (1 x [amd64])\n").is_empty());
    }
}
