//! The image's package manifest as an SPDX 2.3 document (tag-value), published next to the
//! image: every Debian package in the system slots with its version and `.deb` hash, and
//! pew's own packages.

use crate::digest::Sha256Digest;

/// One package in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The `.deb`'s hash, when the lock knows it.
    pub sha256: Option<Sha256Digest>,
    /// `debian` for the archive's packages, `pew` for ours.
    pub supplier: &'static str,
    /// The archive suite a Debian package came from (`trixie-security`), when the lock says.
    pub suite: Option<String>,
}

/// The SPDX document for image `name` at `version`, created at `created_epoch` (the image's
/// SOURCE_DATE_EPOCH, so the document is as reproducible as the image). Packages are written
/// sorted by name and architecture.
pub fn spdx(name: &str, version: &str, created_epoch: u64, packages: &[SbomPackage]) -> String {
    let mut sorted: Vec<&SbomPackage> = packages.iter().collect();
    sorted.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    let mut text = format!(
        "SPDXVersion: SPDX-2.3\nDataLicense: CC0-1.0\nSPDXID: SPDXRef-DOCUMENT\n\
         DocumentName: {name}-{version}\n\
         DocumentNamespace: https://pew.invalid/spdx/{name}-{version}\n\
         Creator: Tool: cargo-xtask-image\nCreated: {}\n",
        iso8601(created_epoch)
    );
    for package in sorted {
        let id = spdx_id(&package.name, &package.architecture);
        text += &format!(
            "\nPackageName: {}\nSPDXID: {id}\nPackageVersion: {}\n\
             PackageSupplier: Organization: {}\nPackageDownloadLocation: NOASSERTION\n\
             FilesAnalyzed: false\n",
            package.name, package.version, package.supplier
        );
        if let Some(sha256) = package.sha256 {
            text += &format!("PackageChecksum: SHA256: {sha256}\n");
        }
        // purl's `distro` qualifier names where a deb came from; scanners match security
        // advisories against it.
        let distro = package
            .suite
            .as_ref()
            .map_or(String::new(), |suite| format!("&distro={suite}"));
        if let Some(suite) = &package.suite {
            text += &format!("PackageComment: <text>Debian suite {suite}</text>\n");
        }
        text += &format!(
            "ExternalRef: PACKAGE-MANAGER purl pkg:deb/{}/{}@{}?arch={}{distro}\n\
             Relationship: SPDXRef-DOCUMENT DESCRIBES {id}\n",
            package.supplier,
            package.name,
            package.version.replace(':', "%3A"),
            package.architecture
        );
    }
    text
}

/// SPDX ids allow letters, digits, `.` and `-` only.
fn spdx_id(name: &str, architecture: &str) -> String {
    let clean = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("SPDXRef-Package-{}-{}", clean(name), clean(architecture))
}

/// `YYYY-MM-DDThh:mm:ssZ` (civil-from-days, proleptic Gregorian).
fn iso8601(epoch: u64) -> String {
    let days = epoch / 86_400;
    let seconds = epoch % 86_400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        // 2026-01-01 00:00:00 UTC, the lab's SOURCE_DATE_EPOCH.
        assert_eq!(iso8601(1_767_225_600), "2026-01-01T00:00:00Z");
        // A leap day.
        assert_eq!(iso8601(951_782_400 + 3_723), "2000-02-29T01:02:03Z");
    }

    #[test]
    fn packages_are_sorted_and_described_with_purl_and_hash() {
        let hash: Sha256Digest = "ab".repeat(32).parse().unwrap();
        let document = spdx(
            "pew",
            "0.1.0",
            1_767_225_600,
            &[
                SbomPackage {
                    name: "pew-powerd".into(),
                    version: "0.1.0+git1".into(),
                    architecture: "arm64".into(),
                    sha256: None,
                    supplier: "pew",
                    suite: None,
                },
                SbomPackage {
                    name: "bsdutils".into(),
                    version: "1:2.41.5-0+deb13u1".into(),
                    architecture: "arm64".into(),
                    sha256: Some(hash),
                    supplier: "debian",
                    suite: Some("trixie-security".into()),
                },
            ],
        );
        let bsdutils = document.find("PackageName: bsdutils").unwrap();
        let powerd = document.find("PackageName: pew-powerd").unwrap();
        assert!(bsdutils < powerd);
        assert!(document.contains("Created: 2026-01-01T00:00:00Z\n"));
        assert!(document.contains(&format!("PackageChecksum: SHA256: {}\n", "ab".repeat(32))));
        assert!(document.contains(
            "purl pkg:deb/debian/bsdutils@1%3A2.41.5-0+deb13u1?arch=arm64&distro=trixie-security\n"
        ));
        assert!(document.contains("PackageComment: <text>Debian suite trixie-security</text>\n"));
        assert!(document.contains("purl pkg:deb/pew/pew-powerd@0.1.0+git1?arch=arm64\n"));
        assert!(document.contains("SPDXID: SPDXRef-Package-pew-powerd-arm64\n"));
        assert_eq!(document.matches("PackageChecksum").count(), 1);
    }
}
