//! `cargo xtask node`: the dev node. A private bus with the shipped policies and every pew
//! service that exists, on simulated hardware replaying real weather, with a live status until
//! Ctrl-C (or `--seconds`). The worker works for a workerpool on this host (`dev-workerpool`:
//! the real PoCo contracts on anvil, dev-core, a private podman API service), which gets a few
//! demo tasks once the node is ready.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::process;
use crate::workerpool::{DevWorkerpool, Enrolled, PoolOptions, XS_CATEGORY};

#[derive(clap::Args)]
pub struct NodeArgs {
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 60.0)]
    speed: f64,
    /// Weather to replay: greensboro or sand-point.
    #[arg(long, default_value = "greensboro")]
    site: String,
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long)]
    seconds: Option<u64>,
    /// Where the node keeps its state between runs.
    #[arg(long, default_value = "out/dev-node")]
    dir: PathBuf,
}

/// The services the dev node runs, by binary name.
const SERVICES: [&str; 2] = ["pew-powerd", "pew-workerd"];
/// Tasks published once the node is ready.
const DEMO_TASKS: u32 = 3;

pub fn run(args: NodeArgs) -> Result<()> {
    crate::host::ensure_tools()?;
    let bin = process::build_binaries(&["pew-powerd", "pew-workerd", "pewctl"], "dev")?;
    let dir = process::workspace_root().join(&args.dir);
    std::fs::create_dir_all(&dir)?;
    let mut pool = DevWorkerpool::start(
        &dir.join("workerpool"),
        &PoolOptions {
            listen: "127.0.0.1:0",
            advertised_host: None,
            app_architecture: std::env::consts::ARCH,
            engine: true,
        },
    )?;
    let configs = [
        write_power_config(&dir, &args)?,
        write_worker_config(&dir, &pool.enrolled)?,
    ];
    let bus = pew_devbus::DevBus::start().context("private bus")?;
    println!("bus address: {}", bus.address());
    println!("service logs: {}/<service>.log", dir.display());
    println!(
        "try:         PEW_BUS_ADDRESS='{}' {} status",
        bus.address(),
        bin.join("pewctl").display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(supervise(
        &bin,
        &configs,
        bus.address(),
        &mut pool,
        args.seconds,
    ))
}

fn write_power_config(dir: &Path, args: &NodeArgs) -> Result<PathBuf> {
    let path = dir.join("powerd.toml");
    let state_dir = dir.join("power");
    std::fs::write(
        &path,
        format!(
            "# Written by cargo xtask node.\nstate_dir = {state:?}\nsample_interval_s = 1.0\n\n[source]\nkind = \"simulated\"\n\n[simulation]\nsite = {site:?}\nspeed = {speed}\n",
            state = state_dir.display().to_string(),
            site = args.site,
            speed = args.speed,
        ),
    )?;
    Ok(path)
}

fn write_worker_config(dir: &Path, enrolled: &Enrolled) -> Result<PathBuf> {
    let path = dir.join("workerd.toml");
    // The chain and the pool are new every run: replicates journaled by an earlier run belong
    // to a chain that is gone.
    let state = dir.join("worker");
    if state.exists() {
        std::fs::remove_dir_all(&state)
            .with_context(|| format!("cannot clear {}", state.display()))?;
    }
    let socket = enrolled
        .engine_socket
        .as_ref()
        .context("the workerpool runs no engine")?;
    std::fs::write(
        &path,
        format!(
            "# Written by cargo xtask node.\nname = \"dev-node\"\nscheduler_url = {scheduler:?}\ndata_dir = {data:?}\n\n\
             [wallet]\nkeystore = {keystore:?}\npassword_file = {password:?}\n\n\
             [engine]\nsocket = {socket:?}\ncpus = 1.0\nmemory_mib = 256\npids = 64\n",
            scheduler = enrolled.scheduler,
            data = state.display().to_string(),
            keystore = enrolled.keystore.display().to_string(),
            password = enrolled.password.display().to_string(),
            socket = socket.display().to_string(),
        ),
    )?;
    Ok(path)
}

async fn supervise(
    bin: &Path,
    configs: &[PathBuf; SERVICES.len()],
    address: &str,
    pool: &mut DevWorkerpool,
    seconds: Option<u64>,
) -> Result<()> {
    let started = Instant::now();
    let mut children = Vec::new();
    for (service, config) in SERVICES.into_iter().zip(configs) {
        children.push(spawn(bin, service, config, address)?);
    }
    let connection = pew_bus::connect(Some(address)).await?;
    wait_ready(&connection, &mut children).await?;
    println!("node ready in {:.1} s", started.elapsed().as_secs_f64());
    let tasks = pool.deal(DEMO_TASKS, XS_CATEGORY, "hello pew")?;
    println!("demo tasks published: {}", tasks.join(", "));

    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let interactive = std::io::stdout().is_terminal();
    let result = loop {
        let status = std::process::Command::new(bin.join("pewctl"))
            .arg("status")
            .env(pew_bus::BUS_ADDRESS_ENV, address)
            .output()?;
        if interactive {
            print!("\x1b[2J\x1b[H");
        }
        print!("{}", String::from_utf8_lossy(&status.stdout));
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
        if let Some(exited) = exited(&mut children)? {
            break Err(anyhow::anyhow!("{exited}"));
        }
    };
    stop(&mut children).await;
    println!("node stopped");
    result
}

fn spawn(
    bin: &Path,
    service: &'static str,
    config: &Path,
    address: &str,
) -> Result<(&'static str, Child)> {
    // Logs go beside the config, so that the live status owns the terminal.
    let log_path = config.with_file_name(format!("{service}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let child = Command::new(bin.join(service))
        .arg("--config")
        .arg(config)
        .arg("--bus")
        .arg(address)
        .stdin(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {service}"))?;
    Ok((service, child))
}

/// Waits until every service owns its bus name (the services claim it once ready).
async fn wait_ready(
    connection: &zbus::Connection,
    children: &mut [(&'static str, Child)],
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ready = true;
        for service in pew_bus::SERVICES
            .iter()
            .filter(|s| SERVICES.contains(&s.unit))
        {
            ready &= pew_bus::is_running(connection, service).await?;
        }
        if ready {
            return Ok(());
        }
        if let Some(exited) = exited(children)? {
            bail!("{exited}");
        }
        if Instant::now() > deadline {
            bail!("services not ready after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn exited(children: &mut [(&'static str, Child)]) -> Result<Option<String>> {
    for (name, child) in children.iter_mut() {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(format!("{name} exited: {status}")));
        }
    }
    Ok(None)
}

/// SIGTERM, as systemd would, then wait for each service to save its state and exit.
async fn stop(children: &mut [(&'static str, Child)]) {
    for (name, child) in children.iter_mut() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(Ok(status)) => println!("{name} exited: {status}"),
            _ => {
                let _ = child.kill().await;
                println!("{name} killed after 10 s");
            }
        }
    }
}
