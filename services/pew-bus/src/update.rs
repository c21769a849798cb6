//! `org.pew.Update1`: signed A/B over-the-air updates with health check and rollback.

use zbus::proxy;

pub const SERVICE: crate::Service = crate::Service {
    short_name: "update",
    unit: "pew-updated",
    bus_name: "org.pew.Update1",
    object_path: "/org/pew/Update1",
    introspection: include_str!("../interfaces/org.pew.Update1.xml"),
    read_only_methods: &[],
};

#[proxy(
    interface = "org.pew.Update1",
    default_service = "org.pew.Update1",
    default_path = "/org/pew/Update1"
)]
pub trait Update {
    /// Asks the update channel whether a newer bundle exists; returns its version, empty if none.
    /// Mutating (it uses the network and energy).
    fn check(&self) -> zbus::Result<String>;
    /// Downloads, verifies and installs the bundle at `source` (URL or local path) into the
    /// inactive slot. Mutating.
    fn install(&self, source: &str) -> zbus::Result<()>;
    /// Marks the booted slot good after a successful health check. Mutating.
    fn mark_good(&self) -> zbus::Result<()>;
    /// Switches back to the other slot at the next boot. Mutating.
    fn rollback(&self) -> zbus::Result<()>;

    /// "idle", "checking", "downloading", "installing", "pending-reboot", "testing" or "error".
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    /// Version of the running system.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    /// "A" or "B".
    #[zbus(property)]
    fn booted_slot(&self) -> zbus::Result<String>;
    /// The slot the next boot will try first.
    #[zbus(property)]
    fn primary_slot(&self) -> zbus::Result<String>;
    /// Progress of the current operation, 0 to 100.
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;

    /// An installation finished, successfully or not.
    #[zbus(signal)]
    fn completed(&self, success: bool, message: String) -> zbus::Result<()>;
}
