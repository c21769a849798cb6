//! The Docker Engine API client (podman's compatible service on the node) for task containers.

use std::path::Path;
use std::time::{Duration, SystemTime};

use bollard::container::LogOutput;
use bollard::errors::Error as ClientError;
use bollard::models::ContainerState;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ImportImageOptionsBuilder,
    InspectContainerOptions, KillContainerOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
    StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, Docker, body_full};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::time::Instant;

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

/// How long a stopped or SIGKILLed container may take to be reported stopped.
const KILL_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Headroom on top of the time a wait request is meant to last, so that the client's own
/// request timeout never fires before the wait's limit.
const WAIT_REQUEST_HEADROOM: Duration = Duration::from_secs(60);

/// First pause after the engine failed to answer, doubled after each further failure up to
/// [`MAX_RETRY_PAUSE`]: a restarted podman service answers within a second, dockerd within a
/// few, and a Raspberry Pi under load should not spend its CPU on a connection loop.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(250);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// How long an unreachable engine is waited for beyond a running container's deadline (or
/// beyond the outage's start, once the container has stopped) before the run is given up:
/// ample for systemd to restart the engine, short enough to report the task while it counts.
const OUTAGE_TOLERANCE: Duration = Duration::from_secs(120);

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
    /// A container left with the same name (by a crash of the worker) is removed first. Once the
    /// container has started, an engine that stops answering (its API service restarting while
    /// the container runs on) is waited out: the run resumes when it answers again, the
    /// container's deadline still counted from its start, and gives up with
    /// [`EngineError::Unreachable`] only after a bounded outage.
    ///
    /// The container is removed on every path once it exists, except when this future is dropped
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

        let mut outages = Outages::new(Instant::now());
        let outcome = self.start_and_collect(spec, &mut outages).await;
        let removal = outages
            .retrying("remove container", &spec.name, || {
                self.remove_request(&spec.name)
            })
            .await;
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

    async fn start_and_collect(
        &self,
        spec: &TaskContainer,
        outages: &mut Outages,
    ) -> Result<RunOutcome, EngineError> {
        let name = spec.name.as_str();
        self.docker
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(api("start container"))?;
        let started_at = SystemTime::now();
        let deadline = Instant::now() + spec.timeout;
        outages.hold_until(deadline);

        let (state, timed_out) = match self.wait_stopped(name, deadline, outages).await? {
            Some(state) => (state, false),
            None => {
                // An app that ended while the engine was away, before it could be stopped, ran
                // to its end: its result stands.
                let state = self.inspect_state(name, outages).await?;
                if is_running(&state) {
                    (self.stop(name, outages).await?, true)
                } else {
                    (state, false)
                }
            }
        };
        let finished_at = SystemTime::now();
        outages.hold_until(Instant::now());

        let (stdout, stderr) = outages
            .retrying("read container logs", name, || self.read_logs(name))
            .await?;
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

    /// The container's state once it has stopped, or `None` if it still runs at `until`.
    ///
    /// The end of a wait is checked against the container's state: a wait cut short without a
    /// status (an engine shutting down may close the stream cleanly) must not pass for an exit.
    async fn wait_stopped(
        &self,
        name: &str,
        until: Instant,
        outages: &mut Outages,
    ) -> Result<Option<ContainerState>, EngineError> {
        loop {
            let waited = outages
                .retrying("wait for container", name, || {
                    self.wait_request(name, until)
                })
                .await?;
            if waited == Waited::Until {
                return Ok(None);
            }
            let state = self.inspect_state(name, outages).await?;
            if !is_running(&state) {
                return Ok(Some(state));
            }
            tracing::debug!(
                container = name,
                "a wait ended while the container still runs"
            );
            tokio::time::sleep(FIRST_RETRY_PAUSE).await;
        }
    }

    /// One wait request: until the container is no longer running, or until `until`.
    async fn wait_request(&self, name: &str, until: Instant) -> Result<Waited, ClientError> {
        let client = self
            .docker
            .clone()
            .with_timeout(until.saturating_duration_since(Instant::now()) + WAIT_REQUEST_HEADROOM);
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut statuses = client.wait_container(name, Some(options));
        match tokio::time::timeout_at(until, statuses.next()).await {
            Err(_elapsed) => Ok(Waited::Until),
            // bollard reports a non-zero exit status as an error; either way the wait is over.
            Ok(Some(Ok(_)) | Some(Err(ClientError::DockerContainerWaitError { .. })) | None) => {
                Ok(Waited::Ended)
            }
            Ok(Some(Err(error))) => Err(error),
        }
    }

    async fn inspect_state(
        &self,
        name: &str,
        outages: &mut Outages,
    ) -> Result<ContainerState, EngineError> {
        let settled_by = Instant::now() + KILL_SETTLE_TIMEOUT;
        loop {
            let inspected = outages
                .retrying("inspect container", name, || {
                    self.docker
                        .inspect_container(name, None::<InspectContainerOptions>)
                })
                .await;
            match inspected {
                Ok(inspected) => return Ok(inspected.state.unwrap_or_default()),
                Err(EngineError::Api { source, .. })
                    if is_podman_cleanup_pending(&source) && Instant::now() < settled_by =>
                {
                    tracing::debug!(container = name, "the engine is still cleaning up");
                    tokio::time::sleep(FIRST_RETRY_PAUSE).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// SIGTERM, then SIGKILL after the grace period; a direct kill if the engine refuses the
    /// stop. Returns the container's state once it has stopped.
    async fn stop(&self, name: &str, outages: &mut Outages) -> Result<ContainerState, EngineError> {
        let options = StopContainerOptionsBuilder::default()
            .t(STOP_GRACE_SECONDS)
            .build();
        let stopped = outages
            .retrying("stop container", name, || {
                self.docker.stop_container(name, Some(options.clone()))
            })
            .await;
        match stopped {
            Ok(()) => {}
            Err(EngineError::Api { source, .. }) => {
                tracing::warn!(container = name, error = %source, "stop failed, killing");
                outages
                    .retrying("kill container", name, || {
                        self.docker
                            .kill_container(name, None::<KillContainerOptions>)
                    })
                    .await?;
            }
            Err(error) => return Err(error),
        }
        // A stop returns once the container has stopped, a kill as soon as the signal is sent;
        // either way the engine's state is what counts.
        self.wait_stopped(name, Instant::now() + KILL_SETTLE_TIMEOUT, outages)
            .await?
            .ok_or_else(|| EngineError::StillRunning {
                name: name.to_owned(),
                after: KILL_SETTLE_TIMEOUT,
            })
    }

    /// The tails of the container's standard output and error.
    async fn read_logs(&self, name: &str) -> Result<(String, String), ClientError> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .build();
        let mut stdout = LogTail::new(MAX_LOG_CHARS);
        let mut stderr = LogTail::new(MAX_LOG_CHARS);
        let mut frames = self.docker.logs(name, Some(options));
        while let Some(frame) = frames.next().await {
            match frame? {
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
        self.remove_request(name_or_id)
            .await
            .map_err(api("remove container"))
    }

    async fn remove_request(&self, name_or_id: &str) -> Result<bool, ClientError> {
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
            Err(error) => Err(error),
        }
    }
}

fn is_not_found(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::DockerResponseServerError { status_code, .. } if *status_code == NOT_FOUND
    )
}

/// Whether the engine could not be reached (no socket, connection refused or reset, a
/// response cut short, no answer in time), as opposed to an answer it gave. Only the former is
/// worth a retry: a restarting engine answers again within seconds, a refusal stays a refusal.
fn is_unreachable(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::SocketNotFoundError(_)
            | ClientError::HyperLegacyError { .. }
            | ClientError::HyperResponseError { .. }
            | ClientError::IOError { .. }
            | ClientError::RequestTimeoutError
    )
}

/// podman 5 reports a container whose process has ended but whose cleanup (conmon's
/// `podman container cleanup`) has not run yet as "stopped", a state the Docker API, and so
/// bollard's model, does not have; it becomes "exited" a moment later. Seen on the node's
/// podman 5.4 under emulation, where the cleanup process takes a second or two to start.
fn is_podman_cleanup_pending(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::JsonDataError { message, .. } if message.contains("unknown variant `stopped`")
    )
}

/// A container the engine reports without a running state has stopped: the engine would say
/// if it were running.
fn is_running(state: &ContainerState) -> bool {
    state.running.unwrap_or(false)
}

/// How a wait request ended.
#[derive(Debug, PartialEq, Eq)]
enum Waited {
    /// The engine ended it (the container stopped, or so it seems: see [`Engine::wait_stopped`]).
    Ended,
    /// Its time limit passed first.
    Until,
}

/// The engine outages one run sits through: each is retried with a growing pause, logged once,
/// and given up only when it has lasted [`OUTAGE_TOLERANCE`] beyond the instant held.
#[derive(Debug)]
struct Outages {
    /// Until when an outage of any length is waited out: the container's deadline while it may
    /// run (it is stopped at that deadline whatever happens to the engine meanwhile), the moment
    /// it stopped afterwards.
    hold_until: Instant,
    current: Option<Outage>,
}

/// An outage under way.
#[derive(Debug)]
struct Outage {
    since: Instant,
    give_up_at: Instant,
    next_pause: Duration,
}

impl Outages {
    fn new(hold_until: Instant) -> Self {
        Self {
            hold_until,
            current: None,
        }
    }

    /// Moves the instant until which outages are waited out; an outage under way keeps the
    /// limit it started with.
    fn hold_until(&mut self, instant: Instant) {
        self.hold_until = instant;
    }

    /// Records that the engine did not answer `what` at `now`. Returns the pause before the next
    /// attempt (never past the moment of giving up, so that one attempt is made then), or the
    /// error that ends the run once the outage has lasted too long.
    fn unreachable(&mut self, what: &'static str, now: Instant) -> Result<Duration, EngineError> {
        let hold_until = self.hold_until;
        let outage = self.current.get_or_insert_with(|| Outage {
            since: now,
            give_up_at: now.max(hold_until) + OUTAGE_TOLERANCE,
            next_pause: FIRST_RETRY_PAUSE,
        });
        if now >= outage.give_up_at {
            return Err(EngineError::Unreachable {
                what,
                for_: now - outage.since,
            });
        }
        let pause = outage.next_pause.min(outage.give_up_at - now);
        outage.next_pause = (outage.next_pause * 2).min(MAX_RETRY_PAUSE);
        Ok(pause)
    }

    /// Records that the engine answered at `now`; returns how long the outage it ends lasted.
    fn answered(&mut self, now: Instant) -> Option<Duration> {
        self.current.take().map(|outage| now - outage.since)
    }

    /// Runs `attempt` until the engine answers it, pausing while the engine is unreachable. An
    /// answer that is an error is final: [`EngineError::ContainerLost`] if the engine no longer
    /// knows `container`, [`EngineError::Api`] otherwise.
    async fn retrying<T, Attempt>(
        &mut self,
        what: &'static str,
        container: &str,
        mut attempt: impl FnMut() -> Attempt,
    ) -> Result<T, EngineError>
    where
        Attempt: Future<Output = Result<T, ClientError>>,
    {
        loop {
            let sent_at = Instant::now();
            let result = attempt().await;
            match result {
                Err(error) if is_unreachable(&error) => {
                    let starts = self.current.is_none();
                    let pause = self.unreachable(what, Instant::now())?;
                    if starts {
                        tracing::warn!(
                            container,
                            operation = what,
                            ?error,
                            "the container engine does not answer; waiting for it"
                        );
                    }
                    tokio::time::sleep(pause).await;
                }
                answer => {
                    // A wait answers only when the container stops: the outage ended when the
                    // request that got through was sent, not when it came back.
                    if let Some(lasted) = self.answered(sent_at) {
                        tracing::info!(
                            container,
                            operation = what,
                            ?lasted,
                            "the container engine answers again"
                        );
                    }
                    return answer.map_err(|error| {
                        if is_not_found(&error) {
                            EngineError::ContainerLost {
                                name: container.to_owned(),
                            }
                        } else {
                            api(what)(error)
                        }
                    });
                }
            }
        }
    }
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
    use std::io::{self, Read as _, Write as _};
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::thread::{self, JoinHandle};

    use tempfile::TempDir;

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

    fn server_error(status_code: u16) -> ClientError {
        ClientError::DockerResponseServerError {
            status_code,
            message: "refused".to_owned(),
        }
    }

    #[test]
    fn transport_failures_mean_the_engine_is_unreachable() {
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::NotFound,
        ] {
            assert!(is_unreachable(&ClientError::IOError {
                err: io::Error::from(kind)
            }));
        }
        assert!(is_unreachable(&ClientError::RequestTimeoutError));
        assert!(is_unreachable(&ClientError::SocketNotFoundError(
            "/run/podman/podman.sock".to_owned()
        )));
    }

    #[test]
    fn answers_of_the_engine_are_final() {
        for status in [304, 400, 404, 409, 500, 503] {
            assert!(!is_unreachable(&server_error(status)), "{status}");
        }
        assert!(!is_unreachable(&ClientError::DockerContainerWaitError {
            error: String::new(),
            code: 137,
        }));
        assert!(!is_unreachable(&ClientError::JsonDataError {
            message: "expected value".to_owned(),
            column: 1,
        }));
    }

    /// A unix socket in a temporary directory whose server answers one request with `response`
    /// (raw HTTP) and hangs up.
    fn answer_once(response: String) -> io::Result<(TempDir, PathBuf, JoinHandle<io::Result<()>>)> {
        answer_in_turn(vec![response])
    }

    /// A fake engine giving each response, in order, to one connection each.
    fn answer_in_turn(
        responses: Vec<String>,
    ) -> io::Result<(TempDir, PathBuf, JoinHandle<io::Result<()>>)> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&socket)?;
        let server = thread::spawn(move || {
            for response in responses {
                let (mut connection, _) = listener.accept()?;
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    let read = connection.read(&mut chunk)?;
                    if read == 0 {
                        break;
                    }
                    request.extend_from_slice(&chunk[..read]);
                }
                connection.write_all(response.as_bytes())?;
            }
            Ok(())
        });
        Ok((dir, socket, server))
    }

    fn inspect_answer(status: &str, exit_code: i64) -> String {
        let body = format!(
            r#"{{"Id":"c0ffee","State":{{"Status":"{status}","Running":false,"ExitCode":{exit_code}}}}}"#
        );
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn podman_s_stopped_state_is_waited_out_until_exited()
    -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, socket, server) = answer_in_turn(vec![
            inspect_answer("stopped", 0),
            inspect_answer("stopped", 0),
            inspect_answer("exited", 3),
        ])?;
        let engine = Engine {
            docker: client(&socket)?,
        };

        let state = engine
            .inspect_state("task", &mut Outages::new(Instant::now()))
            .await?;

        assert_eq!(state.exit_code, Some(3));
        assert!(!is_running(&state));
        server.join().map_err(|_| "fake engine panicked")??;
        Ok(())
    }

    fn client(socket: &Path) -> Result<Docker, Box<dyn std::error::Error>> {
        let path = socket.to_str().ok_or("temporary path is not UTF-8")?;
        Ok(Docker::connect_with_unix(path, 10, API_DEFAULT_VERSION)?)
    }

    #[tokio::test]
    async fn a_socket_nobody_listens_on_is_unreachable() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("engine.sock");
        // What a killed engine leaves: the socket file, and nobody accepting on it.
        drop(UnixListener::bind(&socket)?);
        let docker = client(&socket)?;

        let refused = docker.ping().await.err().ok_or("ping succeeded")?;

        assert!(is_unreachable(&refused), "{refused:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_wait_cut_short_is_unreachable() -> Result<(), Box<dyn std::error::Error>> {
        // The engine sends a wait's headers at once and its status when the container stops;
        // dying in between cuts the chunked body.
        let (_dir, socket, server) = answer_once(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_owned(),
        )?;
        let docker = client(&socket)?;

        let waited = docker.wait_container("task", None).next().await;

        server.join().map_err(|_| "server panicked")??;
        let Some(Err(cut)) = waited else {
            return Err(format!("wait ended with {waited:?}").into());
        };
        assert!(is_unreachable(&cut), "{cut:?}");
        Ok(())
    }

    #[tokio::test]
    async fn an_error_status_is_an_answer() -> Result<(), Box<dyn std::error::Error>> {
        let body = r#"{"message":"runtime failed"}"#;
        let response = format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (_dir, socket, server) = answer_once(response)?;
        let docker = client(&socket)?;

        let answered = docker
            .inspect_container("task", None::<InspectContainerOptions>)
            .await
            .err()
            .ok_or("inspect succeeded")?;

        server.join().map_err(|_| "server panicked")??;
        assert!(!is_unreachable(&answered), "{answered:?}");
        assert!(
            matches!(&answered, ClientError::DockerResponseServerError { status_code: 500, message } if message == "runtime failed"),
            "{answered:?}"
        );
        Ok(())
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn pauses_double_from_a_quarter_second_to_five_seconds() -> Result<(), EngineError> {
        let now = Instant::now();
        let mut outages = Outages::new(now + 60 * MINUTE);

        let pauses = (0..8)
            .map(|_| outages.unreachable("wait for container", now))
            .collect::<Result<Vec<_>, _>>()?;

        let millis = |ms| Duration::from_millis(ms);
        assert_eq!(
            pauses,
            [250, 500, 1000, 2000, 4000, 5000, 5000, 5000].map(millis)
        );
        Ok(())
    }

    #[test]
    fn an_outage_while_the_container_runs_is_waited_out_until_past_its_deadline()
    -> Result<(), EngineError> {
        let started = Instant::now();
        let deadline = started + 10 * MINUTE;
        let mut outages = Outages::new(deadline);

        // The engine goes away a minute into the run and stays away past the deadline.
        outages.unreachable("wait for container", started + MINUTE)?;
        let last_chance = deadline + OUTAGE_TOLERANCE - Duration::from_millis(100);
        assert_eq!(
            outages.unreachable("stop container", last_chance)?,
            Duration::from_millis(100),
            "the last pause ends when the run gives up"
        );
        let given_up = outages.unreachable("stop container", deadline + OUTAGE_TOLERANCE);

        assert!(
            matches!(
                given_up,
                Err(EngineError::Unreachable { what: "stop container", for_ }) if for_ == 11 * MINUTE
            ),
            "{given_up:?}"
        );
        Ok(())
    }

    #[test]
    fn once_the_container_has_stopped_an_outage_is_waited_out_for_the_tolerance_only()
    -> Result<(), EngineError> {
        let started = Instant::now();
        let mut outages = Outages::new(started + 60 * MINUTE);
        outages.hold_until(started + MINUTE);

        let away = started + 2 * MINUTE;
        outages.unreachable("read container logs", away)?;
        outages.unreachable(
            "read container logs",
            away + OUTAGE_TOLERANCE - Duration::from_millis(1),
        )?;

        assert!(matches!(
            outages.unreachable("read container logs", away + OUTAGE_TOLERANCE),
            Err(EngineError::Unreachable { for_, .. }) if for_ == OUTAGE_TOLERANCE
        ));
        Ok(())
    }

    #[test]
    fn an_outage_under_way_keeps_its_limit_when_the_container_stops() -> Result<(), EngineError> {
        let started = Instant::now();
        let deadline = started + 10 * MINUTE;
        let mut outages = Outages::new(deadline);

        outages.unreachable("wait for container", started + MINUTE)?;
        outages.hold_until(started + 2 * MINUTE);

        outages.unreachable("inspect container", deadline + OUTAGE_TOLERANCE - MINUTE)?;
        Ok(())
    }

    #[test]
    fn an_answer_ends_the_outage_and_the_next_one_starts_afresh() -> Result<(), EngineError> {
        let started = Instant::now();
        let mut outages = Outages::new(started);
        for seconds in 0..4 {
            outages.unreachable("wait for container", started + Duration::from_secs(seconds))?;
        }

        assert_eq!(
            outages.answered(started + Duration::from_secs(5)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(outages.answered(started + Duration::from_secs(6)), None);

        let again = started + 10 * MINUTE;
        assert_eq!(
            outages.unreachable("wait for container", again)?,
            FIRST_RETRY_PAUSE
        );
        assert!(matches!(
            outages.unreachable("wait for container", again + OUTAGE_TOLERANCE),
            Err(EngineError::Unreachable { for_, .. }) if for_ == OUTAGE_TOLERANCE
        ));
        Ok(())
    }
}
