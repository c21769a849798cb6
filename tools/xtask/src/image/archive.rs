//! The package side of the image: private apt trees (one per architecture, never the host's
//! apt state), lock resolution, the verified `.deb` cache, and the local repositories the
//! root filesystems are built from.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use pew_image::archive::{self, Variant};
use pew_image::lock::{LockChange, LockedPackage, PackageLock};
use pew_image::recipe::Recipe;

use crate::process;
use crate::progress::Step;

/// Debian's archive keys (bookworm's package already holds trixie's).
const ARCHIVE_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A private apt configuration for one architecture under the cache directory.
pub struct AptTree {
    dir: PathBuf,
    architecture: String,
    /// The recipe's suites, in the order a file two of them share is credited.
    suites: Vec<String>,
}

impl AptTree {
    /// Writes the configuration (idempotent) for `architecture` from the recipe's mirror.
    pub fn new(cache: &Path, recipe: &Recipe, architecture: &str) -> Result<Self> {
        let dir = cache.join(format!("apt-{architecture}"));
        for sub in [
            "etc/apt/apt.conf.d",
            "etc/apt/preferences.d",
            "etc/apt/sources.list.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
        ] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let status = dir.join("status");
        if !status.exists() {
            fs::write(&status, "")?;
        }
        let debian = &recipe.debian;
        // A snapshot's signed Release files carry the Valid-Until of their day, long past.
        let expiry = if debian.snapshot.is_some() {
            " check-valid-until=no"
        } else {
            ""
        };
        let sources: String = debian
            .build_sources()
            .iter()
            .map(|source| {
                format!(
                    "deb [arch={architecture} signed-by={ARCHIVE_KEYRING}{expiry}] {} {} {}\n",
                    source.uri,
                    source.suite,
                    debian.components.join(" ")
                )
            })
            .collect();
        fs::write(dir.join("etc/apt/sources.list"), sources)?;
        fs::write(
            dir.join("apt.conf"),
            format!(
                "Dir \"{dir}/\";\n\
                 Dir::State::status \"{status}\";\n\
                 Dir::Etc::TrustedParts \"{dir}/etc/apt/trusted.gpg.d/\";\n\
                 APT::Architecture \"{architecture}\";\n\
                 APT::Architectures {{ \"{architecture}\"; }};\n\
                 APT::Install-Recommends \"false\";\n\
                 Debug::NoLocking \"true\";\n\
                 APT::Sandbox::User \"root\";\n\
                 Acquire::Languages \"none\";\n",
                dir = dir.display(),
                status = status.display(),
            ),
        )?;
        Ok(Self {
            dir,
            architecture: architecture.to_owned(),
            suites: debian.suites(),
        })
    }

    fn apt(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("APT_CONFIG", self.dir.join("apt.conf"));
        command
    }

    pub fn update(&self) -> Result<()> {
        process::run(self.apt("apt-get").args(["update", "-qq"]))
    }

    /// Where apt keeps the suites' signed release files and indexes.
    pub fn lists_dir(&self) -> PathBuf {
        self.dir.join("var/lib/apt/lists")
    }

    /// Every suite's `Packages` entries, the suites in the recipe's order.
    pub fn index(&self) -> Result<Vec<archive::IndexEntry>> {
        let lists = self.lists_dir();
        let mut files = Vec::new();
        for entry in fs::read_dir(&lists)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default()
                .to_owned();
            if !name.ends_with("_Packages") {
                continue;
            }
            let suite = archive::suite_of_index_file(&name, &self.suites)
                .with_context(|| format!("{} belongs to no suite of the recipe", path.display()))?;
            let rank = self.suites.iter().position(|s| s == suite);
            files.push((rank, name, suite.to_owned(), path));
        }
        files.sort();
        let mut entries = Vec::new();
        for (_, _, suite, path) in files {
            let text = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            entries.extend(
                archive::parse_packages_index(&text, &suite)
                    .with_context(|| format!("in {}", path.display()))?,
            );
        }
        ensure!(
            !entries.is_empty(),
            "no Packages index in {}: apt-get update failed?",
            lists.display()
        );
        Ok(entries)
    }

    /// The full set `variant` plus `packages` installs, with hashes, resolved in mmdebstrap's
    /// two stages (see [`Variant`]).
    pub fn resolve(&self, variant: Variant, packages: &[String]) -> Result<Vec<LockedPackage>> {
        let index = self.index()?;
        let (first, variant_second) = archive::variant_seeds(&index, variant);
        // In mmdebstrap's order: the includes, then the variant's packages.
        let second: Vec<String> = packages.iter().cloned().chain(variant_second).collect();
        let status = self.dir.join("status");
        fs::write(&status, "")?;
        let mut locked = self.print_uris(&first, &index)?;
        fs::write(&status, archive::installed_status(&index, &locked))?;
        let added = self.print_uris(&second, &index);
        fs::write(&status, "")?;
        locked.extend(added?);
        println!(
            "{} resolves to {} packages",
            self.architecture,
            locked.len()
        );
        Ok(locked)
    }

    /// What `apt-get install` would download for `names`, with hashes from the index.
    fn print_uris(
        &self,
        names: &[String],
        index: &[archive::IndexEntry],
    ) -> Result<Vec<LockedPackage>> {
        let uris = process::output(
            self.apt("apt-get")
                .args(["install", "--print-uris", "-qq", "-y"])
                .args(names),
        )?;
        Ok(archive::lock_entries(
            &archive::parse_print_uris(&uris)?,
            index,
        )?)
    }

    /// Downloads `packages` (of this architecture or `all`) into `cache`.
    fn download(&self, cache: &Path, packages: &[&LockedPackage]) -> Result<()> {
        if packages.is_empty() {
            return Ok(());
        }
        let specs: Vec<String> = packages
            .iter()
            .map(|package| format!("{}={}", package.name, package.version))
            .collect();
        let _step = Step::start(format!(
            "downloading {} locked packages for {}",
            specs.len(),
            self.architecture
        ));
        process::run(
            self.apt("apt-get")
                .args(["download", "-qq"])
                .args(&specs)
                .current_dir(cache),
        )
    }

    /// Which of `packages` (of this architecture or `all`) no suite offers any more.
    fn unavailable<'a>(&self, packages: &[&'a LockedPackage]) -> Result<Vec<&'a LockedPackage>> {
        Ok(archive::unavailable(packages, &self.index()?))
    }
}

/// The lock file's path.
pub fn lock_path(recipe_path: &Path) -> PathBuf {
    recipe_path.with_extension("lock")
}

/// Reads the committed lock.
pub fn read_lock(path: &Path) -> Result<PackageLock> {
    let text = fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read {}: run cargo xtask image --update-lock",
            path.display()
        )
    })?;
    PackageLock::parse(&text).with_context(|| format!("{} is not a valid lock", path.display()))
}

/// Resolves the image's and the tools tree's package sets afresh from the recipe's suites.
pub fn resolve(cache: &Path, recipe: &Recipe) -> Result<PackageLock> {
    let _step = Step::start("resolving the package set from the archive");
    let image = AptTree::new(cache, recipe, &recipe.debian.architecture.to_string())?;
    let tools = AptTree::new(cache, recipe, &host_architecture()?)?;
    image.update()?;
    tools.update()?;
    let mut packages = image.resolve(Variant::Minbase, &recipe.debian.packages)?;
    for package in tools.resolve(Variant::Essential, &recipe.tools.packages)? {
        // `all` packages both sets need are locked once.
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    Ok(PackageLock::from_packages(packages)?)
}

/// Writes `new` as the lock (atomically), after printing what changed against `old` as
/// `cargo update` does.
pub fn write_lock(lock_file: &Path, old: Option<&PackageLock>, new: &PackageLock) -> Result<()> {
    if let Some(old) = old {
        print_changes(&old.changes(new));
    }
    let temporary = lock_file.with_extension("lock.new");
    fs::write(&temporary, new.to_text())
        .and_then(|()| fs::rename(&temporary, lock_file))
        .with_context(|| format!("cannot write {}", lock_file.display()))?;
    println!(
        "wrote {} ({} packages)",
        lock_file.display(),
        new.packages().len()
    );
    Ok(())
}

/// One line per change, then how many there were and how many are security fixes.
pub fn print_changes(changes: &[LockChange]) {
    for change in changes {
        println!("{change}");
    }
    let security = changes.iter().filter(|c| c.is_security()).count();
    println!(
        "{} lock changes, {security} of them security fixes",
        changes.len()
    );
}

/// `dpkg --print-architecture`: the tools tree runs on the build host.
pub fn host_architecture() -> Result<String> {
    Ok(
        process::output(Command::new("dpkg").arg("--print-architecture"))?
            .trim()
            .to_owned(),
    )
}

/// Whether the cache could be filled with every locked `.deb`.
pub enum Availability {
    /// Every locked file is in the cache, verified: the directory.
    Complete(PathBuf),
    /// These locked packages are in neither the cache nor any suite of the archive.
    Gone(Vec<LockedPackage>),
}

/// Fills the `.deb` cache with every locked package: first from `seed` (a published `.deb`
/// set, for an offline rebuild), then from the archive, and checks every file against its
/// hash. A file that does not match is deleted and fetched again once. Nothing is fetched
/// when a locked version is gone from the archive: those are returned instead.
pub fn fill_cache(
    cache: &Path,
    recipe: &Recipe,
    lock: &PackageLock,
    seed: Option<&Path>,
) -> Result<Availability> {
    let debs = cache.join("debs");
    fs::create_dir_all(&debs)?;
    if let Some(seed) = seed {
        import_seed(seed, &debs, lock)?;
    }
    for attempt in 0..2 {
        let present: Vec<String> = fs::read_dir(&debs)?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect();
        let missing = lock.missing(present.iter().map(String::as_str));
        let mut by_architecture: Vec<(String, Vec<&LockedPackage>)> = Vec::new();
        for package in missing {
            let architecture = if package.architecture == "all" {
                recipe.debian.architecture.to_string()
            } else {
                package.architecture.clone()
            };
            match by_architecture.iter_mut().find(|(a, _)| *a == architecture) {
                Some((_, list)) => list.push(package),
                None => by_architecture.push((architecture, vec![package])),
            }
        }
        let mut trees = Vec::new();
        let mut gone = Vec::new();
        for (architecture, packages) in by_architecture {
            let tree = AptTree::new(cache, recipe, &architecture)?;
            tree.update()?;
            gone.extend(tree.unavailable(&packages)?.into_iter().cloned());
            trees.push((tree, packages));
        }
        if !gone.is_empty() {
            return Ok(Availability::Gone(gone));
        }
        for (tree, packages) in trees {
            tree.download(&debs, &packages)?;
        }
        let corrupt = verify(&debs, lock)?;
        if corrupt.is_empty() {
            return Ok(Availability::Complete(debs));
        }
        for name in &corrupt {
            fs::remove_file(debs.join(name))?;
        }
        if attempt == 1 {
            bail!(
                "downloaded packages do not match the lock: {}",
                corrupt.join(", ")
            );
        }
        println!(
            "refetching {} packages whose hash did not match the lock",
            corrupt.len()
        );
    }
    unreachable!("the loop returns or fails on its second pass")
}

/// Links (or copies) the locked files `seed` holds into the cache; their hashes are checked
/// with the rest.
fn import_seed(seed: &Path, debs: &Path, lock: &PackageLock) -> Result<()> {
    ensure!(
        seed.is_dir(),
        "--debs {}: no such directory",
        seed.display()
    );
    let mut imported = 0;
    for package in lock.packages() {
        let (from, to) = (seed.join(&package.filename), debs.join(&package.filename));
        if to.exists() || !from.is_file() {
            continue;
        }
        process::link_or_copy(&from, &to)?;
        imported += 1;
    }
    println!("{imported} locked packages taken from {}", seed.display());
    Ok(())
}

/// `name version (architecture)` of each package, for an error.
pub fn describe_packages(packages: &[LockedPackage]) -> String {
    packages
        .iter()
        .map(|p| format!("{} {} ({})", p.name, p.version, p.architecture))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Hard-links (or copies) every locked `.deb` and the lock into `directory`: the exact input
/// of a build, published beside its image so the release can be rebuilt after the archive
/// has moved on.
pub fn publish_inputs(debs: &Path, lock: &PackageLock, directory: &Path) -> Result<()> {
    fs::create_dir_all(directory)?;
    for package in lock.packages() {
        let (from, to) = (
            debs.join(&package.filename),
            directory.join(&package.filename),
        );
        process::link_or_copy(&from, &to)?;
    }
    fs::write(directory.join(LOCK_FILE_NAME), lock.to_text())?;
    Ok(())
}

/// The lock's name in a published `.deb` set.
pub const LOCK_FILE_NAME: &str = "pew.lock";

/// The file names whose SHA-256 differs from the lock.
fn verify(debs: &Path, lock: &PackageLock) -> Result<Vec<String>> {
    let names: Vec<&str> = lock
        .packages()
        .iter()
        .map(|p| p.filename.as_str())
        .collect();
    let sums = process::sha256_files(debs, &names)?;
    Ok(lock
        .packages()
        .iter()
        .zip(sums)
        .filter(|(package, sum)| package.verify(*sum).is_err())
        .map(|(package, _)| package.filename.clone())
        .collect())
}

/// A flat repository (`deb [trusted=yes] file:///… ./`) holding exactly the locked packages of
/// `architecture` and `all`, so apt inside mmdebstrap can choose nothing else.
pub fn local_repository(
    cache: &Path,
    debs: &Path,
    lock: &PackageLock,
    architecture: &str,
    suite: &str,
    source_date_epoch: u64,
) -> Result<PathBuf> {
    let repo = cache.join(format!("repo-{architecture}"));
    if repo.exists() {
        fs::remove_dir_all(&repo)?;
    }
    fs::create_dir_all(&repo)?;
    let wanted: BTreeSet<&str> = lock
        .packages()
        .iter()
        .filter(|p| p.architecture == architecture || p.architecture == "all")
        .map(|p| p.filename.as_str())
        .collect();
    for name in &wanted {
        process::link_or_copy(&debs.join(name), &repo.join(name))?;
    }
    let packages = process::output(
        Command::new("apt-ftparchive")
            .args(["packages", "."])
            .current_dir(&repo),
    )?;
    fs::write(repo.join("Packages"), packages)?;
    let date = process::output(Command::new("date").args([
        "-u",
        "-R",
        "-d",
        &format!("@{source_date_epoch}"),
    ]))?;
    let release = process::output(
        Command::new("apt-ftparchive")
            // mmdebstrap picks a variant's packages with `?archive(^<suite>$)`.
            .args([
                "-o",
                &format!("APT::FTPArchive::Release::Date={}", date.trim()),
            ])
            .args(["-o", &format!("APT::FTPArchive::Release::Suite={suite}")])
            .args(["-o", &format!("APT::FTPArchive::Release::Codename={suite}")])
            .args(["release", "."])
            .current_dir(&repo),
    )?;
    fs::write(repo.join("Release"), release)?;
    Ok(repo)
}
