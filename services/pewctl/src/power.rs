//! `pewctl power …`

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use pew_bus::power::PowerProxy;
use serde_json::Value;
use zbus::Connection;

#[derive(clap::Subcommand, Default)]
pub enum Command {
    /// Battery, solar, load, mode, budget and the forecast (the default).
    #[default]
    Show,
    /// Ask for energy before costly work; prints the lease id to release afterwards.
    Request {
        /// Watt-hours wanted.
        wh: f64,
        /// Seconds the work may take; the lease expires after this.
        seconds: u32,
        /// Why, for the log.
        #[arg(default_value = "pewctl")]
        reason: String,
    },
    /// Return a lease's energy to the budget.
    Release { lease_id: String },
    /// The energy leases held now.
    Leases,
    /// Print mode changes and property updates as they happen, until interrupted.
    Watch,
}

pub async fn run(connection: &Connection, command: Command, json: bool) -> Result<()> {
    let service = &pew_bus::power::SERVICE;
    crate::require_running(connection, service).await?;
    let power = PowerProxy::new(connection).await?;
    match command {
        Command::Show => {
            let properties = Value::Object(crate::properties::all(connection, service).await?);
            if json {
                println!("{}", serde_json::to_string_pretty(&properties)?);
            } else {
                println!("{}", details(&properties));
            }
        }
        Command::Request {
            wh,
            seconds,
            reason,
        } => {
            let grant = power
                .request_budget(wh, seconds, &reason)
                .await
                .context("RequestBudget")?;
            if json {
                println!("{}", serde_json::to_string(&grant)?);
            } else if grant.granted {
                println!("{}", grant.lease_id);
            } else {
                bail!("refused: {}", grant.detail);
            }
        }
        Command::Release { lease_id } => {
            if !power
                .release_budget(&lease_id)
                .await
                .context("ReleaseBudget")?
            {
                bail!("no lease {lease_id}");
            }
        }
        Command::Leases => {
            let leases = power.list_leases().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&leases)?);
            } else {
                for lease in leases {
                    println!(
                        "{:<12} {:>7.2} Wh  expires {}  {}",
                        lease.id, lease.wh, lease.expires_at, lease.reason
                    );
                }
            }
        }
        Command::Watch => watch(&power, json).await?,
    }
    Ok(())
}

async fn watch(power: &PowerProxy<'_>, json: bool) -> Result<()> {
    let mut modes = power.receive_mode_changed().await?;
    let mut soc = power.receive_state_of_charge_changed().await;
    loop {
        tokio::select! {
            Some(signal) = modes.next() => {
                let args = signal.args()?;
                if json {
                    println!("{}", serde_json::json!({"ModeChanged": {"old": args.old, "new": args.new, "reason": args.reason}}));
                } else {
                    println!("mode {} -> {}: {}", args.old, args.new, args.reason);
                }
            }
            Some(change) = soc.next() => {
                let value = change.get().await?;
                if json {
                    println!("{}", serde_json::json!({"StateOfCharge": value}));
                } else {
                    println!("state of charge {value:.1} %");
                }
            }
            else => return Ok(()),
        }
    }
}

/// The power properties `pewctl` shows, read from the JSON form of `GetAll`.
struct View<'a> {
    report: &'a Value,
}

impl View<'_> {
    fn number(&self, key: &str) -> f64 {
        self.report
            .get(key)
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    }

    fn text(&self, key: &str) -> &str {
        self.report.get(key).and_then(Value::as_str).unwrap_or("?")
    }
}

/// Forecast energy over the next `hours`, from the `Forecast` property's (start, wh) pairs.
fn forecast_wh(report: &Value, hours: i64) -> f64 {
    let slots = report
        .get("Forecast")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let first = slots.first().and_then(|s| s[0].as_i64()).unwrap_or(0);
    slots
        .iter()
        .filter(|slot| {
            slot[0]
                .as_i64()
                .is_some_and(|start| start < first + hours * 3600)
        })
        .filter_map(|slot| slot[1].as_f64())
        .sum()
}

/// The one-line summary used by `pewctl status`.
pub fn headline(report: &Value) -> String {
    let view = View { report };
    format!(
        "{:<8} SoC {:5.1} %  battery {:5.2} V {:+6.3} A  solar {:5.1} W  load {:4.1} W  budget {:6.1} Wh",
        view.text("Mode"),
        view.number("StateOfCharge"),
        view.number("BatteryVoltage"),
        view.number("BatteryCurrent"),
        view.number("SolarPower"),
        view.number("LoadPower"),
        view.number("BudgetWh"),
    )
}

fn details(report: &Value) -> String {
    let view = View { report };
    [
        format!("mode            {}", view.text("Mode")),
        format!(
            "state of charge {:.1} % (± {:.1})",
            view.number("StateOfCharge"),
            view.number("StateOfChargeUncertainty")
        ),
        format!(
            "battery         {:.2} V, {:+.3} A",
            view.number("BatteryVoltage"),
            view.number("BatteryCurrent")
        ),
        format!("solar           {:.1} W", view.number("SolarPower")),
        format!("load            {:.1} W", view.number("LoadPower")),
        format!(
            "budget          {:.1} Wh (reserve {:.1} Wh of {:.1} Wh)",
            view.number("BudgetWh"),
            view.number("ReserveWh"),
            view.number("CapacityWh")
        ),
        format!(
            "forecast        {:.0} Wh next 24 h, {:.0} Wh next 48 h",
            forecast_wh(report, 24),
            forecast_wh(report, 48)
        ),
        format!("source          {}", view.text("Source")),
        format!("woke because    {}", view.text("WakeReason")),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn forecast_sums_only_the_requested_window() {
        let report =
            json!({ "Forecast": [[0, 10.0], [1800, 5.0], [86_400, 100.0], [90_000, 1.0]] });
        assert_eq!(forecast_wh(&report, 24), 15.0);
        assert_eq!(forecast_wh(&report, 48), 116.0);
    }

    #[test]
    fn headline_shows_mode_and_numbers() {
        let report = json!({"Mode": "eco", "StateOfCharge": 38.25, "BatteryVoltage": 3.8,
            "BatteryCurrent": -0.5, "SolarPower": 0.0, "LoadPower": 2.7, "BudgetWh": 4.0});
        let line = headline(&report);
        assert!(line.starts_with("eco      SoC  38.2 %"), "{line}");
        assert!(line.contains("-0.500 A"), "{line}");
    }
}
