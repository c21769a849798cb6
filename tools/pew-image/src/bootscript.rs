//! The U-Boot boot script (`boot.cmd`; the build wraps it with `mkimage -T script` into
//! `boot.scr`) that implements A/B with boot counting, identical on the Pi (u-boot-rpi) and on
//! QEMU `-M virt` (u-boot-qemu).
//!
//! U-Boot's distro boot finds `boot.scr` on the bootable FAT partition and sets `devtype` and
//! `devnum` to the disk it came from. The script then
//! 1. arms the hardware watchdog, if configured, so a hang anywhere after it becomes a reset;
//! 2. imports the slot state ([`crate::bootstate`]) from `pewboot.env` on the boot partition;
//! 3. picks the first slot in `PEW_BOOT_ORDER` with attempts left, or, if none has any, refills
//!    both counters and picks the primary (a node must never stop in U-Boot);
//! 4. decrements that slot's counter and writes the file back **before** loading anything, so a
//!    power cut, hang or bad kernel during the trial boot costs an attempt;
//! 5. loads kernel, initramfs and the board's DTB from the slot and boots with
//!    `pew.slot=<A|B> root=PARTUUID=<signature>-0N rootfstype=erofs ro` and the recipe's
//!    arguments. A slot whose files cannot be loaded resets the board: another attempt gone.
//!
//! The slot choice is the same rule as [`crate::bootstate::BootState::select`], which is
//! tested exhaustively; the tests here check that the generated text encodes it, and
//! `cargo xtask uboot-check` boots it on Debian's U-Boot under QEMU and compares run by run.
//!
//! Unverified on the real U-Boot builds, hence parameters: whether Debian's U-Boot reads EROFS
//! ([`PayloadLocation`]), which watchdog driver it has ([`Watchdog`]), and the `${board}` names
//! it sets ([`BoardArgs`]).

use crate::bootstate::{Attempts, ENV_FILE_NAME, ORDER_VARIABLE, Slot, state_variables};
use crate::layout::{DiskLayout, PartitionRole};

/// Kernel image name inside a slot's payload directory.
pub const KERNEL_FILE: &str = "vmlinuz";
/// Initramfs name inside a slot's payload directory.
pub const INITRD_FILE: &str = "initrd.img";
/// Directory of the kernel's DTBs inside a slot's payload directory, laid out as the kernel
/// package ships them (`broadcom/bcm2711-rpi-4-b.dtb`), which is the form of U-Boot's `${fdtfile}`.
pub const DTB_DIRECTORY: &str = "dtbs";

/// What the script prints once the attempt is saved, followed by the slot letter; test harnesses
/// and a serial console read the chosen slot from it ([`booted_slot`]).
pub const BOOTING_MESSAGE: &str = "pew: booting slot ";
/// What the script prints when every slot had used its attempts and both were refilled.
pub const REFILL_MESSAGE: &str = "pew: every slot used its attempts";
/// What the script prints when `booti` returns, i.e. the kernel was loaded but refused.
pub const BOOTI_FAILED_MESSAGE: &str = "pew: booti failed";

/// The slot a boot script run chose, read from U-Boot's console output.
pub fn booted_slot(console: &str) -> Option<Slot> {
    let after = &console[console.find(BOOTING_MESSAGE)? + BOOTING_MESSAGE.len()..];
    Slot::ALL
        .into_iter()
        .find(|slot| after.starts_with(slot.letter()))
}

/// Where U-Boot finds each slot's kernel, initramfs and DTBs.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadLocation {
    /// In `/boot/pew/` of the slot's EROFS filesystem: a slot is one self-contained image.
    /// Needs U-Boot built with `CONFIG_FS_EROFS`.
    SystemSlot,
    /// In `/slot-a/` and `/slot-b/` on the boot FAT partition, which every U-Boot reads; an
    /// update then writes the slot's payload there too.
    BootPartition,
}

impl PayloadLocation {
    /// The partition holding `slot`'s payload.
    pub fn partition(self, slot: Slot) -> PartitionRole {
        match self {
            Self::SystemSlot => slot.partition(),
            Self::BootPartition => PartitionRole::Boot,
        }
    }

    /// The absolute directory of `slot`'s payload on that partition.
    pub fn directory(self, slot: Slot) -> String {
        match self {
            Self::SystemSlot => "/boot/pew".to_owned(),
            Self::BootPartition => format!("/slot-{}", slot.letter().to_lowercase()),
        }
    }
}

/// Which device tree Linux gets.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DtbSource {
    /// `${fdtfile}` from the slot's DTB directory when U-Boot names one (the Pi's U-Boot does),
    /// so the DTB is updated with its kernel; otherwise, or if that file is missing, the loader's
    /// own tree `${fdtcontroladdr}` (QEMU generates one for `-M virt`).
    SlotThenLoader,
    /// Always `${fdtcontroladdr}`. On the Pi that is the tree the firmware loaded from the boot
    /// partition with `config.txt`'s `dtoverlay=` lines applied.
    Loader,
}

/// Arming the hardware watchdog from U-Boot (`wdt dev` / `wdt start`). If the command or the
/// device is missing, the script says so and carries on.
#[derive(Clone, PartialEq, Eq, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watchdog {
    /// U-Boot device name, as `wdt list` prints it.
    pub device: String,
    /// Must cover loading kernel and initramfs until Linux's driver takes over pinging.
    pub timeout_ms: u32,
}

/// Kernel arguments added on one kind of board, chosen by U-Boot's `${board}` variable
/// (`rpi`, `qemu-arm`); for example `pew.simulate` under QEMU.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BoardArgs {
    pub board: String,
    pub args: KernelArgs,
}

/// Kernel command-line words that can be pasted into the script's `setenv bootargs "…"`.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct KernelArgs(String);

/// Why a kernel command line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelArgsError {
    #[error("{0:?} would be interpreted by U-Boot's shell (no quotes, `$`, `\\` or line breaks)")]
    ShellCharacter(char),
    #[error("`{0}` is set by the boot script for the chosen slot")]
    Reserved(String),
}

impl KernelArgs {
    pub fn new(text: &str) -> Result<Self, KernelArgsError> {
        if let Some(c) = text
            .chars()
            .find(|c| matches!(c, '"' | '$' | '\\' | '\n' | '\r' | '`'))
        {
            return Err(KernelArgsError::ShellCharacter(c));
        }
        let reserved = |word: &str| {
            ["root=", "rootfstype=", "pew.slot="]
                .iter()
                .any(|prefix| word.starts_with(prefix))
                || word == "ro"
                || word == "rw"
        };
        if let Some(word) = text.split_whitespace().find(|word| reserved(word)) {
            return Err(KernelArgsError::Reserved(word.to_owned()));
        }
        Ok(Self(text.split_whitespace().collect::<Vec<_>>().join(" ")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Everything the generated script depends on.
#[derive(Clone, Debug)]
pub struct BootScriptConfig<'a> {
    pub layout: &'a DiskLayout,
    pub attempts: Attempts,
    pub payload: PayloadLocation,
    pub dtb: DtbSource,
    pub cmdline: KernelArgs,
    pub board_args: Vec<BoardArgs>,
    pub watchdog: Option<Watchdog>,
}

/// Scratch memory for the 46-byte state file. `pxefile_addr_r` is defined by every board with
/// distro boot and used only by PXE, which never runs in the same boot as this script.
const STATE_ADDRESS: &str = "${pxefile_addr_r}";

/// The `boot.cmd` text.
pub fn boot_cmd(config: &BootScriptConfig<'_>) -> String {
    let mut script = Script::default();
    let boot_partition = config.layout.partition(PartitionRole::Boot).number();
    let state_file =
        format!("${{devtype}} ${{devnum}}:{boot_partition} {STATE_ADDRESS} {ENV_FILE_NAME}");
    let variables = state_variables().join(" ");

    script.comment("pew A/B boot script, generated by pew-image from image/pew.toml: do not edit.");
    script.comment("The same script runs under the Pi's U-Boot and QEMU's. Slot state: pewboot.env, shared with pew-updated.");
    if let Some(watchdog) = &config.watchdog {
        script.blank();
        script
            .comment("Arm the watchdog first: from here on a hang resets the board, and once the");
        script.comment("counter is saved that reset costs the slot an attempt.");
        script.line(&format!(
            "if wdt dev {device}; then wdt start {ms}; else echo \"pew: no watchdog {device}\"; fi",
            device = watchdog.device,
            ms = watchdog.timeout_ms
        ));
    }

    script.blank();
    script
        .comment("Read the slot state. Clearing first makes a missing file read as an empty one.");
    for name in state_variables() {
        script.line(&format!("setenv {name}"));
    }
    script.line(&format!("if load {state_file}; then"));
    script.indented(&format!(
        "env import -t {STATE_ADDRESS} ${{filesize}} {variables}"
    ));
    script.line("fi");

    script.blank();
    script.comment(
        "pew_<slot>_next: the counter after this attempt; empty when the slot has none left.",
    );
    script.comment(
        "Hush has no arithmetic, so the decrement is a lookup; anything but one digit counts as 0.",
    );
    for slot in Slot::ALL {
        decrement_table(&mut script, slot);
    }

    script.blank();
    script.comment("The first slot in order with attempts left.");
    script.line("setenv pew_slot");
    for (index, order) in [[Slot::B, Slot::A], [Slot::A, Slot::B]]
        .into_iter()
        .enumerate()
    {
        let order_text = order.map(Slot::letter).join(" ");
        if index == 0 {
            script.line(&format!(
                "if test \"${{{ORDER_VARIABLE}}}\" = \"{order_text}\"; then"
            ));
        } else {
            script.line("else");
            script.indented_comment("Anything but \"B A\" is read as \"A B\".");
            script.indented(&format!("setenv {ORDER_VARIABLE} \"{order_text}\""));
        }
        let [first, fallback] = order;
        script.indented(&format!(
            "if test -n \"${{{}}}\"; then setenv pew_slot {first}",
            next_variable(first)
        ));
        script.indented(&format!(
            "elif test -n \"${{{}}}\"; then setenv pew_slot {fallback}",
            next_variable(fallback)
        ));
        script.indented("fi");
    }
    script.line("fi");

    let attempts = config.attempts.get();
    script.comment(
        "No slot has attempts left: refill both and try the primary again. Never stop here.",
    );
    script.line("if test -z \"${pew_slot}\"; then");
    script.indented(&format!(
        "echo \"{REFILL_MESSAGE}; refilling both to {attempts}, trying the primary\""
    ));
    for slot in Slot::ALL {
        script.indented(&format!("setenv {} {attempts}", slot.attempts_variable()));
        script.indented(&format!("setenv {} {}", next_variable(slot), attempts - 1));
    }
    script.indented(&format!(
        "if test \"${{{ORDER_VARIABLE}}}\" = \"B A\"; then setenv pew_slot B; else setenv pew_slot A; fi"
    ));
    script.line("fi");

    script.blank();
    script
        .comment("Count this attempt and save it BEFORE booting: a power cut, hang or bad kernel");
    script.comment("during the trial boot must cost the slot an attempt.");
    for slot in Slot::ALL {
        let partition = config.payload.partition(slot).number();
        script.line(&format!("if test \"${{pew_slot}}\" = {slot}; then"));
        script.indented(&format!(
            "setenv {} ${{{}}}",
            slot.attempts_variable(),
            next_variable(slot)
        ));
        script.indented(&format!("setenv pew_part {partition}"));
        script.indented(&format!(
            "setenv pew_dir {}",
            config.payload.directory(slot)
        ));
        script.indented(&format!(
            "setenv pew_root {}",
            config.layout.partuuid(slot.partition())
        ));
        script.line("fi");
    }
    script.line(&format!("env export -t {STATE_ADDRESS} {variables}"));
    script.line(&format!(
        "fatwrite {state_file} ${{filesize}} || echo \"pew: WARNING: cannot save {ENV_FILE_NAME}, this attempt is not counted\""
    ));
    script.line(&format!(
        "echo \"{BOOTING_MESSAGE}${{pew_slot}} (order ${{{ORDER_VARIABLE}}}, A left ${{{}}}, B left ${{{}}})\"",
        Slot::A.attempts_variable(),
        Slot::B.attempts_variable()
    ));

    script.blank();
    script.comment("A slot whose files cannot be loaded is a failed attempt: reset and let the counter decide.");
    let payload_file = |address: &str, file: &str| {
        format!("load ${{devtype}} ${{devnum}}:${{pew_part}} {address} ${{pew_dir}}/{file}")
    };
    script.line(&format!(
        "{} || reset",
        payload_file("${kernel_addr_r}", KERNEL_FILE)
    ));
    script.line(&format!(
        "{} || reset",
        payload_file("${ramdisk_addr_r}", INITRD_FILE)
    ));
    script.line("setenv pew_initrd_size ${filesize}");
    script.line("setenv pew_fdt ${fdtcontroladdr}");
    if config.dtb == DtbSource::SlotThenLoader {
        script.line("if test -n \"${fdtfile}\"; then");
        script.indented(&format!(
            "if {}; then setenv pew_fdt ${{fdt_addr_r}}; fi",
            payload_file("${fdt_addr_r}", &format!("{DTB_DIRECTORY}/${{fdtfile}}"))
        ));
        script.line("fi");
    }

    script.blank();
    script.line("setenv pew_board_args");
    for board in &config.board_args {
        script.line(&format!(
            "if test \"${{board}}\" = \"{}\"; then setenv pew_board_args \"{}\"; fi",
            board.board,
            board.args.as_str()
        ));
    }
    let recipe_args = if config.cmdline.as_str().is_empty() {
        String::new()
    } else {
        format!(" {}", config.cmdline.as_str())
    };
    script.line(&format!(
        "setenv bootargs \"pew.slot=${{pew_slot}} root=PARTUUID=${{pew_root}} rootfstype=erofs ro{recipe_args} ${{pew_board_args}}\""
    ));
    script.line("booti ${kernel_addr_r} ${ramdisk_addr_r}:${pew_initrd_size} ${pew_fdt}");
    script.line(&format!("echo \"{BOOTI_FAILED_MESSAGE}\""));
    script.line("reset");
    script.text
}

fn next_variable(slot: Slot) -> String {
    format!("pew_{}_next", slot.letter().to_lowercase())
}

fn decrement_table(script: &mut Script, slot: Slot) {
    let counter = slot.attempts_variable();
    let next = next_variable(slot);
    script.line(&format!("setenv {next}"));
    for left in (1..=Attempts::MAX).rev() {
        let keyword = if left == Attempts::MAX { "if" } else { "elif" };
        script.line(&format!(
            "{keyword} test \"${{{counter}}}\" = {left}; then setenv {next} {}",
            left - 1
        ));
    }
    script.line(&format!(
        "elif test \"${{{counter}}}\" != 0; then setenv {counter} 0"
    ));
    script.line("fi");
}

/// Script text with one level of indentation (tabs, as U-Boot's own scripts use).
#[derive(Default)]
struct Script {
    text: String,
}

impl Script {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn indented(&mut self, line: &str) {
        self.text.push('\t');
        self.line(line);
    }

    fn comment(&mut self, comment: &str) {
        self.line(&format!("# {comment}"));
    }

    fn indented_comment(&mut self, comment: &str) {
        self.indented(&format!("# {comment}"));
    }

    fn blank(&mut self) {
        self.text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{DiskSignature, LayoutSpec};

    fn layout() -> DiskLayout {
        DiskLayout::plan(&LayoutSpec {
            signature: DiskSignature(0x7065_7701),
            align_mib: 4,
            boot_mib: 256,
            system_mib: 1024,
            data_mib: 256,
        })
        .unwrap()
    }

    fn config(layout: &DiskLayout) -> BootScriptConfig<'_> {
        BootScriptConfig {
            layout,
            attempts: Attempts::DEFAULT,
            payload: PayloadLocation::SystemSlot,
            dtb: DtbSource::SlotThenLoader,
            cmdline: KernelArgs::new("console=ttyS1,115200  rootwait").unwrap(),
            board_args: vec![BoardArgs {
                board: "qemu-arm".into(),
                args: KernelArgs::new("pew.simulate").unwrap(),
            }],
            watchdog: Some(Watchdog {
                device: "watchdog@7e100000".into(),
                timeout_ms: 15000,
            }),
        }
    }

    fn position(script: &str, needle: &str) -> usize {
        script
            .find(needle)
            .unwrap_or_else(|| panic!("script lacks {needle:?}:\n{script}"))
    }

    #[test]
    fn the_attempt_is_counted_and_saved_before_anything_is_loaded_or_booted() {
        let layout = layout();
        let script = boot_cmd(&config(&layout));
        let decrement = position(&script, "setenv PEW_A_LEFT ${pew_a_next}");
        let export = position(
            &script,
            "env export -t ${pxefile_addr_r} PEW_A_LEFT PEW_BOOT_ORDER PEW_B_LEFT\n",
        );
        let save = position(
            &script,
            "fatwrite ${devtype} ${devnum}:1 ${pxefile_addr_r} pewboot.env ${filesize}",
        );
        let kernel = position(
            &script,
            "load ${devtype} ${devnum}:${pew_part} ${kernel_addr_r} ${pew_dir}/vmlinuz || reset",
        );
        let boot = position(
            &script,
            "booti ${kernel_addr_r} ${ramdisk_addr_r}:${pew_initrd_size} ${pew_fdt}",
        );
        assert!(decrement < export && export < save && save < kernel && kernel < boot);
    }

    #[test]
    fn the_watchdog_is_armed_before_the_state_is_read() {
        let layout = layout();
        let script = boot_cmd(&config(&layout));
        let arm = position(
            &script,
            "if wdt dev watchdog@7e100000; then wdt start 15000;",
        );
        assert!(
            arm < position(
                &script,
                "if load ${devtype} ${devnum}:1 ${pxefile_addr_r} pewboot.env; then"
            )
        );
        let without = boot_cmd(&BootScriptConfig {
            watchdog: None,
            ..config(&layout)
        });
        assert!(!without.contains("wdt"));
    }

    #[test]
    fn the_state_is_imported_by_name_only() {
        let layout = layout();
        let script = boot_cmd(&config(&layout));
        // Only the three names: a damaged file cannot change bootcmd or anything else.
        assert!(script.contains(
            "\tenv import -t ${pxefile_addr_r} ${filesize} PEW_A_LEFT PEW_BOOT_ORDER PEW_B_LEFT\n"
        ));
    }

    #[test]
    fn each_order_falls_back_to_the_other_slot() {
        let layout = layout();
        let script = boot_cmd(&config(&layout));
        assert!(script.contains(
            "if test \"${PEW_BOOT_ORDER}\" = \"B A\"; then\n\
             \tif test -n \"${pew_b_next}\"; then setenv pew_slot B\n\
             \telif test -n \"${pew_a_next}\"; then setenv pew_slot A\n"
        ));
        assert!(script.contains(
            "\tsetenv PEW_BOOT_ORDER \"A B\"\n\
             \tif test -n \"${pew_a_next}\"; then setenv pew_slot A\n\
             \telif test -n \"${pew_b_next}\"; then setenv pew_slot B\n"
        ));
    }

    #[test]
    fn exhaustion_refills_to_the_configured_attempts_and_boots_the_primary() {
        let layout = layout();
        let script = boot_cmd(&BootScriptConfig {
            attempts: Attempts::new(5).unwrap(),
            ..config(&layout)
        });
        let block = &script[position(&script, "if test -z \"${pew_slot}\"; then")..];
        let block = &block[..position(block, "\nfi\n")];
        for line in [
            "setenv PEW_A_LEFT 5",
            "setenv pew_a_next 4",
            "setenv PEW_B_LEFT 5",
            "setenv pew_b_next 4",
        ] {
            assert!(block.contains(line), "{line} missing from:\n{block}");
        }
        assert!(block.contains("if test \"${PEW_BOOT_ORDER}\" = \"B A\"; then setenv pew_slot B; else setenv pew_slot A; fi"));
    }

    #[test]
    fn counters_decrement_by_lookup_and_garbage_reads_as_zero() {
        let layout = layout();
        let script = boot_cmd(&config(&layout));
        for slot in ["A", "B"] {
            let lower = slot.to_lowercase();
            for left in 1..=9 {
                let line = format!(
                    "test \"${{PEW_{slot}_LEFT}}\" = {left}; then setenv pew_{lower}_next {}\n",
                    left - 1
                );
                assert!(script.contains(&line), "{line}");
            }
            assert!(script.contains(&format!(
                "elif test \"${{PEW_{slot}_LEFT}}\" != 0; then setenv PEW_{slot}_LEFT 0\n"
            )));
        }
    }

    #[test]
    fn slots_boot_their_own_partuuid_from_their_own_partition() {
        let layout = layout();
        let script = boot_cmd(&config(&layout));
        assert!(script.contains(
            "if test \"${pew_slot}\" = A; then\n\tsetenv PEW_A_LEFT ${pew_a_next}\n\tsetenv pew_part 2\n\
             \tsetenv pew_dir /boot/pew\n\tsetenv pew_root 70657701-02\nfi\n"
        ));
        assert!(script.contains(
            "\tsetenv pew_part 3\n\tsetenv pew_dir /boot/pew\n\tsetenv pew_root 70657701-03\n"
        ));
        assert!(script.contains(
            "setenv bootargs \"pew.slot=${pew_slot} root=PARTUUID=${pew_root} rootfstype=erofs ro console=ttyS1,115200 rootwait ${pew_board_args}\""
        ));
    }

    #[test]
    fn payload_on_the_boot_partition_uses_per_slot_directories_but_keeps_the_root_partuuid() {
        let layout = layout();
        let script = boot_cmd(&BootScriptConfig {
            payload: PayloadLocation::BootPartition,
            ..config(&layout)
        });
        assert!(script.contains(
            "\tsetenv pew_part 1\n\tsetenv pew_dir /slot-a\n\tsetenv pew_root 70657701-02\n"
        ));
        assert!(script.contains(
            "\tsetenv pew_part 1\n\tsetenv pew_dir /slot-b\n\tsetenv pew_root 70657701-03\n"
        ));
    }

    #[test]
    fn dtb_comes_from_the_slot_when_uboot_names_one_else_from_the_loader() {
        let layout = layout();
        let script = boot_cmd(&config(&layout));
        let default = position(&script, "setenv pew_fdt ${fdtcontroladdr}");
        let slot_dtb = position(
            &script,
            "if load ${devtype} ${devnum}:${pew_part} ${fdt_addr_r} ${pew_dir}/dtbs/${fdtfile}; then setenv pew_fdt ${fdt_addr_r}; fi",
        );
        assert!(default < slot_dtb);
        let loader_only = boot_cmd(&BootScriptConfig {
            dtb: DtbSource::Loader,
            ..config(&layout)
        });
        assert!(!loader_only.contains("fdtfile"));
        assert!(loader_only.contains("setenv pew_fdt ${fdtcontroladdr}"));
    }

    #[test]
    fn board_arguments_are_chosen_by_uboots_board_name() {
        let layout = layout();
        let script = boot_cmd(&config(&layout));
        assert!(script.contains(
            "if test \"${board}\" = \"qemu-arm\"; then setenv pew_board_args \"pew.simulate\"; fi\n"
        ));
    }

    #[test]
    fn every_if_is_closed() {
        let layout = layout();
        for payload in [PayloadLocation::SystemSlot, PayloadLocation::BootPartition] {
            let script = boot_cmd(&BootScriptConfig {
                payload,
                ..config(&layout)
            });
            let words: Vec<&str> = script
                .lines()
                .filter(|line| !line.trim_start().starts_with('#'))
                .flat_map(|line| line.split([' ', '\t', ';']))
                .collect();
            let count = |word: &str| words.iter().filter(|w| **w == word).count();
            assert_eq!(count("if"), count("fi"));
            assert_eq!(count("if") + count("elif"), count("then"));
        }
    }

    #[test]
    fn the_booted_slot_is_read_from_the_line_the_script_echoes() {
        let layout = layout();
        let script = boot_cmd(&config(&layout));
        assert!(script.contains(&format!("echo \"{BOOTING_MESSAGE}${{pew_slot}} (order")));
        assert!(script.contains(&format!("echo \"{REFILL_MESSAGE}; refilling")));
        assert!(script.contains(&format!("echo \"{BOOTI_FAILED_MESSAGE}\"\nreset\n")));
        // As U-Boot 2025.01 printed it under QEMU.
        let console = "Failed to load 'pewboot.env'\n\
                       46 bytes written in 7 ms (5.9 KiB/s)\n\
                       pew: booting slot B (order A B, A left 0, B left 2)\n\
                       Bad Linux ARM64 Image magic!\n";
        assert_eq!(booted_slot(console), Some(Slot::B));
        assert_eq!(
            booted_slot("pew: booting slot A (order A B, A left 2, B left 3)"),
            Some(Slot::A)
        );
        // An empty ${pew_slot} or a script that never got that far names no slot.
        assert_eq!(
            booted_slot("pew: booting slot  (order A B, A left 0)"),
            None
        );
        assert_eq!(booted_slot("Bad Linux ARM64 Image magic!\n"), None);
    }

    #[test]
    fn kernel_args_refuse_shell_characters_and_what_the_script_sets() {
        assert_eq!(
            KernelArgs::new("quiet \"x\""),
            Err(KernelArgsError::ShellCharacter('"'))
        );
        assert_eq!(
            KernelArgs::new("a=$b"),
            Err(KernelArgsError::ShellCharacter('$'))
        );
        assert_eq!(
            KernelArgs::new("root=/dev/sda"),
            Err(KernelArgsError::Reserved("root=/dev/sda".into()))
        );
        assert_eq!(
            KernelArgs::new("quiet rw"),
            Err(KernelArgsError::Reserved("rw".into()))
        );
        assert_eq!(
            KernelArgs::new("pew.slot=B"),
            Err(KernelArgsError::Reserved("pew.slot=B".into()))
        );
        assert_eq!(
            KernelArgs::new(" quiet\t rootwait ").unwrap().as_str(),
            "quiet rootwait"
        );
        // `rootwait` merely starts like `root`; it is not `root=`.
        assert!(KernelArgs::new("rootwait rootdelay=2").is_ok());
    }
}
