//! `pewctl worker …`

use anyhow::{Context, Result};
use pew_bus::worker::WorkerProxy;
use serde_json::Value;
use zbus::Connection;

#[derive(clap::Subcommand, Default)]
pub enum Command {
    /// State, current task and stage, counters (the default).
    #[default]
    Show,
    /// Stop asking for new work; running work continues.
    Pause,
    /// Ask for work again after `pause` or `drain`.
    Resume,
    /// Finish running work, then stay idle (before an update or a shutdown).
    Drain,
    /// The most recent finished tasks.
    History,
    /// What each app has cost on this node (duration, energy).
    Profiles,
}

pub async fn run(connection: &Connection, command: Command, json: bool) -> Result<()> {
    let service = &pew_bus::worker::SERVICE;
    crate::require_running(connection, service).await?;
    let worker = WorkerProxy::new(connection).await?;
    match command {
        Command::Show => {
            let properties = Value::Object(crate::properties::all(connection, service).await?);
            if json {
                println!("{}", serde_json::to_string_pretty(&properties)?);
            } else {
                println!("{}", details(&properties));
            }
        }
        Command::Pause => worker.pause().await.context("Pause")?,
        Command::Resume => worker.resume().await.context("Resume")?,
        Command::Drain => worker.drain().await.context("Drain")?,
        Command::History => {
            let history = worker.recent_history().await.context("RecentHistory")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&history)?);
            } else {
                for task in history {
                    println!(
                        "{}  {:<10} {:>8.3} Wh  {}  {}",
                        task.finished_at, task.status, task.energy_wh, task.task_id, task.app
                    );
                }
            }
        }
        Command::Profiles => {
            let profiles = worker.app_profiles().await.context("AppProfiles")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&profiles)?);
            } else {
                for profile in profiles {
                    println!(
                        "{:>4} runs ({} failed)  {:>8.1} s  {:>8.4} ± {:.4} Wh  {}",
                        profile.runs,
                        profile.failures,
                        profile.mean_duration_s,
                        profile.mean_energy_wh,
                        profile.energy_std_wh,
                        profile.app
                    );
                }
            }
        }
    }
    Ok(())
}

fn text<'a>(report: &'a Value, key: &str) -> &'a str {
    report.get(key).and_then(Value::as_str).unwrap_or("?")
}

fn count(report: &Value, key: &str) -> u64 {
    report.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// The one-line summary used by `pewctl status`.
pub fn headline(report: &Value) -> String {
    let mut line = format!(
        "{:<17} done {} failed {}",
        text(report, "State"),
        count(report, "Completed"),
        count(report, "Failed")
    );
    let task = text(report, "CurrentTask");
    if !task.is_empty() && task != "?" {
        line.push_str(&format!("  {} {}", short_task(task), text(report, "Stage")));
    }
    line
}

/// A task id shortened for one line: 0x1234…abcd.
fn short_task(task: &str) -> String {
    if task.len() > 14 {
        format!("{}…{}", &task[..6], &task[task.len() - 4..])
    } else {
        task.to_owned()
    }
}

fn details(report: &Value) -> String {
    let mut lines = vec![format!("state        {}", text(report, "State"))];
    let detail = text(report, "Detail");
    if !detail.is_empty() && detail != "?" {
        lines.push(format!("because      {detail}"));
    }
    let task = text(report, "CurrentTask");
    if !task.is_empty() && task != "?" {
        lines.push(format!("task         {task}"));
        lines.push(format!("stage        {}", text(report, "Stage")));
    }
    lines.push(format!(
        "completed    {}   failed {}   contributed {}   revealed {}",
        count(report, "Completed"),
        count(report, "Failed"),
        count(report, "Contributed"),
        count(report, "Revealed")
    ));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn headline_shows_the_task_only_while_one_runs() {
        let idle = json!({"State": "idle", "Completed": 3, "Failed": 1, "CurrentTask": ""});
        assert_eq!(headline(&idle), "idle              done 3 failed 1");
        let busy = json!({"State": "computing", "Completed": 3, "Failed": 1,
            "CurrentTask": format!("0x{}", "ab".repeat(32)), "Stage": "COMPUTING"});
        assert!(
            headline(&busy).ends_with("0xabab…abab COMPUTING"),
            "{}",
            headline(&busy)
        );
    }

    #[test]
    fn details_explain_a_pause_for_energy() {
        let report = json!({"State": "paused-for-energy", "Detail": "energy refused: budget 0.2 Wh",
            "Completed": 0, "Failed": 0, "Contributed": 0, "Revealed": 0, "CurrentTask": ""});
        let text = details(&report);
        assert!(
            text.contains("because      energy refused: budget 0.2 Wh"),
            "{text}"
        );
        assert!(!text.contains("task "), "{text}");
    }
}
