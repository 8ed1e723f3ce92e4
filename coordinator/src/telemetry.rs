//! Logs and traces: see the `torua-telemetry` crate, shared with the agent.

pub use torua_telemetry::*;
