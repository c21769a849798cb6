//! `cargo xtask qemu exec -- <program> [args…]`: runs a command on the running emulated node
//! through its guest agent (as root in the guest), prints what it printed and exits with its
//! status. It builds nothing and needs no root on the host: the interactive run leaves the
//! agent's socket free for it in its run directory.

use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};

use super::agent::{Agent, ExecOutput};
use super::{AGENT_SOCKET, RUN_PREFIX};

#[derive(clap::Args)]
pub struct ExecArgs {
    /// The node's guest agent socket [default: the newest `out/qemu/run-*/agent.sock` that
    /// accepts a connection].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Seconds to wait for the agent and the command together.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// The program (looked up in /usr/bin, /usr/sbin, /bin and /sbin on the node unless it
    /// has a '/') and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
}

/// guest-exec runs a path, not a name; env(1) looks the name up in PATH as a shell would.
const ENV: &str = "/usr/bin/env";
/// The directories a name is looked up in, whatever the agent's own environment.
const GUEST_PATH: &str = "PATH=/usr/bin:/usr/sbin:/bin:/sbin";

/// Runs the command on the node `runs` (`out/qemu`) holds, or on the one `--socket` names, and
/// fails if the command is still running at `--timeout`. Returns only if the command succeeded;
/// otherwise this process exits with the command's status.
pub fn run(args: &ExecArgs, runs: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let (socket, mut agent) = match &args.socket {
        Some(socket) => (socket.clone(), Agent::connect(socket)?),
        None => connect_to_newest(runs)?,
    };
    ensure!(
        agent.sync(deadline.saturating_duration_since(Instant::now()))?,
        "the guest agent on {} did not answer within {} s: the node is still booting, or \
         another client holds the agent (a --check run does throughout, an interactive run \
         until its demo tasks are published)",
        socket.display(),
        args.timeout
    );
    let output = agent
        .exec(ENV, &guest_arguments(&args.command), deadline)
        .with_context(|| format!("cannot run {:?} on the node", args.command.join(" ")))?;
    io::stdout().write_all(&output.stdout)?;
    io::stdout().flush()?;
    io::stderr().write_all(&output.stderr)?;
    match exit_status(&output) {
        0 => Ok(()),
        status => std::process::exit(status),
    }
}

/// env's arguments: the search path, then the command. `--` keeps a program whose name starts
/// with '-' from being read as an option of env.
fn guest_arguments(command: &[String]) -> Vec<&str> {
    let mut arguments = vec!["--", GUEST_PATH];
    arguments.extend(command.iter().map(String::as_str));
    arguments
}

/// The status to exit with, as a shell reports a command's: its exit code, or 128 plus the
/// signal that killed it; 1 for a status no exit code can carry.
fn exit_status(output: &ExecOutput) -> i32 {
    let status = match (output.exit_code, output.signal) {
        (_, Some(signal)) => signal.checked_add(128),
        (code, None) => code,
    };
    status
        .and_then(|status| u8::try_from(status).ok())
        .map_or(1, i32::from)
}

/// A connection to the newest node under `runs` whose QEMU still serves its agent socket.
fn connect_to_newest(runs: &Path) -> Result<(PathBuf, Agent)> {
    let mut refusals = Vec::new();
    for socket in agent_sockets(runs)? {
        match Agent::connect(&socket) {
            Ok(agent) => return Ok((socket, agent)),
            // The socket of a run whose QEMU has exited refuses; an older run may still be up.
            Err(error) => refusals.push(format!("\n  {error:#}")),
        }
    }
    bail!(
        "no emulated node is running: no agent socket in {} accepts a connection (start one with \
         `cargo xtask qemu`, or name its socket with --socket){}",
        runs.display(),
        refusals.concat()
    )
}

/// The agent sockets of the run directories in `runs`, newest run first. A run directory's
/// modification time is when its last entry was created, the socket QEMU creates at its start
/// among them; the directory's own time can be read even when the run belongs to root.
fn agent_sockets(runs: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(runs) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("cannot list {}", runs.display())),
    };
    let mut run_dirs: Vec<(SystemTime, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", runs.display()))?;
        if !entry.file_name().to_string_lossy().starts_with(RUN_PREFIX) {
            continue;
        }
        // A run that ended meanwhile has removed its directory.
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if metadata.is_dir() {
            run_dirs.push((metadata.modified()?, entry.path()));
        }
    }
    run_dirs.sort_by(|a, b| b.cmp(a));
    Ok(run_dirs
        .into_iter()
        .map(|(_, run)| run.join(AGENT_SOCKET))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};
    use std::os::unix::net::UnixListener;

    use super::*;

    fn output(exit_code: Option<i64>, signal: Option<i64>) -> ExecOutput {
        ExecOutput {
            exit_code,
            signal,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    #[test]
    fn exits_like_a_shell_would() {
        assert_eq!(exit_status(&output(Some(0), None)), 0);
        assert_eq!(exit_status(&output(Some(3), None)), 3);
        assert_eq!(exit_status(&output(None, Some(9))), 137);
        assert_eq!(exit_status(&output(None, None)), 1);
        assert_eq!(exit_status(&output(Some(300), None)), 1);
        assert_eq!(exit_status(&output(Some(-1), None)), 1);
    }

    #[test]
    fn the_program_is_looked_up_through_env_with_a_fixed_path() {
        let command = [
            "pewctl".to_owned(),
            "--json".to_owned(),
            "status".to_owned(),
        ];
        assert_eq!(
            guest_arguments(&command),
            [
                "--",
                "PATH=/usr/bin:/usr/sbin:/bin:/sbin",
                "pewctl",
                "--json",
                "status"
            ]
        );
    }

    /// Makes `dir` look last changed `seconds` ago.
    fn age(dir: &Path, seconds: u64) {
        let time = SystemTime::now() - Duration::from_secs(seconds);
        File::open(dir).unwrap().set_modified(time).unwrap();
    }

    /// Where a run directory's QEMU is.
    enum Qemu {
        /// Not started: the run is still preparing its card, there is no socket yet.
        Preparing,
        /// Serving the socket.
        Running,
        /// Gone, its socket file left behind.
        Exited,
    }

    /// A run directory in `runs`; the listener stands for a running QEMU.
    fn run_dir(runs: &Path, name: &str, qemu: Qemu) -> (PathBuf, Option<UnixListener>) {
        let dir = runs.join(name);
        fs::create_dir(&dir).unwrap();
        let bind = || UnixListener::bind(dir.join(AGENT_SOCKET)).unwrap();
        let listener = match qemu {
            Qemu::Preparing => None,
            Qemu::Running => Some(bind()),
            Qemu::Exited => {
                drop(bind());
                None
            }
        };
        (dir, listener)
    }

    #[test]
    fn sockets_are_listed_newest_run_first_and_other_entries_ignored() {
        let runs = tempfile::tempdir().unwrap();
        let (older, _) = run_dir(runs.path(), "run-older", Qemu::Preparing);
        let (newest, _) = run_dir(runs.path(), "run-newest", Qemu::Preparing);
        let (middle, _) = run_dir(runs.path(), "run-middle", Qemu::Preparing);
        fs::create_dir(runs.path().join("cache")).unwrap();
        fs::write(runs.path().join("run-file"), "").unwrap();
        for (dir, seconds) in [(&older, 600), (&middle, 60), (&newest, 5)] {
            age(dir, seconds);
        }
        assert_eq!(
            agent_sockets(runs.path()).unwrap(),
            [newest, middle, older].map(|run| run.join(AGENT_SOCKET))
        );
        assert!(
            agent_sockets(&runs.path().join("missing"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_newest_socket_that_accepts_a_connection_is_chosen() {
        let runs = tempfile::tempdir().unwrap();
        let (running, _qemu) = run_dir(runs.path(), "run-running", Qemu::Running);
        let (exited, _) = run_dir(runs.path(), "run-exited", Qemu::Exited);
        let (preparing, _) = run_dir(runs.path(), "run-preparing", Qemu::Preparing);
        for (dir, seconds) in [(&running, 600), (&exited, 60), (&preparing, 5)] {
            age(dir, seconds);
        }
        let (socket, _agent) = connect_to_newest(runs.path()).unwrap();
        assert_eq!(socket, running.join(AGENT_SOCKET));
    }

    #[test]
    fn no_running_node_is_an_error_naming_the_runs_directory() {
        let runs = tempfile::tempdir().unwrap();
        run_dir(runs.path(), "run-exited", Qemu::Exited);
        let message = format!("{:#}", connect_to_newest(runs.path()).err().unwrap());
        assert!(
            message.contains(&runs.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("run-exited/agent.sock"), "{message}");
    }
}
