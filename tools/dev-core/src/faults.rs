//! Scripted misbehaviour of the HTTP surface, for the worker's resilience tests.
//!
//! A [`Fault`] answers the next N matching requests with a bare status (500, 503, 401…) before
//! the real handler sees them, so the double's state is untouched, exactly like a proxy or a
//! crashed core in front of a healthy database would behave. A delay holds the next N matching
//! requests before handling them.

use std::time::Duration;

/// What to do to matching requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this HTTP status and an empty body, without handling the request.
    Status(u16),
    /// Handle the request after this delay.
    Delay(Duration),
}

/// A fault applied to the next `count` requests whose path starts with `path_prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Path prefix to match, e.g. `/replicates/` or `/connect`; empty matches every request.
    pub path_prefix: String,
    /// What to do.
    pub action: FaultAction,
    /// How many requests it still applies to.
    pub count: u32,
}

impl Fault {
    /// The next `count` requests under `path_prefix` get `status`.
    pub fn status(path_prefix: &str, status: u16, count: u32) -> Self {
        Self {
            path_prefix: path_prefix.to_owned(),
            action: FaultAction::Status(status),
            count,
        }
    }

    /// The next `count` requests under `path_prefix` wait `delay` first.
    pub fn delay(path_prefix: &str, delay: Duration, count: u32) -> Self {
        Self {
            path_prefix: path_prefix.to_owned(),
            action: FaultAction::Delay(delay),
            count,
        }
    }
}

/// Pending faults, consumed in the order they were added.
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    faults: Vec<Fault>,
}

impl FaultPlan {
    pub(crate) fn add(&mut self, fault: Fault) {
        if fault.count > 0 {
            self.faults.push(fault);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.faults.clear();
    }

    /// Consumes one use of the first fault matching `path`, if any. Admin endpoints (`/dev/`)
    /// are never faulted: tests need them to steer the double.
    pub(crate) fn take(&mut self, path: &str) -> Option<FaultAction> {
        if path.starts_with("/dev/") {
            return None;
        }
        let position = self
            .faults
            .iter()
            .position(|fault| path.starts_with(&fault.path_prefix))?;
        let fault = &mut self.faults[position];
        let action = fault.action.clone();
        fault.count -= 1;
        if fault.count == 0 {
            self.faults.remove(position);
        }
        Some(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_applies_exactly_count_times_to_matching_paths() {
        let mut plan = FaultPlan::default();
        plan.add(Fault::status("/replicates/", 503, 2));
        assert_eq!(plan.take("/workers/ping"), None);
        assert_eq!(
            plan.take("/replicates/available"),
            Some(FaultAction::Status(503))
        );
        assert_eq!(
            plan.take("/replicates/0x01/updateStatus"),
            Some(FaultAction::Status(503))
        );
        assert_eq!(plan.take("/replicates/available"), None);
    }

    #[test]
    fn faults_are_consumed_in_order_and_spare_admin_paths() {
        let mut plan = FaultPlan::default();
        plan.add(Fault::status("", 500, 1));
        plan.add(Fault::delay("", Duration::from_millis(10), 1));
        plan.add(Fault::status("", 401, 0));
        assert_eq!(plan.take("/dev/deals/0x01"), None);
        assert_eq!(plan.take("/version"), Some(FaultAction::Status(500)));
        assert_eq!(
            plan.take("/version"),
            Some(FaultAction::Delay(Duration::from_millis(10)))
        );
        assert_eq!(
            plan.take("/version"),
            None,
            "a zero-count fault is never added"
        );
    }

    #[test]
    fn clear_drops_everything() {
        let mut plan = FaultPlan::default();
        plan.add(Fault::status("", 500, 10));
        plan.clear();
        assert_eq!(plan.take("/version"), None);
    }
}
