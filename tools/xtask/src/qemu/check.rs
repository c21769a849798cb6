//! `cargo xtask qemu --check`: the A/B evidence on the real image. Boot 1 runs the card as
//! flashed (slot A); the host then installs the build's OTA payload into slot B and activates
//! it in the state file, as pew-updated will, and boot 2 must come up on B; activating A again,
//! boot 3 must come up on A. Every boot must reach ready, and the state file U-Boot leaves must be what
//! [`BootState::select`] predicts.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use pew_image::bootstate::{BootState, Selection, Slot};

use super::Setup;
use super::boot::{self, Milestones};
use super::bootfat::describe;
use super::machine::ConsoleMode;
use super::verdict;

/// One boot of the sequence: which slot the host activates first (None: the card as flashed),
/// whether it installs the update into that slot before, and which slot must then come up.
struct Step {
    label: &'static str,
    activate: Option<Slot>,
    install: bool,
    slot: Slot,
    /// Whether the node must complete a task before it is powered off.
    task: bool,
}

const STEPS: [Step; 3] = [
    Step {
        label: "1",
        activate: None,
        install: false,
        slot: Slot::A,
        task: true,
    },
    Step {
        label: "2",
        activate: Some(Slot::B),
        // The image ships slot B empty.
        install: true,
        slot: Slot::B,
        task: false,
    },
    Step {
        label: "3",
        activate: Some(Slot::A),
        install: false,
        slot: Slot::A,
        task: false,
    },
];

/// One boot as predicted and as observed.
struct Record {
    label: &'static str,
    before: BootState,
    selection: Selection,
    booted: Slot,
    milestones: Milestones,
    report_line: String,
    after: BootState,
    deviations: Vec<String>,
}

pub fn run(setup: &Setup) -> Result<()> {
    let fat = setup.boot_fat();
    let mut records = Vec::new();
    for step in &STEPS {
        let mut deviations = Vec::new();
        let read = fat.read_state()?;
        if step.activate.is_none() {
            // What the image itself ships is checked once, on the card as flashed.
            deviations.extend(setup.layout_differences.iter().map(|difference| {
                format!("the image's partition table differs from image/pew.toml: {difference}")
            }));
            deviations.extend(
                read.issues
                    .iter()
                    .map(|issue| format!("the image's state file: {issue}")),
            );
        }
        let before = match step.activate {
            None => read.state,
            Some(slot) => {
                if step.install {
                    setup.install_update(slot, &fat)?;
                    boot::progress(
                        step.label,
                        &format!("host installed the update into slot {slot}"),
                    );
                }
                let activated = read.state.activate(slot, setup.attempts);
                fat.write_state(&activated, setup.run_dir())?;
                boot::progress(
                    step.label,
                    &format!("host activated slot {slot}: {}", describe(&activated)),
                );
                activated
            }
        };
        let selection = before.select(setup.attempts);
        if selection.slot != step.slot {
            deviations.push(format!(
                "the state file {} selects slot {}, the sequence needs {}",
                describe(&before),
                selection.slot,
                step.slot
            ));
        }

        let settings = setup.boot_settings(step.label, ConsoleMode::LogOnly);
        let console_log = settings.spec.console_log.clone();
        let outcome = boot::boot_to_ready(&settings).and_then(|mut node| {
            let expectation = setup.expectation(selection.slot);
            deviations.extend(verdict::boot_deviations(
                &expectation,
                node.booted_slot,
                &node.report,
            ));
            if step.task {
                match setup.run_task(&mut node.agent) {
                    Some(Ok(line)) => boot::progress(step.label, &line),
                    Some(Err(error)) => deviations.push(format!("{error:#}")),
                    None => {}
                }
            }
            let summary = (
                node.booted_slot,
                node.milestones,
                verdict::describe_report(&node.report),
            );
            node.shutdown()
                .with_context(|| format!("console log: {}", console_log.display()))?;
            Ok(summary)
        });
        let (booted, milestones, report_line) = match outcome {
            Ok(summary) => summary,
            Err(error) => {
                print_table(&records);
                return Err(error.context(format!("boot {} failed", step.label)));
            }
        };
        let read_after = fat.read_state()?;
        deviations.extend(verdict::state_deviations(&selection.state, &read_after));
        for deviation in &deviations {
            boot::progress(
                step.label,
                &format!(
                    "DEVIATION: {deviation} (console log: {})",
                    console_log.display()
                ),
            );
        }
        records.push(Record {
            label: step.label,
            before,
            selection,
            booted,
            milestones,
            report_line,
            after: read_after.state,
            deviations,
        });
    }

    print_table(&records);
    let failed: Vec<&str> = records
        .iter()
        .filter(|record| !record.deviations.is_empty())
        .map(|record| record.label)
        .collect();
    if !failed.is_empty() {
        bail!(
            "boot(s) {} deviated from the expected A/B behaviour; consoles in {}",
            failed.join(", "),
            setup.run_dir().display()
        );
    }
    println!("qemu check passed: A, then B after activating it, then A again, each to ready");
    Ok(())
}

fn print_table(records: &[Record]) {
    if records.is_empty() {
        return;
    }
    let mut text = format!(
        "\n{:<4} {:<7} {:>4} {:>6} {:>8} {:>8} {:>8} {:<7} {:<7} {}\n",
        "boot",
        "before",
        "want",
        "booted",
        "script s",
        "agent s",
        "ready s",
        "after",
        "result",
        "node"
    );
    for record in records {
        let _ = writeln!(
            text,
            "{:<4} {:<7} {:>4} {:>6} {:>8.1} {:>8.1} {:>8.1} {:<7} {:<7} {}",
            record.label,
            describe(&record.before),
            record.selection.slot,
            record.booted,
            record.milestones.slot_line.as_secs_f64(),
            record.milestones.agent.as_secs_f64(),
            record.milestones.ready.as_secs_f64(),
            describe(&record.after),
            if record.deviations.is_empty() {
                "ok"
            } else {
                "DEVIATES"
            },
            record.report_line,
        );
    }
    print!("{text}");
}
