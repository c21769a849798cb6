//! The emulated node's workerpool: `dev-workerpool` on the host, reached from the guest at
//! 10.0.2.2 where the image's workerd.toml looks for it. The card is provisioned with the
//! worker wallet the pool enrolled; once the node is up, the arm64 test app is loaded into the
//! node's engine (it reaches no registry), tasks are published and their outcomes followed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pew_image::provisioning::{MANIFEST_FILE, Manifest, PROVISION_DIRECTORY, ProvisionedFile};

use super::agent::Agent;
use super::bootfat::BootFat;
use crate::process;
use crate::workerpool::{DevWorkerpool, PoolOptions, TaskOutcome, XS_CATEGORY};

/// Loading the ~1.6 MB app archive through qemu-ga into podman under TCG.
const APP_LOAD_TIMEOUT: Duration = Duration::from_secs(180);

/// Starts the pool for a guest: dev-core on the port the image's workerd.toml names.
pub fn start(dir: &Path) -> Result<DevWorkerpool> {
    DevWorkerpool::start(
        dir,
        &PoolOptions {
            listen: "127.0.0.1:13000",
            advertised_host: Some("10.0.2.2"),
            app_architecture: "aarch64",
            engine: false,
        },
    )
}

/// Puts the worker's wallet into the card's provisioning area (an empty `provision/` in the
/// image), for first boot to install where the image's workerd.toml reads it.
pub fn provision(pool: &DevWorkerpool, fat: &BootFat, scratch: &Path) -> Result<()> {
    let enrolled = &pool.enrolled;
    let mut files = Vec::new();
    for (file_name, source, destination) in [
        (
            "worker-keystore.json",
            &enrolled.keystore,
            "/var/lib/pew/wallet/keystore.json",
        ),
        (
            "worker-password",
            &enrolled.password,
            "/var/lib/pew/wallet/password",
        ),
    ] {
        fat.copy_in(source, &format!("{PROVISION_DIRECTORY}/{file_name}"))?;
        files.push(ProvisionedFile {
            source: file_name.to_owned(),
            destination: destination.to_owned(),
            owner: "root".to_owned(),
            group: "root".to_owned(),
            mode: 0o600,
            secret: true,
            sha256: process::sha256_file(source)?,
        });
    }
    let manifest = scratch.join(MANIFEST_FILE);
    std::fs::write(&manifest, Manifest::new(files).to_text())?;
    fat.copy_in(&manifest, &format!("{PROVISION_DIRECTORY}/{MANIFEST_FILE}"))
}

/// The pool, shared with the thread that follows the interactive run's tasks while the main
/// thread waits for QEMU.
pub type SharedPool = Mutex<DevWorkerpool>;

/// The pool for one conversation. Nothing done under the lock panics short of a bug; should a
/// thread panic anyway, the pool is still the same child process, so the lock is taken over.
pub fn lock(pool: &SharedPool) -> MutexGuard<'_, DevWorkerpool> {
    pool.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Tasks published on the node's workerpool, and when: the zero of their durations.
pub struct Publication {
    pub tasks: Vec<String>,
    pub published: Instant,
}

/// Loads the test app into the running node's engine and publishes `tasks` tasks of it, with
/// `args` as the app's arguments.
pub fn publish(
    pool: &mut DevWorkerpool,
    agent: &mut Agent,
    tasks: u32,
    args: &str,
) -> Result<Publication> {
    load_app(pool, agent).context("cannot load the test app into the node")?;
    let tasks = pool.deal(tasks, XS_CATEGORY, args)?;
    Ok(Publication {
        tasks,
        published: Instant::now(),
    })
}

fn load_app(pool: &DevWorkerpool, agent: &mut Agent) -> Result<()> {
    let path = &pool.enrolled.app_archive;
    let archive = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let output = agent.exec_with_input(
        "/usr/bin/podman",
        &["load", "--quiet"],
        &archive,
        Instant::now() + APP_LOAD_TIMEOUT,
    )?;
    if !output.succeeded() {
        bail!("podman load in the guest failed: {}", output.failure());
    }
    Ok(())
}

/// How often the pool is asked about the tasks not ended yet; following stops this soon after
/// it is told to.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// Reports each published task's outcome to `report` as soon as the task ends, in whatever
/// order they end, or once `within` after publication has passed; returns early once `stop` is
/// set.
pub fn follow(
    pool: &SharedPool,
    publication: &Publication,
    within: Duration,
    stop: &AtomicBool,
    report: impl Fn(&str),
) -> Result<()> {
    let deadline = publication.published + within;
    let mut running: Vec<&str> = publication.tasks.iter().map(String::as_str).collect();
    loop {
        let timed_out = Instant::now() >= deadline;
        for task in std::mem::take(&mut running) {
            // A wait of no time: what the pool knows of the task now.
            let outcome = lock(pool).wait(task, Duration::ZERO)?;
            if outcome.status.is_some() || timed_out {
                report(&describe_outcome(&outcome, publication.published.elapsed()));
            } else {
                running.push(task);
            }
        }
        if running.is_empty() {
            return Ok(());
        }
        thread::sleep(FOLLOW_POLL);
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
    }
}

/// How a task ended as the workerpool saw it, `elapsed` after its publication: COMPLETED with
/// what the app printed, or FAILED or not ended with the statuses it went through as the cause.
pub fn describe_outcome(outcome: &TaskOutcome, elapsed: Duration) -> String {
    let task = &outcome.task;
    let seconds = elapsed.as_secs_f64();
    if outcome.completed() {
        let printed = match indented(&outcome.stdout) {
            output if output.is_empty() => String::new(),
            output => format!("; the app printed:\n{output}"),
        };
        return format!("task {task} COMPLETED {seconds:.1} s after publication{printed}");
    }
    let statuses = match outcome.statuses.as_slice() {
        [] => "none".to_owned(),
        statuses => statuses.join(" > "),
    };
    match &outcome.status {
        Some(status) => {
            format!("task {task} {status} {seconds:.1} s after publication; statuses: {statuses}")
        }
        None => format!(
            "task {task} had not ended {seconds:.0} s after publication; statuses: {statuses}"
        ),
    }
}

/// A program's output as lines indented under the line that introduces it.
pub fn indented(output: &str) -> String {
    output
        .trim()
        .lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the test app's `probe` must report from inside its container on the node, given the
/// image's workerd.toml (apps as nobody, no capabilities, no network, a read-only root, 512 MiB
/// and 256 processes on a cgroup v2 kernel).
const SANDBOX: [&str; 9] = [
    "uid=65534",
    "gid=65534",
    "cap_eff=0000000000000000",
    "no_new_privs=1",
    "net_interfaces=lo",
    "rootfs_writable=false",
    "cgroup:memory.max=536870912",
    "cgroup:memory.swap.max=0",
    "cgroup:pids.max=256",
];

/// The expected `probe` lines missing from `report`.
pub fn sandbox_deviations(report: &str) -> Vec<&'static str> {
    SANDBOX
        .into_iter()
        .filter(|expected| !report.lines().any(|line| line.trim() == *expected))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_down_app_passes_and_a_missing_or_different_line_is_named() {
        let report = SANDBOX.join("\n") + "\ncgroup:cpu.max=100000 100000\n";
        assert!(sandbox_deviations(&report).is_empty());
        let rooted = report.replace("uid=65534", "uid=0");
        assert_eq!(sandbox_deviations(&rooted), ["uid=65534"]);
        assert_eq!(sandbox_deviations("").len(), SANDBOX.len());
    }

    fn outcome(status: Option<&str>, statuses: &[&str], stdout: &str) -> TaskOutcome {
        TaskOutcome {
            task: "0xab12".to_owned(),
            status: status.map(str::to_owned),
            statuses: statuses.iter().map(|&status| status.to_owned()).collect(),
            stdout: stdout.to_owned(),
        }
    }

    #[test]
    fn a_completed_task_is_reported_with_its_time_and_what_the_app_printed() {
        let completed = outcome(
            Some("COMPLETED"),
            &["RECEIVED", "RUNNING", "COMPLETED"],
            "test-app: task 0xab12\ntest-app: result written to /iexec_out\n",
        );
        assert_eq!(
            describe_outcome(&completed, Duration::from_millis(95_240)),
            "task 0xab12 COMPLETED 95.2 s after publication; the app printed:\n    test-app: task 0xab12\n    test-app: result written to /iexec_out"
        );
        let silent = outcome(Some("COMPLETED"), &["COMPLETED"], " \n");
        assert_eq!(
            describe_outcome(&silent, Duration::from_secs(3)),
            "task 0xab12 COMPLETED 3.0 s after publication"
        );
    }

    #[test]
    fn a_task_that_failed_or_did_not_end_is_reported_with_its_statuses() {
        let failed = outcome(
            Some("FAILED"),
            &["RECEIVED", "INITIALIZED", "RUNNING", "FAILED"],
            "",
        );
        assert_eq!(
            describe_outcome(&failed, Duration::from_secs(42)),
            "task 0xab12 FAILED 42.0 s after publication; statuses: RECEIVED > INITIALIZED > RUNNING > FAILED"
        );
        let pending = outcome(None, &[], "");
        assert_eq!(
            describe_outcome(&pending, Duration::from_secs(600)),
            "task 0xab12 had not ended 600 s after publication; statuses: none"
        );
    }
}
