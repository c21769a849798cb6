//! pew-powerd on a real private dbus-daemon with the shipped policy files: the contract, the
//! live behaviour as the simulated battery drains, and who may call what.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pew_bus::power::PowerProxy;
use pew_devbus::DevBus;

/// A private bus with pew-powerd running on simulated hardware.
struct Node {
    daemon: Child,
    bus: DevBus,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Node {
    /// `simulation` is the body of the `[simulation]` section.
    fn start(simulation: &str) -> Node {
        Self::start_with_state(simulation, None)
    }

    /// pew-powerd reading real-hardware interfaces: `config` is the whole configuration file.
    fn start_with_config(dir: tempfile::TempDir, config: &str) -> Node {
        let path = dir.path().join("powerd.toml");
        std::fs::write(&path, config).unwrap();
        let bus = DevBus::start().expect("dbus-daemon (package dbus-daemon) must be installed");
        let daemon = spawn_daemon(&path, &bus);
        Node {
            daemon,
            bus,
            config: path,
            dir,
        }
    }

    /// Like [`Node::start`], with `state` already in the state file.
    fn start_with_state(simulation: &str, state: Option<&[u8]>) -> Node {
        let dir = tempfile::tempdir().unwrap();
        if let Some(state) = state {
            std::fs::create_dir_all(dir.path().join("state")).unwrap();
            std::fs::write(dir.path().join("state/state.json"), state).unwrap();
        }
        let config = dir.path().join("powerd.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = {:?}\nsample_interval_s = 0.05\n[source]\nkind = \"simulated\"\n[simulation]\n{simulation}\n",
                dir.path().join("state").display().to_string()
            ),
        )
        .unwrap();
        let bus = DevBus::start().expect("dbus-daemon (package dbus-daemon) must be installed");
        let daemon = spawn_daemon(&config, &bus);
        Node {
            daemon,
            bus,
            config,
            dir,
        }
    }

    /// Stops the daemon with `signal` ("KILL" for a power cut, "TERM" for systemd) and starts it
    /// again on the same state directory.
    fn restart_after(&mut self, signal: &str) {
        let pid = self.daemon.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-s", signal, &pid])
                .status()
                .unwrap()
                .success()
        );
        self.daemon.wait().unwrap();
        self.daemon = spawn_daemon(&self.config, &self.bus);
    }

    async fn connect(&self) -> zbus::Connection {
        let connection = pew_bus::connect(Some(self.bus.address())).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pew_bus::is_running(&connection, &pew_bus::power::SERVICE)
            .await
            .unwrap()
        {
            assert!(
                Instant::now() < deadline,
                "pew-powerd did not claim org.pew.Power1 within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        connection
    }

    /// Runs pewctl against this node, as root or as `user` (through setpriv).
    fn pewctl(&self, user: Option<&str>, args: &[&str]) -> Output {
        let pewctl = binary("pewctl");
        let mut command = match user {
            None => Command::new(&pewctl),
            Some(user) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={}", id(user, "-u")))
                    .arg(format!("--regid={}", id(user, "-g")))
                    .args(["--init-groups", "--"])
                    .arg(&pewctl);
                command
            }
        };
        command
            .arg("--bus")
            .arg(self.bus.address())
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn spawn_daemon(config: &Path, bus: &DevBus) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pew-powerd"))
        .arg("--config")
        .arg(config)
        .arg("--bus")
        .arg(bus.address())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// `id <flag> <user>`: a user's numeric uid or primary gid.
fn id(user: &str, flag: &str) -> String {
    let output = Command::new("id").arg(flag).arg(user).output().unwrap();
    assert!(output.status.success(), "no user {user}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Another workspace binary, built beside this test's package (nextest and `cargo test
/// --workspace` build every binary first).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// 2026-01-15 05:00 UTC: midnight in Greensboro in January, twelve dark hours ahead.
const WINTER_MIDNIGHT: i64 = 1_768_453_200;

#[tokio::test]
async fn introspection_matches_the_committed_contract() {
    let node = Node::start("speed = 1.0");
    let connection = node.connect().await;
    let introspectable = zbus::fdo::IntrospectableProxy::builder(&connection)
        .destination("org.pew.Power1")
        .path("/org/pew/Power1")
        .build()
        .await
        .unwrap();
    let live = introspectable.introspect().await.unwrap();
    let service = &pew_bus::power::SERVICE;
    let live = pew_bus::interface_element(&live, service.bus_name).expect("live interface");
    let committed = pew_bus::interface_element(service.introspection, service.bus_name)
        .expect("committed interface");
    assert_eq!(
        live, committed,
        "org.pew.Power1 differs from services/pew-bus/interfaces/org.pew.Power1.xml; live:\n{live}"
    );
}

#[tokio::test]
async fn properties_follow_the_draining_battery_through_shutdown_and_wake() {
    // Two simulated hours per second, from a battery at 30 % at the start of a winter night.
    let node = Node::start(&format!(
        "start = {WINTER_MIDNIGHT}\nspeed = 7200.0\ninitial_soc = 0.30\nsite = \"greensboro\""
    ));
    let connection = node.connect().await;
    let power = PowerProxy::new(&connection).await.unwrap();
    let mut modes = power.receive_mode_changed().await.unwrap();
    let mut charge = power.receive_state_of_charge_changed().await;
    let mut wake = power.receive_wake_reason_changed().await;
    assert_eq!(power.wake_reason().await.unwrap(), "first-boot");
    // Property streams start with the current value; only changes matter here.
    charge.next().await;
    wake.next().await;

    let first = power.state_of_charge().await.unwrap();
    let mut transitions: Vec<(String, String)> = Vec::new();
    let mut charges = vec![first];
    let mut woke = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while woke.is_none() {
        tokio::select! {
            Some(signal) = modes.next() => {
                let args = signal.args().unwrap();
                assert_ne!(args.old, args.new);
                assert!(!args.reason.is_empty(), "a mode change names its cause");
                transitions.push((args.old.clone(), args.new.clone()));
            }
            Some(change) = charge.next() => charges.push(change.get().await.unwrap()),
            Some(change) = wake.next() => woke = Some(change.get().await.unwrap()),
            _ = tokio::time::sleep_until(deadline) => panic!("no shutdown and wake within 90 s; transitions {transitions:?}, charge {charges:?}"),
        }
    }
    let shutdown_at = transitions
        .iter()
        .position(|(_, new)| new == "shutdown")
        .expect("the drained node shuts down");
    assert!(
        transitions[..shutdown_at]
            .iter()
            .any(|(_, new)| new == "critical"),
        "critical comes before shutdown: {transitions:?}"
    );
    assert_eq!(
        woke.as_deref(),
        Some("rtc-alarm"),
        "the simulated node is woken by its RTC alarm"
    );
    assert!(
        charges.len() >= 3,
        "state of charge changes are announced: {charges:?}"
    );
    assert!(
        charges.iter().any(|c| *c < first - 5.0),
        "the battery drains at night: {charges:?}"
    );
    let mode = power.power_mode().await.unwrap();
    assert!(pew_bus::power::MODES.contains(&mode.as_str()));

    // pewctl sees the same node.
    let status = node.pewctl(None, &["status", "--json"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["power"]["running"], true);
    assert_eq!(report["power"]["WakeReason"], "rtc-alarm");
    assert_eq!(report["worker"]["running"], false);

    // A node that is low enough to have slept takes no new work.
    let grant = power.request_budget(1.0, 600, "test").await.unwrap();
    assert!(!grant.granted, "a drained node grants nothing: {grant:?}");
}

#[tokio::test]
async fn leases_are_granted_listed_and_released_on_a_sunny_day() {
    let node = Node::start(SUNNY_NOON_FULL);
    let connection = node.connect().await;
    let power = PowerProxy::new(&connection).await.unwrap();
    wait_for_budget(&power, 2.0).await;
    let before = power.budget_wh().await.unwrap();
    let grant = power.request_budget(1.5, 1800, "test task").await.unwrap();
    assert!(grant.granted, "{grant:?}");
    let leases = power.list_leases().await.unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].id, grant.lease_id);
    assert_eq!(leases[0].reason, "test task");
    assert!(
        power.budget_wh().await.unwrap() <= before - 1.4,
        "a lease lowers the budget at once"
    );
    assert!(power.release_budget(&grant.lease_id).await.unwrap());
    assert!(
        !power.release_budget(&grant.lease_id).await.unwrap(),
        "a lease is released once"
    );
    assert!(power.list_leases().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_lease_left_to_run_out_is_announced_and_returned_to_the_budget() {
    // At 60 simulated seconds per second a 60 s lease runs out within about a second.
    let node = Node::start(&SUNNY_NOON_FULL.replace("speed = 1.0", "speed = 60.0"));
    let connection = node.connect().await;
    let power = PowerProxy::new(&connection).await.unwrap();
    wait_for_budget(&power, 2.0).await;
    let mut expiries = power.receive_lease_expired().await.unwrap();
    let grant = power
        .request_budget(1.0, 60, "left to expire")
        .await
        .unwrap();
    assert!(grant.granted, "{grant:?}");
    let expired = tokio::time::timeout(Duration::from_secs(30), expiries.next())
        .await
        .expect("no LeaseExpired within 30 s")
        .expect("the signal stream ended");
    let args = expired.args().unwrap();
    assert_eq!(args.lease_id(), &grant.lease_id);
    assert_eq!(*args.wh(), 1.0);
    assert_eq!(args.reason(), "left to expire");
    assert!(power.list_leases().await.unwrap().is_empty());
    assert!(
        !power.release_budget(&grant.lease_id).await.unwrap(),
        "an expired lease cannot be released"
    );
}

/// Noon in June (Greensboro) with a full battery: energy to spare.
const SUNNY_NOON_FULL: &str = "start = 1781712000\nspeed = 1.0\ninitial_soc = 1.0";

async fn wait_for_budget(power: &PowerProxy<'_>, wh: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while power.budget_wh().await.unwrap() < wh {
        assert!(
            Instant::now() < deadline,
            "no {wh} Wh budget on a sunny day with a full battery"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_power_cut_loses_no_lease_and_is_told_apart_from_a_clean_restart() {
    let mut node = Node::start(SUNNY_NOON_FULL);
    let connection = node.connect().await;
    let power = PowerProxy::new(&connection).await.unwrap();
    wait_for_budget(&power, 2.0).await;
    let grant = power
        .request_budget(1.0, 3600, "survives a power cut")
        .await
        .unwrap();
    assert!(grant.granted, "{grant:?}");
    drop(power);
    drop(connection);

    // SIGKILL: the process gets no chance to save anything, as when the power fails.
    node.restart_after("KILL");
    let connection = node.connect().await;
    let power = PowerProxy::new(&connection).await.unwrap();
    assert_eq!(power.wake_reason().await.unwrap(), "power-restored");
    let leases = power.list_leases().await.unwrap();
    assert_eq!(
        leases.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        [grant.lease_id.as_str()]
    );
    let second = power
        .request_budget(0.5, 600, "after restart")
        .await
        .unwrap();
    assert_ne!(
        second.lease_id, grant.lease_id,
        "lease ids stay unique across restarts"
    );
    drop(power);
    drop(connection);

    // SIGTERM: what systemd sends on reboot; the state says so at the next start.
    node.restart_after("TERM");
    let connection = node.connect().await;
    let power = PowerProxy::new(&connection).await.unwrap();
    assert_eq!(power.wake_reason().await.unwrap(), "reboot");
    assert_eq!(
        power.list_leases().await.unwrap().len(),
        if second.granted { 2 } else { 1 }
    );
}

#[tokio::test]
async fn a_corrupt_state_file_means_a_cold_start_not_a_crash() {
    // What a card that lost power mid-write without the atomic rename would hold.
    let node = Node::start_with_state(
        SUNNY_NOON_FULL,
        Some(b"{\"power\": {\"soc\": {\"soc\": 0.7"),
    );
    let connection = node.connect().await;
    let power = PowerProxy::new(&connection).await.unwrap();
    assert_eq!(power.wake_reason().await.unwrap(), "first-boot");
    wait_for_budget(&power, 1.0).await;
    let state_dir = node.dir.path().join("state");
    assert!(
        state_dir.join("state.corrupt").exists(),
        "the unusable file is kept for inspection"
    );
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(
        saved["last_run"]["state"], "running",
        "a fresh state replaced it"
    );
}

/// Writes `content` to `root/relative`, making parent directories.
fn put(root: &Path, relative: &str, content: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

#[tokio::test]
async fn hardware_path_reads_hwmon_caps_the_cpu_in_eco_and_keeps_a_wake_alarm_armed() {
    // Laid out like the kernel's ina2xx hwmon devices, an RTC and a cpufreq policy: the daemon
    // runs exactly as on a Pi, only the roots differ.
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys");
    let powered_off = dir.path().join("powered-off");
    // Battery: 3.80 V, discharging 0.70 A (a Pi 4 idling at night, about half full). Solar: nothing.
    for (hwmon, name, client, bus_mv, current_ma, power_uw) in [
        ("hwmon0", "ina226", "1-0040", "3800", "-700", "2660000"),
        ("hwmon1", "ina219", "1-0041", "0", "0", "0"),
    ] {
        put(
            &sys,
            &format!("class/hwmon/{hwmon}/name"),
            &format!("{name}\n"),
        );
        for (file, value) in [
            ("in0_input", "0"),
            ("in1_input", bus_mv),
            ("curr1_input", current_ma),
            ("power1_input", power_uw),
        ] {
            put(
                &sys,
                &format!("class/hwmon/{hwmon}/{file}"),
                &format!("{value}\n"),
            );
        }
        std::os::unix::fs::symlink(
            format!("../../../devices/platform/soc/fe804000.i2c/i2c-1/{client}"),
            sys.join(format!("class/hwmon/{hwmon}/device")),
        )
        .unwrap();
    }
    put(&sys, "class/rtc/rtc0/wakealarm", "");
    put(&sys, "class/rtc/rtc0/since_epoch", "1781712000\n");
    for (file, value) in [
        ("cpuinfo_min_freq", "600000"),
        ("cpuinfo_max_freq", "1500000"),
        ("scaling_max_freq", "1500000"),
        (
            "scaling_available_frequencies",
            "600000 750000 1000000 1500000",
        ),
    ] {
        put(
            &sys,
            &format!("devices/system/cpu/cpufreq/policy0/{file}"),
            &format!("{value}\n"),
        );
    }
    let config = format!(
        r#"state_dir = {state:?}
sample_interval_s = 0.1
[modes]
debounce_s = 1
[source]
kind = "hwmon"
root = {hwmon:?}
battery = {{ name = "ina226", i2c_bus = 1, address = 0x40 }}
solar = {{ name = "ina219", i2c_bus = 1, address = 0x41 }}
[rtc]
device = {rtc:?}
[cpufreq]
root = {cpufreq:?}
eco_max_khz = 700000
[power_off]
command = ["touch", {powered_off:?}]
"#,
        state = dir.path().join("state").display().to_string(),
        hwmon = sys.join("class/hwmon").display().to_string(),
        rtc = sys.join("class/rtc/rtc0").display().to_string(),
        cpufreq = sys.join("devices/system/cpu/cpufreq").display().to_string(),
        powered_off = powered_off.display().to_string(),
    );
    let node = Node::start_with_config(dir, &config);
    let connection = node.connect().await;
    let power = PowerProxy::new(&connection).await.unwrap();
    assert_eq!(power.source().await.unwrap(), "hwmon");

    let deadline = Instant::now() + Duration::from_secs(30);
    let cap = sys.join("devices/system/cpu/cpufreq/policy0/scaling_max_freq");
    // Half full, less the cold start's uncertainty, is below the 40 % eco threshold.
    while power.power_mode().await.unwrap() == "normal"
        || std::fs::read_to_string(&cap).unwrap().trim() == "1500000"
    {
        assert!(
            Instant::now() < deadline,
            "no eco mode and CPU cap within 30 s (mode {})",
            power.power_mode().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!((power.battery_voltage().await.unwrap() - 3.80).abs() < 0.005);
    assert!((power.battery_current().await.unwrap() + 0.70).abs() < 0.0005);
    let load = power.load_power().await.unwrap();
    assert!(
        (load - 2.66).abs() < 0.06,
        "load = battery discharge at night, got {load}"
    );
    assert_eq!(
        std::fs::read_to_string(&cap).unwrap().trim(),
        "600000",
        "the 700 MHz cap snaps down to the highest listed frequency under it"
    );
    let alarm: i64 = std::fs::read_to_string(sys.join("class/rtc/rtc0/wakealarm"))
        .unwrap()
        .trim()
        .parse()
        .expect("an alarm is armed");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(alarm % 60, 0, "alarms are set on whole minutes");
    assert!(
        (now + 6 * 3600 - 60..=now + 6 * 3600 + 120).contains(&alarm),
        "guaranteed wake max_sleep ahead: {alarm} vs now {now}"
    );
}

fn is_access_denied(output: &Output) -> bool {
    String::from_utf8_lossy(&output.stderr).contains("AccessDenied")
}

#[tokio::test]
async fn shipped_policy_lets_everyone_read_but_only_root_and_group_pew_mutate() {
    let node = Node::start("speed = 1.0");
    let _connection = node.connect().await;

    let root = node.pewctl(None, &["power", "request", "0.1", "60"]);
    assert!(
        !is_access_denied(&root),
        "root may call RequestBudget: {}",
        String::from_utf8_lossy(&root.stderr)
    );

    let outsider = node.pewctl(Some("nobody"), &["power", "request", "0.1", "60"]);
    assert!(!outsider.status.success());
    assert!(
        is_access_denied(&outsider),
        "nobody must be refused: {}",
        String::from_utf8_lossy(&outsider.stderr)
    );
    let release = node.pewctl(Some("nobody"), &["power", "release", "lease-0"]);
    assert!(is_access_denied(&release), "ReleaseBudget is mutating too");

    let show = node.pewctl(Some("nobody"), &["power", "--json"]);
    assert!(
        show.status.success(),
        "anyone may read properties: {}",
        String::from_utf8_lossy(&show.stderr)
    );
    let leases = node.pewctl(Some("nobody"), &["power", "leases"]);
    assert!(
        leases.status.success(),
        "anyone may list leases: {}",
        String::from_utf8_lossy(&leases.stderr)
    );

    // A member of group pew (created by .ci/run; see README) may mutate.
    if Command::new("id")
        .arg("pew-operator")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let member = node.pewctl(Some("pew-operator"), &["power", "request", "0.1", "60"]);
        assert!(
            !is_access_denied(&member),
            "group pew may call RequestBudget: {}",
            String::from_utf8_lossy(&member.stderr)
        );
    } else {
        eprintln!("user pew-operator (member of group pew) does not exist: group check not run");
    }
}
