//! The pinned npm packages (anvil binary, PoCo artifacts), installed on demand under
//! `<workspace>/out/cache/npm` with `npm ci`, only when the committed lock changed.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Files of this crate that define the installation, relative to its manifest directory.
const INSTALL_FILES: [&str; 3] = ["package.json", "package-lock.json", "npm-stub/package.json"];

/// Name of the file recording what was installed (the concatenated [`INSTALL_FILES`]).
const STAMP: &str = ".installed";

/// Installed npm packages.
#[derive(Debug, Clone)]
pub struct NpmPackages {
    root: PathBuf,
}

impl NpmPackages {
    /// Installs the packages if the lock changed since the last install, and returns them.
    /// Blocking (runs `npm`); safe to call from concurrent test processes.
    pub fn install() -> anyhow::Result<Self> {
        let workspace = workspace_root()?;
        let cache = workspace.join("out").join("cache");
        let root = cache.join("npm");
        fs::create_dir_all(root.join("npm-stub"))
            .with_context(|| format!("creating {}", root.display()))?;

        // Test binaries run in parallel: one installs, the others wait for it.
        let guard_path = cache.join("npm.lock");
        let guard = File::create(&guard_path)
            .with_context(|| format!("creating {}", guard_path.display()))?;
        guard
            .lock()
            .with_context(|| format!("locking {}", guard_path.display()))?;

        let wanted = install_definition()?;
        let stamp = root.join(STAMP);
        let installed = fs::read(&stamp).ok();
        if installed.as_deref() != Some(wanted.as_slice()) || !root.join("node_modules").is_dir() {
            copy_install_files(&root)?;
            run_npm_ci(&root, &cache.join("npm-cache"))?;
            fs::write(&stamp, &wanted).with_context(|| format!("writing {}", stamp.display()))?;
        }
        Ok(Self { root })
    }

    /// The anvil executable shipped by `@foundry-rs/anvil-linux-amd64`.
    pub fn anvil_binary(&self) -> anyhow::Result<PathBuf> {
        if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
            bail!("the pinned anvil package is built for linux x86_64 only");
        }
        Ok(self
            .root
            .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"))
    }

    /// Root of the `@iexec/poco` package (`artifacts/`, `deployments/`).
    pub fn poco(&self) -> PathBuf {
        self.root.join("node_modules/@iexec/poco")
    }
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "{} is not two levels below the workspace",
                manifest.display()
            )
        })
}

fn install_definition() -> anyhow::Result<Vec<u8>> {
    let mut definition = Vec::new();
    for name in INSTALL_FILES {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        definition.extend(fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    }
    Ok(definition)
}

fn copy_install_files(root: &Path) -> anyhow::Result<()> {
    for name in INSTALL_FILES {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        let to = root.join(name);
        fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

fn run_npm_ci(root: &Path, npm_cache: &Path) -> anyhow::Result<()> {
    tracing::info!(dir = %root.display(), "installing the dev chain's npm packages");
    let output = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(root)
        // Keep npm's download cache with the other build caches, not in $HOME.
        .env("npm_config_cache", npm_cache)
        .env("npm_config_update_notifier", "false")
        .output()
        .context("running npm (is Node.js installed?)")?;
    if !output.status.success() {
        bail!(
            "npm ci failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
