//! The heartbeat path: authenticate, decode, replay-check, then apply to the node's
//! health under its lock ([`NodeInner::apply_heartbeat`], pure and unit-tested).
//! Checks run cheapest-and-most-hostile first: an unsigned or forged body is never
//! parsed, and creates no state.
//!
//! [`NodeInner::apply_heartbeat`]: crate::registry::NodeInner::apply_heartbeat

use crate::cluster::Cluster;
use crate::registry::NodeCell;
use crate::store::NodeRecord;
use std::sync::Arc;
use std::time::Instant;
use torua_protocol::{
    check_replay, decode_heartbeat, parse_authorization, DecodeError, ErrorCode, HeartbeatAck,
};

/// A refused heartbeat: the code decides the HTTP status and the metric label.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    /// A first heartbeat that did not echo this process's nonce: the agent
    /// answers at once with it (counted as `result="challenge"`, not as a refusal).
    pub challenge: bool,
}

fn reject(code: ErrorCode, message: impl Into<String>) -> Rejection {
    Rejection {
        code,
        message: message.into(),
        challenge: false,
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
            Err(r) if r.challenge => self.metrics.heartbeats_challenged.inc(),
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

        let echoes = hb.coordinator_nonce.as_deref() == Some(self.nonce.as_str());
        if known.is_none() && self.cfg.auto_join && !echoes {
            return Err(self.challenge(node_id));
        }

        // Address changes are rare; holding this across the check and the update
        // makes two nodes claiming one address at once see each other.
        // (A known node's address is compared under the lock taken below anyway.)
        let mut claim = match &known {
            Some(_) => None,
            None => Some(self.claim_addr(node_id, &hb.node_addr)?),
        };

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
        if claim.is_none() && n.record.addr != hb.node_addr {
            // The claim takes other nodes' locks: never while holding this one.
            drop(n);
            claim = Some(self.claim_addr(node_id, &hb.node_addr)?);
            n = cell.lock();
        }
        let _claim = claim;
        if n.removed {
            return Err(reject(
                ErrorCode::UnknownNode,
                format!("node {node_id} was removed"),
            ));
        }
        // Not heard from in this life: its last `seq` is unknown here, so only the
        // echo of this process's nonce tells a live agent from a recording.
        if n.replay.is_none() && !echoes {
            return Err(self.challenge(node_id));
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

        let interval_ms = hb.interval_ms;
        let applied = n.apply_heartbeat(hb, mark, now, now_ms, &self.policy, self.y_convict);
        if applied.record_changed {
            self.persist
                .queue(cell.id.to_string(), Some(n.record.clone()));
        }
        if let Some(old) = applied.old_state {
            self.state_changed(&cell, &n, old, now);
        }
        self.ensure_scheduled(&cell, &mut n);

        Ok(HeartbeatAck {
            node_id: cell.id.to_string(),
            state: n.state,
            interval_ms: self
                .cfg
                .heartbeat_interval
                .map_or(interval_ms, |d| d.as_millis() as u64),
            assignment_version: 0,
        })
    }

    fn challenge(&self, node_id: &str) -> Rejection {
        Rejection {
            code: ErrorCode::Stale,
            message: format!(
                "first heartbeat from {node_id} to this coordinator since it started: send it \
                 again with coordinator_nonce set to the {} answer header",
                torua_protocol::heartbeat::COORDINATOR_NONCE_HEADER
            ),
            challenge: true,
        }
    }

    /// Refuses `addr` for `node_id` while another live node has it: two "replicas"
    /// on one process would be one copy, and the map would route the other node's
    /// data there. Returns the guard that serialises address claims.
    fn claim_addr(
        &self,
        node_id: &str,
        addr: &str,
    ) -> Result<std::sync::MutexGuard<'_, ()>, Rejection> {
        let guard = self.addr_claims.lock().unwrap_or_else(|p| p.into_inner());
        if addr.is_empty() {
            return Ok(guard);
        }
        match self.nodes.live_at_addr(addr, node_id) {
            Some(other) => Err(reject(
                ErrorCode::Conflict,
                format!(
                    "node_addr {addr} is live node {other}'s; two nodes cannot share an address \
                     (remove {other} first if it was replaced)"
                ),
            )),
            None => Ok(guard),
        }
    }
}
