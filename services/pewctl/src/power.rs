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
    if !pew_bus::is_running(connection, service).await? {
        bail!("{} is not running ({} not on the bus)", service.unit, service.bus_name);
    }
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
        Command::Request { wh, seconds, reason } => {
            let grant = power.request_budget(wh, seconds, &reason).await.context("RequestBudget")?;
            if json {
                println!("{}", serde_json::to_string(&grant)?);
            } else if grant.granted {
                println!("{}", grant.lease_id);
            } else {
                bail!("refused: {}", grant.detail);
            }
        }
        Command::Release { lease_id } => {
            if !power.release_budget(&lease_id).await.context("ReleaseBudget")? {
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

fn number(report: &Value, key: &str) -> f64 {
    report.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// Forecast energy over the next `hours`, from the `Forecast` property's (start, wh) pairs.
fn forecast_wh(report: &Value, hours: i64) -> f64 {
    let slots = report.get("Forecast").and_then(Value::as_array).cloned().unwrap_or_default();
    let first = slots.first().and_then(|s| s[0].as_i64()).unwrap_or(0);
    slots
        .iter()
        .filter(|slot| slot[0].as_i64().is_some_and(|start| start < first + hours * 3600))
        .filter_map(|slot| slot[1].as_f64())
        .sum()
}

/// The one-line summary used by `pewctl status`.
pub fn headline(report: &Value) -> String {
    format!(
        "{mode:<8} SoC {soc:5.1} %  battery {v:5.2} V {a:+6.3} A  solar {solar:5.1} W  load {load:4.1} W  budget {budget:6.1} Wh",
        mode = report.get("Mode").and_then(Value::as_str).unwrap_or("?"),
        soc = number(report, "StateOfCharge"),
        v = number(report, "BatteryVoltage"),
        a = number(report, "BatteryCurrent"),
        solar = number(report, "SolarPower"),
        load = number(report, "LoadPower"),
        budget = number(report, "BudgetWh"),
    )
}

fn details(report: &Value) -> String {
    format!(
        "mode            {mode}\n\
         state of charge {soc:.1} % (± {sigma:.1})\n\
         battery         {v:.2} V, {a:+.3} A\n\
         solar           {solar:.1} W\n\
         load            {load:.1} W\n\
         budget          {budget:.1} Wh (reserve {reserve:.1} Wh of {capacity:.1} Wh)\n\
         forecast        {f24:.0} Wh next 24 h, {f48:.0} Wh next 48 h\n\
         source          {source}\n\
         woke because    {wake}",
        mode = report.get("Mode").and_then(Value::as_str).unwrap_or("?"),
        soc = number(report, "StateOfCharge"),
        sigma = number(report, "StateOfChargeUncertainty"),
        v = number(report, "BatteryVoltage"),
        a = number(report, "BatteryCurrent"),
        solar = number(report, "SolarPower"),
        load = number(report, "LoadPower"),
        budget = number(report, "BudgetWh"),
        reserve = number(report, "ReserveWh"),
        capacity = number(report, "CapacityWh"),
        f24 = forecast_wh(report, 24),
        f48 = forecast_wh(report, 48),
        source = report.get("Source").and_then(Value::as_str).unwrap_or("?"),
        wake = report.get("WakeReason").and_then(Value::as_str).unwrap_or("?"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn forecast_sums_only_the_requested_window() {
        let report = json!({ "Forecast": [[0, 10.0], [1800, 5.0], [86_400, 100.0], [90_000, 1.0]] });
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
