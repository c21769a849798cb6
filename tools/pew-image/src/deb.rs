//! pew's own Debian packages: which files each one ships, its control file, conffiles and
//! maintainer script, and the version every package of one build carries.
//!
//! `cargo xtask debs` stages these files and runs `dpkg-deb`; everything decided about a
//! package is decided here, so that it can be tested without building anything.
//!
//! The split: one package per service (its binary, unit and configuration), `pewctl`,
//! `pew-os` with what makes the read-only Debian root a pew node (data partition mounts, first
//! boot, machine ID and SSH host keys on data, journal limits), and `pew-base` with the `pew`
//! group and all four D-Bus policies. The policies stay together
//! because `cargo xtask policies` generates them together from one contract (pew-bus) and
//! they grant rights to the group `pew-base` creates: one package keeps the group and the
//! rules naming it in step. A policy for a service that is not installed only allows
//! root to own a name nobody claims, and services that land later need not take files over
//! from another package.

use std::fmt;
use std::path::{Path, PathBuf};

/// Who answers for the packages (the repository's commit identity).
pub const MAINTAINER: &str = "pew maintainers <maintainers@users.noreply.r-seed-4447186e.example>";

/// The newest glibc the binaries may need: pew-powerd calls `hypot`, versioned 2.35 in libm
/// (the rest needs 2.34's `__libc_start_main` and pthreads, crates.md §8). Bookworm (2.36) and
/// trixie (2.41) have it. `cargo xtask debs` checks every binary against it.
pub const GLIBC: GlibcVersion = GlibcVersion {
    major: 2,
    minor: 35,
};

/// The packages one build produces.
pub const PACKAGES: [Package; 5] = [
    Package {
        name: "pew-base",
        architecture: Architecture::All,
        depends: &[Dependency::Debian("dbus"), Dependency::Debian("systemd")],
        summary: "pew's operator group and D-Bus policies",
        description: "The system group pew, whose members may call the mutating methods of\n\
                      every pew service, and the D-Bus policies of all pew bus names.",
        files: &[
            PackagedFile::Overlay("/usr/lib/sysusers.d/pew.conf"),
            PackagedFile::Overlay("/usr/share/dbus-1/system.d/org.pew.Power1.conf"),
            PackagedFile::Overlay("/usr/share/dbus-1/system.d/org.pew.Sensors1.conf"),
            PackagedFile::Overlay("/usr/share/dbus-1/system.d/org.pew.Update1.conf"),
            PackagedFile::Overlay("/usr/share/dbus-1/system.d/org.pew.Worker1.conf"),
        ],
        enables: &[],
        masks: &[],
    },
    Package {
        name: "pew-powerd",
        architecture: Architecture::Arm64,
        depends: &[
            Dependency::RustRuntime,
            Dependency::Debian("dbus"),
            Dependency::Debian("systemd"),
            Dependency::Pew("pew-base"),
        ],
        summary: "pew power manager",
        description: "Measures battery and solar power, keeps the energy budget, switches the\n\
                      node's power modes and sets the wake alarm before it sleeps.",
        files: &[
            PackagedFile::Binary("pew-powerd"),
            PackagedFile::Overlay("/usr/lib/systemd/system/pew-powerd.service"),
            PackagedFile::Overlay("/etc/pew/powerd.toml"),
        ],
        enables: &[],
        masks: &[],
    },
    Package {
        name: "pew-workerd",
        architecture: Architecture::Arm64,
        depends: &[
            Dependency::RustRuntime,
            Dependency::Debian("dbus"),
            Dependency::Debian("systemd"),
            Dependency::Debian("podman"),
            Dependency::Pew("pew-base"),
        ],
        summary: "pew iExec worker",
        description: "Runs compute tasks for an iExec workerpool as unprivileged containers when\n\
                      the power manager grants the energy, and proves them on-chain.",
        files: &[
            PackagedFile::Binary("pew-workerd"),
            PackagedFile::Overlay("/usr/lib/systemd/system/pew-workerd.service"),
            PackagedFile::Overlay("/etc/pew/workerd.toml"),
        ],
        enables: &[],
        masks: &[],
    },
    Package {
        name: "pewctl",
        architecture: Architecture::Arm64,
        depends: &[Dependency::RustRuntime, Dependency::Pew("pew-base")],
        summary: "shows and drives every pew service",
        description: "The command line for pew's services over D-Bus: status, leases, modes.",
        files: &[PackagedFile::Binary("pewctl")],
        enables: &[],
        masks: &[],
    },
    Package {
        name: "pew-os",
        architecture: Architecture::Arm64,
        depends: &[
            Dependency::RustRuntime,
            Dependency::Debian("systemd"),
            // mount and umount for the boot partition, the machine ID and the /var fallback.
            Dependency::Debian("mount"),
            // sfdisk grows the data partition; partx (util-linux, essential) tells the kernel.
            Dependency::Debian("fdisk"),
            // resize2fs and dumpe2fs for the data filesystem.
            Dependency::Debian("e2fsprogs"),
            // Its sshd_config.d drop-in and host key unit are for openssh-server's sshd.
            Dependency::Debian("openssh-server"),
            // The container engine whose socket it enables.
            Dependency::Debian("podman"),
        ],
        summary: "pew node integration for a read-only root",
        description: "Mounts the data partition on /data and its var/ on /var, keeps the\n\
                      machine ID, SSH host keys and a capped journal there, and runs\n\
                      pew-firstboot: grows the data partition to the end of the card and\n\
                      installs the per-node files dropped on the boot partition.",
        files: &[
            PackagedFile::Binary("pew-firstboot"),
            PackagedFile::Overlay("/usr/lib/systemd/system/data.mount"),
            PackagedFile::Overlay("/usr/lib/systemd/system/var.mount"),
            PackagedFile::Overlay("/usr/lib/systemd/system/pew-state-fallback.service"),
            PackagedFile::Overlay("/usr/lib/systemd/system/pew-machine-id.service"),
            PackagedFile::Overlay("/usr/lib/systemd/system/pew-ssh-host-keys.service"),
            PackagedFile::Overlay("/usr/lib/systemd/system/pew-firstboot.service"),
            PackagedFile::Overlay("/usr/lib/systemd/journald.conf.d/pew.conf"),
            PackagedFile::Overlay("/usr/lib/tmpfiles.d/pew-os.conf"),
            PackagedFile::Overlay("/usr/lib/systemd/network/80-pew-wired.network"),
            PackagedFile::Overlay("/usr/lib/systemd/system.conf.d/pew.conf"),
            // sshd reads drop-ins from /etc only, so this one is a conffile.
            PackagedFile::Overlay("/etc/ssh/sshd_config.d/pew-host-keys.conf"),
        ],
        // Debian ships networkd inside systemd but disabled; the node needs DHCP out of the box.
        // podman's API socket: the engine starts on pew-workerd's first request and exits when
        // idle (docs/image-notes.md §6).
        enables: &["systemd-networkd.service", "podman.socket"],
        // Its host keys would go to the read-only /etc/ssh, where sshd no longer looks.
        masks: &["sshd-keygen.service"],
    },
];

/// A package's `Architecture` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Holds the Pi's binaries.
    Arm64,
    /// Holds no compiled code.
    All,
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Arm64 => "arm64",
            Self::All => "all",
        })
    }
}

/// One entry of a package's `Depends` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// The shared libraries Rust binaries link: glibc from [`GLIBC`] on, and libgcc_s, which
    /// std links for unwinding even with `panic = "abort"`.
    RustRuntime,
    /// A Debian package, with its version constraint if any, written as it appears.
    Debian(&'static str),
    /// Another pew package: always the one from the same build, since the policies, the
    /// group and the services come from one commit.
    Pew(&'static str),
}

/// A file a package installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackagedFile {
    /// A binary of the workspace, cross-compiled for the Pi, installed as `/usr/bin/<name>`.
    Binary(&'static str),
    /// A file of `overlays/`, installed at the same absolute path.
    Overlay(&'static str),
}

impl PackagedFile {
    /// Where the file is installed on the node.
    pub fn destination(&self) -> String {
        match self {
            Self::Binary(name) => format!("/usr/bin/{name}"),
            Self::Overlay(path) => (*path).to_owned(),
        }
    }

    /// Where the build finds the file.
    pub fn source(&self, binaries: &Path, overlays: &Path) -> PathBuf {
        match self {
            Self::Binary(name) => binaries.join(name),
            Self::Overlay(path) => overlays.join(path.trim_start_matches('/')),
        }
    }

    /// Permission bits: the build host's umask and checkout must not leak into the package.
    pub fn mode(&self) -> u32 {
        match self {
            Self::Binary(_) => 0o755,
            Self::Overlay(_) => 0o644,
        }
    }

    /// Debian policy §10.7.2: every file under /etc is a conffile, so a node's edits survive
    /// reinstalling the package.
    pub fn is_conffile(&self) -> bool {
        self.destination().starts_with("/etc/")
    }
}

/// One of pew's Debian packages.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    pub name: &'static str,
    pub architecture: Architecture,
    pub depends: &'static [Dependency],
    /// The description's first line: lowercase, no final period.
    pub summary: &'static str,
    /// The extended description, plain lines.
    pub description: &'static str,
    pub files: &'static [PackagedFile],
    /// Units of other packages this one relies on, enabled when it is first installed.
    pub enables: &'static [&'static str],
    /// Units of other packages this one replaces, masked when it is first installed.
    pub masks: &'static [&'static str],
}

/// Where packages put systemd units.
const UNIT_DIRECTORY: &str = "/usr/lib/systemd/system";
/// Unit types a package's postinst enables (each needs an `[Install]` section).
const ENABLED_UNIT_SUFFIXES: [&str; 2] = [".service", ".mount"];

impl Package {
    /// `name_version_architecture.deb`, the file name apt and the archive tools expect.
    pub fn file_name(&self, version: &str) -> String {
        format!("{}_{version}_{}.deb", self.name, self.architecture)
    }

    /// `DEBIAN/control`. `installed_size_kib` comes from [`installed_size_kib`] over the
    /// staged files, whose sizes only the build knows.
    pub fn control(&self, version: &str, installed_size_kib: u64) -> String {
        let depends: Vec<String> = self
            .depends
            .iter()
            .map(|dependency| match dependency {
                Dependency::RustRuntime => format!("libc6 (>= {GLIBC}), libgcc-s1"),
                Dependency::Debian(relation) => (*relation).to_owned(),
                Dependency::Pew(name) => format!("{name} (= {version})"),
            })
            .collect();
        let mut control = format!(
            "Package: {}\nVersion: {version}\nArchitecture: {}\nMaintainer: {MAINTAINER}\n\
             Installed-Size: {installed_size_kib}\nDepends: {}\nSection: admin\n\
             Priority: optional\nDescription: {}\n",
            self.name,
            self.architecture,
            depends.join(", "),
            self.summary,
        );
        for line in self.description.lines() {
            // Deb822 continuation lines start with a space; an empty line is written " .".
            let line = if line.is_empty() { "." } else { line };
            control.push_str(&format!(" {line}\n"));
        }
        control
    }

    /// `DEBIAN/conffiles`, or `None` when the package ships no configuration.
    pub fn conffiles(&self) -> Option<String> {
        let lines: String = self
            .files
            .iter()
            .filter(|file| file.is_conffile())
            .map(|file| file.destination() + "\n")
            .collect();
        (!lines.is_empty()).then_some(lines)
    }

    /// `DEBIAN/postinst`, or `None` when installing needs no action.
    ///
    /// It creates the sysusers entries the package ships, enables its services and mount
    /// units and masks the units it replaces, without debhelper's `deb-systemd-helper`:
    /// `--root` edits files only, so the same script works in the image build's chroot, with
    /// `DPKG_ROOT` set when dpkg runs it from outside the target (`--force-script-chrootless`),
    /// and on a live node (where nothing is started or reloaded: pew's images are replaced
    /// whole, not upgraded with dpkg). An image build that skips maintainer scripts must run
    /// the same commands with `--root=<rootfs>`.
    pub fn postinst(&self) -> Option<String> {
        let shipped = |directory: &str, suffixes: &[&str]| -> Vec<String> {
            self.files
                .iter()
                .filter_map(|file| {
                    let destination = file.destination();
                    let name = destination.strip_prefix(directory)?.strip_prefix('/')?;
                    // Drop-in directories (`foo.service.d/`) hold no units of their own.
                    let is_unit =
                        !name.contains('/') && suffixes.iter().any(|suffix| name.ends_with(suffix));
                    is_unit.then(|| name.to_owned())
                })
                .collect()
        };
        let sysusers = shipped("/usr/lib/sysusers.d", &[".conf"]);
        let mut units = shipped(UNIT_DIRECTORY, &ENABLED_UNIT_SUFFIXES);
        units.extend(self.enables.iter().map(|unit| (*unit).to_owned()));
        if sysusers.is_empty() && units.is_empty() && self.masks.is_empty() {
            return None;
        }
        let mut script = String::from(
            "#!/bin/sh\n# Written by `cargo xtask debs`.\nset -e\nroot=\"${DPKG_ROOT:-/}\"\n",
        );
        if !sysusers.is_empty() {
            script.push_str(&format!(
                "if [ \"$1\" = configure ]; then\n    systemd-sysusers --root=\"$root\" {}\nfi\n",
                sysusers.join(" ")
            ));
        }
        if !units.is_empty() || !self.masks.is_empty() {
            // Only on the first installation ($2, the previous version, is empty), so an
            // upgrade keeps what the operator enabled, disabled or unmasked since.
            script.push_str("if [ \"$1\" = configure ] && [ -z \"$2\" ]; then\n");
            for (verb, names) in [("enable", units.join(" ")), ("mask", self.masks.join(" "))] {
                if !names.is_empty() {
                    script.push_str(&format!("    systemctl --root=\"$root\" {verb} {names}\n"));
                }
            }
            script.push_str("fi\n");
        }
        Some(script)
    }
}

/// The packages of an image that includes `services` (the recipe's `services.include`): every
/// package that is not a service's, and the packages of those services.
pub fn packages_for(services: &[String]) -> Vec<&'static Package> {
    PACKAGES
        .iter()
        .filter(|package| {
            !crate::recipe::PEW_SERVICES.contains(&package.name)
                || services.iter().any(|service| service == package.name)
        })
        .collect()
}

/// The workspace binaries `packages` ship, each once, sorted: what cargo must build.
pub fn binaries(packages: &[&Package]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = packages
        .iter()
        .flat_map(|package| package.files)
        .filter_map(|file| match file {
            PackagedFile::Binary(name) => Some(*name),
            PackagedFile::Overlay(_) => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// `Installed-Size` in KiB, counted as dpkg-gencontrol does for files: each rounded up.
pub fn installed_size_kib(file_sizes: impl IntoIterator<Item = u64>) -> u64 {
    file_sizes.into_iter().map(|size| size.div_ceil(1024)).sum()
}

/// A glibc symbol version, such as the `2.35` of `hypot@GLIBC_2.35`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The newest `GLIBC_x.y` version named in `objdump -T` output: the glibc a binary needs.
pub fn newest_glibc(dynamic_symbols: &str) -> Option<GlibcVersion> {
    dynamic_symbols
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let end = rest
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(rest.len());
            let (major, minor) = rest[..end].split_once('.')?;
            Some(GlibcVersion {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
            })
        })
        .max()
}

/// The commit a build comes from, as `git log -1` reports it.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// The full 40-digit hash: abbreviated hashes grow with the repository and differ with
    /// `core.abbrev`, so the abbreviation is made here.
    pub hash: &'a str,
    /// The commit time in UTC as `YYYYMMDDhhmmss`.
    pub utc_time: &'a str,
}

/// Why no package version can be made from a commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("commit hash {0:?} is not 40 lowercase hex digits")]
    Hash(String),
    #[error("commit time {0:?} is not YYYYMMDDhhmmss")]
    Time(String),
}

/// Hex digits of the commit hash kept in the version.
const HASH_DIGITS: usize = 12;

/// The version of every package built from `commit`: `<crate version>~git<UTC time>.<hash>`,
/// e.g. `0.1.0~git20261110123456.be372870ca99`.
///
/// The workspace version names the release being worked towards, so `~` sorts snapshots before
/// it; the commit time makes later commits sort later and the hash says which commit it was.
/// A semver pre-release (`0.2.0-rc.1`) becomes `0.2.0~rc.1`: in Debian a `-` would start the
/// Debian revision, and `~` keeps it before `0.2.0` as semver does.
pub fn version(crate_version: &str, commit: Commit<'_>) -> Result<String, VersionError> {
    let hash = commit.hash;
    if hash.len() != 40
        || !hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(VersionError::Hash(hash.to_owned()));
    }
    let time = commit.utc_time;
    if time.len() != 14 || !time.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VersionError::Time(time.to_owned()));
    }
    let upstream = crate_version.replacen('-', "~", 1);
    Ok(format!("{upstream}~git{time}.{}", &hash[..HASH_DIGITS]))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::lock::LockedPackage;
    use crate::recipe::Recipe;

    const HASH: &str = "be372870ca99908bc06ab32254d85b84c551f923";
    const TIME: &str = "20261110123456";
    const VERSION: &str = "0.1.0~git20261110123456.be372870ca99";

    fn package(name: &str) -> &'static Package {
        PACKAGES
            .iter()
            .find(|package| package.name == name)
            .unwrap_or_else(|| panic!("no package {name}"))
    }

    fn commit(hash: &'static str, utc_time: &'static str) -> Commit<'static> {
        Commit { hash, utc_time }
    }

    fn overlays() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../overlays")
    }

    /// Every file under `dir`, as an absolute path on the node.
    fn files_under(root: &Path, dir: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_under(root, &path, found);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_str().unwrap();
                found.insert(format!("/{relative}"));
            }
        }
    }

    #[test]
    fn the_version_is_the_crate_version_then_commit_time_and_hash() {
        assert_eq!(version("0.1.0", commit(HASH, TIME)).unwrap(), VERSION);
        assert_eq!(
            version("0.2.0-rc.1", commit(HASH, TIME)).unwrap(),
            "0.2.0~rc.1~git20261110123456.be372870ca99"
        );
    }

    #[test]
    fn the_version_rejects_abbreviated_or_uppercase_hashes_and_malformed_times() {
        for hash in [
            "be37287",
            "BE372870CA99908BC06AB32254D85B84C551F923",
            "ge372870ca99908bc06ab32254d85b84c551f923",
        ] {
            assert_eq!(
                version(
                    "0.1.0",
                    Commit {
                        hash,
                        utc_time: TIME
                    }
                ),
                Err(VersionError::Hash(hash.to_owned()))
            );
        }
        for utc_time in ["2026-11-10 12:34:56", "1795333631", "2026111012345x"] {
            assert_eq!(
                version(
                    "0.1.0",
                    Commit {
                        hash: HASH,
                        utc_time
                    }
                ),
                Err(VersionError::Time(utc_time.to_owned()))
            );
        }
    }

    #[test]
    fn every_package_name_version_and_file_name_passes_the_lock_checks() {
        // The image's local repository and lock hold pew's packages next to Debian's.
        for package in &PACKAGES {
            let file_name = package.file_name(VERSION);
            let locked = LockedPackage::new(
                package.name,
                VERSION,
                &package.architecture.to_string(),
                None,
                &"0".repeat(64),
                &file_name,
            );
            assert!(locked.is_ok(), "{}: {locked:?}", package.name);
        }
        assert_eq!(
            package("pew-base").file_name(VERSION),
            "pew-base_0.1.0~git20261110123456.be372870ca99_all.deb"
        );
    }

    #[test]
    fn the_service_package_control_file_is_exact() {
        assert_eq!(
            package("pew-powerd").control(VERSION, 2345),
            "Package: pew-powerd\n\
             Version: 0.1.0~git20261110123456.be372870ca99\n\
             Architecture: arm64\n\
             Maintainer: pew maintainers <maintainers@users.noreply.r-seed-4447186e.example>\n\
             Installed-Size: 2345\n\
             Depends: libc6 (>= 2.35), libgcc-s1, dbus, systemd, \
             pew-base (= 0.1.0~git20261110123456.be372870ca99)\n\
             Section: admin\n\
             Priority: optional\n\
             Description: pew power manager\n \
             Measures battery and solar power, keeps the energy budget, switches the\n \
             node's power modes and sets the wake alarm before it sleeps.\n"
        );
    }

    #[test]
    fn an_empty_description_line_becomes_a_dot() {
        let package = Package {
            description: "First paragraph.\n\nSecond paragraph.",
            ..*package("pewctl")
        };
        assert!(
            package
                .control(VERSION, 1)
                .ends_with("\n First paragraph.\n .\n Second paragraph.\n")
        );
    }

    #[test]
    fn only_files_under_etc_are_conffiles() {
        assert_eq!(
            package("pew-powerd").conffiles().as_deref(),
            Some("/etc/pew/powerd.toml\n")
        );
        assert_eq!(package("pew-base").conffiles(), None);
        assert_eq!(package("pewctl").conffiles(), None);
    }

    #[test]
    fn binaries_are_executable_and_overlay_files_are_not() {
        let powerd = package("pew-powerd").files;
        let modes: Vec<(String, u32)> = powerd
            .iter()
            .map(|file| (file.destination(), file.mode()))
            .collect();
        assert_eq!(
            modes,
            [
                ("/usr/bin/pew-powerd".to_owned(), 0o755),
                (
                    "/usr/lib/systemd/system/pew-powerd.service".to_owned(),
                    0o644
                ),
                ("/etc/pew/powerd.toml".to_owned(), 0o644),
            ]
        );
        let (binaries, overlays) = (Path::new("/t/release"), Path::new("/src/overlays"));
        assert_eq!(
            powerd[0].source(binaries, overlays),
            Path::new("/t/release/pew-powerd")
        );
        assert_eq!(
            powerd[2].source(binaries, overlays),
            Path::new("/src/overlays/etc/pew/powerd.toml")
        );
    }

    #[test]
    fn the_service_postinst_enables_its_unit_on_first_install_only() {
        assert_eq!(
            package("pew-powerd").postinst().as_deref(),
            Some(
                "#!/bin/sh\n# Written by `cargo xtask debs`.\nset -e\nroot=\"${DPKG_ROOT:-/}\"\n\
                 if [ \"$1\" = configure ] && [ -z \"$2\" ]; then\n    \
                 systemctl --root=\"$root\" enable pew-powerd.service\nfi\n"
            )
        );
    }

    #[test]
    fn the_os_package_enables_its_mounts_and_services_and_masks_sshd_keygen_once() {
        assert_eq!(
            package("pew-os").postinst().as_deref(),
            Some(
                "#!/bin/sh\n# Written by `cargo xtask debs`.\nset -e\nroot=\"${DPKG_ROOT:-/}\"\n\
                 if [ \"$1\" = configure ] && [ -z \"$2\" ]; then\n    \
                 systemctl --root=\"$root\" enable data.mount var.mount \
                 pew-state-fallback.service pew-machine-id.service pew-ssh-host-keys.service \
                 pew-firstboot.service systemd-networkd.service podman.socket\n    \
                 systemctl --root=\"$root\" mask sshd-keygen.service\nfi\n"
            )
        );
    }

    #[test]
    fn the_os_package_has_only_the_sshd_drop_in_as_conffile() {
        assert_eq!(
            package("pew-os").conffiles().as_deref(),
            Some("/etc/ssh/sshd_config.d/pew-host-keys.conf\n")
        );
    }

    #[test]
    fn drop_ins_and_wants_links_are_not_enabled_and_masks_alone_need_a_postinst() {
        let package = Package {
            files: &[
                PackagedFile::Overlay("/usr/lib/systemd/system/ssh.service.d/pew.conf"),
                PackagedFile::Overlay("/usr/lib/systemd/system/local-fs.target.wants/data.mount"),
                PackagedFile::Overlay("/usr/lib/systemd/system/pew.target"),
            ],
            masks: &["a.service", "b.service"],
            ..*package("pewctl")
        };
        let script = package.postinst().unwrap();
        assert!(!script.contains("enable"), "{script}");
        assert!(
            script.ends_with("then\n    systemctl --root=\"$root\" mask a.service b.service\nfi\n")
        );
    }

    #[test]
    fn every_unit_a_postinst_enables_can_be_enabled() {
        for package in &PACKAGES {
            let Some(script) = package.postinst() else {
                continue;
            };
            let enabled = script
                .lines()
                .find_map(|line| {
                    line.trim()
                        .strip_prefix("systemctl --root=\"$root\" enable ")
                })
                .unwrap_or_default();
            // Units of other packages (`enables`) are checked by their own packages.
            for unit in enabled
                .split_whitespace()
                .filter(|unit| !package.enables.contains(unit))
            {
                let path = overlays().join("usr/lib/systemd/system").join(unit);
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    text.lines().any(|line| line.trim() == "[Install]"),
                    "{unit} of {} has no [Install] section",
                    package.name
                );
            }
        }
    }

    #[test]
    fn the_data_mount_names_the_recipes_data_partition() {
        let recipe = Recipe::parse(
            Path::new("image/pew.toml"),
            include_str!("../../../image/pew.toml"),
        )
        .unwrap();
        let partuuid = recipe.layout.partuuid(crate::layout::PartitionRole::Data);
        let unit =
            std::fs::read_to_string(overlays().join("usr/lib/systemd/system/data.mount")).unwrap();
        assert!(
            unit.contains(&format!("\nWhat=/dev/disk/by-partuuid/{partuuid}\n")),
            "data.mount does not mount PARTUUID {partuuid}"
        );
        // systemd-escape --path: `-` inside a path component becomes \x2d.
        let fsck = format!(
            "systemd-fsck@dev-disk-by\\x2dpartuuid-{}.service",
            partuuid.replace('-', "\\x2d")
        );
        assert_eq!(
            unit.matches(&fsck).count(),
            2,
            "{fsck} in Requires= and After="
        );
    }

    #[test]
    fn the_base_postinst_creates_the_group_on_every_configure() {
        let script = package("pew-base").postinst().unwrap();
        assert!(script.ends_with(
            "if [ \"$1\" = configure ]; then\n    systemd-sysusers --root=\"$root\" pew.conf\nfi\n"
        ));
        assert!(!script.contains("systemctl"));
        assert_eq!(package("pewctl").postinst(), None);
    }

    #[test]
    fn no_file_is_in_two_packages() {
        let mut owners = std::collections::BTreeMap::new();
        for package in &PACKAGES {
            for file in package.files {
                if let Some(first) = owners.insert(file.destination(), package.name) {
                    panic!("{} is in {first} and {}", file.destination(), package.name);
                }
            }
        }
        assert_eq!(owners.len(), 24);
    }

    #[test]
    fn every_overlay_file_is_packaged_and_every_packaged_one_exists() {
        let mut on_disk = BTreeSet::new();
        files_under(&overlays(), &overlays(), &mut on_disk);
        let packaged: BTreeSet<String> = PACKAGES
            .iter()
            .flat_map(|package| package.files)
            .filter(|file| matches!(file, PackagedFile::Overlay(_)))
            .map(PackagedFile::destination)
            .collect();
        let unpackaged: Vec<_> = on_disk.difference(&packaged).collect();
        let missing: Vec<_> = packaged.difference(&on_disk).collect();
        assert!(
            unpackaged.is_empty() && missing.is_empty(),
            "overlays/ files in no package: {unpackaged:?}; packaged but absent: {missing:?}"
        );
    }

    #[test]
    fn pew_dependencies_name_pew_packages() {
        for package in &PACKAGES {
            for dependency in package.depends {
                if let Dependency::Pew(name) = dependency {
                    assert!(
                        PACKAGES
                            .iter()
                            .any(|other| other.name == *name && other.name != package.name),
                        "{} depends on {name}",
                        package.name
                    );
                }
            }
        }
    }

    #[test]
    fn every_service_the_image_includes_has_a_package() {
        let recipe = Recipe::parse(
            Path::new("image/pew.toml"),
            include_str!("../../../image/pew.toml"),
        )
        .unwrap();
        for service in &recipe.recipe.services.include {
            let package = package(service);
            assert!(package.files.contains(&PackagedFile::Binary(package.name)));
        }
    }

    #[test]
    fn the_binaries_to_build_are_listed_once() {
        let all: Vec<&Package> = PACKAGES.iter().collect();
        assert_eq!(
            binaries(&all),
            ["pew-firstboot", "pew-powerd", "pew-workerd", "pewctl"]
        );
    }

    #[test]
    fn an_image_gets_only_the_services_its_recipe_includes() {
        let names = |services: &[&str]| -> Vec<&str> {
            let services: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
            packages_for(&services).iter().map(|p| p.name).collect()
        };
        assert_eq!(
            names(&["pew-powerd"]),
            ["pew-base", "pew-powerd", "pewctl", "pew-os"]
        );
        assert_eq!(
            names(&["pew-powerd", "pew-workerd"]),
            ["pew-base", "pew-powerd", "pew-workerd", "pewctl", "pew-os"]
        );
        let powerd: Vec<&Package> = packages_for(&["pew-powerd".to_owned()]);
        assert_eq!(binaries(&powerd), ["pew-firstboot", "pew-powerd", "pewctl"]);
    }

    #[test]
    fn the_newest_glibc_symbol_version_is_found() {
        let symbols = "\
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.17) memcpy
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.35) hypot
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.34) pthread_create
0000000000000000      DO *UND*  0000000000000000 (GLIBC_PRIVATE) _rtld_global
";
        let version = newest_glibc(symbols);
        assert_eq!(
            version,
            Some(GlibcVersion {
                major: 2,
                minor: 35
            })
        );
        assert!(version <= Some(GLIBC));
        // 2.4 is older than 2.35: compared as numbers, not text.
        assert_eq!(
            newest_glibc("(GLIBC_2.4) a\n(GLIBC_2.10) b"),
            Some(GlibcVersion {
                major: 2,
                minor: 10
            })
        );
        assert_eq!(newest_glibc("no versioned symbols"), None);
    }

    #[test]
    fn installed_size_rounds_each_file_up_to_a_kib() {
        assert_eq!(installed_size_kib([]), 0);
        assert_eq!(installed_size_kib([1, 1024, 1025]), 1 + 1 + 2);
    }

    #[test]
    fn only_packages_without_binaries_are_architecture_all() {
        for package in &PACKAGES {
            let has_binary = package
                .files
                .iter()
                .any(|file| matches!(file, PackagedFile::Binary(_)));
            assert_eq!(
                package.architecture == Architecture::Arm64,
                has_binary,
                "{}",
                package.name
            );
        }
    }
}
