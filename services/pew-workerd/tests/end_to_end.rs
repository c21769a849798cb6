//! pew-workerd end to end on the host, with real peers wherever they run here: the real PoCo
//! contracts on anvil, podman's Docker-compatible API, pew-powerd on simulated hardware, a private
//! dbus-daemon, and dev-core (the scheduler double) driving the replicate workflow.
//!
//! One world is built once (the chain deployment and the podman service are the slow parts) and
//! the scenarios run in sequence, each on its own deal.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use dev_chain::DevChain;
use dev_core::{ChainSettings, Config, DevCore, Fault, PocoChain};
use pew_containers::testing::PodmanService;
use pew_devbus::DevBus;
use pew_iexec::status::ReplicateStatus;
use pew_poco::abi::{ContributionStatus, TaskStatus as ChainTaskStatus};
use pew_poco::{Address, B256, Wallet};

const APP_IMAGE: &str = "localhost/pew-test-app:e2e";
/// Category 0 is PoCo's XS (300 s).
const XS: u64 = 0;
const TASK_TIMEOUT: Duration = Duration::from_secs(120);

struct World {
    dir: tempfile::TempDir,
    bus: DevBus,
    powerd: Option<Child>,
    chain: DevChain,
    podman: PodmanService,
    core: DevCore,
    worker_wallet: Wallet,
    worker: Option<Child>,
    app: Address,
    short_category: u64,
}

impl World {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus = DevBus::start().unwrap();
        let chain = DevChain::start(dir.path()).await.unwrap();
        let podman = PodmanService::start().unwrap();
        let engine = podman.engine().await.unwrap();
        let binary = pew_containers::testing::build_test_app("x86_64-unknown-linux-gnu").unwrap();
        let archive = pew_containers::testapp::docker_archive(
            &std::fs::read(binary).unwrap(),
            APP_IMAGE,
            "x86_64",
        );
        engine.load(archive).await.unwrap();
        let app = chain.deploy_app(APP_IMAGE, B256::ZERO).await.unwrap();
        let short_category = chain.create_category("TEST-5S", 5).await.unwrap();

        let scheduler_chain = PocoChain::connect(
            &chain.rpc_url,
            chain.hub,
            &chain.scheduler,
            Some(dir.path().join("scheduler-nonce")),
        )
        .await
        .unwrap();
        let mut config = Config::new(
            chain.scheduler.clone(),
            chain.workerpool,
            ChainSettings {
                chain_id: chain.chain_id,
                sidechain: true,
                node_url: chain.rpc_url.clone(),
                hub: chain.hub,
                block_time: Duration::from_secs(1),
            },
        );
        config.ask_for_replicate_period = Duration::from_secs(1);
        config.timing.task_check_every = Duration::from_secs(2);
        config.timing.chain_check_interval = Duration::from_secs(1);
        let core = DevCore::start(config, Arc::new(scheduler_chain))
            .await
            .unwrap();

        let worker_wallet = Wallet::random();
        chain.fund_worker(worker_wallet.address()).await.unwrap();
        let mut world = Self {
            dir,
            bus,
            powerd: None,
            chain,
            podman,
            core,
            worker_wallet,
            worker: None,
            app,
            short_category,
        };
        world.start_powerd(0.8);
        world.write_worker_files();
        world.start_worker();
        world
    }

    fn worker_address(&self) -> String {
        format!("{:#x}", self.worker_wallet.address())
    }

    /// pew-powerd on simulated hardware whose battery starts at `soc` (0..1).
    fn start_powerd(&mut self, soc: f64) {
        if let Some(mut old) = self.powerd.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        let state = self.dir.path().join(format!("power-{soc}"));
        let config = self.dir.path().join(format!("powerd-{soc}.toml"));
        std::fs::write(
            &config,
            format!(
                "state_dir = {state:?}\nsample_interval_s = 0.5\n[source]\nkind = \"simulated\"\n\
                 [simulation]\ninitial_soc = {soc}\n[rtc]\nenabled = false\n"
            ),
        )
        .unwrap();
        self.powerd = Some(
            Command::new(binary("pew-powerd"))
                .arg("--config")
                .arg(&config)
                .arg("--bus")
                .arg(self.bus.address())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }

    fn write_worker_files(&self) {
        let wallet = self.dir.path().join("wallet");
        std::fs::create_dir_all(&wallet).unwrap();
        std::fs::write(
            wallet.join("keystore.json"),
            pew_poco::keystore::encrypt(&self.worker_wallet, "e2e-password", 4).unwrap(),
        )
        .unwrap();
        std::fs::write(wallet.join("password"), "e2e-password\n").unwrap();
        std::fs::write(
            self.dir.path().join("workerd.toml"),
            format!(
                "name = \"e2e\"\nscheduler_url = {url:?}\ndata_dir = {data:?}\n\
                 [wallet]\nkeystore = {keystore:?}\npassword_file = {password:?}\n\
                 [engine]\nsocket = {socket:?}\ncpus = 1.0\nmemory_mib = 64\npids = 64\n\
                 [energy]\ncompute_power_w = 5.0\nexpected_task_s = 300\n",
                url = self.core.base_url(),
                data = self.dir.path().join("worker").display().to_string(),
                keystore = wallet.join("keystore.json").display().to_string(),
                password = wallet.join("password").display().to_string(),
                socket = self.podman.socket().display().to_string(),
            ),
        )
        .unwrap();
    }

    fn start_worker(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("workerd.log")).unwrap();
        self.worker = Some(
            Command::new(env!("CARGO_BIN_EXE_pew-workerd"))
                .arg("--config")
                .arg(self.dir.path().join("workerd.toml"))
                .arg("--bus")
                .arg(self.bus.address())
                .env("RUST_LOG", "info,pew_workerd=debug")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    fn kill_worker(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            let _ = worker.kill();
            let _ = worker.wait();
        }
    }

    fn worker_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("workerd.log")).unwrap_or_default()
    }

    async fn deal(&self, category: u64, args: &str, tasks: u32) -> Vec<B256> {
        let params = format!("{{\"iexec_args\":{args:?}}}");
        let deal = self
            .chain
            .create_deal(self.app, category, &params, tasks, 1)
            .await
            .unwrap();
        self.core
            .publish_deal(deal, u64::from(tasks))
            .await
            .unwrap()
    }

    async fn wait_replicate(&self, task: B256, status: ReplicateStatus, within: Duration) {
        if self
            .core
            .wait_for_replicate_status(task, &self.worker_address(), status, within)
            .await
            .is_err()
        {
            panic!(
                "task {task} never reached {status}: replicate {:?}\nworker log:\n{}",
                self.core.replicate_statuses(task, &self.worker_address()),
                self.worker_log()
            );
        }
    }

    async fn bus(&self) -> zbus::Connection {
        pew_bus::connect(Some(self.bus.address())).await.unwrap()
    }

    async fn worker_state(&self) -> String {
        let connection = self.bus().await;
        let worker = pew_bus::worker::WorkerProxy::new(&connection)
            .await
            .unwrap();
        worker.state().await.unwrap_or_default()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.kill_worker();
        if let Some(mut powerd) = self.powerd.take() {
            let _ = powerd.kill();
            let _ = powerd.wait();
        }
    }
}

/// Another workspace binary, built beside this test (the test command builds every binary).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

#[tokio::test]
async fn the_worker_runs_proves_and_recovers_tasks_with_real_peers() {
    let mut world = World::start().await;
    let worker = world.worker_address();

    // Three tasks reach COMPLETED, each contributed and revealed on-chain by this worker.
    let tasks = world.deal(XS, "hello pew", 3).await;
    for task in &tasks {
        world
            .wait_replicate(*task, ReplicateStatus::Completed, TASK_TIMEOUT)
            .await;
        let on_chain = world.core_chain_task(*task).await;
        assert_eq!(on_chain.0, ChainTaskStatus::Completed, "task {task}");
        assert_eq!(on_chain.1, ContributionStatus::Proved, "task {task}");
        assert!(
            world.core.stored_result(*task).is_some(),
            "task {task}: no result uploaded"
        );
    }
    {
        let connection = world.bus().await;
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
    let failing = world.deal(XS, "exit 3", 1).await[0];
    world
        .wait_replicate(failing, ReplicateStatus::Aborted, TASK_TIMEOUT)
        .await;
    let computed = world.computed_update(failing, &worker);
    assert_eq!(computed.0, Some(3), "exit code reported with COMPUTED");

    // An app that overruns its category is stopped and reported as a compute timeout.
    let overrun = world.deal(world.short_category, "sleep 120", 1).await[0];
    world
        .wait_replicate(overrun, ReplicateStatus::Aborted, TASK_TIMEOUT)
        .await;
    let computed = world.computed_update(overrun, &worker);
    assert_eq!(
        computed.1,
        Some(pew_iexec::status::StatusCause::AppComputeTimeout)
    );
    assert_eq!(
        world.leftover_containers(),
        0,
        "a killed app's container stays"
    );

    // A worker killed while computing recovers the replicate after its restart and completes it.
    let interrupted = world.deal(XS, "sleep 6", 1).await[0];
    world
        .wait_replicate(interrupted, ReplicateStatus::Computing, TASK_TIMEOUT)
        .await;
    world.kill_worker();
    world.start_worker();
    world
        .wait_replicate(interrupted, ReplicateStatus::Completed, TASK_TIMEOUT)
        .await;

    // Scheduler errors are retried with backoff and lose nothing.
    world
        .core
        .inject_fault(Fault::status("/replicates/", 503, 4));
    let faulty = world.deal(XS, "after faults", 1).await[0];
    world
        .wait_replicate(faulty, ReplicateStatus::Completed, TASK_TIMEOUT)
        .await;

    // In critical mode the worker takes no new work; back to normal, it does.
    world.start_powerd(0.05);
    let waiting = world.deal(XS, "after the night", 1).await[0];
    let mut state = String::new();
    for _ in 0..60 {
        state = world.worker_state().await;
        if state == "paused-for-energy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(state, "paused-for-energy", "{}", world.worker_log());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        world.core.replicate(waiting, &worker).is_none(),
        "a replicate was taken in critical mode"
    );
    world.start_powerd(0.8);
    world
        .wait_replicate(waiting, ReplicateStatus::Completed, TASK_TIMEOUT)
        .await;
}

impl World {
    /// The task's on-chain status and this worker's contribution status.
    async fn core_chain_task(&self, task: B256) -> (ChainTaskStatus, ContributionStatus) {
        let chain = pew_chain::Chain::connect(&self.chain.rpc_url, self.chain.hub, None, None)
            .await
            .unwrap();
        let status = chain.task(task).await.unwrap().status;
        let contribution = chain
            .contribution(task, self.worker_wallet.address())
            .await
            .unwrap()
            .status;
        (status, contribution)
    }

    /// The exit code and cause the worker reported with COMPUTED.
    fn computed_update(
        &self,
        task: B256,
        worker: &str,
    ) -> (Option<i32>, Option<pew_iexec::status::StatusCause>) {
        let replicate = self.core.replicate(task, worker).expect("replicate");
        let computed = replicate
            .history()
            .iter()
            .find(|update| update.status == ReplicateStatus::Computed)
            .expect("COMPUTED reported");
        let details = computed.details.clone().unwrap_or_default();
        (details.exit_code, details.cause)
    }

    fn leftover_containers(&self) -> usize {
        let output = self
            .podman
            .podman_cli()
            .args(["ps", "--all", "--quiet"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).lines().count()
    }
}
