//! `cargo xtask qemu`: boots the built SD card image in `qemu-system-aarch64 -M virt` through
//! Debian's u-boot-qemu and the card's own boot script (never a hand-passed kernel), waits until
//! every pew service in the image is ready, prints how long each stage took, and leaves the node
//! running on the terminal. `--check` instead runs the A/B evidence sequence ([`check`]).
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
mod guest;
pub mod machine;
mod mbr;
mod pool;
mod update;
mod verdict;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use pew_bus::Service;
use pew_image::bootscript::PayloadLocation;
use pew_image::bootstate::{Attempts, ENV_FILE_NAME, Slot};
use pew_image::layout::{PartitionRole, SECTOR_BYTES};
use pew_image::recipe::Recipe;

use crate::image::{self, ToolsTree};
use crate::workerpool::{DevWorkerpool, XS_CATEGORY};
use crate::{host, process};
use agent::Agent;
use boot::BootSettings;
pub use boot::Milestones;
use bootfat::{BootFat, Mtools, describe};
use machine::{ConsoleMode, MachineSpec};
use mbr::{MbrPartition, PartitionTable};
use verdict::Expectation;

/// Under TCG on a loaded two-core host a boot to ready has taken up to ~4 minutes.
const DEFAULT_TIMEOUT_SECONDS: u64 = 600;
/// A "4 GB" card, the smallest the image supports, rounded up: room for first boot to grow
/// the data partition by more than a GiB.
const DEFAULT_CARD_MIB: u64 = 4096;

/// Debian's u-boot-qemu inside the tools tree.
const U_BOOT: &str = "usr/lib/u-boot/qemu_arm64/u-boot.bin";

#[derive(clap::Args)]
pub struct QemuArgs {
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

/// Entry point of `cargo xtask qemu`.
pub fn run(args: QemuArgs) -> Result<()> {
    host::ensure_commands(&machine::QEMU_TOOLS)?;
    let setup = Setup::prepare(&args)?;
    let result = if args.check {
        check::run(&setup)
    } else {
        interactive(&setup)
    };
    setup.finish(result.is_err() || args.keep);
    result
}

/// Boots `image` once, unattended, on a fresh card of the default size until every service is
/// ready, powers it off, and returns when each stage was reached (`cargo xtask bench image`).
/// The A/B evidence sequence (`--check`) on `image`, as `cargo xtask test` runs it.
pub fn check(image: &Path) -> Result<()> {
    run(QemuArgs {
        check: true,
        image: Some(image.to_owned()),
        timeout: DEFAULT_TIMEOUT_SECONDS,
        card_mib: DEFAULT_CARD_MIB,
        keep: false,
        tools_tree: None,
    })
}

pub fn boot_to_ready_once(image: &Path, label: &str) -> Result<Milestones> {
    host::ensure_commands(&machine::QEMU_TOOLS)?;
    let setup = Setup::prepare(&QemuArgs {
        check: false,
        image: Some(image.to_owned()),
        timeout: DEFAULT_TIMEOUT_SECONDS,
        card_mib: DEFAULT_CARD_MIB,
        keep: false,
        tools_tree: None,
    })?;
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
    pool: Option<RefCell<DevWorkerpool>>,
}

impl Setup {
    fn prepare(args: &QemuArgs) -> Result<Self> {
        let root = process::workspace_root();
        let recipe = Recipe::load(&root.join("image/pew.toml"))?;
        let services = guest::included_services(&recipe.recipe.services.include)?;
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
        let image = match &args.image {
            Some(path) => path.clone(),
            None => image::ensure_built()?,
        };
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

        let runs = root.join("out/qemu");
        std::fs::create_dir_all(&runs)
            .with_context(|| format!("cannot create {}", runs.display()))?;
        let run_dir = tempfile::Builder::new()
            .prefix("run-")
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
            Some(RefCell::new(pool::start(
                &run_dir.path().join("workerpool"),
            )?))
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
            pool::provision(&pool.borrow(), &setup.boot_fat(), setup.run_dir())?;
        }
        Ok(setup)
    }

    /// The arm64 test app loaded into the running node's engine and `tasks` tasks of it
    /// published (`args`: the app's arguments); returns their ids, or none without a pool.
    fn publish_tasks(&self, agent: &mut Agent, tasks: u32, args: &str) -> Result<Vec<String>> {
        let Some(pool) = &self.pool else {
            return Ok(Vec::new());
        };
        let mut pool = pool.borrow_mut();
        pool::load_app(&pool, agent).context("cannot load the test app into the node")?;
        pool.deal(tasks, XS_CATEGORY, args)
    }

    /// Publishes one task on the running node and waits until it is COMPLETED; the line
    /// returned says how long it took and what the app saw, or why it did not complete.
    fn run_task(&self, agent: &mut Agent) -> Option<Result<String>> {
        let pool = self.pool.as_ref()?;
        let started = std::time::Instant::now();
        let outcome = self.publish_tasks(agent, 1, "probe").and_then(|tasks| {
            let task = tasks.first().context("the deal has no task")?;
            pool.borrow_mut().wait(task, TASK_TIMEOUT)
        });
        Some(outcome.and_then(|outcome| {
            ensure!(
                outcome.status.as_deref() == Some("COMPLETED"),
                "task {} ended {:?} after {:?}; worker journal:\n{}",
                outcome.task,
                outcome.status,
                outcome.statuses,
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
                "task {} COMPLETED {:.1} s after publication ({:.1} s with the app load), contributed, revealed and finalized on-chain; the app ran sandboxed:\n    {}",
                outcome.task,
                outcome.seconds,
                started.elapsed().as_secs_f64(),
                outcome.stdout.trim().lines().collect::<Vec<_>>().join("\n    ")
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
                agent_socket: dir.join("agent.sock"),
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
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
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
    for line in lines {
        boot::progress(&settings.label, &line);
    }
    let mut agent = node.agent;
    match setup.publish_tasks(&mut agent, DEMO_TASKS, "hello pew") {
        Ok(tasks) if !tasks.is_empty() => boot::progress(
            &settings.label,
            &format!(
                "{DEMO_TASKS} demo tasks published to the node's workerpool: {}",
                tasks.join(", ")
            ),
        ),
        Ok(_) => {}
        Err(error) => boot::progress(
            &settings.label,
            &format!("DEVIATION: no demo tasks: {error:#}"),
        ),
    }
    let mut machine = node.machine;
    // The agent connection is closed so that other clients (socat, virsh-style tools) can use it.
    drop(agent);
    let status = machine.wait()?;
    println!("QEMU exited ({status})");
    Ok(())
}
