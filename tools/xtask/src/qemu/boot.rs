//! One boot of the run disk: start QEMU, wait for the boot script's slot line, for the guest
//! agent and for every included service to be ready, then ask the node about itself. Every wait
//! has a deadline and notices QEMU exiting; QEMU is killed when a [`ReadyNode`] (or an error
//! before it) is dropped.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use pew_bus::Service;
use pew_image::bootstate::Slot;

use super::agent::Agent;
use super::console::{self, ConsoleLog};
use super::guest::{self, GuestReport, Readiness};
use super::machine::{Machine, MachineSpec};

/// U-Boot and the script print the slot line ~4 s after power-on; a firmware stuck at its
/// prompt should not hold a run for the whole boot timeout.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one `guest-sync-delimited` waits before the agent counts as not started yet.
const SYNC_WAIT: Duration = Duration::from_secs(5);
/// How often the console is looked at.
const CONSOLE_POLL: Duration = Duration::from_millis(100);
/// How often the agent is tried and the services are asked, each try being a round trip into
/// an emulated guest.
const GUEST_POLL: Duration = Duration::from_secs(1);
/// How long QEMU gets to finish exiting when an attempt failed as if it had.
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// How much of the console an error message quotes.
const CONSOLE_TAIL_LINES: usize = 15;
/// How long one readiness poll or diagnosis may take in the guest.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);
/// From `guest-shutdown` to QEMU exiting: systemd stops every unit first.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(180);

/// What one boot is made of.
pub struct BootSettings<'a> {
    pub spec: MachineSpec,
    pub stderr_log: PathBuf,
    pub services: &'a [&'static Service],
    /// The data partition's number in the partition table.
    pub data_partition: u8,
    /// From QEMU's start to the node's report.
    pub timeout: Duration,
    /// Names the boot in progress lines.
    pub label: String,
}

/// When each stage was reached, from QEMU's start.
#[derive(Clone, Copy, Debug)]
pub struct Milestones {
    pub slot_line: Duration,
    pub agent: Duration,
    pub ready: Duration,
}

/// A node whose services are all ready, still running.
pub struct ReadyNode {
    pub machine: Machine,
    pub agent: Agent,
    pub booted_slot: Slot,
    pub milestones: Milestones,
    pub report: GuestReport,
}

/// Boots and waits until every service in `settings.services` is ready.
pub fn boot_to_ready(settings: &BootSettings<'_>) -> Result<ReadyNode> {
    let console_path = &settings.spec.console_log;
    boot(settings).with_context(|| {
        format!(
            "console log: {}, ending with:\n{}",
            console_path.display(),
            console::tail(console_path, CONSOLE_TAIL_LINES)
        )
    })
}

fn boot(settings: &BootSettings<'_>) -> Result<ReadyNode> {
    let label = &settings.label;
    let mut machine = Machine::start(&settings.spec, &settings.stderr_log)?;
    let started = machine.started();
    let deadline = started + settings.timeout;
    let seconds = || started.elapsed().as_secs_f64();

    let booted_slot = wait_for_slot_line(&mut machine, &settings.spec.console_log, deadline)?;
    let slot_line = started.elapsed();
    progress(
        label,
        &format!("boot script chose slot {booted_slot} at {:.1} s", seconds()),
    );

    let mut agent = wait_for_agent(&mut machine, &settings.spec.agent_socket, deadline)?;
    let agent_answered = started.elapsed();
    progress(
        label,
        &format!("guest agent answered at {:.1} s", seconds()),
    );

    wait_for_services(&mut machine, &mut agent, settings.services, deadline)?;
    let ready = started.elapsed();
    let units: Vec<&str> = settings
        .services
        .iter()
        .map(|service| service.unit)
        .collect();
    progress(
        label,
        &format!("{} ready at {:.1} s", units.join(", "), seconds()),
    );

    let report = guest::inspect(
        &mut agent,
        settings.services,
        settings.data_partition,
        deadline,
    )
    .context("cannot inspect the ready node")?;
    machine.ensure_running()?;
    Ok(ReadyNode {
        machine,
        agent,
        booted_slot,
        milestones: Milestones {
            slot_line,
            agent: agent_answered,
            ready,
        },
        report,
    })
}

/// The slot the boot script announces on the console.
fn wait_for_slot_line(
    machine: &mut Machine,
    console_log: &Path,
    deadline: Instant,
) -> Result<Slot> {
    let mut console = ConsoleLog::new(console_log.to_owned());
    wait_until(
        machine,
        deadline.min(machine.started() + SCRIPT_TIMEOUT),
        CONSOLE_POLL,
        "the boot script's slot line",
        || {
            console.refresh()?;
            Ok(console.booted_slot())
        },
    )
}

/// A connection to the guest agent once it answers.
fn wait_for_agent(machine: &mut Machine, socket: &Path, deadline: Instant) -> Result<Agent> {
    let mut connection: Option<Agent> = None;
    wait_until(machine, deadline, GUEST_POLL, "the guest agent", || {
        let agent = match connection.as_mut() {
            Some(agent) => agent,
            // QEMU creates the socket while starting; until then, try again.
            None => match Agent::connect(socket) {
                Ok(agent) => connection.insert(agent),
                Err(_) => return Ok(None),
            },
        };
        if !agent.sync(SYNC_WAIT)? {
            return Ok(None);
        }
        agent.ping()?;
        Ok(connection.take())
    })
}

/// Polls until every service in `services` is ready; fails early, with the failed units, once
/// systemd has finished starting the system without them.
fn wait_for_services(
    machine: &mut Machine,
    agent: &mut Agent,
    services: &[&'static Service],
    deadline: Instant,
) -> Result<()> {
    let mut last_answer = String::from("no answer yet");
    let mut resync = false;
    let waited = wait_until(
        machine,
        deadline,
        GUEST_POLL,
        "every service to be ready",
        || {
            // After a failed exchange a late answer may still arrive: skip it before asking again.
            if resync && !agent.sync(SYNC_WAIT)? {
                return Ok(None);
            }
            // A command hung in the guest must not use up the whole boot's time.
            let poll_deadline = deadline.min(Instant::now() + POLL_TIMEOUT);
            match guest::poll_readiness(agent, services, poll_deadline) {
                Ok(Readiness::Waiting(answer)) => {
                    resync = false;
                    last_answer = answer;
                    Ok(None)
                }
                Ok(final_answer) => Ok(Some(final_answer)),
                Err(error) => {
                    resync = true;
                    last_answer = format!("{error:#}");
                    Ok(None)
                }
            }
        },
    );
    match waited {
        Ok(Readiness::Stuck {
            system_state,
            unready,
        }) => bail!(
            "systemd finished starting the system ({system_state}) without {}; {}",
            unready.join(", "),
            failed_units(agent)
        ),
        // Waiting never ends the wait: this is Ready.
        Ok(_) => Ok(()),
        Err(error) => Err(error.context(format!(
            "last status: {last_answer}; {}",
            failed_units(agent)
        ))),
    }
}

/// The node's failed units, for an error message; never fails itself.
fn failed_units(agent: &mut Agent) -> String {
    let deadline = Instant::now() + POLL_TIMEOUT;
    let listing = agent.sync(SYNC_WAIT).and_then(|synced| {
        ensure!(synced, "the guest agent no longer answers");
        guest::failed_units(agent, deadline)
    });
    match listing {
        Ok(units) if units.is_empty() => "no failed units".to_owned(),
        Ok(units) => format!("failed units: {}", units.join(", ")),
        Err(error) => format!("failed units unknown: {error:#}"),
    }
}

impl ReadyNode {
    /// Powers the node off through the agent and waits for QEMU to exit cleanly.
    pub fn shutdown(mut self) -> Result<()> {
        self.agent.shutdown()?;
        let status = self
            .machine
            .wait_exit(Instant::now() + SHUTDOWN_TIMEOUT)
            .context("the node did not power off")?;
        ensure!(
            status.success(),
            "QEMU ended with {status} after the power-off"
        );
        Ok(())
    }
}

/// Calls `attempt` every `interval` until it yields a value, failing when QEMU exits or
/// `deadline` passes first.
fn wait_until<T>(
    machine: &mut Machine,
    deadline: Instant,
    interval: Duration,
    what: &str,
    mut attempt: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    loop {
        let attempted = attempt();
        if attempted.is_err() {
            // QEMU going away (a reset ends it) explains a failed attempt, such as a closed
            // agent socket, better than the attempt's own error; give it a moment to finish.
            let _ = machine.wait_exit(Instant::now() + EXIT_GRACE);
        }
        machine
            .ensure_running()
            .with_context(|| format!("while waiting for {what}"))?;
        if let Some(value) = attempted? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!(
                "gave up waiting for {what} after {:.0} s",
                machine.started().elapsed().as_secs_f64()
            );
        }
        thread::sleep(interval);
    }
}

/// One line about a boot in progress. In interactive mode it shares the terminal with the
/// console; QEMU's raw mode keeps output processing on, so `\n` still returns the carriage.
pub fn progress(label: &str, text: &str) {
    println!("[qemu {label}] {text}");
}
