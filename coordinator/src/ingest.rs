//! The heartbeat path: authenticate, decode, replay-check, then apply to the node's
//! health. Checks run cheapest-and-most-hostile first: an unsigned or forged body is
//! never parsed, and creates no state.

use crate::cluster::Cluster;
use crate::detector::PhiDetector;
use crate::registry::NodeCell;
use crate::store::NodeRecord;
use std::sync::Arc;
use std::time::Instant;
use torua_protocol::{
    check_replay, decode_heartbeat, parse_authorization, DecodeError, ErrorCode, HeartbeatAck,
    RunState, Status,
};

/// A refused heartbeat: the code decides the HTTP status and the metric label.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
}

fn reject(code: ErrorCode, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
    }
}

impl Cluster {
    /// Handles one heartbeat body with its `Authorization` header value.
    pub fn handle_heartbeat(
        &self,
        auth: Option<&str>,
        body: &[u8],
        now: Instant,
        now_ms: u64,
    ) -> Result<HeartbeatAck, Rejection> {
        let result = self.ingest(auth, body, now, now_ms);
        match &result {
            Ok(_) => self.metrics.heartbeats_ok.inc(),
            Err(r) => self.metrics.heartbeat_rejected(r.code),
        }
        result
    }

    fn ingest(
        &self,
        auth: Option<&str>,
        body: &[u8],
        now: Instant,
        now_ms: u64,
    ) -> Result<HeartbeatAck, Rejection> {
        if body.len() > torua_protocol::MAX_BODY_BYTES {
            return Err(reject(
                ErrorCode::TooLarge,
                format!(
                    "body is {} bytes, the limit is {}",
                    body.len(),
                    torua_protocol::MAX_BODY_BYTES
                ),
            ));
        }
        let auth =
            auth.ok_or_else(|| reject(ErrorCode::BadSignature, "missing Authorization header"))?;
        let (node_id, sig) = parse_authorization(auth)
            .map_err(|e| reject(ErrorCode::BadSignature, e.to_string()))?;

        let known = self.nodes.get(node_id);
        let verified = match &known {
            Some(cell) => cell.keys.verify(body, &sig),
            // Derive without storing anything: a flood of forged ids costs CPU, not memory.
            None => self.keys.node_keys(node_id).verify(body, &sig),
        };
        if !verified {
            return Err(reject(
                ErrorCode::BadSignature,
                format!("signature does not match the body for node {node_id}"),
            ));
        }

        let hb = decode_heartbeat(body).map_err(|e| match e {
            DecodeError::TooLarge { .. } => reject(ErrorCode::TooLarge, e.to_string()),
            DecodeError::Malformed { .. } => reject(ErrorCode::Malformed, e.to_string()),
            DecodeError::Invalid { .. } => reject(ErrorCode::Invalid, e.to_string()),
        })?;
        if hb.node_id != node_id {
            return Err(reject(
                ErrorCode::BadSignature,
                format!(
                    "Authorization is for node {node_id} but the body is from {}",
                    hb.node_id
                ),
            ));
        }

        let cell = match known {
            Some(c) => c,
            None if self.cfg.auto_join => {
                let record = NodeRecord {
                    addr: hb.node_addr.clone(),
                    incarnation: 0,
                    admin_drain: false,
                    leaving: false,
                    capacity: hb.capacity.clone(),
                    first_seen_ms: now_ms,
                };
                let cell = Arc::new(NodeCell::new(
                    hb.node_id.as_str().into(),
                    self.keys.node_keys(&hb.node_id),
                    record,
                    now,
                ));
                self.nodes.insert(cell)
            }
            None => {
                return Err(reject(
                    ErrorCode::UnknownNode,
                    format!("node {node_id} is not registered and auto_join is off"),
                ))
            }
        };

        let mut n = cell.lock();
        if n.removed {
            return Err(reject(
                ErrorCode::UnknownNode,
                format!("node {node_id} was removed"),
            ));
        }
        let mark = check_replay(
            &self.replay,
            n.replay,
            n.record.incarnation,
            hb.incarnation,
            hb.seq,
            hb.sent_at_ms,
            now_ms,
        )
        .map_err(|e| {
            let code = if e.is_stale() {
                ErrorCode::Stale
            } else {
                ErrorCode::Replay
            };
            reject(code, e.to_string())
        })?;

        let new_incarnation = n.replay.is_none_or(|m| m.incarnation != mark.incarnation);
        n.replay = Some(mark);

        // The failure detector learns only from a continuous run of one incarnation,
        // and never from the gap that made the node look dead.
        let gap_ms = n
            .last_heartbeat
            .map(|t| now.saturating_duration_since(t).as_secs_f64() * 1000.0);
        match (&mut n.detector, gap_ms) {
            (Some(d), Some(gap)) if !new_incarnation && gap < d.elapsed_at(self.y_convict) => {
                d.record(gap as u64)
            }
            (Some(_), _) if !new_incarnation => {}
            _ => n.detector = Some(PhiDetector::new(hb.interval_ms)),
        }
        n.last_heartbeat = Some(now);
        n.last_heartbeat_ms = now_ms;
        n.interval_ms = hb.interval_ms;

        let leaving = hb.state == RunState::Leaving;
        let record_changed = n.record.incarnation != hb.incarnation
            || n.record.addr != hb.node_addr
            || n.record.capacity != hb.capacity
            || n.record.leaving != leaving;
        if record_changed {
            n.record.incarnation = hb.incarnation;
            n.record.addr = hb.node_addr;
            n.record.capacity = hb.capacity;
            n.record.leaving = leaving;
            self.persist
                .queue(cell.id.to_string(), Some(n.record.clone()));
        }

        let policy = self.policy;
        n.health
            .on_heartbeat(&policy, hb.liveness, hb.readiness, &hb.checks);
        if hb.liveness.max(hb.readiness) != Status::Fail {
            n.last_good = Some(now);
        }
        n.liveness = Some(hb.liveness);
        n.readiness = Some(hb.readiness);
        n.checks.update(hb.checks);
        n.metrics.update(hb.metrics);
        if let Some(old) = n.refresh_state(now) {
            self.state_changed(&cell, &n, old, now);
        }
        self.ensure_scheduled(&cell, &mut n);

        Ok(HeartbeatAck {
            node_id: cell.id.to_string(),
            state: n.state,
            interval_ms: self
                .cfg
                .heartbeat_interval
                .map_or(hb.interval_ms, |d| d.as_millis() as u64),
            assignment_version: 0,
        })
    }
}
