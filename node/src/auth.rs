//! Who may call this node: the coordinator, whose every call is signed with this
//! node's key (`torua_protocol::node_call`), and another node pulling a snapshot with a
//! ticket the coordinator signed for it. The probes (`/health`, `/livez`, `/readyz`,
//! `/metrics`) stay open; `api` decides which routes need what.
//!
//! A node without keys checks nothing: that is allowed on a loopback listener (with a
//! warning) or with `--insecure-no-auth` ([`crate::run`] refuses anything else).
//!
//! Each start of the node has a random boot id, sent in every answer with the node's
//! clock (`api` adds both headers): a call names the boot it was signed for, so one
//! captured before a restart is refused after it even while its `ts` is fresh.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::{HeaderMap, AUTHORIZATION};
use hyper::Method;
use torua_protocol::node_call::{
    boot_id, check_skew, parse_call_authorization, verify_call, Call, CallAuth, Refusal,
    ReplayGuard, Ticket, REPLAY_GUARD_CAPACITY, SIGNED_HEADERS, UNKNOWN_BOOT,
};
use torua_protocol::NodeKey;

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct Auth {
    node_id: String,
    /// This start's boot id (16 hex characters).
    boot: String,
    /// Current key first; a previous one during a rotation. Empty: auth is off.
    keys: Vec<NodeKey>,
    max_skew_ms: u64,
    guard: Mutex<ReplayGuard>,
}

/// A fresh boot id: 8 bytes from the kernel's CSPRNG (unique per start is all it must
/// be; the time and the process id stand in if /dev/urandom cannot be read).
fn new_boot_id() -> String {
    let mut raw = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw));
    if read.is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        raw = (nanos ^ u64::from(std::process::id()).rotate_left(32)).to_be_bytes();
    }
    boot_id(raw)
}

impl Auth {
    pub fn new(node_id: &str, keys: Vec<NodeKey>, max_clock_skew: Duration) -> Auth {
        let max_skew_ms = max_clock_skew.as_millis() as u64;
        Auth {
            node_id: node_id.to_string(),
            boot: new_boot_id(),
            keys,
            max_skew_ms,
            guard: Mutex::new(ReplayGuard::new(max_skew_ms, REPLAY_GUARD_CAPACITY)),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// This start's boot id, sent in every answer.
    pub fn boot(&self) -> &str {
        &self.boot
    }

    /// What can be checked before the body is read: the header is ours, well formed,
    /// names this node and this start of it, and its `ts` is within the window. A
    /// refusal here costs no body read.
    pub fn precheck<'h>(
        &self,
        headers: &'h HeaderMap,
        now_ms: u64,
    ) -> Result<CallAuth<'h>, Refusal> {
        let value = headers
            .get(AUTHORIZATION)
            .ok_or(Refusal::Missing)?
            .to_str()
            .map_err(|_| Refusal::Malformed)?;
        let auth = parse_call_authorization(value)?;
        if auth.node != self.node_id {
            return Err(Refusal::WrongNode {
                got: auth.node.to_string(),
                want: self.node_id.clone(),
            });
        }
        if auth.boot == UNKNOWN_BOOT {
            return Err(Refusal::Challenge);
        }
        if auth.boot != self.boot {
            return Err(Refusal::WrongBoot {
                got: auth.boot.to_string(),
                want: self.boot.clone(),
            });
        }
        check_skew(auth.ts_ms, now_ms, self.max_skew_ms)?;
        Ok(auth)
    }

    /// After the body: the signature over the whole call verifies under one of this
    /// node's keys, and its `(ts, nonce)` has not been used (only then is it
    /// remembered, so only the key's holder can fill the replay guard).
    pub fn verify(
        &self,
        auth: &CallAuth<'_>,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let call = Call {
            method: method.as_str(),
            path_and_query,
            node: auth.node,
            boot: auth.boot,
            ts_ms: auth.ts_ms,
            nonce: auth.nonce,
            headers: SIGNED_HEADERS.map(|h| headers.get(h).map_or(&b""[..], |v| v.as_bytes())),
        };
        if !verify_call(&self.keys, &call, body, &auth.sig) {
            return Err(Refusal::BadSignature);
        }
        self.guard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(auth.ts_ms, auth.nonce, now_ms)
    }

    /// A pull's ticket for a snapshot of `shard` from this node.
    pub fn ticket(&self, value: &[u8], shard: u32, now_ms: u64) -> Result<Ticket, Refusal> {
        let value =
            std::str::from_utf8(value).map_err(|_| Refusal::BadTicket("not UTF-8".into()))?;
        Ticket::verify(
            value,
            &self.keys,
            &self.node_id,
            shard,
            now_ms,
            self.max_skew_ms,
        )
    }
}
