//! What the node is asked through the guest agent, and how its answers are read.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use pew_bus::Service;
use pew_image::bootstate::Slot;
use serde_json::Value;

use super::agent::Agent;

/// Absolute paths: qemu-ga runs programs without a shell. trixie is merged-/usr.
const PEWCTL: &str = "/usr/bin/pewctl";
const SYSTEMCTL: &str = "/usr/bin/systemctl";
const FINDMNT: &str = "/usr/bin/findmnt";
const CAT: &str = "/usr/bin/cat";

/// The kernel argument through which the boot script names the slot it booted.
const SLOT_ARGUMENT: &str = "pew.slot";
/// The kernel argument that switches the services to simulated hardware (set on QEMU only).
pub const SIMULATE_FLAG: &str = "pew.simulate";

/// The pew services the recipe's `services.include` puts in the image (units such as
/// `pew-powerd`), as pew-bus knows them.
pub fn included_services(include: &[String]) -> Result<Vec<&'static Service>> {
    include
        .iter()
        .map(|unit| {
            pew_bus::SERVICES
                .iter()
                .find(|service| service.unit == unit)
                .ok_or_else(|| {
                    anyhow!("services.include names {unit:?}, which pew-bus does not know")
                })
        })
        .collect()
}

/// The short names of the services in `required` that a `pewctl --json status` report does
/// not show running. A service's bus name is owned only after it reported READY (pew-bus
/// refuses it earlier), so "running" there means ready.
pub fn unready_services(status: &[u8], required: &[&'static Service]) -> Result<Vec<&'static str>> {
    let report: Value = serde_json::from_slice(status)
        .context("pewctl --json status printed something that is not JSON")?;
    ensure!(
        report.is_object(),
        "pewctl --json status printed {report}, not an object"
    );
    Ok(required
        .iter()
        .filter(|service| report[service.short_name]["running"] != Value::Bool(true))
        .map(|service| service.short_name)
        .collect())
}

/// Where a boot stands with respect to the services it must start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not yet; the text says what is missing.
    Waiting(String),
    /// systemd has finished starting the system and these services are still not ready:
    /// nothing will start them any more.
    Stuck {
        system_state: String,
        unready: Vec<&'static str>,
    },
}

/// `systemctl is-system-running` states after which systemd queues no more start jobs.
fn startup_finished(system_state: &str) -> bool {
    matches!(system_state, "running" | "degraded" | "maintenance")
}

/// Judges one poll. `system_state` must have been read before the status report: a service
/// that became ready in between then counts as ready, never as stuck.
pub fn judge_readiness(system_state: &str, unready: Vec<&'static str>) -> Readiness {
    if unready.is_empty() {
        Readiness::Ready
    } else if startup_finished(system_state) {
        Readiness::Stuck {
            system_state: system_state.to_owned(),
            unready,
        }
    } else {
        Readiness::Waiting(format!(
            "system {system_state}, not ready: {}",
            unready.join(", ")
        ))
    }
}

/// Asks systemd where the boot stands, then `pewctl --json status` which of `required` are
/// ready. Err while either cannot answer (the bus is not up yet, say) or takes past `deadline`.
pub fn poll_readiness(
    agent: &mut Agent,
    required: &[&'static Service],
    deadline: Instant,
) -> Result<Readiness> {
    let system_state = system_state(agent, deadline)?;
    let status = checked_output(agent, PEWCTL, &["--json", "status"], deadline)?;
    Ok(judge_readiness(
        &system_state,
        unready_services(status.as_bytes(), required)?,
    ))
}

/// `systemctl is-system-running`, which answers at once (it exits non-zero unless "running").
pub fn system_state(agent: &mut Agent, deadline: Instant) -> Result<String> {
    Ok(agent
        .exec(SYSTEMCTL, &["is-system-running"], deadline)?
        .stdout_text()
        .trim()
        .to_owned())
}

/// The units systemd lists as failed.
pub fn failed_units(agent: &mut Agent, deadline: Instant) -> Result<Vec<String>> {
    let listing = checked_output(
        agent,
        SYSTEMCTL,
        &["--failed", "--no-legend", "--plain"],
        deadline,
    )?;
    Ok(listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// One line of `findmnt --list --json --bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub target: String,
    /// `/dev/vda2`, or `/dev/vda4[/var]` for a bind mount of a subdirectory.
    pub source: String,
    pub fstype: String,
    pub options: String,
    pub size_bytes: u64,
}

impl Mount {
    pub fn is_read_only(&self) -> bool {
        self.options.split(',').any(|option| option == "ro")
    }
}

/// The mount table as `findmnt --list --json --bytes --output TARGET,SOURCE,FSTYPE,OPTIONS,SIZE`
/// prints it.
pub fn parse_mounts(json: &[u8]) -> Result<Vec<Mount>> {
    let table: Value =
        serde_json::from_slice(json).context("findmnt printed something that is not JSON")?;
    let rows = table["filesystems"]
        .as_array()
        .ok_or_else(|| anyhow!("findmnt's JSON has no \"filesystems\" list"))?;
    rows.iter()
        .map(|row| {
            let text = |key: &str| {
                row[key]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("findmnt row {row} has no {key}"))
            };
            // util-linux prints SIZE as a number with --bytes, but older ones as a string.
            let size_bytes = match &row["size"] {
                Value::Number(number) => number.as_u64(),
                Value::String(text) => text.parse().ok(),
                _ => None,
            }
            .ok_or_else(|| anyhow!("findmnt row {row} has no size in bytes"))?;
            Ok(Mount {
                target: text("target")?,
                source: text("source")?,
                fstype: text("fstype")?,
                options: text("options")?,
                size_bytes,
            })
        })
        .collect()
}

/// The value of `name=` on a kernel command line (the last one wins, as in the kernel).
pub fn cmdline_value<'a>(cmdline: &'a str, name: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .filter_map(|argument| argument.split_once('='))
        .rfind(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

pub fn cmdline_has_flag(cmdline: &str, flag: &str) -> bool {
    cmdline.split_whitespace().any(|argument| argument == flag)
}

/// The slot in `pew.slot=`, None when absent or not a slot letter.
pub fn cmdline_slot(cmdline: &str) -> Option<Slot> {
    let letter = cmdline_value(cmdline, SLOT_ARGUMENT)?;
    Slot::ALL.into_iter().find(|slot| slot.letter() == letter)
}

/// The kernel names of the disk holding the partition `source` and of that disk's partition
/// `number`: `/dev/vda2` gives `vda`, `vda4`; `/dev/mmcblk0p2` gives `mmcblk0`, `mmcblk0p4`
/// (a disk whose name ends in a digit puts `p` before partition numbers).
pub fn sibling_partition(source: &str, number: u8) -> Result<(String, String)> {
    let name = source
        .strip_prefix("/dev/")
        .ok_or_else(|| anyhow!("{source} is not a /dev node"))?;
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    ensure!(
        base.len() < name.len() && !base.is_empty(),
        "{source} is not a partition"
    );
    let disk = match base.strip_suffix('p') {
        Some(disk) if disk.ends_with(|c: char| c.is_ascii_digit()) => disk,
        _ => base,
    };
    Ok((disk.to_owned(), format!("{base}{number}")))
}

/// The data partition as the running kernel sees it, in 512-byte sectors (sysfs' unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataPartition {
    pub start_sector: u64,
    pub sectors: u64,
    pub disk_sectors: u64,
    /// The size of the filesystem mounted from it, if it is mounted.
    pub filesystem_bytes: Option<u64>,
}

/// What the node reports about itself once its services are ready.
#[derive(Clone, Debug)]
pub struct GuestReport {
    /// `systemctl is-system-running --wait`: `running` when nothing failed.
    pub system_state: String,
    pub failed_units: Vec<String>,
    pub root: Mount,
    pub cmdline: String,
    pub data: DataPartition,
    /// When systemd saw the last of the services become active, in kernel uptime: ready
    /// without the delay of the guest agent starting and being polled.
    pub services_active_uptime: Option<Duration>,
}

impl GuestReport {
    pub fn slot(&self) -> Option<Slot> {
        cmdline_slot(&self.cmdline)
    }

    pub fn simulated(&self) -> bool {
        cmdline_has_flag(&self.cmdline, SIMULATE_FLAG)
    }
}

/// Asks the node for its state, boot outcome, root mount and data partition.
/// `data_partition` is the data partition's number in the partition table.
pub fn inspect(
    agent: &mut Agent,
    services: &[&'static Service],
    data_partition: u8,
    deadline: Instant,
) -> Result<GuestReport> {
    // Waits for the boot to finish; exits non-zero unless "running", which is an answer too.
    let system_state = agent
        .exec(SYSTEMCTL, &["is-system-running", "--wait"], deadline)?
        .stdout_text()
        .trim()
        .to_owned();
    let failed_units = failed_units(agent, deadline)?;
    let mut show = vec![
        "show",
        "--property=ActiveEnterTimestampMonotonic",
        "--value",
    ];
    show.extend(services.iter().map(|service| service.unit));
    let services_active_uptime =
        latest_activation(&checked_output(agent, SYSTEMCTL, &show, deadline)?)?;
    let mounts = parse_mounts(
        checked_output(
            agent,
            FINDMNT,
            &[
                "--list",
                "--json",
                "--bytes",
                "--output",
                "TARGET,SOURCE,FSTYPE,OPTIONS,SIZE",
            ],
            deadline,
        )?
        .as_bytes(),
    )?;
    let root = mounts
        .iter()
        .find(|mount| mount.target == "/")
        .cloned()
        .ok_or_else(|| anyhow!("findmnt lists no root filesystem"))?;
    let cmdline = checked_output(agent, CAT, &["/proc/cmdline"], deadline)?
        .trim()
        .to_owned();

    let (disk, partition) = sibling_partition(&root.source, data_partition)?;
    let sizes = checked_output(
        agent,
        CAT,
        &[
            &format!("/sys/class/block/{partition}/start"),
            &format!("/sys/class/block/{partition}/size"),
            &format!("/sys/class/block/{disk}/size"),
        ],
        deadline,
    )?;
    let [start_sector, sectors, disk_sectors] = parse_sector_counts(&sizes)?;
    let partition_source = format!("/dev/{partition}");
    let filesystem_bytes = mounts
        .iter()
        .find(|mount| mount.source == partition_source)
        .map(|mount| mount.size_bytes);
    Ok(GuestReport {
        system_state,
        failed_units,
        root,
        cmdline,
        data: DataPartition {
            start_sector,
            sectors,
            disk_sectors,
            filesystem_bytes,
        },
        services_active_uptime,
    })
}

/// The latest of the `ActiveEnterTimestampMonotonic` values (µs of uptime) `systemctl show`
/// printed, one per unit; None if a unit never became active (0).
fn latest_activation(text: &str) -> Result<Option<Duration>> {
    let mut latest = Some(Duration::ZERO);
    for word in text.split_whitespace() {
        let micros: u64 = word
            .parse()
            .with_context(|| format!("{word:?} is not a monotonic timestamp"))?;
        latest = match micros {
            0 => None,
            _ => latest.map(|latest| latest.max(Duration::from_micros(micros))),
        };
    }
    Ok(latest)
}

/// Runs a command that must succeed and returns what it printed.
fn checked_output(
    agent: &mut Agent,
    program: &str,
    args: &[&str],
    deadline: Instant,
) -> Result<String> {
    let output = agent.exec(program, args, deadline)?;
    ensure!(
        output.succeeded(),
        "{program} {}: {}",
        args.join(" "),
        output.failure()
    );
    Ok(output.stdout_text())
}

/// Three sysfs sector counts, one per line.
fn parse_sector_counts(text: &str) -> Result<[u64; 3]> {
    let numbers: Vec<u64> = text
        .split_whitespace()
        .map(|word| {
            word.parse()
                .with_context(|| format!("{word:?} is not a sector count"))
        })
        .collect::<Result<_>>()?;
    match numbers.as_slice() {
        &[first, second, third] => Ok([first, second, third]),
        _ => bail!("expected three sector counts, got {text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn power_only() -> Vec<&'static Service> {
        included_services(&["pew-powerd".to_owned()]).unwrap()
    }

    #[test]
    fn recipe_units_map_to_bus_services() {
        assert_eq!(power_only()[0].short_name, "power");
        assert!(included_services(&["pew-frobd".to_owned()]).is_err());
    }

    #[test]
    fn ready_means_running_in_pewctl_status() {
        // pewctl's shape: one object per service, "running" plus the properties when running.
        let starting = br#"{"power": {"running": false}, "sensors": {"running": false}}"#;
        assert_eq!(
            unready_services(starting, &power_only()).unwrap(),
            ["power"]
        );
        let ready =
            br#"{"power": {"running": true, "State": "charging"}, "sensors": {"running": false}}"#;
        assert!(unready_services(ready, &power_only()).unwrap().is_empty());
        // A service the report does not mention at all is not ready either.
        assert_eq!(unready_services(b"{}", &power_only()).unwrap(), ["power"]);
        assert!(unready_services(b"Error: no bus", &power_only()).is_err());
        assert!(unready_services(b"[]", &power_only()).is_err());
    }

    #[test]
    fn unready_services_are_stuck_only_once_systemd_has_finished_starting() {
        assert_eq!(judge_readiness("degraded", vec![]), Readiness::Ready);
        assert_eq!(
            judge_readiness("starting", vec!["power"]),
            Readiness::Waiting("system starting, not ready: power".into())
        );
        for finished in ["running", "degraded", "maintenance"] {
            assert_eq!(
                judge_readiness(finished, vec!["power"]),
                Readiness::Stuck {
                    system_state: finished.into(),
                    unready: vec!["power"]
                }
            );
        }
        // Before systemd runs its jobs, and while shutting down, waiting is still right.
        for unfinished in ["initializing", "stopping", "offline", "unknown"] {
            assert!(matches!(
                judge_readiness(unfinished, vec!["power"]),
                Readiness::Waiting(_)
            ));
        }
    }

    #[test]
    fn reads_findmnt_json_of_a_read_only_erofs_root() {
        // Trimmed from util-linux 2.41 on the lab image.
        let json = br#"{
           "filesystems": [
              {"target": "/", "source": "/dev/vda2", "fstype": "erofs", "options": "ro,relatime,user_xattr,acl,cache_strategy=readaround", "size": 236953600},
              {"target": "/data", "source": "/dev/vda4", "fstype": "ext4", "options": "rw,noatime", "size": 3358466048},
              {"target": "/var", "source": "/dev/vda4[/var]", "fstype": "ext4", "options": "rw,noatime", "size": "3358466048"}
           ]
        }"#;
        let mounts = parse_mounts(json).unwrap();
        assert_eq!(mounts.len(), 3);
        assert_eq!(
            (mounts[0].fstype.as_str(), mounts[0].is_read_only()),
            ("erofs", true)
        );
        assert!(!mounts[1].is_read_only());
        assert_eq!(mounts[2].size_bytes, 3_358_466_048);
        // "rootwait"-like options must not pass for "ro".
        let rootwait = Mount {
            options: "rw,rootwait,errors=ro".into(),
            ..mounts[0].clone()
        };
        assert!(!rootwait.is_read_only());
        assert!(parse_mounts(br#"{"filesystems": [{"target": "/"}]}"#).is_err());
    }

    #[test]
    fn reads_the_slot_and_the_simulation_flag_from_the_command_line() {
        let cmdline = "pew.slot=B root=PARTUUID=70657701-03 rootfstype=erofs ro console=ttyAMA0,115200 pew.simulate";
        assert_eq!(cmdline_slot(cmdline), Some(Slot::B));
        assert!(cmdline_has_flag(cmdline, SIMULATE_FLAG));
        assert_eq!(cmdline_value(cmdline, "root"), Some("PARTUUID=70657701-03"));
        assert!(!cmdline_has_flag("pew.simulate=0", SIMULATE_FLAG));
        assert_eq!(cmdline_slot("root=/dev/vda2 ro"), None);
        assert_eq!(cmdline_slot("pew.slot=C"), None);
        assert_eq!(cmdline_slot("pew.slot=A pew.slot=B"), Some(Slot::B));
    }

    #[test]
    fn finds_the_data_partition_next_to_the_root() {
        assert_eq!(
            sibling_partition("/dev/vda2", 4).unwrap(),
            ("vda".into(), "vda4".into())
        );
        assert_eq!(
            sibling_partition("/dev/mmcblk0p3", 4).unwrap(),
            ("mmcblk0".into(), "mmcblk0p4".into())
        );
        assert!(sibling_partition("/dev/vda", 4).is_err());
        assert!(sibling_partition("overlay", 4).is_err());
    }

    #[test]
    fn the_last_activation_counts_and_a_never_active_unit_voids_it() {
        assert_eq!(
            latest_activation("98123456\n101000001\n").unwrap(),
            Some(Duration::from_micros(101_000_001))
        );
        assert_eq!(latest_activation("98123456\n0\n").unwrap(), None);
        assert!(latest_activation("98123456\nn/a\n").is_err());
    }

    #[test]
    fn sector_counts_come_as_three_numbers() {
        assert_eq!(
            parse_sector_counts("5251072\n3137536\n8388608\n").unwrap(),
            [5_251_072, 3_137_536, 8_388_608]
        );
        assert!(parse_sector_counts("5251072\n3137536\n").is_err());
        assert!(parse_sector_counts("5251072\nx\n8388608\n").is_err());
    }
}
