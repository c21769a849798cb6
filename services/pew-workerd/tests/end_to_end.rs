//! pew-workerd end to end on the host, with real peers wherever they run here (see
//! `pew-testbed`): the real PoCo contracts on anvil, podman's Docker-compatible API, pew-powerd
//! on simulated hardware, a private dbus-daemon, and dev-core driving the replicate workflow.
//!
//! One testbed is built once (the chain deployment and the podman service are the slow parts)
//! and the scenarios run in sequence, each on its own deal.

use std::time::Duration;

use dev_core::Fault;
use pew_iexec::status::{ReplicateStatus, StatusCause};
use pew_poco::B256;
use pew_poco::abi::{ContributionStatus, TaskStatus};
use pew_testbed::{APP_IMAGE, Testbed, XS};

const TASK_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the workspace's binaries are, beside this test (the test command builds them all).
#[tokio::test]
async fn the_worker_runs_proves_and_recovers_tasks_with_real_peers() {
    let mut bed = Testbed::start(&pew_testbed::workspace_binaries().unwrap())
        .await
        .unwrap();
    bed.start_worker().unwrap();
    let worker = bed.worker_address();

    // Three tasks reach COMPLETED, each contributed and revealed on-chain by this worker.
    let tasks = bed.deal(XS, "hello pew", 3).await.unwrap();
    for task in &tasks {
        bed.wait_replicate(*task, ReplicateStatus::Completed, TASK_TIMEOUT)
            .await
            .unwrap();
        let (status, contribution) = chain_task(&bed, *task).await;
        assert_eq!(status, TaskStatus::Completed, "task {task}");
        assert_eq!(contribution, ContributionStatus::Proved, "task {task}");
        assert!(
            bed.pool.core.stored_result(*task).is_some(),
            "task {task}: no result uploaded"
        );
    }
    {
        let connection = bed.bus().await.unwrap();
        let proxy = pew_bus::worker::WorkerProxy::new(&connection)
            .await
            .unwrap();
        assert_eq!(proxy.completed().await.unwrap(), 3);
        assert_eq!(proxy.contributed().await.unwrap(), 3);
        assert_eq!(proxy.revealed().await.unwrap(), 3);
        let profiles = proxy.app_profiles().await.unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0].app, APP_IMAGE);
        assert_eq!(profiles[0].runs, 3);
        assert!(profiles[0].mean_energy_wh > 0.0, "{profiles:?}");
    }

    // An app that exits non-zero is reported with its exit code; without a result it is not
    // contributed, and the replicate ends aborted.
    let failing = bed.deal(XS, "exit 3", 1).await.unwrap()[0];
    bed.wait_replicate(failing, ReplicateStatus::Aborted, TASK_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(computed_update(&bed, failing, &worker).0, Some(3));

    // An app that overruns its category is stopped and reported as a compute timeout.
    let overrun = bed
        .deal(bed.pool.short_category, "sleep 120", 1)
        .await
        .unwrap()[0];
    bed.wait_replicate(overrun, ReplicateStatus::Aborted, TASK_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        computed_update(&bed, overrun, &worker).1,
        Some(StatusCause::AppComputeTimeout)
    );
    assert_eq!(
        bed.leftover_containers(),
        0,
        "a killed app's container stays"
    );

    // A worker killed while computing recovers the replicate after its restart and completes it.
    let interrupted = bed.deal(XS, "sleep 6", 1).await.unwrap()[0];
    bed.wait_replicate(interrupted, ReplicateStatus::Computing, TASK_TIMEOUT)
        .await
        .unwrap();
    bed.kill_worker();
    bed.start_worker().unwrap();
    bed.wait_replicate(interrupted, ReplicateStatus::Completed, TASK_TIMEOUT)
        .await
        .unwrap();

    // The chain dropping while a task computes: the worker waits for it and loses nothing.
    let cut_off = bed.deal(XS, "sleep 3", 1).await.unwrap()[0];
    bed.wait_replicate(cut_off, ReplicateStatus::Computing, TASK_TIMEOUT)
        .await
        .unwrap();
    bed.cut_chain(true);
    let mut waited = 0;
    while !bed.worker_log().contains("the chain does not answer") && waited < 120 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        waited += 1;
    }
    assert!(
        bed.worker_log().contains("the chain does not answer"),
        "{}",
        bed.worker_log()
    );
    bed.cut_chain(false);
    bed.wait_replicate(cut_off, ReplicateStatus::Completed, TASK_TIMEOUT)
        .await
        .unwrap();

    // Scheduler errors are retried with backoff and lose nothing.
    bed.pool
        .core
        .inject_fault(Fault::status("/replicates/", 503, 4));
    let faulty = bed.deal(XS, "after faults", 1).await.unwrap()[0];
    bed.wait_replicate(faulty, ReplicateStatus::Completed, TASK_TIMEOUT)
        .await
        .unwrap();

    // A scheduler that stops answering in time (the testbed's worker gives up after 4 s): the
    // status reports are sent again and the task completes.
    let slow = bed.deal(XS, "after a slow scheduler", 1).await.unwrap()[0];
    bed.pool.core.inject_fault(Fault::delay(
        &format!("/replicates/{slow:#x}/updateStatus"),
        Duration::from_secs(6),
        2,
    ));
    bed.wait_replicate(slow, ReplicateStatus::Completed, TASK_TIMEOUT)
        .await
        .unwrap();
    assert!(
        bed.worker_log().contains("timed out); retrying"),
        "no status report timed out:\n{}",
        bed.worker_log()
    );

    // In critical mode the worker takes no new work; back to normal, it does.
    bed.start_powerd(0.05).unwrap();
    let waiting = bed.deal(XS, "after the night", 1).await.unwrap()[0];
    let mut state = String::new();
    for _ in 0..60 {
        state = bed.worker_state().await;
        if state == "paused-for-energy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(state, "paused-for-energy", "{}", bed.worker_log());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        bed.pool.core.replicate(waiting, &worker).is_none(),
        "a replicate was taken in critical mode"
    );
    bed.start_powerd(0.8).unwrap();
    bed.wait_replicate(waiting, ReplicateStatus::Completed, TASK_TIMEOUT)
        .await
        .unwrap();
}

/// The task's on-chain status and this worker's contribution status.
async fn chain_task(bed: &Testbed, task: B256) -> (TaskStatus, ContributionStatus) {
    let chain = pew_chain::Chain::connect(&bed.pool.chain.rpc_url, bed.pool.chain.hub, None, None)
        .await
        .unwrap();
    let status = chain.task(task).await.unwrap().status;
    let contribution = chain
        .contribution(task, bed.worker_wallet.address())
        .await
        .unwrap()
        .status;
    (status, contribution)
}

/// The exit code and cause the worker reported with COMPUTED.
fn computed_update(bed: &Testbed, task: B256, worker: &str) -> (Option<i32>, Option<StatusCause>) {
    let replicate = bed.pool.core.replicate(task, worker).expect("replicate");
    let computed = replicate
        .history()
        .iter()
        .find(|update| update.status == ReplicateStatus::Computed)
        .expect("COMPUTED reported");
    let details = computed.details.clone().unwrap_or_default();
    (details.exit_code, details.cause)
}
