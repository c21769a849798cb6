//! The node's whole D-Bus contract. Every pew service, `pewctl` and every test speak to each other
//! through the names, paths, proxies and types defined here and nowhere else.
//!
//! | Interface | Bus name and object path | Served by |
//! |---|---|---|
//! | [`power`] `org.pew.Power1` | `org.pew.Power1`, `/org/pew/Power1` | pew-powerd |
//! | [`sensors`] `org.pew.Sensors1` | `org.pew.Sensors1`, `/org/pew/Sensors1` | pew-sensord |
//! | [`worker`] `org.pew.Worker1` | `org.pew.Worker1`, `/org/pew/Worker1` | pew-workerd |
//! | [`update`] `org.pew.Update1` | `org.pew.Update1`, `/org/pew/Update1` | pew-updated |
//!
//! Each interface's introspection XML is kept in `interfaces/` and checked against the running
//! service by the bus tests, so the contract cannot drift silently. Read access (properties,
//! introspection, listing methods) is open to everyone; mutating methods are allowed only to root
//! and group `pew` by the policy files shipped in `overlays/usr/share/dbus-1/system.d/`.

pub mod power;
pub mod sensors;
pub mod update;
pub mod worker;

use zbus::Connection;

/// Environment variable naming a bus address to use instead of the system bus. The dev node and
/// the tests run every service on a private `dbus-daemon` and point them at it with this.
pub const BUS_ADDRESS_ENV: &str = "PEW_BUS_ADDRESS";

/// One pew service as seen on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// Short name used by `pewctl` and the dev node ("power").
    pub short_name: &'static str,
    /// The systemd unit and binary ("pew-powerd").
    pub unit: &'static str,
    /// Well-known bus name, identical to the interface name.
    pub bus_name: &'static str,
    pub object_path: &'static str,
    /// The interface's introspection XML as committed in `interfaces/`.
    pub introspection: &'static str,
    /// Methods that change nothing and may be called by anyone; every other method is mutating
    /// and reserved to root and group `pew`.
    pub read_only_methods: &'static [&'static str],
}

/// The group whose members may call mutating methods.
pub const OPERATOR_GROUP: &str = "pew";

impl Service {
    /// The system bus policy for this service, as shipped in
    /// `overlays/usr/share/dbus-1/system.d/<bus name>.conf`: root owns the name and may call
    /// everything, group [`OPERATOR_GROUP`] may call everything, anyone else may only read.
    pub fn policy(&self) -> String {
        let name = self.bus_name;
        let mut public = vec![
            r#"send_interface="org.freedesktop.DBus.Properties" send_member="Get""#.to_owned(),
            r#"send_interface="org.freedesktop.DBus.Properties" send_member="GetAll""#.to_owned(),
            r#"send_interface="org.freedesktop.DBus.Introspectable""#.to_owned(),
            r#"send_interface="org.freedesktop.DBus.Peer""#.to_owned(),
        ];
        public.extend(
            self.read_only_methods
                .iter()
                .map(|method| format!(r#"send_interface="{name}" send_member="{method}""#)),
        );
        let public: String = public
            .iter()
            .map(|rule| format!("    <allow send_destination=\"{name}\" {rule}/>\n"))
            .collect();
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- Generated from pew-bus by `cargo xtask policies`; do not edit. -->
<busconfig>
  <policy user="root">
    <allow own="{name}"/>
    <allow send_destination="{name}"/>
  </policy>
  <policy group="{OPERATOR_GROUP}">
    <allow send_destination="{name}"/>
  </policy>
  <policy context="default">
{public}  </policy>
</busconfig>
"#
        )
    }
}

/// Every pew service, in the order `pewctl status` shows them.
pub const SERVICES: [Service; 4] = [
    power::SERVICE,
    sensors::SERVICE,
    worker::SERVICE,
    update::SERVICE,
];

/// Connects to the bus the node's services live on: `address` when given (a `--bus` flag), else
/// the address in [`BUS_ADDRESS_ENV`] when set, else the system bus.
pub async fn connect(address: Option<&str>) -> zbus::Result<Connection> {
    let from_env = std::env::var(BUS_ADDRESS_ENV).ok();
    match address.map(str::to_owned).or(from_env) {
        Some(address) => {
            zbus::connection::Builder::address(address.as_str())
                .build()
                .await
        }
        None => Connection::system().await,
    }
}

/// Connects like [`connect`] and claims `service`'s well-known name, serving `interface` at its
/// object path. The name is requested only after the object is in place, so a client that sees
/// the name can already call it.
pub async fn serve<I: zbus::object_server::Interface>(
    address: Option<&str>,
    service: &Service,
    interface: I,
) -> zbus::Result<Connection> {
    let connection = connect(address).await?;
    connection
        .object_server()
        .at(service.object_path, interface)
        .await?;
    connection.request_name(service.bus_name).await?;
    Ok(connection)
}

/// Whether `service` currently owns its name on `connection`'s bus.
pub async fn is_running(connection: &Connection, service: &Service) -> zbus::Result<bool> {
    let dbus = zbus::fdo::DBusProxy::new(connection).await?;
    let name = zbus::names::BusName::try_from(service.bus_name)?;
    dbus.name_has_owner(name).await.map_err(Into::into)
}

/// The `<interface name="…">…</interface>` element for `interface_name` in an introspection
/// document, with surrounding whitespace of each line removed, so the committed XML and the
/// running service's introspection compare independently of indentation.
pub fn interface_element(document: &str, interface_name: &str) -> Option<String> {
    let open = format!("<interface name=\"{interface_name}\">");
    let start = document.find(&open)?;
    let end = start + document[start..].find("</interface>")? + "</interface>".len();
    Some(
        document[start..end]
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_its_interface_xml() {
        for service in SERVICES {
            let element = interface_element(service.introspection, service.bus_name)
                .unwrap_or_else(|| panic!("{} XML lacks its interface element", service.bus_name));
            assert!(element.contains("<method") || element.contains("<property"));
            assert!(service.object_path.starts_with("/org/pew/"));
        }
    }

    #[test]
    fn shipped_policy_files_are_the_generated_ones() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../overlays/usr/share/dbus-1/system.d");
        for service in SERVICES {
            let path = dir.join(format!("{}.conf", service.bus_name));
            let shipped = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                shipped,
                service.policy(),
                "{} is stale: run cargo xtask policies",
                path.display()
            );
        }
    }

    #[test]
    fn policy_lets_everyone_read_and_only_root_and_pew_mutate() {
        let policy = power::SERVICE.policy();
        assert!(policy.contains(r#"<policy group="pew">"#));
        assert!(policy.contains(r#"<allow own="org.pew.Power1"/>"#));
        assert!(policy.contains(r#"send_interface="org.pew.Power1" send_member="ListLeases""#));
        assert!(!policy.contains(r#"send_member="RequestBudget""#));
        let default = policy
            .split(r#"<policy context="default">"#)
            .nth(1)
            .unwrap();
        assert!(!default.contains("own="), "only root may own the name");
    }

    #[test]
    fn read_only_methods_exist_in_the_interface() {
        for service in SERVICES {
            for method in service.read_only_methods {
                let tag = format!("<method name=\"{method}\"");
                assert!(
                    service.introspection.contains(&tag),
                    "{} has no {method}",
                    service.bus_name
                );
            }
        }
    }

    #[test]
    fn interface_element_ignores_indentation_and_other_interfaces() {
        let document = "<node>\n  <interface name=\"a.B\">\n    <method name=\"X\"/>\n  </interface>\n  <interface name=\"c.D\">\n  </interface>\n</node>";
        assert_eq!(
            interface_element(document, "a.B").unwrap(),
            "<interface name=\"a.B\">\n<method name=\"X\"/>\n</interface>"
        );
        assert_eq!(interface_element(document, "e.F"), None);
    }
}
