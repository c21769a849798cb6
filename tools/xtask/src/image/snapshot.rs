//! The recipe's snapshot path, checked without Debian's snapshot service (unreachable here):
//! an archive on disk laid out as the service lays out one moment
//! (`archive/debian/<timestamp>/`, `archive/debian-security/<timestamp>/`), made from the
//! build's own Debian-signed indexes and verified `.deb`s, and served on loopback. A recipe
//! naming it must resolve a package set from it, with the signatures checked against the
//! archive keyring, and fetch every locked `.deb` from it into an empty cache.
//!
//! apt keeps its indexes decompressed, so the copy has `Packages` where the signed release
//! file lists `Packages.xz` first. Over HTTP the missing `.xz` is a 404 and apt falls back to
//! the uncompressed index the release file also lists; apt 2.6's `file:` method instead hands
//! back the uncompressed file for the `.xz` request and fails its hash, so the copy is served
//! over HTTP rather than read as `file://` (a real snapshot mirror on disk has the `.xz`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use pew_image::archive::archive_path;
use pew_image::recipe::{Recipe, Snapshot};

use super::archive::{self, AptTree, Availability};
use super::served::FileServer;
use super::{cache_dir, workspace_root};
use crate::process;

/// The moment the archive on disk claims to be.
const TIMESTAMP: &str = "20261208T000000Z";

/// Builds the archive from the last image build's caches and checks the snapshot path on it.
pub fn check() -> Result<()> {
    let recipe_path = workspace_root().join("image/pew.toml");
    let recipe = Recipe::load(&recipe_path)?.recipe;
    let lock = archive::read_lock(&archive::lock_path(&recipe_path))?;
    let cache = cache_dir();
    let root = workspace_root().join("out/snapshot-check");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    let service = root.join("service");
    fs::create_dir_all(&service)?;
    let server = FileServer::start(&service)?;
    let mut snapshot_recipe = recipe.clone();
    snapshot_recipe.debian.snapshot = Some(Snapshot {
        url: server.url().to_owned(),
        timestamp: TIMESTAMP.to_owned(),
    });
    let suites = recipe.debian.suites();
    let suite_roots: Vec<(String, PathBuf)> = snapshot_recipe
        .debian
        .build_sources()
        .into_iter()
        .map(|source| {
            let below = source
                .uri
                .trim_start_matches(server.url())
                .trim_start_matches('/');
            (source.suite, service.join(below))
        })
        .collect();
    let suite_root = |suite: &str| -> Result<&Path> {
        suite_roots
            .iter()
            .find(|(name, _)| name == suite)
            .map(|(_, path)| path.as_path())
            .with_context(|| format!("{suite} is not a suite of the recipe"))
    };

    let architectures = [
        recipe.debian.architecture.to_string(),
        archive::host_architecture()?,
    ];
    let mut placed = 0;
    for architecture in &architectures {
        let tree = AptTree::new(&cache, &recipe, architecture)?;
        for entry in fs::read_dir(tree.lists_dir())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(place) = archive_path(&name, &suites) else {
                continue;
            };
            let target = suite_root(place.suite)?
                .join("dists")
                .join(place.suite)
                .join(&place.below_suite);
            link(&entry.path(), &target)?;
            // apt asks for an index by its hash when the release file says it may.
            if place.below_suite.ends_with("/Packages") {
                let sha256 = process::sha256_file(&entry.path())?;
                let by_hash = target
                    .with_file_name("by-hash/SHA256")
                    .join(sha256.to_string());
                link(&entry.path(), &by_hash)?;
            }
        }
        let index = tree.index().context(
            "the image build's package indexes are missing: run cargo xtask image first",
        )?;
        for package in lock.packages().iter().filter(|p| {
            p.architecture == *architecture
                || (p.architecture == "all" && *architecture == architectures[0])
        }) {
            let sha256 = package.sha256.to_string();
            let Some(offered) = index.iter().find(|entry| {
                entry.name == package.name
                    && entry.version == package.version
                    && entry.architecture == package.architecture
                    && entry.sha256 == sha256
            }) else {
                bail!(
                    "{} {} is locked but not in the build's indexes: run cargo xtask image first",
                    package.name,
                    package.version
                );
            };
            link(
                &cache.join("debs").join(&package.filename),
                &suite_root(&offered.suite)?.join(&offered.filename),
            )?;
            placed += 1;
        }
    }

    let empty_cache = root.join("cache");
    let resolved = archive::resolve(&empty_cache, &snapshot_recipe)
        .context("resolving from the file:// snapshot failed")?;
    let foreign: Vec<String> = resolved
        .packages()
        .iter()
        .filter(|p| !p.suite.as_ref().is_some_and(|suite| suites.contains(suite)))
        .map(|p| p.qualified_name())
        .collect();
    ensure!(
        foreign.is_empty(),
        "packages resolved from the snapshot name no suite of the recipe: {}",
        foreign.join(", ")
    );
    let missing = recipe
        .debian
        .packages
        .iter()
        .filter(|name| !resolved.packages().iter().any(|p| &p.name == *name))
        .cloned()
        .collect::<Vec<_>>();
    ensure!(
        missing.is_empty(),
        "the snapshot's resolution lacks recipe packages: {}",
        missing.join(", ")
    );
    match archive::fill_cache(&empty_cache, &snapshot_recipe, &lock, None)? {
        Availability::Complete(_) => {}
        Availability::Gone(gone) => bail!(
            "the snapshot does not serve locked packages it holds: {}",
            archive::describe_packages(&gone)
        ),
    }
    drop(server);
    println!(
        "snapshot at {TIMESTAMP} ({}): {} packages resolved from its signed indexes ({} differ from image/pew.lock); all {placed} locked .debs fetched from it into an empty cache and verified",
        snapshot_recipe
            .debian
            .snapshot
            .as_ref()
            .map_or("", |snapshot| snapshot.url.as_str()),
        resolved.packages().len(),
        lock.changes(&resolved).len()
    );
    fs::remove_dir_all(&root)?;
    Ok(())
}

/// [`process::link_or_copy`], creating `to`'s directory; a file already there stays.
fn link(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    if to.exists() {
        return Ok(());
    }
    process::link_or_copy(from, to)
}
