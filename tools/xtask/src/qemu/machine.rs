//! The emulated node: `qemu-system-aarch64 -M virt` with Debian's u-boot-qemu as firmware, the
//! card as a virtio disk, user-mode networking, a guest-agent port and the serial console in a
//! log file. The QEMU process lives exactly as long as its [`Machine`].

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// The QEMU binary and the Debian package that ships it.
pub const QEMU_TOOLS: [(&str, &str); 1] = [("qemu-system-aarch64", "qemu-system-arm")];

/// The name Debian's qemu-guest-agent waits for: its udev rule starts the agent when a virtio
/// port of this name appears, so the same image runs no agent on a Pi.
pub const AGENT_PORT_NAME: &str = "org.qemu.guest_agent.0";

/// How often a wait on QEMU looks again.
const EXIT_POLL: Duration = Duration::from_millis(100);

/// The part of the machine every pew QEMU run shares (`uboot-check` too): a Cortex-A72 `virt`
/// board, U-Boot as firmware so the card's own boot script runs, and the card on virtio-blk
/// (the MMIO variant, which U-Boot and the initramfs' `virtio_mmio` both drive).
pub fn virt_machine_args(u_boot: &Path, disk: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-M", "virt", "-cpu", "cortex-a72", "-m", "1024", "-bios"]
        .map(OsString::from)
        .into();
    args.push(u_boot.into());
    args.push("-drive".into());
    let mut drive = OsString::from("if=none,format=raw,id=disk,file=");
    drive.push(disk);
    args.push(drive);
    args.extend(["-device", "virtio-blk-device,drive=disk"].map(OsString::from));
    args
}

/// Where the serial console goes besides its log file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConsoleMode {
    /// Also the terminal, multiplexed with QEMU's monitor as `-nographic` does (Ctrl-A X quits,
    /// Ctrl-A C switches to the monitor); Ctrl-C reaches the guest instead of killing QEMU.
    Terminal,
    /// Only the log file; a reset ends QEMU, so a boot that fails and retries cannot pass
    /// unnoticed.
    LogOnly,
}

/// Everything the QEMU command line is made of.
#[derive(Clone, Debug)]
pub struct MachineSpec {
    pub u_boot: PathBuf,
    pub disk: PathBuf,
    /// Unix socket on which QEMU serves the guest agent's port.
    pub agent_socket: PathBuf,
    pub console_log: PathBuf,
    pub console: ConsoleMode,
}

impl MachineSpec {
    /// The full `qemu-system-aarch64` argument list. Never `-kernel`: U-Boot runs the card's
    /// boot script, which is what is under test.
    pub fn args(&self) -> Vec<OsString> {
        let mut args = virt_machine_args(&self.u_boot, &self.disk);
        args.extend(["-smp", "2", "-nographic"].map(OsString::from));
        // Explicit MMIO NIC: the default virtio-net-pci wants an iPXE ROM (efi-virtio.rom)
        // that QEMU 7.2 aborts without. The guest reaches the host at 10.0.2.2.
        args.extend(
            [
                "-netdev",
                "user,id=net0",
                "-device",
                "virtio-net-device,netdev=net0",
            ]
            .map(OsString::from),
        );
        args.push("-chardev".into());
        let mut agent = OsString::from("socket,id=agent,server=on,wait=off,path=");
        agent.push(&self.agent_socket);
        args.push(agent);
        args.extend(["-device", "virtio-serial-device", "-device"].map(OsString::from));
        args.push(format!("virtserialport,chardev=agent,name={AGENT_PORT_NAME}").into());

        let backend = match self.console {
            ConsoleMode::Terminal => "stdio,mux=on,signal=off",
            ConsoleMode::LogOnly => "null",
        };
        args.push("-chardev".into());
        let mut console = OsString::from(format!("{backend},id=console,logappend=off,logfile="));
        console.push(&self.console_log);
        args.push(console);
        args.extend(["-serial", "chardev:console"].map(OsString::from));
        match self.console {
            ConsoleMode::Terminal => {
                args.extend(["-mon", "chardev=console,mode=readline"].map(OsString::from));
            }
            ConsoleMode::LogOnly => {
                args.extend(["-monitor", "none", "-no-reboot"].map(OsString::from));
            }
        }
        args
    }
}

/// A running QEMU. Dropping it kills QEMU, so no error path leaves one behind.
pub struct Machine {
    child: Child,
    started: Instant,
    stderr_log: PathBuf,
}

impl Machine {
    /// Starts QEMU; its own messages go to `stderr_log`.
    pub fn start(spec: &MachineSpec, stderr_log: &Path) -> Result<Self> {
        let stderr = File::create(stderr_log)
            .with_context(|| format!("cannot create {}", stderr_log.display()))?;
        let (stdin, stdout) = match spec.console {
            ConsoleMode::Terminal => (Stdio::inherit(), Stdio::inherit()),
            ConsoleMode::LogOnly => (Stdio::null(), Stdio::null()),
        };
        let started = Instant::now();
        let child = Command::new(QEMU_TOOLS[0].0)
            .args(spec.args())
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .context("cannot start qemu-system-aarch64")?;
        Ok(Self {
            child,
            started,
            stderr_log: stderr_log.to_owned(),
        })
    }

    /// When QEMU was started: the zero of every boot figure.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Fails if QEMU has exited, naming its status and what it printed.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait().context("cannot poll QEMU")? {
            None => Ok(()),
            Some(status) => bail!("QEMU exited ({status}){}", self.stderr_tail()),
        }
    }

    /// Waits until QEMU exits by itself, at most until `deadline`.
    pub fn wait_exit(&mut self, deadline: Instant) -> Result<ExitStatus> {
        loop {
            if let Some(status) = self.child.try_wait().context("cannot poll QEMU")? {
                return Ok(status);
            }
            ensure!(
                Instant::now() < deadline,
                "QEMU was still running at the deadline"
            );
            thread::sleep(EXIT_POLL);
        }
    }

    /// Waits for QEMU to exit however long it takes (the interactive session).
    pub fn wait(&mut self) -> Result<ExitStatus> {
        self.child.wait().context("cannot wait for QEMU")
    }

    fn stderr_tail(&self) -> String {
        let text = fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Nothing useful can be done if QEMU is already gone between the check and the kill.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Makes `run_disk` a copy of `image` on a card of `card_bytes`: sparse, so the copy costs only
/// the image's written blocks, and longer than the image, so first boot has a data partition
/// to grow.
pub fn prepare_run_disk(image: &Path, run_disk: &Path, card_bytes: u64) -> Result<()> {
    let image_bytes = fs::metadata(image)
        .with_context(|| format!("cannot read {}", image.display()))?
        .len();
    ensure!(
        card_bytes >= image_bytes,
        "a {} MiB card cannot hold the {} MiB image",
        card_bytes >> 20,
        image_bytes.div_ceil(1 << 20)
    );
    let status = Command::new("cp")
        .arg("--sparse=always")
        .arg(image)
        .arg(run_disk)
        .status()
        .context("cannot run cp")?;
    ensure!(
        status.success(),
        "copying {} failed: {status}",
        image.display()
    );
    File::options()
        .write(true)
        .open(run_disk)
        .and_then(|file| file.set_len(card_bytes))
        .with_context(|| format!("cannot extend {} to the card size", run_disk.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(console: ConsoleMode) -> MachineSpec {
        MachineSpec {
            u_boot: "/tools/usr/lib/u-boot/qemu_arm64/u-boot.bin".into(),
            disk: "/run/card.img".into(),
            agent_socket: "/run/agent.sock".into(),
            console_log: "/run/console.log".into(),
            console,
        }
    }

    fn joined(console: ConsoleMode) -> String {
        spec(console)
            .args()
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn boots_the_card_through_u_boot_never_a_kernel() {
        let line = joined(ConsoleMode::LogOnly);
        assert!(line.starts_with(
            "-M virt -cpu cortex-a72 -m 1024 -bios /tools/usr/lib/u-boot/qemu_arm64/u-boot.bin"
        ));
        assert!(line.contains("-drive if=none,format=raw,id=disk,file=/run/card.img -device virtio-blk-device,drive=disk"));
        assert!(!line.contains("-kernel") && !line.contains("-append"));
    }

    #[test]
    fn has_an_explicit_mmio_nic_and_the_agent_port() {
        let line = joined(ConsoleMode::LogOnly);
        assert!(line.contains("-netdev user,id=net0 -device virtio-net-device,netdev=net0"));
        assert!(
            !line.contains("-nic"),
            "QEMU would add the ROM-hungry default NIC"
        );
        assert!(line.contains(
            "-chardev socket,id=agent,server=on,wait=off,path=/run/agent.sock -device virtio-serial-device -device virtserialport,chardev=agent,name=org.qemu.guest_agent.0"
        ));
    }

    #[test]
    fn unattended_runs_log_the_console_and_stop_on_reset() {
        let line = joined(ConsoleMode::LogOnly);
        assert!(line.contains(
            "-chardev null,id=console,logappend=off,logfile=/run/console.log -serial chardev:console -monitor none -no-reboot"
        ));
    }

    #[test]
    fn interactive_runs_share_the_terminal_with_the_monitor_and_may_reboot() {
        let line = joined(ConsoleMode::Terminal);
        assert!(line.contains(
            "-chardev stdio,mux=on,signal=off,id=console,logappend=off,logfile=/run/console.log -serial chardev:console -mon chardev=console,mode=readline"
        ));
        assert!(!line.contains("-no-reboot"));
    }

    #[test]
    fn run_disk_is_a_sparse_card_sized_copy() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image.img");
        let mut content = vec![0u8; 1 << 20];
        content[..4].copy_from_slice(b"MBR!");
        fs::write(&image, &content).unwrap();
        let run = dir.path().join("run.img");
        prepare_run_disk(&image, &run, 8 << 20).unwrap();
        assert_eq!(fs::metadata(&run).unwrap().len(), 8 << 20);
        assert_eq!(&fs::read(&run).unwrap()[..4], b"MBR!");
        assert!(prepare_run_disk(&image, &dir.path().join("small.img"), 1 << 19).is_err());
    }
}
