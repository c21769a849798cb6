//! `dev-workerpool`: the workerpool an emulated or dev node works for (real PoCo on anvil,
//! dev-core, the test app registered), driven over stdin by `cargo xtask qemu` and
//! `cargo xtask node`.
//!
//! Started, it enrolls one worker wallet, writes it (keystore v3 and password, 0600) and the
//! test app's image archive into `--dir`, and prints one JSON line `{"ready": {...}}`. Then
//! each line read is a command, answered by one JSON line:
//!
//! - `deal <tasks> <category> [args…]` → `{"deal": {"tasks": ["0x…", …]}}`
//! - `wait <task> <seconds>` → `{"final": {"task", "status", "seconds", "statuses", "stdout"}}`
//!   once the task is COMPLETED or FAILED (`stdout`: the app's output as the worker reported it),
//!   or `{"timeout": {"task", "statuses"}}`
//!
//! Errors are `{"error": "…"}`; end of input stops the pool.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use pew_containers::testing::PodmanService;
use pew_poco::{B256, Wallet};
use pew_testbed::{APP_IMAGE, Workerpool, WorkerpoolSettings};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "dev-workerpool", version)]
struct Args {
    /// Where the chain, the wallet and the app archive live.
    #[arg(long)]
    dir: PathBuf,
    /// Address dev-core listens on.
    #[arg(long, default_value = "127.0.0.1:13000")]
    listen: SocketAddr,
    /// Host name the worker reaches this host by (an emulated node: 10.0.2.2).
    #[arg(long)]
    advertised_host: Option<String>,
    /// The worker's CPU architecture (x86_64, aarch64).
    #[arg(long, default_value = std::env::consts::ARCH)]
    app_architecture: String,
    /// Also run a private podman API service with the test app loaded, for a worker on this
    /// host; its socket is `engine_socket` in the ready line.
    #[arg(long)]
    engine: bool,
}

/// The worker's keystore password; the wallet only ever holds dev-chain coins.
const WORKER_PASSWORD: &str = "pew-dev-worker";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::from_default_env().add_directive("info".parse()?))
        .init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let settings = WorkerpoolSettings {
        listen: args.listen,
        advertised_host: args.advertised_host.clone(),
        app_architecture: args.app_architecture.clone(),
    };
    let pool = Workerpool::start(&args.dir, &settings).await?;
    let worker = pool.enroll_worker().await?;
    let files = write_worker_files(&args.dir, &worker, &pool.app_archive)?;
    let engine = if args.engine {
        Some(pool.engine_with_app().await?)
    } else {
        None
    };
    say(json!({"ready": {
        "scheduler": pool.core.base_url(),
        "chain": pool.chain.rpc_url,
        "worker": format!("{:#x}", worker.address()),
        "keystore": files.keystore,
        "password": files.password,
        "app_image": APP_IMAGE,
        "app_archive": files.app_archive,
        "engine_socket": engine.as_ref().map(PodmanService::socket),
    }}));

    let worker = format!("{:#x}", worker.address());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.context("reading commands")? {
        let answer = match answer(&pool, &worker, &line).await {
            Ok(answer) => answer,
            Err(error) => json!({"error": format!("{error:#}")}),
        };
        say(answer);
    }
    pool.core.shutdown().await;
    Ok(())
}

fn say(message: Value) {
    println!("{message}");
}

async fn answer(pool: &Workerpool, worker: &str, line: &str) -> Result<Value> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["deal", tasks, category, args @ ..] => {
            let tasks: u32 = tasks.parse().context("deal: <tasks> is not a number")?;
            let category: u64 = category
                .parse()
                .context("deal: <category> is not a number")?;
            let tasks = pool.deal(category, &args.join(" "), tasks).await?;
            Ok(json!({"deal": {"tasks": tasks}}))
        }
        ["wait", task, seconds] => {
            let task: B256 = task.parse().context("wait: <task> is not a task id")?;
            let seconds: u64 = seconds.parse().context("wait: <seconds> is not a number")?;
            let started = Instant::now();
            let reached = pool
                .core
                .wait_until(Duration::from_secs(seconds), |core| {
                    core.task_statuses(task)
                        .iter()
                        .any(|status| status.is_final())
                })
                .await;
            let statuses = pool.core.task_statuses(task);
            let stdout = pool
                .core
                .compute_logs(task, worker)
                .map(|logs| logs.stdout)
                .unwrap_or_default();
            Ok(match (reached, statuses.last()) {
                (Ok(()), Some(status)) => json!({"final": {
                    "task": task,
                    "status": status,
                    "seconds": started.elapsed().as_secs_f64(),
                    "statuses": statuses,
                    "stdout": stdout,
                }}),
                _ => json!({"timeout": {"task": task, "statuses": statuses}}),
            })
        }
        _ => bail!(
            "unknown command {line:?}: deal <tasks> <category> [args…] | wait <task> <seconds>"
        ),
    }
}

struct WorkerFiles {
    keystore: PathBuf,
    password: PathBuf,
    app_archive: PathBuf,
}

fn write_worker_files(dir: &Path, worker: &Wallet, app_archive: &[u8]) -> Result<WorkerFiles> {
    let files = WorkerFiles {
        keystore: dir.join("worker-keystore.json"),
        password: dir.join("worker-password"),
        app_archive: dir.join("app-image.tar"),
    };
    // A light scrypt (n = 2^4): the emulated node decrypts it under TCG.
    let keystore = pew_poco::keystore::encrypt(worker, WORKER_PASSWORD, 4)?;
    for (path, content) in [
        (&files.keystore, keystore.as_bytes()),
        (&files.password, WORKER_PASSWORD.as_bytes()),
    ] {
        std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::write(&files.app_archive, app_archive)?;
    Ok(files)
}
