//! What a boot must show, and every way an observed boot differs from it, in words.

use pew_image::bootstate::{BootState, ReadState, Slot};

use super::bootfat::describe;
use super::guest::{self, GuestReport, SIMULATE_FLAG};
use super::mbr::MbrPartition;

/// An MBR partition length is a 32-bit sector count: growth stops there on huge cards.
const MBR_MAX_SECTORS: u64 = u32::MAX as u64;
const MIB: f64 = (1u64 << 20) as f64;

/// What one boot must show, known before it starts.
#[derive(Clone, Copy, Debug)]
pub struct Expectation {
    /// The slot the state file on the card selects.
    pub slot: Slot,
    /// The emulated card's size.
    pub card_sectors: u64,
    /// The data partition as the image ships it, before first boot grows it.
    pub data_in_image: MbrPartition,
}

impl Expectation {
    /// Where first boot must have grown the data partition to: the end of the card.
    pub fn data_sectors(&self) -> u64 {
        self.card_sectors
            .saturating_sub(self.data_in_image.start_sector)
            .min(MBR_MAX_SECTORS)
    }
}

/// Every way a ready node differs from `expected`; empty when it matches.
pub fn boot_deviations(expected: &Expectation, booted: Slot, report: &GuestReport) -> Vec<String> {
    let mut deviations = Vec::new();
    let slot = expected.slot;
    if booted != slot {
        deviations.push(format!(
            "the boot script booted slot {booted}, the state file selects {slot}"
        ));
    }
    match report.slot() {
        Some(running) if running == slot => {}
        Some(running) => deviations.push(format!(
            "the kernel runs with pew.slot={running}, not {slot}"
        )),
        None => deviations.push("the kernel command line has no pew.slot=".to_owned()),
    }
    if !report.simulated() {
        deviations.push(format!(
            "{SIMULATE_FLAG} is missing from the kernel command line"
        ));
    }
    if report.system_state != "running" {
        deviations.push(format!(
            "systemd reports the system {:?}",
            report.system_state
        ));
    }
    if !report.failed_units.is_empty() {
        deviations.push(format!("failed units: {}", report.failed_units.join(", ")));
    }
    let root = &report.root;
    if root.fstype != "erofs" || !root.is_read_only() {
        deviations.push(format!(
            "root is {} mounted {}, not erofs ro",
            root.fstype, root.options
        ));
    }
    let slot_partition = slot.partition().number();
    match guest::sibling_partition(&root.source, slot_partition) {
        Ok((_, partition)) if root.source == format!("/dev/{partition}") => {}
        _ => deviations.push(format!(
            "root is {}, not slot {slot}'s partition {slot_partition}",
            root.source
        )),
    }

    let data = &report.data;
    if data.disk_sectors != expected.card_sectors {
        deviations.push(format!(
            "the guest sees a disk of {} sectors, the card has {}",
            data.disk_sectors, expected.card_sectors
        ));
    }
    if data.start_sector != expected.data_in_image.start_sector
        || data.sectors != expected.data_sectors()
    {
        deviations.push(format!(
            "the data partition spans sectors {}+{}, not {}+{} (to the end of the card)",
            data.start_sector,
            data.sectors,
            expected.data_in_image.start_sector,
            expected.data_sectors()
        ));
    }
    match data.filesystem_bytes {
        None => deviations.push("the data partition is not mounted".to_owned()),
        Some(bytes) if bytes <= expected.data_in_image.size_bytes() => deviations.push(format!(
            "the data filesystem was not grown: {:.0} MiB, the image's partition has {:.0} MiB",
            bytes as f64 / MIB,
            expected.data_in_image.size_bytes() as f64 / MIB
        )),
        Some(_) => {}
    }
    deviations
}

/// How the state file U-Boot left differs from what `BootState::select` predicted.
pub fn state_deviations(predicted: &BootState, read: &ReadState) -> Vec<String> {
    let mut deviations: Vec<String> = read
        .issues
        .iter()
        .map(|issue| format!("the state file after boot: {issue}"))
        .collect();
    if read.state != *predicted {
        deviations.push(format!(
            "the state file after boot reads {}, BootState::select predicted {}",
            describe(&read.state),
            describe(predicted)
        ));
    }
    deviations
}

/// The ready node in one line: state, root, data partition.
pub fn describe_report(report: &GuestReport) -> String {
    let data = &report.data;
    let filesystem = data
        .filesystem_bytes
        .map_or("not mounted".to_owned(), |bytes| {
            format!("{:.0} MiB filesystem", bytes as f64 / MIB)
        });
    let active = report
        .services_active_uptime
        .map_or("never active".to_owned(), |uptime| {
            format!("active at {:.1} s uptime", uptime.as_secs_f64())
        });
    format!(
        "services {active}; system {}, {} failed units; root {} {} {}; data partition {:.0} MiB of a {:.0} MiB disk, {filesystem}",
        report.system_state,
        report.failed_units.len(),
        report.root.source,
        report.root.fstype,
        if report.root.is_read_only() {
            "ro"
        } else {
            "rw"
        },
        (data.sectors * 512) as f64 / MIB,
        (data.disk_sectors * 512) as f64 / MIB,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::guest::{DataPartition, Mount};
    use pew_image::bootstate::Attempts;

    const CARD_SECTORS: u64 = 4096 * 2048;
    /// The recipe's layout: data at 2564 MiB, 256 MiB long.
    const DATA_START: u64 = 2564 * 2048;

    fn expected(slot: Slot) -> Expectation {
        Expectation {
            slot,
            card_sectors: CARD_SECTORS,
            data_in_image: MbrPartition {
                number: 4,
                kind: 0x83,
                start_sector: DATA_START,
                sectors: 256 * 2048,
            },
        }
    }

    /// A healthy node booted from `slot` on the 4 GiB card.
    fn healthy(slot: Slot) -> GuestReport {
        GuestReport {
            system_state: "running".into(),
            failed_units: vec![],
            root: Mount {
                target: "/".into(),
                source: format!("/dev/vda{}", slot.partition().number()),
                fstype: "erofs".into(),
                options: "ro,relatime".into(),
                size_bytes: 300 << 20,
            },
            cmdline: format!(
                "pew.slot={slot} root=PARTUUID=70657701-0{} rootfstype=erofs ro console=ttyAMA0,115200 pew.simulate",
                slot.partition().number()
            ),
            data: DataPartition {
                start_sector: DATA_START,
                sectors: CARD_SECTORS - DATA_START,
                disk_sectors: CARD_SECTORS,
                filesystem_bytes: Some(1400 << 20),
            },
            services_active_uptime: Some(std::time::Duration::from_secs(95)),
        }
    }

    #[test]
    fn a_healthy_boot_of_the_expected_slot_has_no_deviation() {
        for slot in Slot::ALL {
            let deviations = boot_deviations(&expected(slot), slot, &healthy(slot));
            assert!(deviations.is_empty(), "{deviations:?}");
        }
        // 4096 - 2564 MiB: the data partition takes the whole rest of the card.
        assert_eq!(expected(Slot::A).data_sectors(), 1532 * 2048);
    }

    #[test]
    fn booting_the_other_slot_is_caught_three_ways() {
        let deviations = boot_deviations(&expected(Slot::B), Slot::A, &healthy(Slot::A));
        assert_eq!(deviations.len(), 3, "{deviations:?}");
        assert!(deviations[0].contains("booted slot A"));
        assert!(deviations[1].contains("pew.slot=A"));
        assert!(deviations[2].contains("/dev/vda2, not slot B's partition 3"));
    }

    #[test]
    fn an_unsimulated_degraded_writable_root_is_reported() {
        let mut report = healthy(Slot::A);
        report.cmdline = "pew.slot=A root=PARTUUID=70657701-02".into();
        report.system_state = "degraded".into();
        report.failed_units = vec!["ssh.service".into()];
        report.root.fstype = "ext4".into();
        report.root.options = "rw,relatime".into();
        let deviations = boot_deviations(&expected(Slot::A), Slot::A, &report);
        assert_eq!(deviations.len(), 4, "{deviations:?}");
        assert!(deviations[0].contains("pew.simulate"));
        assert!(deviations[1].contains("degraded"));
        assert!(deviations[2].contains("ssh.service"));
        assert!(deviations[3].contains("root is ext4 mounted rw,relatime"));
    }

    #[test]
    fn a_data_partition_that_did_not_grow_is_reported() {
        let mut report = healthy(Slot::A);
        report.data.sectors = 256 * 2048;
        report.data.filesystem_bytes = Some(240 << 20);
        let deviations = boot_deviations(&expected(Slot::A), Slot::A, &report);
        assert_eq!(deviations.len(), 2, "{deviations:?}");
        assert!(deviations[0].contains("not 5251072+3137536"));
        assert!(deviations[1].contains("not grown: 240 MiB"));
        report.data.filesystem_bytes = None;
        assert!(boot_deviations(&expected(Slot::A), Slot::A, &report)[1].contains("not mounted"));
    }

    #[test]
    fn the_report_line_names_what_an_operator_checks_first() {
        assert_eq!(
            describe_report(&healthy(Slot::B)),
            "services active at 95.0 s uptime; system running, 0 failed units; root /dev/vda3 erofs ro; \
             data partition 1532 MiB of a 4096 MiB disk, 1400 MiB filesystem"
        );
    }

    #[test]
    fn growth_stops_at_the_mbr_limit_on_huge_cards() {
        let huge = Expectation {
            card_sectors: 1 << 33,
            ..expected(Slot::A)
        };
        assert_eq!(huge.data_sectors(), u64::from(u32::MAX));
    }

    #[test]
    fn the_state_file_must_be_what_select_predicted() {
        let before = BootState::factory(Attempts::DEFAULT);
        let predicted = before.select(Attempts::DEFAULT).state;
        let read = BootState::from_env_text(&predicted.to_env_text());
        assert!(state_deviations(&predicted, &read).is_empty());
        // Something in Linux marked the boot good, which nothing in the image does yet.
        let marked = BootState::from_env_text(
            &predicted
                .mark_good(Slot::A, Attempts::DEFAULT)
                .to_env_text(),
        );
        assert_eq!(
            state_deviations(&predicted, &marked),
            ["the state file after boot reads AB 3/0, BootState::select predicted AB 2/0"]
        );
        // Reads as the predicted AB 2/0, but only by falling back for the missing variables.
        let damaged = BootState::from_env_text(b"PEW_A_LEFT=2\n");
        assert_eq!(
            state_deviations(&predicted, &damaged),
            [
                "the state file after boot: PEW_BOOT_ORDER is missing",
                "the state file after boot: PEW_B_LEFT is missing"
            ]
        );
    }
}
