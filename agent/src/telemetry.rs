//! Logs and traces: see the `torua-telemetry` crate, shared with the coordinator.

pub use torua_telemetry::*;
