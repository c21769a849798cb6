//! Task containers against a real podman API service (rootful; see `pew_containers::testing`).
//!
//! Each test has its own podman service and loads the static test app image built from
//! `tools/test-app`, so nothing is pulled from a registry.

use std::collections::HashMap;
use std::error::Error;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, chown};
use std::path::PathBuf;
use std::time::Duration;

use pew_containers::testing::{PodmanService, load_test_app};
use pew_containers::{
    Engine, EngineError, Limits, MAX_LOG_CHARS, Network, OUTPUT_MOUNT, RunOutcome, TaskContainer,
    UserId, split_args,
};

type TestResult = Result<(), Box<dyn Error>>;

const IMAGE: &str = "localhost/pew-test-app:1";
const TASK_ID: &str = "0x2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a";
/// The non-root owner of the task directories, as pew-workerd's own user would be.
const WORKER: UserId = UserId {
    uid: 1000,
    gid: 1000,
};
/// Long enough for any of the apps here to finish on a loaded machine.
const GENEROUS: Duration = Duration::from_secs(120);

struct Node {
    // Field order matters: the engine's connection goes before the service stops.
    engine: Engine,
    service: PodmanService,
}

async fn node() -> Result<Node, Box<dyn Error>> {
    let service = PodmanService::start()?;
    let engine = service.engine().await?;
    load_test_app(&engine, IMAGE).await?;
    Ok(Node { engine, service })
}

/// `<dir>/<name>/input` and `<dir>/<name>/output/iexec_out`, owned by [`WORKER`].
struct TaskDirs {
    input: PathBuf,
    output: PathBuf,
}

fn task_dirs(node: &Node, name: &str) -> Result<TaskDirs, Box<dyn Error>> {
    let base = node.service.dir().join(name);
    let dirs = TaskDirs {
        input: base.join("input"),
        output: base.join("output/iexec_out"),
    };
    for dir in [&dirs.input, &dirs.output] {
        fs::create_dir_all(dir)?;
        chown(dir, Some(WORKER.uid), Some(WORKER.gid))?;
    }
    Ok(dirs)
}

/// The environment the Java worker gives a standard app (iexec-protocol.md §3.4).
fn iexec_env(input_files: &[&str]) -> Vec<(String, String)> {
    let mut env = vec![
        ("IEXEC_TASK_ID", TASK_ID.to_owned()),
        ("IEXEC_IN", "/iexec_in".to_owned()),
        ("IEXEC_OUT", "/iexec_out".to_owned()),
        ("IEXEC_BOT_SIZE", "1".to_owned()),
        ("IEXEC_BOT_FIRST_INDEX", "0".to_owned()),
        ("IEXEC_BOT_TASK_INDEX", "0".to_owned()),
        (
            "IEXEC_DATASET_ADDRESS",
            "0x0000000000000000000000000000000000000000".to_owned(),
        ),
        (
            "IEXEC_DATASET_FILENAME",
            "0x0000000000000000000000000000000000000000".to_owned(),
        ),
        ("IEXEC_INPUT_FILES_NUMBER", input_files.len().to_string()),
    ];
    if !input_files.is_empty() {
        env.push(("IEXEC_INPUT_FILES_FOLDER", "/iexec_in".to_owned()));
    }
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    for (index, file) in input_files.iter().enumerate() {
        env.push((
            format!("IEXEC_INPUT_FILE_NAME_{}", index + 1),
            (*file).to_owned(),
        ));
    }
    env
}

fn task(name: &str, dirs: &TaskDirs, cmd: Vec<String>, input_files: &[&str]) -> TaskContainer {
    TaskContainer {
        name: name.to_owned(),
        image: IMAGE.to_owned(),
        cmd,
        env: iexec_env(input_files),
        binds: vec![
            (dirs.input.clone(), "/iexec_in".to_owned()),
            (dirs.output.clone(), OUTPUT_MOUNT.to_owned()),
        ],
        limits: Limits {
            nano_cpus: Some(1_000_000_000),
            memory_bytes: Some(128 << 20),
            pids: Some(64),
        },
        timeout: GENEROUS,
        network: Network::None,
        user: None,
        read_only_rootfs: true,
    }
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

/// `key=value` lines the test app's `probe` mode prints.
fn probe_values(outcome: &RunOutcome) -> HashMap<String, String> {
    outcome
        .stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// A cgroup value from the v1 layout, or else the v2 one.
fn cgroup<'a>(probe: &'a HashMap<String, String>, v1: &str, v2: &str) -> Option<&'a str> {
    probe
        .get(&format!("cgroup:{v1}"))
        .or_else(|| probe.get(&format!("cgroup:{v2}")))
        .map(String::as_str)
}

async fn assert_no_container(engine: &Engine, name: &str) -> TestResult {
    assert_eq!(
        engine.remove_containers_named(name).await?,
        0,
        "{name} left behind"
    );
    Ok(())
}

#[tokio::test]
async fn app_computes_from_inputs_and_args_into_the_output_bind() -> TestResult {
    let node = node().await?;
    let name = "worker-compute";
    let dirs = task_dirs(&node, name)?;
    let input_name = "0x6d0c5f1b07f7fbd8ae5b8e4e1c1f4b2a5a0e3d5e9e4b5d7c8a9f0e1d2c3b4a59";
    fs::write(dirs.input.join(input_name), "solar powered\nedge worker\n")?;
    let cmd = split_args("count 'two words' \"x\"");

    let outcome = node
        .engine
        .run(&task(name, &dirs, cmd, &[input_name]))
        .await?;

    assert!(outcome.succeeded(), "{outcome:?}");
    assert!(!outcome.oom_killed);
    assert!(outcome.finished_at >= outcome.started_at);
    assert_eq!(
        fs::read_to_string(dirs.output.join("result.txt"))?,
        format!(
            "task {TASK_ID}\nargs count two words x\n\
             input {input_name}: 26 bytes, 2 lines, 4 words\nwords 4\n"
        )
    );
    assert_eq!(
        fs::read_to_string(dirs.output.join("computed.json"))?,
        r#"{"deterministic-output-path":"/iexec_out/result.txt"}"#
    );
    // With no user given, the app ran as the output directory's owner, so the worker owns the
    // results.
    let result_owner = fs::metadata(dirs.output.join("result.txt"))?;
    assert_eq!(
        (result_owner.uid(), result_owner.gid()),
        (WORKER.uid, WORKER.gid)
    );
    assert!(
        outcome.stdout.starts_with(&format!(
            "test-app: task {TASK_ID} with 1 input file(s), arguments [\"count\", \"two words\", \"x\"]\n"
        )),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome
            .stdout
            .ends_with("test-app: result written to /iexec_out\n")
    );
    assert_eq!(outcome.stderr, "test-app: mode Compute\n");
    assert_no_container(&node.engine, name).await
}

#[tokio::test]
async fn failing_app_reports_its_exit_code_and_logs() -> TestResult {
    let node = node().await?;
    let name = "worker-failing";
    let dirs = task_dirs(&node, name)?;

    let outcome = node
        .engine
        .run(&task(name, &dirs, args(&["exit", "3"]), &[]))
        .await?;

    assert_eq!(outcome.exit_code, Some(3));
    assert!(!outcome.timed_out && !outcome.succeeded());
    assert!(
        outcome
            .stdout
            .contains("failing on purpose with exit code 3")
    );
    assert!(outcome.stderr.contains("no result written"));
    assert!(!dirs.output.join("computed.json").exists());
    assert_no_container(&node.engine, name).await
}

#[tokio::test]
async fn overrunning_app_is_killed_at_its_timeout() -> TestResult {
    let node = node().await?;
    let name = "worker-overrun";
    let dirs = task_dirs(&node, name)?;
    let mut overrun = task(name, &dirs, args(&["sleep", "600"]), &[]);
    overrun.timeout = Duration::from_secs(2);

    let outcome = node.engine.run(&overrun).await?;

    assert!(outcome.timed_out);
    // The app is the container's PID 1 with no SIGTERM handler, so the kernel ignores the
    // polite stop and only the SIGKILL after the grace period ends it: 128 + 9.
    assert_eq!(outcome.exit_code, Some(137));
    assert!(outcome.finished_at.duration_since(outcome.started_at)? >= overrun.timeout);
    assert!(
        outcome.stdout.starts_with("test-app: task"),
        "logs are kept: {outcome:?}"
    );
    assert!(!dirs.output.join("result.txt").exists());
    assert_no_container(&node.engine, name).await
}

#[tokio::test]
async fn sandbox_limits_are_visible_inside_the_container() -> TestResult {
    let node = node().await?;
    let name = "worker-probe";
    let dirs = task_dirs(&node, name)?;
    let mut probe = task(name, &dirs, args(&["probe"]), &[]);
    probe.limits = Limits {
        nano_cpus: Some(500_000_000),
        memory_bytes: Some(64 << 20),
        pids: Some(32),
    };
    // Another non-root identity than the directory owner; the output stays writable for it
    // only because the test opens it up.
    probe.user = Some(UserId {
        uid: 4321,
        gid: 8765,
    });
    fs::set_permissions(
        &dirs.output,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )?;

    let outcome = node.engine.run(&probe).await?;
    assert!(outcome.succeeded(), "{outcome:?}");
    let seen = probe_values(&outcome);
    let value = |key: &str| seen.get(key).map(String::as_str);

    assert_eq!(value("uid"), Some("4321"));
    assert_eq!(value("gid"), Some("8765"));
    assert_eq!(value("cap_eff"), Some("0000000000000000"));
    assert_eq!(value("cap_bnd"), Some("0000000000000000"));
    assert_eq!(value("no_new_privs"), Some("1"));
    assert_eq!(value("net_interfaces"), Some("lo"));
    assert_eq!(value("rootfs_writable"), Some("false"));
    let memory = (64u64 << 20).to_string();
    assert_eq!(
        cgroup(&seen, "memory/memory.limit_in_bytes", "memory.max"),
        Some(memory.as_str())
    );
    // Swap capped at the memory limit: v1 counts memory+swap together, v2 swap alone.
    assert!(matches!(
        cgroup(&seen, "memory/memory.memsw.limit_in_bytes", "memory.swap.max"),
        Some(v) if v == memory || v == "0"
    ));
    // Half a CPU: 50 ms of CPU time per 100 ms period.
    match cgroup(&seen, "cpu/cpu.cfs_quota_us", "cpu.max") {
        Some("50000") => assert_eq!(value("cgroup:cpu/cpu.cfs_period_us"), Some("100000")),
        other => assert_eq!(other, Some("50000 100000")),
    }
    assert_eq!(cgroup(&seen, "pids/pids.max", "pids.max"), Some("32"));
    assert_no_container(&node.engine, name).await
}

#[tokio::test]
async fn pids_limit_caps_the_threads_an_app_can_hold() -> TestResult {
    let node = node().await?;
    let name = "worker-threads";
    let dirs = task_dirs(&node, name)?;
    let mut threads = task(name, &dirs, args(&["threads", "100"]), &[]);
    threads.limits.pids = Some(16);

    let outcome = node.engine.run(&threads).await?;
    assert!(outcome.succeeded(), "{outcome:?}");
    let seen = probe_values(&outcome);
    let started: u32 = seen.get("threads_started").ok_or("no count")?.parse()?;
    let refused: u32 = seen.get("threads_refused").ok_or("no count")?.parse()?;
    // The main thread is one of the 16 tasks.
    assert!(started < 16, "{started} threads started under pids.max 16");
    assert_eq!(started + refused, 100);
    assert_no_container(&node.engine, name).await
}

#[tokio::test]
async fn memory_limit_kills_a_hog() -> TestResult {
    let node = node().await?;
    let name = "worker-hog";
    let dirs = task_dirs(&node, name)?;
    let mut hog = task(name, &dirs, args(&["alloc", "256"]), &[]);
    hog.limits.memory_bytes = Some(32 << 20);

    let outcome = node.engine.run(&hog).await?;

    // The kernel's OOM killer ends it with SIGKILL before it holds 32 MiB. (`oom_killed` is not
    // asserted: podman 4.3 does not report it with runc on cgroup v1.)
    assert_eq!(outcome.exit_code, Some(137), "{outcome:?}");
    assert!(outcome.stdout.contains("16 MiB resident"), "{outcome:?}");
    assert!(!outcome.stdout.contains("32 MiB resident"), "{outcome:?}");
    assert!(!outcome.stdout.contains("allocated_mib"));
    assert_no_container(&node.engine, name).await
}

#[tokio::test]
async fn long_output_is_tailed_to_the_reported_size() -> TestResult {
    let node = node().await?;
    let name = "worker-flood";
    let dirs = task_dirs(&node, name)?;

    // 20 000 lines of 20 characters: four times what is reported.
    let outcome = node
        .engine
        .run(&task(name, &dirs, args(&["flood", "20000"]), &[]))
        .await?;

    assert!(outcome.succeeded(), "{outcome:?}");
    assert_eq!(outcome.stdout.chars().count(), MAX_LOG_CHARS);
    assert!(outcome.stdout.contains("flood line 00020000\n"));
    assert!(!outcome.stdout.contains("flood line 00000001\n"));
    assert!(
        outcome
            .stdout
            .ends_with("test-app: result written to /iexec_out\n")
    );
    assert_no_container(&node.engine, name).await
}

#[tokio::test]
async fn bridge_network_is_given_only_when_asked() -> TestResult {
    let node = node().await?;
    let name = "worker-bridge";
    let dirs = task_dirs(&node, name)?;
    let mut bridged = task(name, &dirs, args(&["probe"]), &[]);
    bridged.network = Network::Bridge;

    let outcome = node.engine.run(&bridged).await?;

    assert!(outcome.succeeded(), "{outcome:?}");
    let interfaces = probe_values(&outcome)
        .remove("net_interfaces")
        .unwrap_or_default();
    assert!(
        interfaces.split(',').any(|name| name == "eth0"),
        "{interfaces}"
    );
    assert_no_container(&node.engine, name).await
}

/// Creates a container directly with the podman CLI, as a crashed worker would have left it.
fn leftover(node: &Node, name: &str) -> TestResult {
    let status = node
        .service
        .podman_cli()
        .args(["create", "--name", name, IMAGE])
        .stdout(std::process::Stdio::null())
        .status()?;
    assert!(status.success(), "podman create {name}");
    Ok(())
}

#[tokio::test]
async fn containers_are_removed_by_name_fragment() -> TestResult {
    let node = node().await?;
    for name in ["worker-0xfeed", "other-worker-0xfeed", "worker-0xbeef"] {
        leftover(&node, name)?;
    }

    assert_eq!(node.engine.remove_containers_named("0xfeed").await?, 2);
    assert_eq!(node.engine.remove_containers_named("0xfeed").await?, 0);
    assert_eq!(node.engine.remove_containers_named("0xbeef").await?, 1);
    assert!(matches!(
        node.engine.remove_containers_named("").await,
        Err(EngineError::EmptyNameFragment)
    ));
    Ok(())
}

#[tokio::test]
async fn a_leftover_with_the_task_name_is_replaced() -> TestResult {
    let node = node().await?;
    let name = "worker-rerun";
    let dirs = task_dirs(&node, name)?;
    leftover(&node, name)?;

    let outcome = node.engine.run(&task(name, &dirs, Vec::new(), &[])).await?;

    assert!(outcome.succeeded(), "{outcome:?}");
    assert_no_container(&node.engine, name).await
}

#[tokio::test]
async fn aborting_a_running_task_ends_its_run() -> TestResult {
    let node = node().await?;
    let name = format!("worker-{TASK_ID}");
    let dirs = task_dirs(&node, &name)?;
    let running = task(&name, &dirs, args(&["sleep", "600"]), &[]);

    let abort = async {
        // Retry until the container exists: the run creates it concurrently.
        loop {
            if node.engine.remove_containers_named(TASK_ID).await? > 0 {
                return Ok::<_, EngineError>(());
            }
            tokio::task::yield_now().await;
        }
    };
    let (run, aborted) = tokio::join!(node.engine.run(&running), abort);

    aborted?;
    // The run ends (with an error or a killed status) instead of waiting out its timeout.
    if let Ok(outcome) = run {
        assert!(!outcome.succeeded(), "{outcome:?}");
    }
    assert_no_container(&node.engine, &name).await
}

#[tokio::test]
async fn errors_before_the_start_leave_nothing_behind() -> TestResult {
    let node = node().await?;
    let name = "worker-no-image";
    let dirs = task_dirs(&node, name)?;
    let mut missing = task(name, &dirs, Vec::new(), &[]);
    missing.image = "localhost/not-loaded:1".to_owned();

    assert!(matches!(
        node.engine.run(&missing).await,
        Err(EngineError::Api {
            operation: "create container",
            ..
        })
    ));
    assert_no_container(&node.engine, name).await
}

#[tokio::test]
async fn images_are_found_and_unreachable_registries_fail_the_pull() -> TestResult {
    let node = node().await?;
    node.engine.ping().await?;
    assert!(node.engine.has_image(IMAGE).await?);
    assert!(!node.engine.has_image("localhost/not-loaded:1").await?);

    // Nothing listens on port 1: the pull fails at once, without any network beyond loopback.
    let pulled = node
        .engine
        .pull("localhost:1/pew/absent:1", Duration::from_secs(60))
        .await;
    assert!(
        matches!(
            pulled,
            Err(EngineError::Api {
                operation: "pull image",
                ..
            })
        ),
        "{pulled:?}"
    );
    Ok(())
}
