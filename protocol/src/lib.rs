//! Torua's wire contract: heartbeat types and their validation, HMAC-SHA256 signing
//! with per-node key derivation, the replay rule, the shared API shapes, the node
//! API's bodies, roles and key rules ([`node_api`]), signed node calls and pull
//! tickets ([`node_call`]), and the key-file rules of the agent and the node
//! ([`keyfile`]).
//!
//! **Architecture Invariant:** this crate does no network I/O and knows no clock:
//! callers pass `now` in. Everything here is a pure function (the one exception,
//! [`keyfile`], reads the key file a caller names), so the agent, the node, the
//! coordinator, the tests and the benchmarks all agree on the contract by
//! construction.

#![forbid(unsafe_code)]

pub mod api;
pub mod duration;
pub mod heartbeat;
pub mod keyfile;
pub mod node_api;
pub mod node_call;
pub mod replay;
pub mod shard;
pub mod sign;
pub mod validate;

#[cfg(test)]
mod proptests;

pub use api::{ErrorBody, ErrorCode, HeartbeatAck, NodeState};
pub use heartbeat::{Capacity, CheckKind, CheckResult, Heartbeat, RunState, Status};
pub use replay::{check_replay, ReplayError, ReplayMark, ReplayPolicy};
pub use sign::{
    authorization_header, derive_node_key, parse_authorization, sign, verify, AuthError, NodeKey,
    AUTH_SCHEME,
};
pub use validate::{decode_heartbeat, DecodeError, MAX_BODY_BYTES, MAX_CHECKS, MAX_METRICS};

/// Wire format version carried in every heartbeat as `v`.
pub const PROTOCOL_VERSION: u32 = 1;
