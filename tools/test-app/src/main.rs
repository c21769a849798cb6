//! A tiny iExec application for pew's tests.
//!
//! It behaves like a real standard (non-TEE) iExec app: it reads the task environment the worker
//! gives it (`IEXEC_OUT`, `IEXEC_IN`, `IEXEC_TASK_ID`, `IEXEC_INPUT_FILES_NUMBER`,
//! `IEXEC_INPUT_FILE_NAME_<i>`, `IEXEC_DATASET_FILENAME`), writes a deterministic
//! `$IEXEC_OUT/result.txt` (word counts of its inputs plus its arguments) and
//! `$IEXEC_OUT/computed.json`, and logs to stdout and stderr.
//!
//! The first argument may select a behaviour the tests need; every other argument list is a plain
//! computation over the arguments:
//!
//! | arguments | behaviour |
//! |---|---|
//! | `exit <code>` | logs, then exits with `code` without writing a result (a failing app) |
//! | `sleep <seconds>` | sleeps, then computes (overruns a short category time) |
//! | `burn <seconds>` | spins one CPU, then computes |
//! | `probe` | prints the sandbox it sees (ids, capabilities, cgroup limits, network), then computes |
//! | `threads <n>` | tries to hold `n` threads at once and prints how many it got, then computes |
//! | `alloc <MiB>` | allocates and touches memory (to meet the memory limit), then computes |
//! | `flood <lines>` | prints that many numbered lines on stdout, then computes |
//!
//! Only `std` is used so the binary links statically and runs from a `FROM scratch` image.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use std::{env, fs, hint, thread};

/// Exit status when the app is misconfigured or cannot read/write its files, like a real app
/// that crashes on bad input.
const FAILURE: u8 = 1;

const MIB: usize = 1024 * 1024;

/// The behaviour selected by the first argument.
#[derive(Debug, PartialEq)]
enum Mode {
    Compute,
    Exit(u8),
    Sleep(Duration),
    Burn(Duration),
    Probe,
    Threads(usize),
    Alloc(usize),
    Flood(u64),
}

/// The task as the worker describes it through the environment (iexec-common
/// `IexecEnvUtils.getComputeStageEnvMap`).
struct TaskEnv {
    iexec_out: PathBuf,
    iexec_in: PathBuf,
    task_id: String,
    input_files: Vec<String>,
    dataset_file: Option<String>,
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("test-app: error: {message}");
            ExitCode::from(FAILURE)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let mode = parse_mode(args)?;
    let task = TaskEnv::from_env(|name| env::var(name).ok())?;
    println!(
        "test-app: task {} with {} input file(s), arguments {:?}",
        task.task_id,
        task.input_files.len(),
        args
    );
    eprintln!("test-app: mode {mode:?}");

    match mode {
        Mode::Compute => {}
        Mode::Exit(code) => {
            println!("test-app: failing on purpose with exit code {code}");
            eprintln!("test-app: no result written");
            return Ok(ExitCode::from(code));
        }
        Mode::Sleep(duration) => thread::sleep(duration),
        Mode::Burn(duration) => burn(duration),
        Mode::Probe => print!("{}", probe_report()),
        Mode::Threads(count) => hold_threads(count),
        Mode::Alloc(mebibytes) => allocate(mebibytes),
        Mode::Flood(lines) => flood(lines).map_err(|e| format!("writing stdout: {e}"))?,
    }

    let result = result_text(&task, args)?;
    write_result(&task.iexec_out, &result)?;
    println!("test-app: result written to {}", task.iexec_out.display());
    Ok(ExitCode::SUCCESS)
}

fn parse_mode(args: &[String]) -> Result<Mode, String> {
    let Some((first, rest)) = args.split_first() else {
        return Ok(Mode::Compute);
    };
    let parameter = || {
        rest.first()
            .ok_or_else(|| format!("`{first}` needs a number"))
            .and_then(|value| {
                value
                    .parse::<u64>()
                    .map_err(|e| format!("`{first} {value}`: {e}"))
            })
    };
    let seconds = |value: u64| Duration::from_secs(value);
    let count = |value: u64| usize::try_from(value).map_err(|e| format!("`{first}`: {e}"));
    Ok(match first.as_str() {
        "exit" => Mode::Exit(
            u8::try_from(parameter()?).map_err(|_| "an exit code is 0..=255".to_string())?,
        ),
        "sleep" => Mode::Sleep(seconds(parameter()?)),
        "burn" => Mode::Burn(seconds(parameter()?)),
        "probe" => Mode::Probe,
        "threads" => Mode::Threads(count(parameter()?)?),
        "alloc" => Mode::Alloc(count(parameter()?)?),
        "flood" => Mode::Flood(parameter()?),
        _ => Mode::Compute,
    })
}

impl TaskEnv {
    /// Reads the task description from `lookup` (the process environment in production).
    fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let iexec_out = lookup("IEXEC_OUT")
            .map(PathBuf::from)
            .ok_or("IEXEC_OUT is not set: not started as an iExec task")?;
        let iexec_in = PathBuf::from(lookup("IEXEC_IN").unwrap_or_else(|| "/iexec_in".into()));
        let task_id = lookup("IEXEC_TASK_ID").unwrap_or_else(|| "unknown".into());
        let input_count: usize = match lookup("IEXEC_INPUT_FILES_NUMBER") {
            Some(value) => value
                .parse()
                .map_err(|e| format!("IEXEC_INPUT_FILES_NUMBER={value}: {e}"))?,
            None => 0,
        };
        let input_files = (1..=input_count)
            .map(|index| {
                let name = format!("IEXEC_INPUT_FILE_NAME_{index}");
                lookup(&name).ok_or(format!("{name} is missing"))
            })
            .collect::<Result<_, _>>()?;
        // The worker always sets the dataset variables; the zero address means "no dataset".
        let dataset_file = lookup("IEXEC_DATASET_FILENAME")
            .filter(|name| !name.is_empty() && !is_zero_address(name));
        Ok(Self {
            iexec_out,
            iexec_in,
            task_id,
            input_files,
            dataset_file,
        })
    }
}

fn is_zero_address(value: &str) -> bool {
    value
        .strip_prefix("0x")
        .is_some_and(|hex| hex.bytes().all(|digit| digit == b'0'))
}

/// Counts of one input, the "computation" of this app.
#[derive(Debug, PartialEq)]
struct TextCounts {
    bytes: usize,
    lines: usize,
    words: usize,
}

fn count_text(content: &[u8]) -> TextCounts {
    TextCounts {
        bytes: content.len(),
        lines: content.iter().filter(|&&byte| byte == b'\n').count(),
        words: content
            .split(|byte| byte.is_ascii_whitespace())
            .filter(|word| !word.is_empty())
            .count(),
    }
}

/// The deterministic result: the same task, arguments and inputs give the same bytes on every
/// worker, which is what lets replicates reach a consensus.
fn result_text(task: &TaskEnv, args: &[String]) -> Result<String, String> {
    let mut text = format!("task {}\nargs {}\n", task.task_id, args.join(" "));
    let named_inputs = task
        .dataset_file
        .iter()
        .map(|name| ("dataset", name))
        .chain(task.input_files.iter().map(|name| ("input", name)));
    let mut total_words = 0;
    for (kind, name) in named_inputs {
        let path = task.iexec_in.join(name);
        let content = fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let counts = count_text(&content);
        total_words += counts.words;
        // Writing to a String cannot fail.
        let _ = writeln!(
            text,
            "{kind} {name}: {} bytes, {} lines, {} words",
            counts.bytes, counts.lines, counts.words
        );
    }
    let _ = writeln!(text, "words {total_words}");
    Ok(text)
}

fn write_result(iexec_out: &Path, result: &str) -> Result<(), String> {
    let write = |name: &str, content: &str| {
        let path = iexec_out.join(name);
        fs::write(&path, content).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write("result.txt", result)?;
    let computed = format!(
        "{{\"deterministic-output-path\":\"{}\"}}",
        iexec_out.join("result.txt").display()
    );
    write("computed.json", &computed)
}

fn burn(duration: Duration) {
    let start = Instant::now();
    let mut spins: u64 = 0;
    while start.elapsed() < duration {
        spins = hint::black_box(spins.wrapping_add(1));
    }
    println!("test-app: burnt {:?} of wall time", start.elapsed());
}

/// Starts `count` threads that all stay alive until every spawn has been tried, so the number
/// started is what the pids limit allows at once.
fn hold_threads(count: usize) {
    const SMALL_STACK: usize = 64 * 1024;
    let gate = Arc::new(RwLock::new(()));
    let closed = gate.write();
    let mut handles = Vec::new();
    let mut refused = 0usize;
    for _ in 0..count {
        let gate = Arc::clone(&gate);
        let spawned = thread::Builder::new()
            .stack_size(SMALL_STACK)
            .spawn(move || drop(gate.read()));
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(_) => refused += 1,
        }
    }
    println!("threads_started={}", handles.len());
    println!("threads_refused={refused}");
    drop(closed);
    for handle in handles {
        let _ = handle.join();
    }
}

/// Allocates and writes `mebibytes` MiB so the pages are really resident; a memory limit below
/// that gets the app OOM-killed.
fn allocate(mebibytes: usize) {
    let mut blocks = Vec::with_capacity(mebibytes);
    for allocated in 1..=mebibytes {
        blocks.push(vec![0xA5u8; MIB]);
        if allocated % 16 == 0 {
            println!("test-app: {allocated} MiB resident");
        }
    }
    println!("allocated_mib={}", hint::black_box(&blocks).len());
}

fn flood(lines: u64) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for line in 1..=lines {
        writeln!(stdout, "flood line {line:08}")?;
    }
    stdout.flush()
}

/// Cgroup files (v1 layout, then v2) that show the limits the engine applied.
const CGROUP_FILES: &[&str] = &[
    "memory/memory.limit_in_bytes",
    "memory/memory.memsw.limit_in_bytes",
    "cpu/cpu.cfs_quota_us",
    "cpu/cpu.cfs_period_us",
    "pids/pids.max",
    "memory.max",
    "memory.swap.max",
    "cpu.max",
    "pids.max",
];

/// `key=value` lines describing the sandbox as seen from inside.
fn probe_report() -> String {
    let mut report = String::new();
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    for (key, field) in [
        ("uid", "Uid"),
        ("gid", "Gid"),
        ("cap_eff", "CapEff"),
        ("cap_bnd", "CapBnd"),
        ("no_new_privs", "NoNewPrivs"),
    ] {
        if let Some(value) = status_field(&status, field) {
            let _ = writeln!(report, "{key}={value}");
        }
    }
    for file in CGROUP_FILES {
        if let Ok(value) = fs::read_to_string(Path::new("/sys/fs/cgroup").join(file)) {
            let _ = writeln!(report, "cgroup:{file}={}", value.trim());
        }
    }
    let _ = writeln!(report, "net_interfaces={}", network_interfaces().join(","));
    let _ = writeln!(report, "rootfs_writable={}", rootfs_writable());
    report
}

/// The effective value of a `/proc/self/status` field (the second of Uid/Gid's four ids).
fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    let values = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    let mut ids = values.split_whitespace();
    match field {
        "Uid" | "Gid" => ids.nth(1),
        _ => ids.next(),
    }
}

fn network_interfaces() -> Vec<String> {
    let mut names: Vec<String> = fs::read_to_string("/proc/net/dev")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| Some(line.split_once(':')?.0.trim().to_string()))
        .collect();
    names.sort();
    names
}

fn rootfs_writable() -> bool {
    let probe = Path::new("/.test-app-probe");
    let writable = fs::write(probe, b"").is_ok();
    let _ = fs::remove_file(probe);
    writable
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| arg.to_string()).collect()
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn modes_are_selected_by_the_first_argument() {
        assert_eq!(parse_mode(&[]), Ok(Mode::Compute));
        assert_eq!(parse_mode(&strings(&["hello", "7"])), Ok(Mode::Compute));
        assert_eq!(parse_mode(&strings(&["exit", "3"])), Ok(Mode::Exit(3)));
        assert_eq!(
            parse_mode(&strings(&["sleep", "2"])),
            Ok(Mode::Sleep(Duration::from_secs(2)))
        );
        assert_eq!(
            parse_mode(&strings(&["threads", "40"])),
            Ok(Mode::Threads(40))
        );
        assert!(parse_mode(&strings(&["exit", "256"])).is_err());
        assert!(parse_mode(&strings(&["sleep"])).is_err());
        assert!(parse_mode(&strings(&["burn", "-1"])).is_err());
    }

    #[test]
    fn task_env_requires_iexec_out_and_every_announced_input() {
        assert!(TaskEnv::from_env(env_of(&[])).is_err());
        let missing_second = env_of(&[
            ("IEXEC_OUT", "/o"),
            ("IEXEC_INPUT_FILES_NUMBER", "2"),
            ("IEXEC_INPUT_FILE_NAME_1", "0xaa"),
        ]);
        assert!(TaskEnv::from_env(missing_second).is_err());
    }

    #[test]
    fn zero_dataset_address_means_no_dataset() {
        let task = TaskEnv::from_env(env_of(&[
            ("IEXEC_OUT", "/o"),
            (
                "IEXEC_DATASET_FILENAME",
                "0x0000000000000000000000000000000000000000",
            ),
        ]));
        assert!(task.is_ok_and(|task| task.dataset_file.is_none()));
    }

    #[test]
    fn counts_match_wc() {
        // `printf 'one two\n  three\n\nfour' | wc -l -w -c` gives 3 lines, 4 words, 21 bytes.
        assert_eq!(
            count_text(b"one two\n  three\n\nfour"),
            TextCounts {
                bytes: 21,
                lines: 3,
                words: 4
            }
        );
        assert_eq!(
            count_text(b""),
            TextCounts {
                bytes: 0,
                lines: 0,
                words: 0
            }
        );
    }

    #[test]
    fn result_covers_dataset_inputs_and_arguments() -> Result<(), String> {
        let dir = env::temp_dir().join(format!("test-app-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        fs::write(dir.join("0xdata"), "a b c\n").map_err(|e| e.to_string())?;
        fs::write(dir.join("0xin1"), "x\ny\n").map_err(|e| e.to_string())?;
        let task = TaskEnv {
            iexec_out: dir.clone(),
            iexec_in: dir.clone(),
            task_id: "0x01".into(),
            input_files: vec!["0xin1".into()],
            dataset_file: Some("0xdata".into()),
        };
        let text = result_text(&task, &strings(&["hello", "world"]));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(
            text?,
            "task 0x01\nargs hello world\n\
             dataset 0xdata: 6 bytes, 1 lines, 3 words\n\
             input 0xin1: 4 bytes, 2 lines, 2 words\n\
             words 5\n"
        );
        Ok(())
    }

    #[test]
    fn status_fields_pick_the_effective_id() {
        let status = "Name:\tx\nUid:\t0\t1000\t0\t1000\nGid:\t5\t6\t7\t8\nNoNewPrivs:\t1\n";
        assert_eq!(status_field(status, "Uid"), Some("1000"));
        assert_eq!(status_field(status, "Gid"), Some("6"));
        assert_eq!(status_field(status, "NoNewPrivs"), Some("1"));
        assert_eq!(status_field(status, "CapEff"), None);
    }
}
