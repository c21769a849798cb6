//! `cargo xtask image`: the SD card image, built from image/pew.toml, its package lock and
//! pew's own .debs (see image/README.md for the recipe and issue 3 for the requirements).

mod archive;
mod assemble;
mod rootfs;
mod served;
mod settle;
pub mod snapshot;
pub mod tools;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use pew_image::lock::PackageLock;
use pew_image::recipe::{CheckedRecipe, Recipe};

use archive::Availability;
use pew_image::sbom::{self, SbomPackage};
use settle::{LockInputs, LockPolicy};

use crate::progress::Step;
use crate::{debs, host, process};

use crate::process::workspace_root;

pub use tools::ToolsTree;

/// Where downloaded packages, cached root filesystems and tools trees live.
pub fn cache_dir() -> PathBuf {
    workspace_root().join("out/cache")
}

/// Where a build writes its artifacts.
pub fn output_dir() -> PathBuf {
    workspace_root().join("out/image")
}

/// The raw disk image of the last build (`pew-<version>-rpi-arm64.img` in the output directory).
pub fn built_image() -> Result<PathBuf> {
    let dir = output_dir();
    let mut images: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| {
            format!(
                "no image built yet ({} is missing): run cargo xtask image",
                dir.display()
            )
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.to_string_lossy().ends_with("-rpi-arm64.img"))
        .collect();
    images.sort();
    match images.pop() {
        Some(image) if images.is_empty() => Ok(image),
        Some(_) => bail!("{} holds more than one image", dir.display()),
        None => bail!("no image in {}: run cargo xtask image", dir.display()),
    }
}

/// The tools tree of the current lock (built by `cargo xtask image`).
pub fn tools_tree() -> Result<ToolsTree> {
    let link = cache_dir().join("tools");
    let root = link
        .canonicalize()
        .with_context(|| format!("no tools tree at {}: run cargo xtask image", link.display()))?;
    Ok(ToolsTree::new(root))
}

#[derive(clap::Args)]
pub struct ImageArgs {
    #[command(flatten)]
    lock: LockArgs,
    /// Build twice, each with its own caches, the second only from the `.deb` set the first
    /// published and with the lock unchanged, and compare every artifact.
    #[arg(long, conflicts_with = "outdated")]
    check_reproducible: bool,
    /// List the locked packages that have newer versions in the recipe's suites (security
    /// fixes marked), and build nothing.
    #[arg(long)]
    outdated: bool,
    /// Check the recipe's snapshot path on a file:// archive laid out as Debian's snapshot
    /// service, made from the last build's signed indexes and .debs (run by cargo xtask test).
    #[arg(long, conflicts_with_all = ["outdated", "check_reproducible"])]
    check_snapshot: bool,
}

/// How a build treats image/pew.lock, as cargo treats Cargo.lock.
#[derive(clap::Args, Default)]
pub struct LockArgs {
    /// Resolve the package set afresh and rewrite image/pew.lock before building.
    #[arg(long, conflicts_with = "locked")]
    update_lock: bool,
    /// Never change image/pew.lock: fail, naming them, if locked packages cannot be had
    /// (for rebuilding a release from its kept inputs).
    #[arg(long)]
    locked: bool,
    /// Take locked `.deb`s from this directory first (a release's published `.deb` set):
    /// with every one there, the build needs no network.
    #[arg(long, value_name = "DIR")]
    debs: Option<PathBuf>,
}

impl LockArgs {
    fn policy(&self) -> LockPolicy {
        if self.update_lock {
            LockPolicy::Update
        } else if self.locked {
            LockPolicy::Locked
        } else {
            LockPolicy::Refresh
        }
    }
}

/// The lock as the build reaches it: image/pew.lock, the archive through private apt trees,
/// the `.deb` cache (seeded from `--debs`).
struct ArchiveLock<'a> {
    recipe: &'a Recipe,
    cache: &'a Path,
    lock_file: PathBuf,
    seed: Option<&'a Path>,
}

impl LockInputs for ArchiveLock<'_> {
    fn committed(&self) -> Result<Option<PackageLock>> {
        self.lock_file
            .exists()
            .then(|| archive::read_lock(&self.lock_file))
            .transpose()
    }

    fn resolve(&self) -> Result<PackageLock> {
        archive::resolve(self.cache, self.recipe)
    }

    fn write(&self, old: Option<&PackageLock>, new: &PackageLock) -> Result<()> {
        archive::write_lock(&self.lock_file, old, new)
    }

    fn fill(&self, lock: &PackageLock) -> Result<Availability> {
        archive::fill_cache(self.cache, self.recipe, lock, self.seed)
    }

    fn say(&self, line: &str) {
        println!("{line}");
    }

    fn name(&self) -> String {
        self.lock_file.display().to_string()
    }
}

/// What the cached root filesystems are made from (besides the xtask code that runs mmdebstrap,
/// whose arguments are part of their cache key).
const TREE_INPUTS: [&str; 2] = ["image/pew.lock", "image/pew.toml"];

/// Host packages the build runs (the assembly tools themselves come from the tools tree).
const HOST_TOOLS: [(&str, &str); 6] = [
    ("mmdebstrap", "mmdebstrap"),
    ("qemu-aarch64-static", "qemu-user-static"),
    ("update-binfmts", "binfmt-support"),
    ("apt-ftparchive", "apt-utils"),
    ("chroot", "coreutils"),
    ("arch-test", "arch-test"),
];

pub fn run(args: ImageArgs) -> Result<()> {
    if args.outdated {
        return outdated();
    }
    if args.check_snapshot {
        host::become_root()?;
        return snapshot::check();
    }
    let inputs = Inputs::load(&args.lock)?;
    if args.check_reproducible {
        return check_reproducible(&inputs);
    }
    inputs.build()?.print();
    Ok(())
}

/// The image for HEAD: the one in the output directory when it was built from this commit
/// with a clean tree, otherwise a fresh (cached, so incremental) build.
pub fn ensure_built() -> Result<PathBuf> {
    let (_, version) = debs::head_version()?;
    let image = output_dir().join(format!("pew-{version}-rpi-arm64.img"));
    if image.exists() && output_dir().join("SHA256SUMS").exists() && debs::tree_is_clean()? {
        println!("image: {} is up to date", image.display());
        return Ok(image);
    }
    Inputs::load(&LockArgs::default())?.build()?.print();
    built_image()
}

/// `--outdated`: what re-resolving would change, without writing anything.
fn outdated() -> Result<()> {
    let recipe_path = workspace_root().join("image/pew.toml");
    let recipe = Recipe::load(&recipe_path)?;
    prepare_host(&recipe)?;
    let cache = cache_dir();
    fs::create_dir_all(&cache)?;
    let locked = archive::read_lock(&archive::lock_path(&recipe_path))?;
    let current = archive::resolve(&cache, &recipe.recipe)?;
    let changes = locked.changes(&current);
    if changes.is_empty() {
        println!(
            "image/pew.lock is up to date with {}",
            recipe.recipe.debian.suites().join(", ")
        );
    } else {
        println!(
            "newer than image/pew.lock in {}:",
            recipe.recipe.debian.suites().join(", ")
        );
        archive::print_changes(&changes);
        println!("cargo xtask image --update-lock takes them");
    }
    Ok(())
}

/// A recipe and its lock, on a host prepared to build from them, with every locked `.deb`
/// in the cache.
pub struct Inputs {
    recipe: CheckedRecipe,
    lock: PackageLock,
    debs: PathBuf,
}

impl Inputs {
    /// Loads the recipe, settles on the lock ([`settle`]) and fills the `.deb` cache, after
    /// making sure the host can build.
    pub fn load(args: &LockArgs) -> Result<Self> {
        let recipe_path = workspace_root().join("image/pew.toml");
        let recipe = Recipe::load(&recipe_path)?;
        prepare_host(&recipe)?;
        let cache = cache_dir();
        fs::create_dir_all(&cache)?;
        let inputs = ArchiveLock {
            recipe: &recipe.recipe,
            cache: &cache,
            lock_file: archive::lock_path(&recipe_path),
            seed: args.debs.as_deref(),
        };
        let (lock, debs) = settle::settle(args.policy(), &inputs)?;
        Ok(Self { recipe, lock, debs })
    }

    /// One build into the output directory with the shared cache.
    pub fn build(&self) -> Result<BuildReport> {
        build(self, &cache_dir(), &output_dir())
    }

    /// Drops the cached root filesystems (not the .deb cache, the build's input), so the
    /// next build is cold.
    pub fn forget_cached_trees(&self) -> Result<()> {
        for entry in fs::read_dir(cache_dir())? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if name.starts_with("base-") {
                fs::remove_file(&path)?;
            } else if name.starts_with("tools-") {
                fs::remove_dir_all(&path)?;
            }
        }
        Ok(())
    }
}

fn prepare_host(recipe: &CheckedRecipe) -> Result<()> {
    // mmdebstrap's root mode, chroot and the root-owned trees need root.
    host::become_root()?;
    host::ensure_commands(&HOST_TOOLS)?;
    if !Path::new("/usr/share/keyrings/debian-archive-keyring.gpg").exists() {
        host::ensure_packages(&["debian-archive-keyring"])?;
    }
    // Containers and fresh hosts may have binfmt_misc unmounted or the handler disabled.
    let architecture = recipe.recipe.debian.architecture.to_string();
    let runs = || process::run(Command::new("arch-test").arg(&architecture)).is_ok();
    if !runs() {
        let _ = process::run(Command::new("mount").args([
            "-t",
            "binfmt_misc",
            "binfmt_misc",
            "/proc/sys/fs/binfmt_misc",
        ]));
        let _ = process::run(Command::new("update-binfmts").args(["--enable", "qemu-aarch64"]));
        ensure!(
            runs(),
            "this host cannot run {architecture} binaries through qemu-user (binfmt_misc)"
        );
    }
    Ok(())
}

/// What a build produced and how long it took.
pub struct BuildReport {
    output: PathBuf,
    steps: Vec<(&'static str, f64)>,
    artifacts: Vec<(String, u64)>,
    system_bytes: u64,
}

impl BuildReport {
    /// Wall-clock seconds of the whole build.
    pub fn total_seconds(&self) -> f64 {
        self.steps.iter().map(|(_, seconds)| seconds).sum()
    }

    /// The root filesystem of one slot (EROFS), bytes.
    pub fn system_bytes(&self) -> u64 {
        self.system_bytes
    }

    /// The compressed image users download, bytes.
    pub fn compressed_image_bytes(&self) -> u64 {
        self.artifacts
            .iter()
            .find(|(name, _)| name.ends_with(".img.zst"))
            .map_or(0, |(_, bytes)| *bytes)
    }

    pub fn print(&self) {
        println!("\nimage build: {}", self.output.display());
        for (step, seconds) in &self.steps {
            println!("  {step:<28} {seconds:>7.1} s");
        }
        println!(
            "  {:<28} {:>7.1} s",
            "total",
            self.steps.iter().map(|(_, s)| s).sum::<f64>()
        );
        println!(
            "  {:<28} {:>7.1} MiB",
            "system (EROFS, one slot)",
            self.system_bytes as f64 / 1_048_576.0
        );
        for (name, bytes) in &self.artifacts {
            println!("  {name:<60} {:>9.1} MiB", *bytes as f64 / 1_048_576.0);
        }
    }
}

/// Times each step of a build, and shows it while it runs.
struct Stopwatch {
    current: Option<(&'static str, Instant, Step)>,
    steps: Vec<(&'static str, f64)>,
}

impl Stopwatch {
    fn new() -> Self {
        Self {
            current: None,
            steps: Vec::new(),
        }
    }

    /// Ends the running step, if any, and starts `step`.
    fn start(&mut self, step: &'static str) {
        self.finish();
        self.current = Some((step, Instant::now(), Step::start(format!("image: {step}"))));
    }

    fn finish(&mut self) {
        if let Some((step, started, shown)) = self.current.take() {
            drop(shown);
            self.steps.push((step, started.elapsed().as_secs_f64()));
        }
    }
}

/// One complete build from the lock into `output`, using (and filling) `cache`.
fn build(inputs: &Inputs, cache: &Path, output: &Path) -> Result<BuildReport> {
    let Inputs {
        recipe,
        lock,
        debs: debs_dir,
    } = inputs;
    let mut watch = Stopwatch::new();
    watch.start("tools tree");
    let (commit_time, version) = debs::head_version()?;
    let epoch = recipe
        .recipe
        .reproducibility
        .source_date_epoch
        .resolve(commit_time);
    // The root filesystems are dated by the last change to what they are built from, not by
    // HEAD: a commit that touches only pew keeps the cached trees, and a fresh build of the
    // same commit makes the same trees (the initramfs inside records this date).
    let trees_epoch = recipe
        .recipe
        .reproducibility
        .source_date_epoch
        .resolve(debs::last_change_time(&TREE_INPUTS)?);
    let image_architecture = recipe.recipe.debian.architecture.to_string();
    let host_architecture = archive::host_architecture()?;

    let tools_repo = archive::local_repository(
        cache,
        debs_dir,
        lock,
        &host_architecture,
        &recipe.recipe.debian.suite,
        trees_epoch,
    )?;
    let tools = ToolsTree::new(rootfs::tools_tree(
        cache,
        &recipe.recipe,
        lock,
        &tools_repo,
        &host_architecture,
        trees_epoch,
    )?);
    watch.start("base root filesystem");
    let image_repo = archive::local_repository(
        cache,
        debs_dir,
        lock,
        &image_architecture,
        &recipe.recipe.debian.suite,
        trees_epoch,
    )?;
    let base = rootfs::base(cache, &recipe.recipe, lock, &image_repo, trees_epoch)?;
    watch.start("pew packages (cross build)");
    let pew_debs = debs::build_packages(
        &cache.join("pew-debs"),
        &pew_image::deb::packages_for(&recipe.recipe.services.include),
    )?;
    watch.start("install pew");

    let assembly = assemble::Assembly {
        recipe,
        tools: &tools,
        work: cache.join("work"),
        source_date_epoch: epoch,
        repository: image_repo.clone(),
    };
    assembly.install(&base, &pew_debs)?;
    watch.start("filesystems");
    assembly.split()?;
    let filesystems = assembly.make_filesystems()?;
    watch.start("disk image");

    if output.exists() {
        fs::remove_dir_all(output)?;
    }
    fs::create_dir_all(output)?;
    let stem = format!("pew-{version}-rpi-arm64");
    let image = output.join(format!("{stem}.img"));
    assembly.disk(&filesystems, &image)?;
    watch.start("bmap + zstd");

    let mut artifacts = vec![image.clone()];
    let bmap = output.join(format!("{stem}.img.bmap"));
    process::run(
        tools
            .command("bmaptool")?
            .args(["-q", "create", "-o"])
            .arg(&bmap)
            .arg(&image),
    )?;
    artifacts.push(bmap);
    let compressed = output.join(format!("{stem}.img.zst"));
    // A fixed thread count: zstd's multi-threaded framing is part of the output.
    process::run(
        tools
            .command("zstd")?
            .args(["-q", "-12", "-T2", "--long=27", "-o"])
            .arg(&compressed)
            .arg(&image),
    )?;
    artifacts.push(compressed);
    watch.start("payload, SBOM, sums");

    // The OTA payload of one slot: its system image and its boot files.
    let system = output.join(format!("pew-{version}-system.erofs"));
    // The work directory goes away; a link saves copying 300 MB.
    process::link_or_copy(&filesystems.system, &system)?;
    artifacts.push(system);
    let payload = output.join(format!("pew-{version}-slot-boot.tar"));
    process::run(
        tools
            .command("tar")?
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--format=gnu",
            ])
            .arg(format!("--mtime=@{epoch}"))
            .arg("-cf")
            .arg(&payload)
            .arg("-C")
            .arg(&filesystems.slot_payload)
            .arg("."),
    )?;
    artifacts.push(payload);

    let sbom_file = output.join(format!("pew-{version}.spdx"));
    fs::write(
        &sbom_file,
        sbom_document(&base, lock, &pew_debs, &version, epoch)?,
    )?;
    artifacts.push(sbom_file);

    let names: Vec<String> = artifacts
        .iter()
        .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
        .collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let sums = process::sha256_files(output, &name_refs)?;
    let text: String = names
        .iter()
        .zip(&sums)
        .map(|(name, sum)| format!("{sum}  {name}\n"))
        .collect();
    fs::write(output.join("SHA256SUMS"), text)?;
    // The build's input, beside its output: what `--locked --debs` rebuilds it from.
    archive::publish_inputs(debs_dir, lock, &output.join(format!("pew-{version}-debs")))?;
    watch.finish();

    let system_bytes = fs::metadata(&filesystems.system)?.len();
    let mut sizes = Vec::new();
    for name in &names {
        sizes.push((name.clone(), allocated_bytes(&output.join(name))?));
    }
    fs::remove_dir_all(&assembly.work)?;
    Ok(BuildReport {
        output: output.to_owned(),
        steps: watch.steps,
        artifacts: sizes,
        system_bytes,
    })
}

/// Bytes a (possibly sparse) file occupies.
fn allocated_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata(path)?.blocks() * 512)
}

fn sbom_document(
    base: &Path,
    lock: &PackageLock,
    pew_debs: &[PathBuf],
    version: &str,
    epoch: u64,
) -> Result<String> {
    let listing = fs::read_to_string(format!("{}.packages", base.display()))
        .context("the base root filesystem's package list is missing")?;
    let mut packages = Vec::new();
    for line in listing.lines() {
        let [name, package_version, architecture] = line.split('\t').collect::<Vec<_>>()[..] else {
            bail!("unexpected package list line {line:?}");
        };
        let locked = lock
            .packages()
            .iter()
            .find(|p| p.name == name && p.architecture == architecture);
        packages.push(SbomPackage {
            name: name.to_owned(),
            version: package_version.to_owned(),
            architecture: architecture.to_owned(),
            sha256: locked.map(|p| p.sha256),
            supplier: "debian",
            suite: locked.and_then(|p| p.suite.clone()),
        });
    }
    for deb in pew_debs {
        let name = deb
            .file_name()
            .and_then(|n| n.to_str())
            .context("pew .deb name")?;
        let mut fields = name.trim_end_matches(".deb").split('_');
        let (Some(package), Some(package_version), Some(architecture)) =
            (fields.next(), fields.next(), fields.next())
        else {
            bail!("unexpected .deb name {name}");
        };
        packages.push(SbomPackage {
            name: package.to_owned(),
            version: package_version.to_owned(),
            architecture: architecture.to_owned(),
            sha256: Some(process::sha256_file(deb)?),
            supplier: "pew",
            suite: None,
        });
    }
    Ok(sbom::spdx("pew-rpi-arm64", version, epoch, &packages))
}

/// Two complete builds, each with its own caches: the first from the verified `.deb` cache,
/// the second only from the `.deb` set the first published, with the lock unchanged (as a
/// release is rebuilt after the archive has moved on); then every artifact compared.
fn check_reproducible(inputs: &Inputs) -> Result<()> {
    let root = workspace_root().join("out/reproducibility");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    let first = root.join("first");
    let first_cache = first.join("cache");
    fs::create_dir_all(&first_cache)?;
    std::os::unix::fs::symlink(&inputs.debs, first_cache.join("debs"))?;
    build(inputs, &first_cache, &first.join("image"))?.print();

    let second = root.join("second");
    let second_cache = second.join("cache");
    fs::create_dir_all(&second_cache)?;
    let (_, version) = debs::head_version()?;
    let published = first.join("image").join(format!("pew-{version}-debs"));
    let Availability::Complete(debs) = archive::fill_cache(
        &second_cache,
        &inputs.recipe.recipe,
        &inputs.lock,
        Some(&published),
    )?
    else {
        bail!("the first build's published .deb set is incomplete");
    };
    let rebuild = Inputs {
        recipe: inputs.recipe.clone(),
        lock: inputs.lock.clone(),
        debs,
    };
    build(&rebuild, &second_cache, &second.join("image"))?.print();

    let sums: Vec<String> = [&first, &second]
        .iter()
        .map(|run| fs::read_to_string(run.join("image/SHA256SUMS")))
        .collect::<Result<_, _>>()?;
    println!(
        "first build's SHA256SUMS:\n{}\nsecond build's (from the published .deb set):\n{}",
        sums[0], sums[1]
    );
    ensure!(
        sums[0] == sums[1],
        "the two builds differ (artifacts kept in {})",
        root.display()
    );
    println!("reproducible: both builds gave identical artifacts");
    Ok(())
}
