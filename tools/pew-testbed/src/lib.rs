//! A whole worker node on the host, with the real peers wherever they run here: the real PoCo
//! contracts on anvil (dev-chain), podman's Docker-compatible API, pew-powerd on simulated
//! hardware, a private dbus-daemon, dev-core as the workerpool's scheduler, and pew-workerd.
//! The end-to-end tests, `cargo xtask bench worker` and the dev node build on it.

mod workerpool;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use anyhow::{Context, Result};
use pew_containers::testing::PodmanService;
use pew_devbus::DevBus;
use pew_iexec::status::ReplicateStatus;
use pew_poco::{B256, Wallet};

pub use workerpool::{APP_IMAGE, Workerpool, WorkerpoolSettings, XS};

/// The workspace's binaries seen from a test: the target directory holding the running test
/// executable's `deps/`, which must hold pew-powerd and pew-workerd (`cargo build --workspace
/// --bins` first: cargo builds a test's own package's binaries only).
pub fn workspace_binaries() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable has no target directory")?;
    for binary in ["pew-powerd", "pew-workerd"] {
        if !dir.join(binary).exists() {
            anyhow::bail!(
                "{} has no {binary}: build the workspace first (cargo build --workspace --bins)",
                dir.display()
            );
        }
    }
    Ok(dir.to_owned())
}

pub struct Testbed {
    dir: tempfile::TempDir,
    bin_dir: PathBuf,
    bus: DevBus,
    powerd: Option<Child>,
    pub pool: Workerpool,
    pub podman: PodmanService,
    pub worker_wallet: Wallet,
    worker: Option<Child>,
    chain_link: ChainLink,
}

impl Testbed {
    /// Starts everything but the worker; `bin_dir` holds pew-powerd and pew-workerd.
    pub async fn start(bin_dir: &Path) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let bus = DevBus::start().context("private bus")?;
        let pool = Workerpool::start(dir.path(), &WorkerpoolSettings::local()).await?;
        let podman = pool.engine_with_app().await?;
        let worker_wallet = pool.enroll_worker().await?;
        let chain_link = ChainLink::start(&pool.chain.rpc_url).await?;
        let mut testbed = Self {
            dir,
            bin_dir: bin_dir.to_owned(),
            bus,
            powerd: None,
            pool,
            podman,
            worker_wallet,
            worker: None,
            chain_link,
        };
        testbed.start_powerd(0.8)?;
        testbed.write_worker_files()?;
        Ok(testbed)
    }

    pub fn bus_address(&self) -> &str {
        self.bus.address()
    }

    pub fn worker_address(&self) -> String {
        format!("{:#x}", self.worker_wallet.address())
    }

    /// (Re)starts pew-powerd on simulated hardware whose battery starts at `soc` (0..1).
    pub fn start_powerd(&mut self, soc: f64) -> Result<()> {
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
        )?;
        self.powerd = Some(
            Command::new(self.bin_dir.join("pew-powerd"))
                .arg("--config")
                .arg(&config)
                .arg("--bus")
                .arg(self.bus.address())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting pew-powerd")?,
        );
        Ok(())
    }

    fn write_worker_files(&self) -> Result<()> {
        let wallet = self.dir.path().join("wallet");
        std::fs::create_dir_all(&wallet)?;
        std::fs::write(
            wallet.join("keystore.json"),
            pew_poco::keystore::encrypt(&self.worker_wallet, "testbed-password", 4)?,
        )?;
        std::fs::write(wallet.join("password"), "testbed-password\n")?;
        for file in ["keystore.json", "password"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(wallet.join(file), std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::write(
            self.worker_config(),
            format!(
                "name = \"testbed\"\nscheduler_url = {url:?}\ndata_dir = {data:?}\nhttp_timeout_s = 4\n\
                 [wallet]\nkeystore = {keystore:?}\npassword_file = {password:?}\n\
                 [chain]\nrpc_url = {rpc:?}\n\
                 [engine]\nsocket = {socket:?}\ncpus = 1.0\nmemory_mib = 64\npids = 64\n\
                 [energy]\ncompute_power_w = 5.0\nexpected_task_s = 300\n",
                url = self.pool.core.base_url(),
                data = self.dir.path().join("worker").display().to_string(),
                keystore = wallet.join("keystore.json").display().to_string(),
                password = wallet.join("password").display().to_string(),
                socket = self.podman.socket().display().to_string(),
                rpc = self.chain_link.url,
            ),
        )?;
        Ok(())
    }

    fn worker_config(&self) -> PathBuf {
        self.dir.path().join("workerd.toml")
    }

    fn worker_log_path(&self) -> PathBuf {
        self.dir.path().join("workerd.log")
    }

    /// Starts pew-workerd; its log (appended across restarts) is [`Self::worker_log`].
    pub fn start_worker(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.worker_log_path())?;
        self.worker = Some(
            Command::new(self.bin_dir.join("pew-workerd"))
                .arg("--config")
                .arg(self.worker_config())
                .arg("--bus")
                .arg(self.bus.address())
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting pew-workerd")?,
        );
        Ok(())
    }

    /// The worker's process id, while it runs.
    pub fn worker_pid(&self) -> Option<u32> {
        self.worker.as_ref().map(Child::id)
    }

    /// Kills the worker at once (SIGKILL: a crash or a power cut).
    pub fn kill_worker(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            let _ = worker.kill();
            let _ = worker.wait();
        }
    }

    pub fn worker_log(&self) -> String {
        std::fs::read_to_string(self.worker_log_path()).unwrap_or_default()
    }

    /// A deal of `tasks` tasks of the test app with `args`, published to the scheduler.
    pub async fn deal(&self, category: u64, args: &str, tasks: u32) -> Result<Vec<B256>> {
        self.pool.deal(category, args, tasks).await
    }

    /// Waits until this worker's replicate of `task` went through `status`; the error carries
    /// the replicate's history and the worker's log.
    pub async fn wait_replicate(
        &self,
        task: B256,
        status: ReplicateStatus,
        within: Duration,
    ) -> Result<()> {
        self.pool
            .wait_replicate(task, &self.worker_address(), status, within)
            .await
            .map_err(|error| error.context(format!("worker log:\n{}", self.worker_log())))
    }

    pub async fn bus(&self) -> Result<zbus::Connection> {
        Ok(pew_bus::connect(Some(self.bus.address())).await?)
    }

    /// The worker's `State` on the bus, empty if it does not answer.
    pub async fn worker_state(&self) -> String {
        let Ok(connection) = self.bus().await else {
            return String::new();
        };
        let Ok(worker) = pew_bus::worker::WorkerProxy::new(&connection).await else {
            return String::new();
        };
        worker.state().await.unwrap_or_default()
    }

    /// Cuts (true) or restores (false) the worker's link to the chain: connections are dropped
    /// and new ones refused, like a node restarting or a radio link going down.
    pub fn cut_chain(&self, cut: bool) {
        self.chain_link.cut.send_replace(cut);
    }

    /// Containers the engine still holds.
    pub fn leftover_containers(&self) -> usize {
        self.podman
            .podman_cli()
            .args(["ps", "--all", "--quiet"])
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).lines().count())
            .unwrap_or(usize::MAX)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.kill_worker();
        if let Some(mut powerd) = self.powerd.take() {
            let _ = powerd.kill();
            let _ = powerd.wait();
        }
    }
}

/// A TCP relay between the worker and anvil that a test can cut.
struct ChainLink {
    url: String,
    cut: watch::Sender<bool>,
}

impl ChainLink {
    async fn start(rpc_url: &str) -> Result<Self> {
        let upstream = rpc_url
            .strip_prefix("http://")
            .context("the dev chain's URL is not http://")?
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (cut, cuts) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *cuts.borrow() {
                    continue;
                }
                let upstream = upstream.clone();
                let mut cuts = cuts.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Ok(Self { url, cut })
    }
}
