//! What a node's agent last reported (its checks and pushed metrics), stored
//! compactly and updated in place.
//!
//! Agents send the same few checks and metric names on every heartbeat. A boxed
//! slice costs a fraction of a map or an over-allocated `Vec` per node (the registry
//! holds one per node, up to 100,000 of them), and a heartbeat with the same names
//! only overwrites values: no allocation on the steady-state hot path.

use std::collections::BTreeMap;
use torua_protocol::CheckResult;

/// The last check results, in the agent's order.
#[derive(Debug, Default)]
pub struct Checks(Box<[CheckResult]>);

impl Checks {
    pub fn update(&mut self, new: Vec<CheckResult>) {
        let same_names = self.0.len() == new.len()
            && self
                .0
                .iter()
                .zip(&new)
                .all(|(a, b)| a.name == b.name && a.kind == b.kind);
        if same_names {
            for (slot, c) in self.0.iter_mut().zip(new) {
                slot.status = c.status;
                slot.duration_ms = c.duration_ms;
                slot.message = c.message;
            }
        } else {
            self.0 = new.into_boxed_slice();
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &CheckResult> {
        self.0.iter()
    }

    pub fn to_vec(&self) -> Vec<CheckResult> {
        self.0.to_vec()
    }
}

/// The last pushed metrics, sorted by name.
#[derive(Debug, Default)]
pub struct Metrics(Box<[(Box<str>, f64)]>);

impl Metrics {
    pub fn update(&mut self, new: BTreeMap<String, f64>) {
        let same_names = self.0.len() == new.len()
            && self.0.iter().zip(new.keys()).all(|((a, _), b)| **a == **b);
        if same_names {
            for (slot, v) in self.0.iter_mut().zip(new.into_values()) {
                slot.1 = v;
            }
        } else {
            self.0 = new
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v))
                .collect();
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(k, v)| (&**k, *v))
    }

    pub fn to_map(&self) -> BTreeMap<String, f64> {
        self.iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torua_protocol::{CheckKind, Status};

    fn check(name: &str, status: Status, message: &str) -> CheckResult {
        CheckResult {
            name: name.into(),
            kind: CheckKind::Http,
            status,
            duration_ms: 1.0,
            message: message.into(),
        }
    }

    #[test]
    fn checks_update_in_place_and_replace_on_a_new_set() {
        let mut c = Checks::default();
        c.update(vec![check("http", Status::Pass, "")]);
        c.update(vec![check("http", Status::Fail, "refused")]);
        let v = c.to_vec();
        assert_eq!(
            (v.len(), v[0].status, v[0].message.as_str()),
            (1, Status::Fail, "refused")
        );
        c.update(vec![
            check("tcp", Status::Pass, ""),
            check("disk", Status::Warn, ""),
        ]);
        let names: Vec<_> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["tcp", "disk"]);
        c.update(Vec::new());
        assert_eq!(c.iter().count(), 0);
    }

    #[test]
    fn metrics_update_values_and_follow_name_changes() {
        let mut m = Metrics::default();
        m.update(BTreeMap::from([
            ("a".to_string(), 1.0),
            ("b".to_string(), 2.0),
        ]));
        m.update(BTreeMap::from([
            ("a".to_string(), 3.0),
            ("b".to_string(), 4.0),
        ]));
        assert_eq!(m.iter().collect::<Vec<_>>(), [("a", 3.0), ("b", 4.0)]);
        m.update(BTreeMap::from([
            ("a".to_string(), 5.0),
            ("c".to_string(), 6.0),
        ]));
        assert_eq!(
            m.to_map(),
            BTreeMap::from([("a".into(), 5.0), ("c".into(), 6.0)])
        );
    }
}
