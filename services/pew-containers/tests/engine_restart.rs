//! Task containers whose engine restarts under them (rootful podman; see
//! `pew_containers::testing`): the API service is killed with SIGKILL and started again while the
//! container runs on under conmon, as when systemd restarts podman's service on a node.

use std::error::Error;
use std::fs;
use std::os::unix::fs::chown;
use std::path::Path;
use std::time::{Duration, Instant};

use pew_containers::testing::{PodmanService, load_test_app};
use pew_containers::{Engine, Limits, Network, OUTPUT_MOUNT, TaskContainer, UserId};

/// Sendable, because the restarts run on a blocking thread beside the run.
type BoxedError = Box<dyn Error + Send + Sync>;
type TestResult = Result<(), BoxedError>;

const IMAGE: &str = "localhost/pew-test-app:1";
const TASK_ID: &str = "0x5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
/// The non-root owner of the output directory, as pew-workerd's own user would be.
const WORKER: UserId = UserId {
    uid: 1000,
    gid: 1000,
};
/// A guard against a scenario that never comes about (the container never seen running, say),
/// so that a broken test fails instead of hanging; never reached when things work.
const SCENARIO_GUARD: Duration = Duration::from_secs(120);

async fn started() -> Result<(Engine, PodmanService), BoxedError> {
    let service = PodmanService::start()?;
    let engine = service.engine().await?;
    load_test_app(&engine, IMAGE).await?;
    Ok((engine, service))
}

/// A container of the test app with `args`, writing into `<service dir>/<name>`.
fn task(
    service: &PodmanService,
    name: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<TaskContainer, BoxedError> {
    let output = service.dir().join(name);
    fs::create_dir_all(&output)?;
    chown(&output, Some(WORKER.uid), Some(WORKER.gid))?;
    Ok(TaskContainer {
        name: name.to_owned(),
        image: IMAGE.to_owned(),
        cmd: args.iter().map(|word| (*word).to_owned()).collect(),
        env: vec![
            ("IEXEC_TASK_ID".to_owned(), TASK_ID.to_owned()),
            ("IEXEC_OUT".to_owned(), OUTPUT_MOUNT.to_owned()),
        ],
        binds: vec![(output, OUTPUT_MOUNT.to_owned())],
        limits: Limits {
            nano_cpus: Some(1_000_000_000),
            memory_bytes: Some(64 << 20),
            pids: Some(16),
        },
        timeout,
        network: Network::None,
        user: None,
        read_only_rootfs: true,
    })
}

/// The container's state as podman sees it: `running`, `stopping`, `exited`...
fn container_state(service: &PodmanService, name: &str) -> Result<String, BoxedError> {
    let output = service
        .podman_cli()
        .args([
            "container",
            "inspect",
            "--format",
            "{{.State.Status}}",
            name,
        ])
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Returns once podman shows the container in `state`.
fn await_state(service: &PodmanService, name: &str, state: &str) -> TestResult {
    let guard = Instant::now() + SCENARIO_GUARD;
    while Instant::now() < guard {
        if container_state(service, name)? == state {
            return Ok(());
        }
    }
    Err(format!("{name} was never seen {state}").into())
}

fn leftover_containers(service: &PodmanService) -> Result<usize, BoxedError> {
    let output = service
        .podman_cli()
        .args(["ps", "--all", "--quiet"])
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).lines().count())
}

fn result_file(dir: &Path) -> Result<String, std::io::Error> {
    fs::read_to_string(dir.join("result.txt"))
}

#[tokio::test]
async fn an_engine_restart_while_the_app_runs_loses_nothing() -> TestResult {
    let (engine, mut service) = started().await?;
    let name = "worker-restart";
    let sleeper = task(&service, name, &["sleep", "5"], Duration::from_secs(120))?;
    let output = service.dir().join(name);

    let restarter = tokio::task::spawn_blocking(move || -> Result<_, BoxedError> {
        await_state(&service, name, "running")?;
        service.restart()?;
        // The point is a restart under a running app; a machine too slow for that shows here.
        let after_restart = container_state(&service, name)?;
        Ok((service, after_restart))
    });
    let outcome = engine.run(&sleeper).await;
    let (service, after_restart) = restarter.await??;
    let outcome = outcome?;

    assert_eq!(
        after_restart, "running",
        "the app ended before the restart did"
    );
    assert!(outcome.succeeded(), "{outcome:?}");
    assert!(!outcome.timed_out);
    assert!(outcome.finished_at.duration_since(outcome.started_at)? >= Duration::from_secs(5));
    assert!(
        outcome
            .stdout
            .ends_with("test-app: result written to /iexec_out\n"),
        "{outcome:?}"
    );
    assert_eq!(
        result_file(&output)?,
        format!("task {TASK_ID}\nargs sleep 5\nwords 0\n")
    );
    assert_eq!(leftover_containers(&service)?, 0);
    Ok(())
}

#[tokio::test]
async fn an_engine_restart_during_the_stop_at_the_deadline_still_stops_the_app() -> TestResult {
    let (engine, mut service) = started().await?;
    let name = "worker-restart-overrun";
    let timeout = Duration::from_secs(2);
    let overrun = task(&service, name, &["sleep", "600"], timeout)?;
    let output = service.dir().join(name);

    // The app ignores SIGTERM (PID 1 without a handler), so the stop sent at the deadline is
    // under way for its whole grace period; the engine dies in the middle of it, and with it
    // the SIGKILL it had planned.
    let restarter = tokio::task::spawn_blocking(move || -> Result<_, BoxedError> {
        await_state(&service, name, "stopping")?;
        service.restart()?;
        Ok(service)
    });
    let outcome = engine.run(&overrun).await;
    let service = restarter.await??;
    let outcome = outcome?;

    assert!(outcome.timed_out, "{outcome:?}");
    assert_eq!(outcome.exit_code, Some(137), "{outcome:?}");
    assert!(outcome.finished_at.duration_since(outcome.started_at)? >= timeout);
    assert!(
        outcome.stdout.starts_with("test-app: task"),
        "logs are kept: {outcome:?}"
    );
    assert!(
        result_file(&output).is_err(),
        "the app was not stopped before its result"
    );
    assert_eq!(leftover_containers(&service)?, 0);
    Ok(())
}
