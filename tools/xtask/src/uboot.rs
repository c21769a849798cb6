//! `cargo xtask uboot-check`: boots the A/B script pew-image generates on Debian trixie's real
//! U-Boot (u-boot-qemu, `qemu_arm64` under `qemu-system-aarch64 -M virt`) again and again, and
//! checks that every run picks the slot and writes the state file [`BootState::select`] predicts.
//!
//! Each slot's payload directory holds a dummy kernel: `booti` refuses it, the script resets, and
//! `-no-reboot` turns that reset into QEMU exiting, so one QEMU run is exactly one boot attempt.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use pew_image::bootscript::{
    self, BOOTI_FAILED_MESSAGE, BootScriptConfig, INITRD_FILE, KERNEL_FILE, PayloadLocation,
    REFILL_MESSAGE,
};
use pew_image::bootstate::{Attempts, BootState, ENV_FILE_NAME, Slot};
use pew_image::digest::Sha256Digest;
use pew_image::layout::PartitionRole;
use pew_image::recipe::{CheckedRecipe, Recipe};

use crate::qemu::bootfat::{BootFat, Mtools, describe};
use crate::qemu::machine;
use crate::{host, process};

/// Commands this check runs, with the Debian package that provides each.
const TOOLS: [(&str, &str); 5] = [
    ("qemu-system-aarch64", "qemu-system-arm"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("sfdisk", "fdisk"),
    ("mkimage", "u-boot-tools"),
];

/// The U-Boot under test: the one the image ships (trixie), pinned so that a changed binary is
/// noticed rather than silently tested.
const UBOOT_PACKAGE: &str = "u-boot-qemu";
const UBOOT_VERSION: &str = "2025.01-3+deb13u1";
const UBOOT_DEB: &str = "u-boot-qemu_2025.01-3+deb13u1_all.deb";
const UBOOT_DEB_SHA256: &str = "a3751b5d36a411457b2e7a2834cdce0e5d40493e6588a65d51c5603740a0c71c";
const UBOOT_BINARY: &str = "usr/lib/u-boot/qemu_arm64/u-boot.bin";
const TRIXIE_SOURCE: &str = "deb http://deb.debian.org/debian trixie main\n";

/// Boots from an absent state file: enough to see A count down, B take over, both run out and
/// be refilled, and A tried again.
const RUNS: usize = 8;

/// A run normally ends in ~3 s; a script that stops at U-Boot's prompt would wait forever.
const RUN_TIMEOUT_SECONDS: &str = "60";

/// One boot attempt, as predicted and as observed.
struct Run {
    label: String,
    before: BootState,
    expected_slot: Slot,
    expected: BootState,
    booted: Option<Slot>,
    after: BootState,
    seconds: f64,
}

/// Entry point of `cargo xtask uboot-check`.
pub fn check() -> Result<()> {
    let started = Instant::now();
    host::ensure_commands(&TOOLS)?;
    let recipe = Recipe::load(&process::workspace_root().join("image/pew.toml"))?;
    let config = recipe.boot_script_config();
    ensure!(
        config.payload == PayloadLocation::BootPartition,
        "uboot-check needs [boot] payload = \"boot-partition\": U-Boot cannot read EROFS slots"
    );
    let u_boot = fetch_u_boot(&process::target_dir().join("uboot-cache"))?;
    println!(
        "u-boot ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let work = tempfile::tempdir()?;
    let disk = Disk::build(work.path(), &recipe, &config)?;

    // A card whose state file is missing reads as all counters 0, which the script refills.
    let mut state = BootState::from_env_text(b"").state;
    let mut runs = Vec::new();
    for number in 1..=RUNS {
        let run = boot_once(&u_boot, &disk, format!("{number}"), state, config.attempts)?;
        state = run.after;
        runs.push(run);
    }
    // What pew-updated does after writing an update into B: B first, full attempts.
    let activated = state.activate(Slot::B, config.attempts);
    disk.write_state(&activated)?;
    runs.push(boot_once(
        &u_boot,
        &disk,
        "host wrote B A".into(),
        activated,
        config.attempts,
    )?);

    println!("{}", table(&runs));
    let disagreements: Vec<&Run> = runs
        .iter()
        .filter(|run| run.booted != Some(run.expected_slot) || run.after != run.expected)
        .collect();
    ensure!(
        disagreements.is_empty(),
        "U-Boot disagreed with BootState::select in run(s) {}",
        disagreements
            .iter()
            .map(|run| run.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "U-Boot {UBOOT_VERSION} agrees with BootState::select on {} boots ({:.1} s in all)",
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Boots the disk once and reads back what the script chose and saved.
fn boot_once(
    u_boot: &Path,
    disk: &Disk,
    label: String,
    before: BootState,
    attempts: Attempts,
) -> Result<Run> {
    let prediction = before.select(attempts);
    let started = Instant::now();
    let console = run_qemu(u_boot, &disk.image)?;
    let seconds = started.elapsed().as_secs_f64();
    let context = || format!("run {label}, console:\n{console}");
    ensure!(
        console.contains(BOOTI_FAILED_MESSAGE),
        "the script never reached booti on run {}",
        context()
    );
    ensure!(
        console.contains(REFILL_MESSAGE) == prediction.counters_reset,
        "the script {} the counters although BootState::select {} on {}",
        if prediction.counters_reset {
            "kept"
        } else {
            "refilled"
        },
        if prediction.counters_reset {
            "refills them"
        } else {
            "does not"
        },
        context()
    );
    let saved = disk.read_state()?;
    let read = BootState::from_env_text(&saved);
    ensure!(
        read.issues.is_empty() && saved == read.state.to_env_text(),
        "U-Boot wrote {ENV_FILE_NAME} as {:?}, not in BootState::to_env_text's form ({:?}) on {}",
        String::from_utf8_lossy(&saved),
        read.issues,
        context()
    );
    Ok(Run {
        label,
        before,
        expected_slot: prediction.slot,
        expected: prediction.state,
        booted: bootscript::booted_slot(&console),
        after: read.state,
        seconds,
    })
}

/// One QEMU `-M virt` boot with U-Boot as firmware and the disk on virtio; returns the console.
fn run_qemu(u_boot: &Path, image: &Path) -> Result<String> {
    let output = Command::new("timeout")
        .arg(RUN_TIMEOUT_SECONDS)
        .arg(machine::QEMU_TOOLS[0].0)
        .args(machine::virt_machine_args(u_boot, image))
        // No NIC: the default one wants an iPXE ROM the host need not have.
        .args(["-nographic", "-nic", "none", "-no-reboot"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run qemu-system-aarch64")?;
    let console = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "QEMU did not end by the script's reset within {RUN_TIMEOUT_SECONDS} s ({}): {}\nconsole:\n{console}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(console)
}

/// A disk image laid out as `image/pew.toml` says, with only the boot partition filled.
struct Disk {
    image: PathBuf,
    boot: BootFat,
    scratch: PathBuf,
}

impl Disk {
    fn build(dir: &Path, recipe: &CheckedRecipe, config: &BootScriptConfig<'_>) -> Result<Self> {
        let layout = &recipe.layout;
        let boot = layout.partition(PartitionRole::Boot);
        let image = dir.join("disk.img");
        // Sparse: the system and data partitions stay unwritten, U-Boot never reads them.
        fs::File::create(&image)?.set_len(layout.image_bytes())?;
        run_with_input(
            Command::new("sfdisk").arg("--quiet").arg(&image),
            layout.sfdisk_script().as_bytes(),
        )?;
        let boot_settings = &recipe.recipe.partitions.boot;
        process::output(
            Command::new("mkfs.vfat")
                .args(["-F", "32", "-n", &boot_settings.label])
                .args(["-i", &format!("{:08x}", boot_settings.volume_id.0)])
                .args(["--offset", &(boot.start_bytes() / 512).to_string()])
                .arg(&image)
                .arg((boot.size_bytes() / 1024).to_string()),
        )?;
        let disk = Self {
            boot: BootFat::new(&image, boot.start_bytes(), Mtools::Host),
            image,
            scratch: dir.to_owned(),
        };

        let boot_cmd = dir.join("boot.cmd");
        let boot_scr = dir.join("boot.scr");
        fs::write(&boot_cmd, bootscript::boot_cmd(config))?;
        process::output(
            Command::new("mkimage")
                .args(["-A", "arm64", "-O", "linux", "-T", "script", "-C", "none"])
                .args(["-n", "pew boot script", "-d"])
                .args([&boot_cmd, &boot_scr]),
        )?;
        disk.boot.copy_in(&boot_scr, "/boot.scr")?;

        // Not an arm64 Image, so booti refuses it and the script resets: one attempt per run.
        let dummy = dir.join("dummy");
        fs::write(&dummy, b"not a kernel\n")?;
        for slot in Slot::ALL {
            let directory = config.payload.directory(slot);
            disk.boot.make_directory(&directory)?;
            for file in [KERNEL_FILE, INITRD_FILE] {
                disk.boot.copy_in(&dummy, &format!("{directory}/{file}"))?;
            }
        }
        Ok(disk)
    }

    fn write_state(&self, state: &BootState) -> Result<()> {
        self.boot.write_state(state, &self.scratch)
    }

    fn read_state(&self) -> Result<Vec<u8>> {
        self.boot
            .read_state_bytes()
            .with_context(|| format!("U-Boot left no {ENV_FILE_NAME}"))
    }
}

fn run_with_input(command: &mut Command, input: &[u8]) -> Result<()> {
    let mut child = command
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    child
        .stdin
        .take()
        .context("child has no stdin")?
        .write_all(input)?;
    let status = child.wait()?;
    ensure!(status.success(), "{command:?} failed: {status}");
    Ok(())
}

/// The pinned `u-boot.bin`, downloaded and unpacked into `cache` on first use.
fn fetch_u_boot(cache: &Path) -> Result<PathBuf> {
    let binary = cache.join(UBOOT_VERSION).join(UBOOT_BINARY);
    if binary.exists() {
        return Ok(binary);
    }
    let deb = cache.join(UBOOT_DEB);
    if !deb.exists() {
        download_from_trixie(cache)?;
    }
    let expected: Sha256Digest = UBOOT_DEB_SHA256.parse()?;
    let actual = sha256(&deb)?;
    if actual != expected {
        fs::remove_file(&deb)?;
        bail!(
            "{UBOOT_DEB} has sha256 {actual}, not the pinned {expected}: Debian rebuilt or replaced it; \
             check the new package and update the pin in tools/xtask/src/uboot.rs"
        );
    }
    process::output(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(cache.join(UBOOT_VERSION)),
    )?;
    ensure!(binary.exists(), "{UBOOT_DEB} has no {UBOOT_BINARY}");
    Ok(binary)
}

/// `apt-get download` from trixie through a private apt tree in `cache`, so the host's own
/// sources (bookworm, whose U-Boot is older) are neither used nor touched.
fn download_from_trixie(cache: &Path) -> Result<()> {
    let apt = cache.join("apt");
    for dir in [
        "etc/apt/apt.conf.d",
        "etc/apt/sources.list.d",
        "etc/apt/preferences.d",
        "var/lib/apt/lists/partial",
    ] {
        fs::create_dir_all(apt.join(dir))?;
    }
    fs::write(apt.join("etc/apt/sources.list"), TRIXIE_SOURCE)?;
    fs::create_dir_all(apt.join("var/lib/dpkg"))?;
    fs::write(apt.join("var/lib/dpkg/status"), "")?;
    let mut config = String::new();
    writeln!(config, "Dir \"{}/\";", apt.display())?;
    writeln!(
        config,
        "Dir::State::status \"{}/var/lib/dpkg/status\";",
        apt.display()
    )?;
    // bookworm's debian-archive-keyring already holds trixie's signing keys.
    writeln!(
        config,
        "Dir::Etc::Trusted \"/usr/share/keyrings/debian-archive-keyring.gpg\";"
    )?;
    writeln!(config, "Dir::Etc::TrustedParts \"/usr/share/keyrings/\";")?;
    writeln!(config, "APT::Sandbox::User \"root\";")?;
    let config_file = apt.join("apt.conf");
    fs::write(&config_file, config)?;

    let apt_get = |args: &[&str]| {
        process::run(
            Command::new("apt-get")
                .args(args)
                .env("APT_CONFIG", &config_file)
                .current_dir(cache),
        )
    };
    println!("fetching {UBOOT_DEB} from trixie");
    apt_get(&["update", "-qq"])?;
    apt_get(&["download", "-qq", &format!("{UBOOT_PACKAGE}={UBOOT_VERSION}")]).with_context(|| {
        format!("{UBOOT_PACKAGE} {UBOOT_VERSION} may have left trixie: update the pin in tools/xtask/src/uboot.rs")
    })
}

fn sha256(file: &Path) -> Result<Sha256Digest> {
    let line = process::output(Command::new("sha256sum").arg(file))?;
    let hex = line.split_whitespace().next().unwrap_or_default();
    Ok(hex.parse()?)
}

fn table(runs: &[Run]) -> String {
    let slot = |slot: Option<Slot>| slot.map_or("-", Slot::letter);
    let mut text = format!(
        "{:<15} {:<11} {:>8} {:>6} {:<11} {:<11} {:>6}\n",
        "run", "before", "expected", "booted", "predicted", "file after", "secs"
    );
    for run in runs {
        let _ = writeln!(
            text,
            "{:<15} {:<11} {:>8} {:>6} {:<11} {:<11} {:>6.1}{}",
            run.label,
            describe(&run.before),
            run.expected_slot.letter(),
            slot(run.booted),
            describe(&run.expected),
            describe(&run.after),
            run.seconds,
            if run.booted == Some(run.expected_slot) && run.after == run.expected {
                ""
            } else {
                "  <- DISAGREES"
            }
        );
    }
    text
}
