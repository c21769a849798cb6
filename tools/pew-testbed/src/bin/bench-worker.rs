//! `cargo xtask bench worker`: pew-workerd's idle footprint and its overhead per task, on the
//! testbed with release binaries. Overhead is read from the worker's own timing fields: replicate
//! received → app container started, and app container exited → contribution sent (image pull
//! and chain confirmation excluded, as the figures are meant).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pew_iexec::status::ReplicateStatus;
use pew_testbed::{Testbed, XS};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let bin_dir = PathBuf::from(
        args.next()
            .context("usage: bench-worker <bin dir> [idle seconds] [tasks]")?,
    );
    let idle_seconds: u64 = args.next().map_or(Ok(120), |a| a.parse())?;
    let tasks: u32 = args.next().map_or(Ok(20), |a| a.parse())?;

    let mut bed = Testbed::start(&bin_dir).await?;
    bed.start_worker()?;
    let pid = bed.worker_pid().context("the worker did not start")?;
    let ready = Instant::now();
    while bed.worker_state().await != "idle" {
        if ready.elapsed() > Duration::from_secs(60) {
            bail!("the worker never became idle:\n{}", bed.worker_log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let registration and the first asks settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = tokio::task::spawn_blocking(move || {
        pew_procstat::measure(pid, Duration::from_secs(idle_seconds))
    })
    .await??;

    let task_ids = bed.deal(XS, "bench", tasks).await?;
    for task in &task_ids {
        bed.wait_replicate(*task, ReplicateStatus::Completed, Duration::from_secs(180))
            .await?;
    }
    let log = bed.worker_log();
    let mut before_start = Vec::new();
    let mut after_exit = Vec::new();
    for task in &task_ids {
        let task = format!("{task:#x}");
        let received = field(&log, &task, "replicate received", "at_ms")?;
        let started = field(&log, &task, "app ran", "started_ms")?;
        let finished = field(&log, &task, "app ran", "finished_ms")?;
        let sent = field(&log, &task, "sending a transaction", "at_ms")?;
        before_start.push(started.saturating_sub(received) as f64);
        after_exit.push(sent.saturating_sub(finished) as f64);
    }
    println!(
        "pew-workerd (release) on the testbed: podman API, anvil + PoCo, dev-core, pew-powerd"
    );
    println!(
        "  idle RSS                            {:>8.1} MB median (max {:.1} MB, {} samples)",
        idle.rss_median_mb, idle.rss_max_mb, idle.samples
    );
    println!(
        "  idle CPU                            {:>8.2} s per hour (median of {} s windows over {idle_seconds} s)",
        idle.cpu_s_per_hour,
        pew_procstat::WINDOW.as_secs()
    );
    println!(
        "  received -> container started       {:>8.0} ms median, {:.0} ms p95  ({} tasks)",
        pew_procstat::percentile(&mut before_start, 0.5),
        pew_procstat::percentile(&mut before_start, 0.95),
        task_ids.len()
    );
    println!(
        "  container exited -> contribute sent  {:>8.0} ms median, {:.0} ms p95",
        pew_procstat::percentile(&mut after_exit, 0.5),
        pew_procstat::percentile(&mut after_exit, 0.95)
    );
    Ok(())
}

/// The numeric `name=` field of the first log line about `task` with `message`.
fn field(log: &str, task: &str, message: &str, name: &str) -> Result<u64> {
    let line = log
        .lines()
        .find(|line| line.contains(message) && line.contains(task))
        .with_context(|| format!("no {message:?} line for {task}"))?;
    let value = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{name}=")))
        .with_context(|| format!("no {name} in {line:?}"))?;
    value.parse().with_context(|| format!("{name}={value}"))
}
