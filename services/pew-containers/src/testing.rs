//! Test support: a private podman API service and the static test app image.
//!
//! [`PodmanService`] runs `podman system service` on a socket in a temporary directory, with
//! its own storage, run state, network configuration and an empty registry list, so tests
//! neither see nor touch the machine's containers and never reach a registry. It needs the
//! `podman` Debian package and root (rootful podman; cgroup limits need it).

use std::fs;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tempfile::TempDir;
use thiserror::Error;

use crate::{Engine, EngineError, testapp};

/// How long podman may take to open its socket (about 0.1 s here; more on a loaded CI machine).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the test harness could not be set up.
#[derive(Debug, Error)]
pub enum HarnessError {
    /// A program the harness needs is not installed.
    #[error("`{0}` was not found: install the Debian package `{0}` (apt-get install {0})")]
    Missing(&'static str),
    /// Preparing the private directory or starting podman failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// podman did not report readiness.
    #[error("podman system service did not become ready: {0}")]
    NotReady(String),
    /// Building the test app failed.
    #[error("building the static test app failed: {0}")]
    Build(String),
    /// Loading the image into the engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// A running private podman API service; stopped, with its containers, when dropped.
pub struct PodmanService {
    dir: TempDir,
    socket: PathBuf,
    child: Child,
}

impl PodmanService {
    /// Starts the service and waits until it listens.
    pub fn start() -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("pew-podman-")
            .tempdir()
            .map_err(io_error("creating the podman directory"))?;
        let runtime = oci_runtime();
        if !on_path(runtime) {
            return Err(HarnessError::Missing(runtime));
        }
        write_config(dir.path(), runtime)?;
        let socket = dir.path().join("podman.sock");
        let child = spawn_service(dir.path(), &socket)?;
        Ok(Self { dir, socket, child })
    }

    /// Kills the service with SIGKILL (the worst case: no request is answered, no connection
    /// closed cleanly, the socket file stays) and starts it again on the same socket and storage,
    /// returning once it listens. Containers run on meanwhile: conmon holds them, as on a node
    /// whose engine restarts.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.child
            .kill()
            .map_err(io_error("killing podman system service"))?;
        self.child
            .wait()
            .map_err(io_error("reaping podman system service"))?;
        self.child = spawn_service(self.dir.path(), &self.socket)?;
        Ok(())
    }

    /// The API socket, for [`Engine::connect`].
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A private directory that lives as long as the service (for test binds).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `podman` CLI command on this service's private storage, to arrange situations the API
    /// client does not create (e.g. a container left by a crashed worker).
    pub fn podman_cli(&self) -> Command {
        podman(self.dir.path())
    }

    /// Connects an [`Engine`] to this service.
    pub async fn engine(&self) -> Result<Engine, HarnessError> {
        Ok(Engine::connect(&self.socket).await?)
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        // Containers outlive the service (conmon holds them), so remove them first; a failed
        // test must not leave processes behind.
        let removed = podman(self.dir.path())
            .args(["rm", "--all", "--force", "--time", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(error) = removed {
            eprintln!("podman rm of the test containers failed: {error}");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `podman system service` on `socket` with the configuration under `dir`, and returns
/// once it accepts connections. Its log goes to `service.log` there, appended across restarts.
fn spawn_service(dir: &Path, socket: &Path) -> Result<Child, HarnessError> {
    // podman signals readiness with sd_notify once the socket accepts connections, which
    // spares polling for the socket file. A fresh notify socket each time, so that nothing an
    // earlier service sent can pass for this one's readiness.
    let notify_path = dir.join("notify.sock");
    match fs::remove_file(&notify_path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            return Err(io_error("removing the old notify socket")(error));
        }
        _ => {}
    }
    let notify = UnixDatagram::bind(&notify_path).map_err(io_error("binding the notify socket"))?;
    notify
        .set_read_timeout(Some(STARTUP_TIMEOUT))
        .map_err(io_error("setting the notify timeout"))?;

    let log_path = dir.join("service.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_error("opening the service log"))?;
    let mut child = podman(dir)
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => HarnessError::Missing("podman"),
            _ => io_error("starting podman system service")(error),
        })?;
    if let Err(error) = await_ready(&notify) {
        let _ = child.kill();
        let _ = child.wait();
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        return Err(HarnessError::NotReady(format!("{error}; {log}")));
    }
    Ok(child)
}

fn await_ready(notify: &UnixDatagram) -> io::Result<()> {
    let mut message = [0u8; 512];
    loop {
        let length = notify.recv(&mut message)?;
        if String::from_utf8_lossy(&message[..length])
            .lines()
            .any(|line| line == "READY=1")
        {
            return Ok(());
        }
    }
}

/// A podman command using the private configuration under `dir`.
fn podman(dir: &Path) -> Command {
    let mut command = Command::new("podman");
    command
        .env("CONTAINERS_CONF", dir.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
        .env("CONTAINERS_REGISTRIES_CONF", dir.join("registries.conf"));
    command
}

/// The OCI runtime for this host. crun (podman's default, and the node's) refuses hosts whose
/// cgroups are "hybrid": v1 controllers plus a v2 hierarchy that still holds a controller
/// (hugetlb, typically). runc handles them, so such hosts (this CI's VM) need the `runc` package.
fn oci_runtime() -> &'static str {
    let hybrid = fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        .is_ok_and(|controllers| !controllers.trim().is_empty());
    if hybrid { "runc" } else { "crun" }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Private podman configuration. The storage driver is vfs, not overlay: podman's overlay driver
/// bind-mounts its graph root onto itself and leaves that mount behind when the service exits,
/// which would leak a mount per test run and make the directory unremovable. vfs copies layers,
/// which costs nothing for the single-binary test image.
fn write_config(dir: &Path, runtime: &str) -> Result<(), HarnessError> {
    let path = |name: &str| dir.join(name).display().to_string();
    let files = [
        (
            "containers.conf",
            format!(
                "[containers]\n\
                 log_driver = \"k8s-file\"\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 runtime = \"{}\"\n\
                 events_logger = \"file\"\n\
                 events_logfile_path = \"{}\"\n\
                 tmp_dir = \"{}\"\n\
                 [network]\n\
                 network_config_dir = \"{}\"\n",
                runtime,
                path("events.log"),
                path("libpod-tmp"),
                path("networks"),
            ),
        ),
        (
            "storage.conf",
            format!(
                "[storage]\n\
                 driver = \"vfs\"\n\
                 graphroot = \"{}\"\n\
                 runroot = \"{}\"\n",
                path("storage"),
                path("run"),
            ),
        ),
        // No search registries: a short name can only resolve to an image already loaded.
        (
            "registries.conf",
            "unqualified-search-registries = []\n".to_owned(),
        ),
    ];
    for (name, content) in files {
        fs::write(dir.join(name), content).map_err(io_error(format!("writing {name}")))?;
    }
    Ok(())
}

/// The test app for this machine, built once per test process: concurrent tests would otherwise
/// queue one cargo run each on the target directory's lock.
fn host_test_app(arch: &str) -> Result<PathBuf, HarnessError> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(path) = built.as_ref() {
        return Ok(path.clone());
    }
    let path = build_test_app(&format!("{arch}-unknown-linux-gnu"))?;
    *built = Some(path.clone());
    Ok(path)
}

/// Builds `tools/test-app` as a static executable for `target` (a Rust triple such as
/// `x86_64-unknown-linux-gnu`) with the cargo running the tests, and returns its path.
pub fn build_test_app(target: &str) -> Result<PathBuf, HarnessError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(cargo)
        .current_dir(&workspace)
        .args([
            "build",
            "--package",
            "test-app",
            "--message-format=json",
            "--target",
        ])
        .arg(target)
        // Static glibc, and no debug info, which would make the image 4x larger. These flags
        // apply to the target only, so the host's build scripts stay untouched.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Ctarget-feature=+crt-static\u{1f}-Cstrip=debuginfo",
        )
        .stderr(Stdio::piped())
        .output()
        .map_err(io_error("running cargo build"))?;
    if !output.status.success() {
        return Err(HarnessError::Build(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == "test-app")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| HarnessError::Build("cargo reported no test-app executable".into()))
}

/// Builds the test app for this machine and loads it into `engine` as `image`.
pub async fn load_test_app(engine: &Engine, image: &str) -> Result<(), HarnessError> {
    let arch = std::env::consts::ARCH;
    let oci_arch = testapp::oci_architecture(arch)
        .ok_or_else(|| HarnessError::Build(format!("no OCI name for architecture {arch}")))?;
    let binary_path = host_test_app(arch)?;
    let binary =
        fs::read(&binary_path).map_err(io_error(format!("reading {}", binary_path.display())))?;
    engine
        .load(testapp::docker_archive(&binary, image, oci_arch))
        .await?;
    Ok(())
}
