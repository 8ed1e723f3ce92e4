//! Response shapes shared by the coordinator, the CLI and the tests (SPEC §2, §3, §5).

use serde::{Deserialize, Serialize};
use std::fmt;

/// `200` answer to an accepted heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    pub node_id: String,
    pub state: NodeState,
    /// The interval the coordinator wants this agent to use.
    pub interval_ms: u64,
    pub assignment_version: u64,
}

/// Health of a node as the coordinator sees it (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Unknown,
    Healthy,
    Degraded,
    Unhealthy,
    Draining,
    Drained,
}

impl NodeState {
    pub const ALL: [NodeState; 6] = [
        NodeState::Unknown,
        NodeState::Healthy,
        NodeState::Degraded,
        NodeState::Unhealthy,
        NodeState::Draining,
        NodeState::Drained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Healthy => "healthy",
            NodeState::Degraded => "degraded",
            NodeState::Unhealthy => "unhealthy",
            NodeState::Draining => "draining",
            NodeState::Drained => "drained",
        }
    }

    /// Torua-compatible `status` (`healthy`/`unhealthy`/`unknown`): anything that
    /// still serves counts as healthy.
    pub fn torua_status(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Unhealthy => "unhealthy",
            _ => "healthy",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Machine-readable error codes of the HTTP API; each maps to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Malformed,
    BadSignature,
    UnknownNode,
    Replay,
    Stale,
    TooLarge,
    Invalid,
    NotFound,
    Unauthorized,
    Conflict,
    /// A write older than the version the node holds (SPEC §5: the node keeps the
    /// newest; the coordinator retries above the held version).
    Superseded,
    Unavailable,
    /// Sent by a coordinator that is not the leader, for calls only the leader
    /// takes (heartbeats); the `Torua-Leader` header names the leader when known.
    NotLeader,
    /// Too much request-body data in flight: try again after `Retry-After`.
    Overloaded,
    /// A request body that did not arrive in time (too slow a sender).
    Timeout,
    Internal,
}

/// Header of a `not_leader` answer: the leader's base URL.
pub const LEADER_HEADER: &str = "torua-leader";

impl ErrorCode {
    pub const HEARTBEAT_REJECTIONS: [ErrorCode; 10] = [
        ErrorCode::Malformed,
        ErrorCode::BadSignature,
        ErrorCode::UnknownNode,
        ErrorCode::Replay,
        ErrorCode::Stale,
        ErrorCode::TooLarge,
        ErrorCode::Invalid,
        // Another live node's address.
        ErrorCode::Conflict,
        ErrorCode::Overloaded,
        ErrorCode::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::UnknownNode => "unknown_node",
            ErrorCode::Replay => "replay",
            ErrorCode::Stale => "stale",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Invalid => "invalid",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Superseded => "superseded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Malformed => 400,
            ErrorCode::BadSignature | ErrorCode::UnknownNode | ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::Replay | ErrorCode::Stale | ErrorCode::Conflict | ErrorCode::Superseded => {
                409
            }
            ErrorCode::TooLarge => 413,
            ErrorCode::Invalid => 422,
            ErrorCode::Unavailable | ErrorCode::NotLeader | ErrorCode::Overloaded => 503,
            ErrorCode::Timeout => 408,
            ErrorCode::Internal => 500,
        }
    }
}

/// `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}
