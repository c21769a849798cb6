//! The container engine restarting while pew-workerd computes (iExec worker faults: "container
//! engine restarting: the worker backs off and recovers and loses no result"). podman's API
//! service is killed with SIGKILL and started again while the app runs on under conmon; the
//! worker waits for the engine and completes the task. See `pew-testbed` for the peers.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use pew_iexec::status::ReplicateStatus;
use pew_testbed::{Testbed, XS};

const TASK_TIMEOUT: Duration = Duration::from_secs(120);

/// How many of the containers whose name holds `fragment` run.
async fn running_containers(bed: &Testbed, fragment: &str) -> Result<usize> {
    let output = tokio::process::Command::from(bed.podman.podman_cli())
        .args(["ps", "--quiet", "--filter=status=running"])
        .arg(format!("--filter=name={fragment}"))
        .output()
        .await?;
    Ok(String::from_utf8_lossy(&output.stdout).lines().count())
}

/// Returns once a container of the task runs.
async fn await_running(bed: &Testbed, fragment: &str, within: Duration) -> Result<()> {
    let give_up = Instant::now() + within;
    while Instant::now() < give_up {
        if running_containers(bed, fragment).await? > 0 {
            return Ok(());
        }
    }
    bail!("no container of {fragment} ever ran:\n{}", bed.worker_log())
}

#[tokio::test]
async fn a_task_survives_its_engine_restarting_mid_compute() -> Result<()> {
    let mut bed = Testbed::start(&pew_testbed::workspace_binaries()?).await?;
    bed.start_worker()?;

    let task = bed.deal(XS, "sleep 8", 1).await?[0];
    let task_fragment = format!("{task:#x}");
    bed.wait_replicate(task, ReplicateStatus::Computing, TASK_TIMEOUT)
        .await?;
    await_running(&bed, &task_fragment, TASK_TIMEOUT).await?;
    // Blocking: the peers on this runtime pause for the fraction of a second podman takes to
    // start, which the worker, a process of its own, does not notice.
    bed.podman.restart()?;
    let running_after_restart = running_containers(&bed, &task_fragment).await?;

    bed.wait_replicate(task, ReplicateStatus::Completed, TASK_TIMEOUT)
        .await?;
    ensure!(
        running_after_restart == 1,
        "the app ended before the engine was back, so nothing was tested"
    );
    ensure!(
        bed.pool.core.stored_result(task).is_some(),
        "no result uploaded"
    );
    let log = bed.worker_log();
    ensure!(
        log.contains("the container engine does not answer")
            && log.contains("the container engine answers again"),
        "the outage went unseen:\n{log}"
    );
    ensure!(!log.contains("the container engine failed"), "{log}");
    ensure!(bed.leftover_containers() == 0, "the task's container stays");
    Ok(())
}
