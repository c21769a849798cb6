//! `pewctl status`: whether each service runs, and its headline state.

use anyhow::Result;
use pew_bus::{SERVICES, Service};
use serde_json::{Map, Value, json};
use zbus::Connection;

pub async fn run(connection: &Connection, json: bool) -> Result<()> {
    let mut report = Map::new();
    for service in &SERVICES {
        report.insert(
            service.short_name.to_owned(),
            service_report(connection, service).await?,
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&Value::Object(report))?);
    } else {
        for service in &SERVICES {
            println!("{}", render(service, &report[service.short_name]));
        }
    }
    Ok(())
}

async fn service_report(connection: &Connection, service: &Service) -> Result<Value> {
    if !pew_bus::is_running(connection, service).await? {
        return Ok(json!({ "running": false }));
    }
    let mut properties = crate::properties::all(connection, service).await?;
    properties.insert("running".to_owned(), Value::Bool(true));
    Ok(Value::Object(properties))
}

/// One line per service; the power line carries the numbers an operator looks for first.
fn render(service: &Service, report: &Value) -> String {
    let name = format!("{:<8}", service.short_name);
    if report["running"] != Value::Bool(true) {
        return format!("{name} not running ({})", service.unit);
    }
    if service.bus_name == pew_bus::power::SERVICE.bus_name {
        return format!("{name} {}", crate::power::headline(report));
    }
    if service.bus_name == pew_bus::worker::SERVICE.bus_name {
        return format!("{name} {}", crate::worker::headline(report));
    }
    let state = report.get("State").and_then(Value::as_str).unwrap_or("?");
    format!("{name} {state}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_service_is_named_with_its_unit() {
        let line = render(&pew_bus::worker::SERVICE, &json!({ "running": false }));
        assert_eq!(line, "worker   not running (pew-workerd)");
    }

    #[test]
    fn running_generic_service_shows_its_state() {
        let line = render(
            &pew_bus::update::SERVICE,
            &json!({ "running": true, "State": "idle" }),
        );
        assert_eq!(line, "update   idle");
    }
}
