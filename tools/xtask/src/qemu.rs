//! `cargo xtask qemu`: boots the built SD card image in `qemu-system-aarch64 -M virt` through
//! Debian's u-boot-qemu and the card's own boot script (never a hand-passed kernel), waits until
//! every pew service in the image is ready, prints how long each stage took, and leaves the node
//! running on the terminal while its demo tasks' outcomes are reported. `--check` instead runs
//! the A/B evidence sequence ([`check_from_scratch`]); `exec` runs a command on the running
//! node ([`exec`]).
//!
//! Each run works on a copy of the image in a run directory under `out/qemu/`, extended to a
//! card size so first boot's growth of the data partition is exercised. The node is observed
//! through its serial console (logged to a file) and through Debian's QEMU guest agent, which
//! the image carries and which starts only when QEMU provides its port.

mod agent;
mod base64;
mod boot;
pub mod bootfat;
mod check;
pub mod console;
mod exec;
mod guest;
pub mod machine;
mod mbr;
mod pool;
mod update;
mod verdict;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use pew_bus::Service;
use pew_image::bootscript::PayloadLocation;
use pew_image::bootstate::{Attempts, ENV_FILE_NAME, Slot};
use pew_image::layout::{PartitionRole, SECTOR_BYTES};
use pew_image::recipe::Recipe;

use crate::image::{self, ToolsTree};
use crate::{host, process};
use agent::Agent;
use boot::BootSettings;
pub use boot::Milestones;
use bootfat::{BootFat, Mtools, describe};
use machine::{ConsoleMode, MachineSpec};
use mbr::{MbrPartition, PartitionTable};
use pool::SharedPool;
use verdict::Expectation;

/// Under TCG on a loaded two-core host a boot to ready has taken up to ~4 minutes.
const DEFAULT_TIMEOUT_SECONDS: u64 = 600;
/// A "4 GB" card, the smallest the image supports, rounded up: room for first boot to grow
/// the data partition by more than a GiB.
const DEFAULT_CARD_MIB: u64 = 4096;

/// Debian's u-boot-qemu inside the tools tree.
const U_BOOT: &str = "usr/lib/u-boot/qemu_arm64/u-boot.bin";

/// What a run directory's name starts with, under [`runs_dir`].
const RUN_PREFIX: &str = "run-";
/// The guest agent's socket in a run directory.
const AGENT_SOCKET: &str = "agent.sock";

/// Where the run directories are.
fn runs_dir() -> PathBuf {
    process::workspace_root().join("out/qemu")
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct QemuArgs {
    #[command(subcommand)]
    action: Option<QemuAction>,
    /// Run the A/B evidence non-interactively (boot A; install the build's update into B,
    /// activate it and boot; activate A and boot) and fail on any deviation.
    #[arg(long)]
    check: bool,
    /// The raw disk image to boot [default: the one `cargo xtask image` built].
    #[arg(long)]
    image: Option<PathBuf>,
    /// Seconds each boot may take from QEMU's start to every service ready.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECONDS)]
    timeout: u64,
    /// Size of the emulated SD card; first boot grows the data partition to fill it.
    #[arg(long, default_value_t = DEFAULT_CARD_MIB)]
    card_mib: u64,
    /// Keep the run directory (card copy, console logs) after a successful run.
    #[arg(long)]
    keep: bool,
    /// Tools tree providing mtools and u-boot-qemu [default: the image build's].
    #[arg(long)]
    tools_tree: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum QemuAction {
    /// Run a command on the running emulated node, e.g. `cargo xtask qemu exec -- pewctl status`.
    ///
    /// The command runs as root on the node, through its guest agent; its output is printed
    /// and its exit status becomes this command's.
    Exec(exec::ExecArgs),
}

impl QemuArgs {
    /// A boot as the program, not a user, asks for it: every option at its default, on `image`
    /// or, without one, on the image built for this commit.
    fn unattended(check: bool, image: Option<&Path>) -> Self {
        Self {
            action: None,
            check,
            image: image.map(Path::to_owned),
            timeout: DEFAULT_TIMEOUT_SECONDS,
            card_mib: DEFAULT_CARD_MIB,
            keep: false,
            tools_tree: None,
        }
    }
}

/// Entry point of `cargo xtask qemu`.
pub fn run(args: QemuArgs) -> Result<()> {
    match &args.action {
        Some(QemuAction::Exec(exec)) => exec::run(exec, &runs_dir()),
        None => boot_and_run(&args),
    }
}

fn boot_and_run(args: &QemuArgs) -> Result<()> {
    host::ensure_commands(&machine::QEMU_TOOLS)?;
    let setup = Setup::prepare(args)?;
    let result = if args.check {
        check::run(&setup)
    } else {
        interactive(&setup)
    };
    setup.finish(result.is_err() || args.keep);
    result
}

/// The A/B evidence sequence exactly as `cargo xtask qemu --check` runs it, from an empty
/// `out/` too: the image for this commit (with the tools tree) is built first unless it is
/// already (`cargo xtask test`).
pub fn check_from_scratch() -> Result<()> {
    run(QemuArgs::unattended(true, None))
}

/// Boots `image` once, unattended, on a fresh card of the default size until every service is
/// ready, powers it off, and returns when each stage was reached (`cargo xtask bench image`).
pub fn boot_to_ready_once(image: &Path, label: &str) -> Result<Milestones> {
    host::ensure_commands(&machine::QEMU_TOOLS)?;
    let setup = Setup::prepare(&QemuArgs::unattended(false, Some(image)))?;
    let result =
        boot::boot_to_ready(&setup.boot_settings(label, ConsoleMode::LogOnly)).and_then(|node| {
            let milestones = node.milestones;
            node.shutdown()?;
            Ok(milestones)
        });
    setup.finish(result.is_err());
    result
}

/// Everything the boots share: the image and what was read from it, the recipe's services,
/// the firmware and tools, and the run directory with the card copy.
struct Setup {
    /// How the image's partition table differs from the recipe's layout.
    layout_differences: Vec<String>,
    /// The image booted, beside which the build left its OTA payload.
    image: PathBuf,
    table: PartitionTable,
    boot_partition: MbrPartition,
    /// As the image ships it, before first boot grows it.
    data_partition: MbrPartition,
    services: Vec<&'static Service>,
    attempts: Attempts,
    /// Where the boot script loads each slot's kernel from.
    payload: PayloadLocation,
    u_boot: PathBuf,
    tools: ToolsTree,
    run_dir: tempfile::TempDir,
    run_disk: PathBuf,
    card_sectors: u64,
    timeout: Duration,
    /// The workerpool the node's pew-workerd works for, when the image has it.
    pool: Option<SharedPool>,
}

impl Setup {
    fn prepare(args: &QemuArgs) -> Result<Self> {
        let root = process::workspace_root();
        let recipe = Recipe::load(&root.join("image/pew.toml"))?;
        let services = guest::included_services(&recipe.recipe.services.include)?;
        // The image first: building it builds the tools tree too.
        let image = match &args.image {
            Some(path) => path.clone(),
            None => image::ensure_built()?,
        };
        let tools = match &args.tools_tree {
            Some(path) => ToolsTree::new(path.clone()),
            None => image::tools_tree()?,
        };
        let u_boot = tools.path(U_BOOT);
        ensure!(
            u_boot.is_file(),
            "the tools tree has no u-boot-qemu ({})",
            u_boot.display()
        );
        let table = PartitionTable::read(&image)?;
        let layout_differences = table.differences(&recipe.layout);
        for difference in &layout_differences {
            println!(
                "warning: {} differs from image/pew.toml: {difference}",
                image.display()
            );
        }
        let boot_partition = *table.partition(PartitionRole::Boot.number())?;
        let data_partition = *table.partition(PartitionRole::Data.number())?;

        let runs = runs_dir();
        std::fs::create_dir_all(&runs)
            .with_context(|| format!("cannot create {}", runs.display()))?;
        let run_dir = tempfile::Builder::new()
            .prefix(RUN_PREFIX)
            .tempdir_in(&runs)
            .context("cannot create a run directory")?;
        let run_disk = run_dir.path().join("card.img");
        let card_bytes = args
            .card_mib
            .checked_mul(1 << 20)
            .context("--card-mib is too large")?;
        machine::prepare_run_disk(&image, &run_disk, card_bytes)?;
        println!(
            "booting {} on a {} MiB card copy in {}",
            image.display(),
            args.card_mib,
            run_dir.path().display()
        );
        let pool = if services.iter().any(|service| service.unit == WORKER_UNIT) {
            Some(Mutex::new(pool::start(&run_dir.path().join("workerpool"))?))
        } else {
            None
        };
        let setup = Self {
            layout_differences,
            image,
            table,
            boot_partition,
            data_partition,
            services,
            attempts: recipe.recipe.boot.attempts,
            payload: recipe.recipe.boot.payload,
            u_boot,
            tools,
            run_dir,
            run_disk,
            card_sectors: card_bytes / SECTOR_BYTES,
            timeout: Duration::from_secs(args.timeout),
            pool,
        };
        if let Some(pool) = &setup.pool {
            pool::provision(&pool::lock(pool), &setup.boot_fat(), setup.run_dir())?;
        }
        Ok(setup)
    }

    /// Publishes one task on the running node and waits until it is COMPLETED; the line
    /// returned says how long it took and what the app saw, or why it did not complete.
    fn run_task(&self, agent: &mut Agent) -> Option<Result<String>> {
        let pool = self.pool.as_ref()?;
        let started = Instant::now();
        let mut pool = pool::lock(pool);
        let outcome = pool::publish(&mut pool, agent, 1, "probe").and_then(|publication| {
            let task = publication.tasks.first().context("the deal has no task")?;
            let outcome = pool.wait(task, TASK_TIMEOUT)?;
            Ok((outcome, publication.published.elapsed()))
        });
        Some(outcome.and_then(|(outcome, elapsed)| {
            ensure!(
                outcome.completed(),
                "{}; worker journal:\n{}",
                pool::describe_outcome(&outcome, elapsed),
                worker_journal(agent)
            );
            let missing = pool::sandbox_deviations(&outcome.stdout);
            ensure!(
                missing.is_empty(),
                "task {} completed, but the app did not report {} from its container; it reported:\n{}\nworker journal:\n{}",
                outcome.task,
                missing.join(", "),
                outcome.stdout,
                worker_journal(agent)
            );
            Ok(format!(
                "task {} COMPLETED {:.1} s after publication ({:.1} s with the app load), contributed, revealed and finalized on-chain; the app ran sandboxed:\n{}",
                outcome.task,
                elapsed.as_secs_f64(),
                started.elapsed().as_secs_f64(),
                pool::indented(&outcome.stdout)
            ))
        }))
    }

    /// Installs the build's OTA payload into `slot` of the card, as pew-updated does before
    /// it activates a slot.
    fn install_update(&self, slot: Slot, fat: &BootFat) -> Result<()> {
        let ota = update::OtaPayload::beside(&self.image)?;
        let partition = self.table.partition(slot.partition().number())?;
        ota.install(
            slot,
            &self.run_disk,
            partition,
            self.payload,
            fat,
            &self.tools,
        )
        .with_context(|| format!("cannot install {} into slot {slot}", ota.system.display()))
    }

    /// Removes the run directory, or keeps it (and says where) for a look at what happened.
    fn finish(self, keep: bool) {
        if keep {
            println!("run directory kept: {}", self.run_dir.keep().display());
        }
    }

    fn run_dir(&self) -> &Path {
        self.run_dir.path()
    }

    /// The card copy's boot partition, written only with the pinned mtools.
    fn boot_fat(&self) -> BootFat {
        BootFat::new(
            &self.run_disk,
            self.boot_partition.start_bytes(),
            Mtools::Tree(self.tools.clone()),
        )
    }

    /// What a boot of this card that the state file sends to `slot` must show.
    fn expectation(&self, slot: Slot) -> Expectation {
        Expectation {
            slot,
            card_sectors: self.card_sectors,
            data_in_image: self.data_partition,
        }
    }

    fn boot_settings(&self, label: &str, console: ConsoleMode) -> BootSettings<'_> {
        let dir = self.run_dir();
        BootSettings {
            spec: MachineSpec {
                u_boot: self.u_boot.clone(),
                disk: self.run_disk.clone(),
                agent_socket: dir.join(AGENT_SOCKET),
                console_log: dir.join(format!("boot-{label}.console.log")),
                console,
            },
            stderr_log: dir.join(format!("boot-{label}.qemu.log")),
            services: &self.services,
            data_partition: self.data_partition.number,
            timeout: self.timeout,
            label: label.to_owned(),
        }
    }
}

/// Tasks published for the node to work on in an interactive run.
const DEMO_TASKS: u32 = 3;
/// pew-workerd's unit, whose presence in the image brings the workerpool along.
const WORKER_UNIT: &str = "pew-workerd";
/// From publication to COMPLETED on an emulated node (TCG): the engine starting, two
/// transactions, the upload; a few minutes at most.
const TASK_TIMEOUT: Duration = Duration::from_secs(600);

/// The worker's last journal lines, for a task that did not complete.
fn worker_journal(agent: &mut Agent) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    match agent.exec(
        "/usr/bin/journalctl",
        &["--unit", WORKER_UNIT, "--lines", "60", "--no-pager"],
        deadline,
    ) {
        Ok(output) => output.stdout_text(),
        Err(error) => format!("(unavailable: {error:#})"),
    }
}

/// Boots once with the console on the terminal, reports, and leaves the node running until
/// QEMU is quit.
fn interactive(setup: &Setup) -> Result<()> {
    let fat = setup.boot_fat();
    let before = fat.read_state()?;
    let selection = before.state.select(setup.attempts);
    println!(
        "{ENV_FILE_NAME} reads {}: the boot script will pick slot {}",
        describe(&before.state),
        selection.slot
    );
    let settings = setup.boot_settings("1", ConsoleMode::Terminal);
    let node = boot::boot_to_ready(&settings)?;
    let milestones = node.milestones;
    let expectation = setup.expectation(selection.slot);
    let mut lines = vec![
        format!(
            "from QEMU start: slot {} line {:.1} s, agent {:.1} s, all services ready {:.1} s",
            node.booted_slot,
            milestones.slot_line.as_secs_f64(),
            milestones.agent.as_secs_f64(),
            milestones.ready.as_secs_f64()
        ),
        verdict::describe_report(&node.report),
    ];
    lines.extend(
        verdict::boot_deviations(&expectation, node.booted_slot, &node.report)
            .into_iter()
            .map(|deviation| format!("DEVIATION: {deviation}")),
    );
    lines.push(format!(
        "node running: serial console here (Ctrl-A X quits, Ctrl-A C monitor), guest agent on {}, host at 10.0.2.2 from the guest",
        settings.spec.agent_socket.display()
    ));
    let label = settings.label.as_str();
    let progress = |text: &str| boot::progress(label, text);
    for line in lines {
        progress(&line);
    }
    let mut agent = node.agent;
    let demo = setup.pool.as_ref().and_then(|pool| {
        match pool::publish(&mut pool::lock(pool), &mut agent, DEMO_TASKS, "hello pew") {
            Ok(publication) => {
                progress(&format!(
                    "{DEMO_TASKS} demo tasks published to the node's workerpool: {}; each one's outcome follows when it ends",
                    publication.tasks.join(", ")
                ));
                Some((pool, publication))
            }
            Err(error) => {
                progress(&format!("DEVIATION: no demo tasks: {error:#}"));
                None
            }
        }
    });
    // The agent connection is closed so that other clients (`cargo xtask qemu exec`) can use it.
    drop(agent);
    if let Err(error) = share_with_sudo_user(setup.run_dir(), &settings.spec.agent_socket) {
        progress(&format!("warning: {error:#}"));
    }
    progress(
        "run commands on the node from another terminal: cargo xtask qemu exec -- pewctl status",
    );
    let mut machine = node.machine;
    let stop = AtomicBool::new(false);
    let status = thread::scope(|scope| {
        if let Some((pool, publication)) = &demo {
            let stop = &stop;
            scope.spawn(move || {
                let followed = pool::follow(pool, publication, TASK_TIMEOUT, stop, progress);
                if let Err(error) = followed {
                    progress(&format!("demo tasks no longer followed: {error:#}"));
                }
            });
        }
        let status = machine.wait();
        // QEMU quit before every task ended: following stops within a second.
        stop.store(true, Ordering::Relaxed);
        status
    })?;
    println!("QEMU exited ({status})");
    Ok(())
}

/// A run that became root through sudo (building the image needs root) hands its directory
/// and agent socket to the user who ran sudo, so that `cargo xtask qemu exec` needs no root.
fn share_with_sudo_user(run_dir: &Path, socket: &Path) -> Result<()> {
    let (Ok(uid), Ok(gid)) = (std::env::var("SUDO_UID"), std::env::var("SUDO_GID")) else {
        return Ok(());
    };
    if !host::is_root() {
        return Ok(());
    }
    let id = |text: &str, variable: &str| {
        text.parse::<u32>()
            .with_context(|| format!("{variable} is {text:?}, not an id"))
    };
    let (uid, gid) = (id(&uid, "SUDO_UID")?, id(&gid, "SUDO_GID")?);
    for path in [run_dir, socket] {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).with_context(|| {
            format!(
                "cannot hand {} to the user who ran sudo; `cargo xtask qemu exec` will need sudo",
                path.display()
            )
        })?;
    }
    Ok(())
}
