//! The Docker Engine API client (podman's compatible service on the node) for task containers.

use std::path::Path;
use std::time::{Duration, SystemTime};

use bollard::container::LogOutput;
use bollard::errors::Error as ClientError;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ImportImageOptionsBuilder,
    InspectContainerOptions, KillContainerOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, Docker, body_full};
use futures_util::{StreamExt as _, TryStreamExt as _};

use crate::error::{EngineError, api};
use crate::logs::{LogTail, MAX_LOG_CHARS};
use crate::spec::{RunOutcome, TaskContainer, create_body, resolve_user};

/// Deadline for ordinary requests (bollard's own default), counted until the response headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Deadline for loading an image archive: the engine answers only after it has unpacked every
/// layer, which takes minutes for a large image on a Raspberry Pi's storage.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How long an overrunning app gets between SIGTERM and SIGKILL.
const STOP_GRACE_SECONDS: i32 = 5;

/// How long a SIGKILLed container may take to be reported stopped.
const KILL_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Headroom on top of a task's timeout for the wait request itself, so that the client gives
/// up after the task's own deadline has fired, never before.
const WAIT_REQUEST_HEADROOM: Duration = Duration::from_secs(60);

/// HTTP status of the engine for an unknown container or image.
const NOT_FOUND: u16 = 404;

/// A connection to a container engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    /// Connects to the engine's unix socket and settles on the newest API version both sides
    /// speak (bollard defaults to 1.53, which podman 4.3, answering 1.41, would refuse).
    pub async fn connect(socket: &Path) -> Result<Self, EngineError> {
        let path = socket
            .to_str()
            .ok_or_else(|| EngineError::SocketPath(socket.to_path_buf()))?;
        let docker =
            Docker::connect_with_unix(path, REQUEST_TIMEOUT.as_secs(), API_DEFAULT_VERSION)
                .map_err(api("connect"))?
                .negotiate_version()
                .await
                .map_err(api("negotiate the API version"))?;
        Ok(Self { docker })
    }

    /// Checks that the engine answers.
    pub async fn ping(&self) -> Result<(), EngineError> {
        self.docker.ping().await.map_err(api("ping"))?;
        Ok(())
    }

    /// Whether `image` is in the engine's store.
    pub async fn has_image(&self, image: &str) -> Result<bool, EngineError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(api("inspect image")(error)),
        }
    }

    /// Pulls `image` from its registry, giving up after `timeout`.
    pub async fn pull(&self, image: &str, timeout: Duration) -> Result<(), EngineError> {
        let (name, tag) = pull_reference(image);
        let mut options = CreateImageOptionsBuilder::default().from_image(name);
        if let Some(tag) = tag {
            options = options.tag(tag);
        }
        // The engine may hold the response headers until the pull is done.
        let client = self.docker.clone().with_timeout(timeout);
        let pull = client
            .create_image(Some(options.build()), None, None)
            .try_for_each(|progress| {
                tracing::debug!(?progress, image, "pull progress");
                futures_util::future::ready(Ok(()))
            });
        tokio::time::timeout(timeout, pull)
            .await
            .map_err(|_| EngineError::PullTimeout {
                image: image.to_owned(),
                timeout,
            })?
            .map_err(api("pull image"))
    }

    /// Loads a docker-archive tar (what `docker save` writes) into the engine's store.
    pub async fn load(&self, docker_archive_tar: Vec<u8>) -> Result<(), EngineError> {
        let client = self.docker.clone().with_timeout(LOAD_TIMEOUT);
        client
            .import_image(
                ImportImageOptionsBuilder::default().quiet(true).build(),
                body_full(docker_archive_tar.into()),
                None,
            )
            .try_for_each(|progress| {
                tracing::debug!(?progress, "load progress");
                futures_util::future::ready(Ok(()))
            })
            .await
            .map_err(api("load image"))
    }

    /// Runs a task container to its end or its timeout, collects its logs and removes it.
    ///
    /// A container left with the same name (by a crash of the worker) is removed first. The
    /// container is removed on every path once it exists, except when this future is dropped
    /// midway: [`Engine::remove_containers_named`] is the cleanup for abort and recovery.
    pub async fn run(&self, spec: &TaskContainer) -> Result<RunOutcome, EngineError> {
        let user = resolve_user(spec)?;
        let body = create_body(spec, user)?;
        self.remove_container(&spec.name).await?;
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(api("create container"))?;

        let outcome = self.start_and_collect(spec).await;
        let removal = self.remove_container(&spec.name).await;
        match (outcome, removal) {
            (Ok(outcome), Ok(_)) => Ok(outcome),
            (Ok(_), Err(error)) => Err(error),
            (Err(error), removal) => {
                if let Err(removal_error) = removal {
                    tracing::warn!(container = spec.name, error = %removal_error, "container left behind");
                }
                Err(error)
            }
        }
    }

    /// Force-removes every container whose name contains `fragment` (e.g. a chain task id, to
    /// abort a task or to clean up after a crash), returning how many were removed.
    pub async fn remove_containers_named(&self, fragment: &str) -> Result<usize, EngineError> {
        if fragment.is_empty() {
            return Err(EngineError::EmptyNameFragment);
        }
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(api("list containers"))?;
        let mut removed = 0;
        for container in containers {
            let matches = container
                .names
                .iter()
                .flatten()
                .any(|name| name.contains(fragment));
            if let (true, Some(id)) = (matches, container.id)
                && self.remove_container(&id).await?
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn start_and_collect(&self, spec: &TaskContainer) -> Result<RunOutcome, EngineError> {
        let name = spec.name.as_str();
        self.docker
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(api("start container"))?;
        let started_at = SystemTime::now();

        let timed_out =
            match tokio::time::timeout(spec.timeout, self.wait_stopped(name, spec.timeout)).await {
                Ok(stopped) => {
                    stopped?;
                    false
                }
                Err(_deadline) => {
                    self.stop(name).await?;
                    true
                }
            };
        let finished_at = SystemTime::now();

        let state = self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(api("inspect container"))?
            .state
            .unwrap_or_default();
        let (stdout, stderr) = self.collect_logs(name).await?;
        Ok(RunOutcome {
            exit_code: state.exit_code,
            timed_out,
            oom_killed: state.oom_killed.unwrap_or(false),
            stdout,
            stderr,
            started_at,
            finished_at,
        })
    }

    /// Resolves when the container is no longer running.
    async fn wait_stopped(&self, name: &str, timeout: Duration) -> Result<(), EngineError> {
        let client = self
            .docker
            .clone()
            .with_timeout(timeout + WAIT_REQUEST_HEADROOM);
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        match client.wait_container(name, Some(options)).next().await {
            // bollard reports a non-zero exit status as an error; either way it has stopped.
            Some(Ok(_)) | Some(Err(ClientError::DockerContainerWaitError { .. })) | None => Ok(()),
            Some(Err(error)) => Err(api("wait for container")(error)),
        }
    }

    /// SIGTERM, then SIGKILL after the grace period; a direct kill if the stop request fails.
    /// Returns once the container has stopped.
    async fn stop(&self, name: &str) -> Result<(), EngineError> {
        let options = StopContainerOptionsBuilder::default()
            .t(STOP_GRACE_SECONDS)
            .build();
        if let Err(error) = self.docker.stop_container(name, Some(options)).await {
            tracing::warn!(container = name, %error, "stop failed, killing");
            self.docker
                .kill_container(name, None::<KillContainerOptions>)
                .await
                .map_err(api("kill container"))?;
            // Unlike stop, kill returns as soon as the signal is sent.
            self.wait_stopped(name, KILL_SETTLE_TIMEOUT).await?;
        }
        Ok(())
    }

    async fn collect_logs(&self, name: &str) -> Result<(String, String), EngineError> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .build();
        let mut stdout = LogTail::new(MAX_LOG_CHARS);
        let mut stderr = LogTail::new(MAX_LOG_CHARS);
        let mut frames = self.docker.logs(name, Some(options));
        while let Some(frame) = frames.next().await {
            match frame.map_err(api("read container logs"))? {
                LogOutput::StdOut { message } => stdout.push(&message),
                LogOutput::StdErr { message } => stderr.push(&message),
                // Only a container with a TTY merges its streams into "console"; ours have none.
                LogOutput::Console { message } => stdout.push(&message),
                LogOutput::StdIn { .. } => {}
            }
        }
        Ok((stdout.into_string(), stderr.into_string()))
    }

    /// Force-removes a container and its anonymous volumes; `false` if there was none.
    async fn remove_container(&self, name_or_id: &str) -> Result<bool, EngineError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(name_or_id, Some(options))
            .await
        {
            Ok(()) => Ok(true),
            Err(error) if is_not_found(&error) => Ok(false),
            Err(error) => Err(api("remove container")(error)),
        }
    }
}

fn is_not_found(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::DockerResponseServerError { status_code, .. } if *status_code == NOT_FOUND
    )
}

/// Splits an image reference into the `fromImage` and `tag` of a pull request. A reference
/// without tag or digest gets `latest`, as `docker pull` does: an empty tag would ask the
/// engine for every tag of the repository.
fn pull_reference(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    // A colon after the last slash separates a tag; one before it belongs to a registry port.
    let last_component = image.rfind('/').map_or(0, |slash| slash + 1);
    match image[last_component..].rfind(':') {
        Some(colon) => {
            let split = last_component + colon;
            (&image[..split], Some(&image[split + 1..]))
        }
        None => (image, Some("latest")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_reference_splits_the_tag() {
        assert_eq!(
            pull_reference("docker.io/org/app:1.0.0"),
            ("docker.io/org/app", Some("1.0.0"))
        );
        assert_eq!(pull_reference("alpine"), ("alpine", Some("latest")));
    }

    #[test]
    fn registry_port_is_not_a_tag() {
        assert_eq!(
            pull_reference("localhost:5000/app"),
            ("localhost:5000/app", Some("latest"))
        );
        assert_eq!(
            pull_reference("localhost:5000/app:2"),
            ("localhost:5000/app", Some("2"))
        );
    }

    #[test]
    fn digest_references_are_pulled_as_they_are() {
        let pinned = "docker.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(pull_reference(pinned), (pinned, None));
    }
}
