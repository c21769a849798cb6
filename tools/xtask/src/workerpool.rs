//! The workerpool a dev or emulated node works for: `dev-workerpool` (tools/pew-testbed) on the
//! host, with the real PoCo contracts on anvil, dev-core as its scheduler and the test app
//! registered, driven over its stdin.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::process;

/// PoCo's XS category (300 s).
pub const XS_CATEGORY: u64 = 0;

/// Where the pool listens and whom it serves.
pub struct PoolOptions<'a> {
    /// dev-core's address (`127.0.0.1:0`: any free port).
    pub listen: &'a str,
    /// The host's name in the URLs the pool publishes, if the worker calls it otherwise.
    pub advertised_host: Option<&'a str>,
    /// The worker's architecture, as Rust names it.
    pub app_architecture: &'a str,
    /// Also run a private podman API service with the test app loaded, for a worker on this
    /// host.
    pub engine: bool,
}

/// What the pool enrolled and where it put it.
pub struct Enrolled {
    /// dev-core's URL as bound here.
    pub scheduler: String,
    pub chain: String,
    /// The worker's address.
    pub worker: String,
    pub keystore: PathBuf,
    pub password: PathBuf,
    /// The test app's image (`docker save` format).
    pub app_archive: PathBuf,
    /// The private engine's socket, with [`PoolOptions::engine`].
    pub engine_socket: Option<PathBuf>,
}

/// The final status of a task whose result was contributed, revealed and finalized on-chain.
const COMPLETED: &str = "COMPLETED";

/// How a task ended, as dev-core saw it.
pub struct TaskOutcome {
    pub task: String,
    /// `COMPLETED`, `FAILED`, or `None` if it had not ended in time.
    pub status: Option<String>,
    /// Every status the task went through, oldest first.
    pub statuses: Vec<String>,
    /// The app's standard output, as the worker reported it.
    pub stdout: String,
}

impl TaskOutcome {
    pub fn completed(&self) -> bool {
        self.status.as_deref() == Some(COMPLETED)
    }
}

/// A running `dev-workerpool`; stopped when dropped.
pub struct DevWorkerpool {
    child: Child,
    /// Closed to stop the pool: it then stops anvil, which a kill would leave running.
    commands: Option<ChildStdin>,
    answers: BufReader<ChildStdout>,
    log: PathBuf,
    pub enrolled: Enrolled,
}

impl DevWorkerpool {
    /// Starts the pool (built by `cargo build --workspace --bins`, or now) with its files and
    /// log in `dir`, and waits until it has enrolled the worker.
    pub fn start(dir: &Path, options: &PoolOptions<'_>) -> Result<Self> {
        // On a fresh checkout the build compiles dev-core, dev-chain and alloy beneath them:
        // minutes that must not look like a hang.
        println!(
            "building dev-workerpool (the host's workerpool: PoCo on anvil + dev-core); the first build takes several minutes"
        );
        let started = Instant::now();
        let bin = process::build_binaries(&["dev-workerpool"], "dev")?;
        std::fs::create_dir_all(dir)?;
        let log = dir.join("dev-workerpool.log");
        let mut command = Command::new(bin.join("dev-workerpool"));
        command
            .arg("--dir")
            .arg(dir)
            .args(["--listen", options.listen])
            .args(["--app-architecture", options.app_architecture]);
        if let Some(host) = options.advertised_host {
            command.args(["--advertised-host", host]);
        }
        if options.engine {
            command.arg("--engine");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start dev-workerpool")?;
        let (Some(commands), Some(answers)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("dev-workerpool's stdin or stdout was not piped");
        };
        let mut answers = BufReader::new(answers);
        let ready = match read_line(&mut answers, &log)?.get_mut("ready") {
            Some(ready) => ready.take(),
            None => bail!("dev-workerpool did not start with a ready line"),
        };
        let text = |key: &str| -> Result<String> {
            ready[key]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("dev-workerpool's ready line has no {key}: {ready}"))
        };
        let enrolled = Enrolled {
            scheduler: text("scheduler")?,
            chain: text("chain")?,
            worker: text("worker")?,
            keystore: text("keystore")?.into(),
            password: text("password")?.into(),
            app_archive: text("app_archive")?.into(),
            engine_socket: ready["engine_socket"].as_str().map(PathBuf::from),
        };
        println!(
            "workerpool up {:.0} s after its build started: dev-core {}, chain {}, worker {}",
            started.elapsed().as_secs_f64(),
            enrolled.scheduler,
            enrolled.chain,
            enrolled.worker
        );
        Ok(Self {
            child,
            commands: Some(commands),
            answers,
            log,
            enrolled,
        })
    }

    /// Publishes a deal of `tasks` tasks of the test app with `args`; returns the task ids.
    pub fn deal(&mut self, tasks: u32, category: u64, args: &str) -> Result<Vec<String>> {
        let answer = self.command(&format!("deal {tasks} {category} {args}"), "deal")?;
        answer["tasks"]
            .as_array()
            .map(|tasks| {
                tasks
                    .iter()
                    .filter_map(|task| task.as_str().map(str::to_owned))
                    .collect()
            })
            .with_context(|| format!("dev-workerpool answered a deal with {answer}"))
    }

    /// Waits up to `within` until `task` is COMPLETED or FAILED.
    pub fn wait(&mut self, task: &str, within: Duration) -> Result<TaskOutcome> {
        self.send(&format!("wait {task} {}", within.as_secs()))?;
        let line = self.read_line()?;
        let strings = |value: &Value| -> Vec<String> {
            value["statuses"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        if let Some(ended) = line.get("final") {
            return Ok(TaskOutcome {
                task: task.to_owned(),
                status: ended["status"].as_str().map(str::to_owned),
                statuses: strings(ended),
                stdout: ended["stdout"].as_str().unwrap_or_default().to_owned(),
            });
        }
        if let Some(timeout) = line.get("timeout") {
            return Ok(TaskOutcome {
                task: task.to_owned(),
                status: None,
                statuses: strings(timeout),
                stdout: String::new(),
            });
        }
        bail!("dev-workerpool answered a wait with {line}")
    }

    fn command(&mut self, command: &str, answer: &str) -> Result<Value> {
        self.send(command)?;
        self.read_answer(answer)
    }

    fn send(&mut self, command: &str) -> Result<()> {
        let commands = self
            .commands
            .as_mut()
            .context("dev-workerpool is stopping")?;
        writeln!(commands, "{command}")
            .with_context(|| format!("cannot send {command:?} to dev-workerpool"))
    }

    fn read_answer(&mut self, answer: &str) -> Result<Value> {
        let mut line = self.read_line()?;
        match line.get_mut(answer) {
            Some(value) => Ok(value.take()),
            None => bail!("dev-workerpool answered {line} instead of {answer}"),
        }
    }

    fn read_line(&mut self) -> Result<Value> {
        read_line(&mut self.answers, &self.log)
    }
}

fn read_line(answers: &mut BufReader<ChildStdout>, log: &Path) -> Result<Value> {
    let mut line = String::new();
    if answers.read_line(&mut line)? == 0 {
        bail!(
            "dev-workerpool ended; the end of its log ({}):\n{}",
            log.display(),
            crate::qemu::console::tail(log, 30)
        );
    }
    serde_json::from_str(&line).with_context(|| format!("dev-workerpool printed {:?}", line.trim()))
}

/// How long the pool may take to stop anvil and dev-core after its input closed.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Drop for DevWorkerpool {
    fn drop(&mut self) {
        drop(self.commands.take());
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
