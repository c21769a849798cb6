//! What a task container is, and its translation into a Docker Engine API create request.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, ResourcesUlimits};

use crate::error::EngineError;

/// Where iExec apps find their output directory (`IEXEC_OUT`); its host side decides the
/// default user of the container.
pub const OUTPUT_MOUNT: &str = "/iexec_out";

/// The container's log driver and its size cap. k8s-file is podman's file driver: it keeps an
/// app's output out of the node's journal, and the cap keeps a flooding app from filling the
/// storage. When the file reaches the cap, conmon empties it and carries on, so the newest
/// output survives; an app that writes more than the cap may therefore report less than
/// [`crate::MAX_LOG_CHARS`] of tail.
const LOG_DRIVER: &str = "k8s-file";
const LOG_MAX_SIZE: &str = "8m";

/// Resource limits (soft = hard) set explicitly because rootful podman's defaults, 1 048 576
/// open files and 4 194 304 processes, can only be applied with CAP_SYS_RESOURCE: crun fails the
/// start where the engine lacks it (sandboxed CI). A bounded file table share also keeps one app
/// from exhausting the node's. The process count is really bounded by the pids cgroup
/// ([`Limits::pids`]); `nproc` counts every process of the uid on the host, so it stays well
/// above any pids limit.
const ULIMITS: [(&str, i64); 2] = [("nofile", 4096), ("nproc", 8192)];

/// One task's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskContainer {
    /// Unique container name; iExec uses `<worker name>-<chain task id>`.
    pub name: String,
    /// Image reference, e.g. `docker.io/org/app:1.0.0`.
    pub image: String,
    /// Arguments appended to the image's entrypoint; empty keeps the image's own `Cmd`.
    pub cmd: Vec<String>,
    /// Environment given to the app.
    pub env: Vec<(String, String)>,
    /// Host directories (absolute) and where they appear in the container.
    pub binds: Vec<(PathBuf, String)>,
    /// Resource limits.
    pub limits: Limits,
    /// Wall-clock time the app may run, counted from its start.
    pub timeout: Duration,
    /// Network access.
    pub network: Network,
    /// Who the app runs as; `None` means the owner of the host directory bound at
    /// [`OUTPUT_MOUNT`], so the results it writes belong to the worker.
    pub user: Option<UserId>,
    /// Mounts the image's filesystem read-only.
    pub read_only_rootfs: bool,
}

/// Resource limits; `None` leaves a resource unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPU time in billionths of a CPU (1 000 000 000 = one full core).
    pub nano_cpus: Option<u64>,
    /// Memory in bytes; swap is capped at the same value so the app cannot swap at all.
    pub memory_bytes: Option<u64>,
    /// Processes and threads the app may have at once.
    pub pids: Option<u32>,
}

/// Network access of a task container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// Loopback only.
    #[default]
    None,
    /// The engine's default bridge (podman's `podman` network), with outbound access.
    Bridge,
}

/// A numeric user and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserId {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// How a task container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Exit status as the engine reports it (after a timeout, that of the stopped process,
    /// e.g. 137 for SIGKILL); `None` if the engine did not report one.
    pub exit_code: Option<i64>,
    /// The app overran [`TaskContainer::timeout`] and was stopped.
    pub timed_out: bool,
    /// The engine says the kernel killed the app for exceeding its memory limit. Not every
    /// engine notices (podman 4.3 with runc on cgroup v1 reports `false`); exit code 137 without
    /// a timeout is the portable sign of a SIGKILL.
    pub oom_killed: bool,
    /// The end of the app's standard output (see [`crate::MAX_LOG_CHARS`]).
    pub stdout: String,
    /// The end of the app's standard error.
    pub stderr: String,
    /// When the engine had started the app.
    pub started_at: SystemTime,
    /// When the app was seen stopped.
    pub finished_at: SystemTime,
}

impl RunOutcome {
    /// The app ran to completion with status 0.
    pub fn succeeded(&self) -> bool {
        !self.timed_out && self.exit_code == Some(0)
    }
}

/// The user a task container runs as: the one given, or the owner of the output directory.
/// Root is refused because a root app could write anywhere the binds reach.
pub fn resolve_user(spec: &TaskContainer) -> Result<UserId, EngineError> {
    let user = match spec.user {
        Some(user) => user,
        None => {
            let (output_dir, _) = spec
                .binds
                .iter()
                .find(|(_, target)| target == OUTPUT_MOUNT)
                .ok_or(EngineError::NoDefaultUser)?;
            let metadata = output_dir
                .metadata()
                .map_err(|source| EngineError::OutputOwner {
                    path: output_dir.clone(),
                    source,
                })?;
            UserId {
                uid: metadata.uid(),
                gid: metadata.gid(),
            }
        }
    };
    if user.uid == 0 {
        return Err(EngineError::RootUser);
    }
    Ok(user)
}

/// The create request for `spec` running as `user`: no privilege, no capability, no privilege
/// escalation, limited resources, no network unless asked.
pub fn create_body(spec: &TaskContainer, user: UserId) -> Result<ContainerCreateBody, EngineError> {
    let binds = spec
        .binds
        .iter()
        .map(|(host, target)| bind_spec(host, target))
        .collect::<Result<Vec<_>, _>>()?;
    let limits = spec.limits;
    let memory = limits
        .memory_bytes
        .map(|bytes| to_api_int("memory_bytes", bytes))
        .transpose()?;
    let host_config = HostConfig {
        binds: Some(binds),
        network_mode: Some(
            match spec.network {
                Network::None => "none",
                Network::Bridge => "bridge",
            }
            .to_owned(),
        ),
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        readonly_rootfs: Some(spec.read_only_rootfs),
        nano_cpus: limits
            .nano_cpus
            .map(|value| to_api_int("nano_cpus", value))
            .transpose()?,
        memory,
        memory_swap: memory,
        pids_limit: limits.pids.map(i64::from),
        ulimits: Some(
            ULIMITS
                .iter()
                .map(|&(name, limit)| ResourcesUlimits {
                    name: Some(name.to_owned()),
                    soft: Some(limit),
                    hard: Some(limit),
                })
                .collect(),
        ),
        log_config: Some(HostConfigLogConfig {
            typ: Some(LOG_DRIVER.to_owned()),
            config: Some(HashMap::from([(
                "max-size".to_owned(),
                LOG_MAX_SIZE.to_owned(),
            )])),
        }),
        ..HostConfig::default()
    };
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
        env: Some(
            spec.env
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect(),
        ),
        user: Some(format!("{}:{}", user.uid, user.gid)),
        tty: Some(false),
        open_stdin: Some(false),
        host_config: Some(host_config),
        ..ContainerCreateBody::default()
    })
}

/// `host:container` as the Binds field wants it; both sides must be absolute and free of the
/// `:` separator, or the engine would read a different mount than the one meant.
fn bind_spec(host: &Path, target: &str) -> Result<String, EngineError> {
    let invalid = |reason| EngineError::InvalidBind {
        host: host.to_path_buf(),
        target: target.to_owned(),
        reason,
    };
    let host_text = host.to_str().ok_or_else(|| invalid("not UTF-8"))?;
    if !host.is_absolute() || !target.starts_with('/') {
        return Err(invalid("paths must be absolute"));
    }
    if host_text.contains(':') || target.contains(':') {
        return Err(invalid("paths must not contain ':'"));
    }
    Ok(format!("{host_text}:{target}"))
}

fn to_api_int(limit: &'static str, value: u64) -> Result<i64, EngineError> {
    i64::try_from(value).map_err(|_| EngineError::LimitOutOfRange { limit, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TaskContainer {
        TaskContainer {
            name: "worker-0xabc".into(),
            image: "docker.io/org/app:1.0.0".into(),
            cmd: vec!["a".into(), "b c".into()],
            env: vec![("IEXEC_OUT".into(), "/iexec_out".into())],
            binds: vec![
                ("/var/lib/pew/t/input".into(), "/iexec_in".into()),
                (
                    "/var/lib/pew/t/output/iexec_out".into(),
                    OUTPUT_MOUNT.into(),
                ),
            ],
            limits: Limits {
                nano_cpus: Some(500_000_000),
                memory_bytes: Some(256 << 20),
                pids: Some(64),
            },
            timeout: Duration::from_secs(300),
            network: Network::None,
            user: Some(UserId {
                uid: 1000,
                gid: 1000,
            }),
            read_only_rootfs: true,
        }
    }

    const USER: UserId = UserId {
        uid: 1000,
        gid: 100,
    };

    #[test]
    fn create_body_is_locked_down() -> Result<(), EngineError> {
        let body = create_body(&spec(), USER)?;
        let host = body.host_config.unwrap_or_default();
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_owned()])
        );
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.cap_add, None);
        assert_eq!(host.devices, None);
        assert_eq!(body.user.as_deref(), Some("1000:100"));
        Ok(())
    }

    #[test]
    fn limits_map_to_engine_fields_and_swap_equals_memory() -> Result<(), EngineError> {
        let host = create_body(&spec(), USER)?.host_config.unwrap_or_default();
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.memory, Some(268_435_456));
        assert_eq!(host.memory_swap, Some(268_435_456));
        assert_eq!(host.pids_limit, Some(64));

        let mut unlimited = spec();
        unlimited.limits = Limits::default();
        let host = create_body(&unlimited, USER)?
            .host_config
            .unwrap_or_default();
        assert_eq!(
            (
                host.nano_cpus,
                host.memory,
                host.memory_swap,
                host.pids_limit
            ),
            (None, None, None, None)
        );
        Ok(())
    }

    #[test]
    fn limits_beyond_the_api_range_are_rejected() {
        let mut huge = spec();
        huge.limits.memory_bytes = Some(u64::MAX);
        assert!(matches!(
            create_body(&huge, USER),
            Err(EngineError::LimitOutOfRange {
                limit: "memory_bytes",
                ..
            })
        ));
    }

    #[test]
    fn command_env_and_binds_are_passed_through() -> Result<(), EngineError> {
        let body = create_body(&spec(), USER)?;
        assert_eq!(body.cmd, Some(vec!["a".to_owned(), "b c".to_owned()]));
        assert_eq!(body.env, Some(vec!["IEXEC_OUT=/iexec_out".to_owned()]));
        assert_eq!(
            body.host_config.and_then(|host| host.binds),
            Some(vec![
                "/var/lib/pew/t/input:/iexec_in".to_owned(),
                "/var/lib/pew/t/output/iexec_out:/iexec_out".to_owned(),
            ])
        );
        Ok(())
    }

    #[test]
    fn empty_command_keeps_the_image_default() -> Result<(), EngineError> {
        let mut no_args = spec();
        no_args.cmd.clear();
        assert_eq!(create_body(&no_args, USER)?.cmd, None);
        Ok(())
    }

    #[test]
    fn bridge_only_when_asked() -> Result<(), EngineError> {
        let mut bridged = spec();
        bridged.network = Network::Bridge;
        let host = create_body(&bridged, USER)?.host_config.unwrap_or_default();
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        Ok(())
    }

    #[test]
    fn ambiguous_or_relative_binds_are_rejected() {
        for (host, target) in [
            ("relative/dir", "/iexec_in"),
            ("/abs/dir", "iexec_in"),
            ("/odd:dir", "/iexec_in"),
            ("/abs/dir", "/iexec_in:ro"),
        ] {
            let mut bad = spec();
            bad.binds = vec![(host.into(), target.into())];
            assert!(
                matches!(
                    create_body(&bad, USER),
                    Err(EngineError::InvalidBind { .. })
                ),
                "{host}:{target}"
            );
        }
    }

    #[test]
    fn root_is_refused_even_when_asked_for() {
        let mut as_root = spec();
        as_root.user = Some(UserId { uid: 0, gid: 0 });
        assert!(matches!(resolve_user(&as_root), Err(EngineError::RootUser)));
    }

    #[test]
    fn default_user_needs_an_output_bind() {
        let mut anonymous = spec();
        anonymous.user = None;
        anonymous.binds.retain(|(_, target)| target != OUTPUT_MOUNT);
        assert!(matches!(
            resolve_user(&anonymous),
            Err(EngineError::NoDefaultUser)
        ));
    }

    #[test]
    fn default_user_is_the_output_directory_owner() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut task = spec();
        task.user = None;
        task.binds = vec![(dir.path().to_path_buf(), OUTPUT_MOUNT.into())];
        let owner = dir.path().metadata()?;
        if owner.uid() == 0 {
            // Only a root test run can hand the directory to someone else.
            assert!(matches!(resolve_user(&task), Err(EngineError::RootUser)));
            std::os::unix::fs::chown(dir.path(), Some(4321), Some(8765))?;
        }
        let owner = dir.path().metadata()?;
        assert_eq!(
            resolve_user(&task)?,
            UserId {
                uid: owner.uid(),
                gid: owner.gid()
            }
        );
        Ok(())
    }
}
