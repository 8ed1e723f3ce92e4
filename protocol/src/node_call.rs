//! Signed calls to a storage node and the tickets that let one node pull a shard's
//! snapshot from another: the canonical string a signature covers, the
//! `Authorization` and `Torua-Ticket` headers, and the replay guard.
//!
//! A call from the coordinator carries
//! `Authorization: Torua-Call-HMAC-SHA256 node=<id>, boot=<hex>, ts=<unix ms>, nonce=<32 hex>, sig=<64 hex>`,
//! `sig` being HMAC-SHA256 under the node's key (the heartbeat key, [`derive_node_key`])
//! over [`canonical`]: a domain-separation line, the method, the path and query, the
//! node id, the node's boot id, `ts`, the nonce, the four headers that steer a call
//! (`Torua-Shard`, `Torua-Epoch`, `Torua-Version`, `Torua-Ticket`; empty when absent),
//! then the exact body bytes. Every field but the body ends with `\n` and none may
//! contain one, so two different calls never share a canonical string.
//!
//! Replays are refused by **timestamp + nonce** ([`ReplayGuard`]): `ts` must lie
//! within ± the node's maximum clock skew of its clock, and a `(ts, nonce)` pair is
//! accepted once; pairs are remembered until their `ts` leaves the window. The guard
//! lives in memory, so a call also names the node's **boot id**, random per start
//! (sent in every answer as `Torua-Node-Boot`): a call captured before a node restart
//! names the old one and is refused after it, whatever the clocks say. Why not bind
//! calls to the shard epoch instead: reads, listings and the data path's writes do not
//! change the epoch, so an epoch-bound write could be replayed for as long as its
//! shard stays put.
//!
//! Every answer of a node also carries its clock (`Torua-Node-Time`): the coordinator
//! signs with its estimate of the node's time, so its own clock may be off by any
//! amount (an NTP step, a restored VM) without its calls being refused. The window
//! stays the node's, on the node's clock.
//!
//! A pull's snapshot fetch from another node is authorised by a [`Ticket`] the
//! coordinator signs with the *source* node's key: shard, epoch, source, destination
//! and an expiry. The destination only carries it; the source checks it.
//!
//! [`derive_node_key`]: crate::sign::derive_node_key

use std::collections::BTreeSet;

use hmac::Mac;
use thiserror::Error;

use crate::api::ErrorCode;
use crate::node_api::{EPOCH_HEADER, SHARD_HEADER, TICKET_HEADER, VERSION_HEADER};
use crate::sign::{HmacSha256, NodeKey};
use crate::validate::is_valid_name;

/// The `Authorization` scheme of a call to a node.
pub const CALL_SCHEME: &str = "Torua-Call-HMAC-SHA256";
const CALL_CONTEXT: &[u8] = b"torua/node-call/v1\n";
const TICKET_CONTEXT: &[u8] = b"torua/ticket/v1\n";

/// Answer header of every node response: the node's boot id, random per start.
pub const BOOT_HEADER: &str = "torua-node-boot";
/// Answer header of every node response: the node's clock, unix ms.
pub const TIME_HEADER: &str = "torua-node-time";
/// The boot id a caller signs for when it does not know the node's yet: the node
/// answers with a [`Refusal::Challenge`] carrying its boot id, and the caller signs
/// again at once.
pub const UNKNOWN_BOOT: &str = "0";

/// Random bytes per call, sent as 32 hex characters.
pub const NONCE_BYTES: usize = 16;
pub type Nonce = [u8; NONCE_BYTES];

/// The headers a signature covers, in canonical order (lower-case names).
pub const SIGNED_HEADERS: [&str; 4] = [SHARD_HEADER, EPOCH_HEADER, VERSION_HEADER, TICKET_HEADER];

/// The values of [`SIGNED_HEADERS`] among a sender's `(name, value)` headers (names
/// compared case-insensitively), empty when absent: [`Call::headers`].
pub fn signed_header_values<N: AsRef<str>, V: AsRef<[u8]>>(headers: &[(N, V)]) -> [&[u8]; 4] {
    SIGNED_HEADERS.map(|name| {
        headers
            .iter()
            .find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map_or(&b""[..], |(_, v)| v.as_ref())
    })
}

/// Default of the node's `--max-clock-skew`.
pub const DEFAULT_MAX_SKEW_MS: u64 = 30_000;

/// How long a ticket is good for after the coordinator issues it. It is checked once,
/// when the snapshot stream starts (a long copy is never cut by it), so it only has to
/// cover the time from issue to the source's check — milliseconds — plus the clock
/// difference between the coordinator and the source, which a node tolerates up to
/// its max clock skew (30 s by default) for calls: 60 s covers both with room. A
/// ticket caught in that minute reads one shard at one epoch, no more.
pub const TICKET_LIFETIME_MS: u64 = 60_000;

/// `(ts, nonce)` pairs a [`ReplayGuard`] keeps by default: 2^18, at most ~10.5 MiB
/// (measured: 39–42 bytes per pair in the B-tree, steady state at capacity), enough
/// for 4,300 signed calls a second over a 60 s window before the oldest are dropped
/// (see [`ReplayGuard`]).
pub const REPLAY_GUARD_CAPACITY: usize = 1 << 18;

/// Everything a call's signature covers besides its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call<'a> {
    /// `GET`, `PUT`, …, as sent.
    pub method: &'a str,
    /// The request target exactly as sent: path and `?query` (still percent-encoded).
    pub path_and_query: &'a str,
    /// The node called, as in `node=`.
    pub node: &'a str,
    /// The node's boot id the call is for, as in `boot=`.
    pub boot: &'a str,
    pub ts_ms: u64,
    pub nonce: Nonce,
    /// Values of [`SIGNED_HEADERS`], in that order; empty when absent.
    pub headers: [&'a [u8]; 4],
}

/// The parsed `Authorization` of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallAuth<'a> {
    pub node: &'a str,
    pub boot: &'a str,
    pub ts_ms: u64,
    pub nonce: Nonce,
    pub sig: [u8; 32],
}

/// Why a call (or a snapshot fetch with a ticket) was refused. Every variant answers
/// 401; [`Refusal::reason`] is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("this call must be signed: Authorization: {CALL_SCHEME} node=<id>, boot=<hex>, ts=<unix ms>, nonce=<32 hex>, sig=<64 hex>")]
    Missing,
    #[error("Authorization must be `{CALL_SCHEME} node=<id>, boot=<hex>, ts=<unix ms>, nonce=<32 hex>, sig=<64 hex>`")]
    Malformed,
    #[error("signed for node {got:?}, but this is {want:?}")]
    WrongNode { got: String, want: String },
    #[error("signed without this node's boot id: sign for the one in Torua-Node-Boot")]
    Challenge,
    #[error("signed for boot {got} of this node, which restarted since (now boot {want}): a call from before the restart")]
    WrongBoot { got: String, want: String },
    #[error("ts is {skew_ms} ms away from this node's clock (limit {limit_ms} ms)")]
    ClockSkew { skew_ms: i64, limit_ms: u64 },
    #[error("the signature does not verify under this node's key")]
    BadSignature,
    #[error("this (ts, nonce) was seen before: a replay")]
    Replay,
    #[error(
        "signed at {ts_ms}, not after {floor_ms}: older than this node's replay guard holds \
         under load (a possible replay)"
    )]
    TooOld { ts_ms: u64, floor_ms: u64 },
    #[error("Torua-Ticket: {0}")]
    BadTicket(String),
    #[error("Torua-Ticket expired {ago_ms} ms ago")]
    ExpiredTicket { ago_ms: u64 },
    #[error("Torua-Ticket: {0}")]
    WrongTicket(String),
}

impl Refusal {
    /// Every label of `torua_kv_auth_failures_total{reason}`.
    pub const REASONS: [&'static str; 12] = [
        "missing",
        "malformed",
        "wrong_node",
        "challenge",
        "wrong_boot",
        "clock_skew",
        "bad_signature",
        "replay",
        "too_old",
        "bad_ticket",
        "expired_ticket",
        "wrong_ticket",
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::WrongNode { .. } => "wrong_node",
            Refusal::Challenge => "challenge",
            Refusal::WrongBoot { .. } => "wrong_boot",
            Refusal::ClockSkew { .. } => "clock_skew",
            Refusal::BadSignature => "bad_signature",
            Refusal::Replay => "replay",
            Refusal::TooOld { .. } => "too_old",
            Refusal::BadTicket(_) => "bad_ticket",
            Refusal::ExpiredTicket { .. } => "expired_ticket",
            Refusal::WrongTicket(_) => "wrong_ticket",
        }
    }

    /// The answer's code (always with status 401): `bad_signature` when a MAC did
    /// not verify, `replay` for a pair seen before or older than the guard's floor,
    /// `unauthorized` otherwise.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::BadSignature | Refusal::BadTicket(_) => ErrorCode::BadSignature,
            Refusal::Replay | Refusal::TooOld { .. } => ErrorCode::Replay,
            _ => ErrorCode::Unauthorized,
        }
    }
}

/// Feeds the canonical bytes of `call` and `body` to `out`, field by field.
fn feed(call: &Call<'_>, body: &[u8], mut out: impl FnMut(&[u8])) {
    let mut ts = [0u8; 20];
    let mut nonce = [0u8; 2 * NONCE_BYTES];
    hex::encode_to_slice(call.nonce, &mut nonce).expect("buffer is twice the nonce");
    out(CALL_CONTEXT);
    for field in [
        call.method.as_bytes(),
        call.path_and_query.as_bytes(),
        call.node.as_bytes(),
        call.boot.as_bytes(),
        decimal(call.ts_ms, &mut ts),
        &nonce,
    ]
    .into_iter()
    .chain(call.headers)
    {
        out(field);
        out(b"\n");
    }
    out(body);
}

/// `n` in decimal, without allocating.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The exact bytes a call's signature covers:
///
/// ```text
/// torua/node-call/v1\n METHOD\n PATH?QUERY\n NODE\n BOOT\n TS\n NONCE-HEX\n
/// SHARD\n EPOCH\n VERSION\n TICKET\n BODY
/// ```
///
/// (without the spaces). Signing and verifying hash the same pieces without building
/// this buffer; it is here to document and test the format.
pub fn canonical(call: &Call<'_>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    feed(call, body, |b| out.extend_from_slice(b));
    out
}

fn mac_of(key: &NodeKey, call: &Call<'_>, body: &[u8]) -> HmacSha256 {
    let mut mac = key.mac();
    feed(call, body, |b| mac.update(b));
    mac
}

pub fn sign_call(key: &NodeKey, call: &Call<'_>, body: &[u8]) -> [u8; 32] {
    mac_of(key, call, body).finalize().into_bytes().into()
}

/// Whether `sig` is a signature of the call under one of `keys` (the node's current
/// key and, during a rotation, its previous one). Constant-time per key. A field
/// holding a `\n` (which HTTP cannot carry anyway) never verifies, so the canonical
/// string stays unambiguous whatever a caller passes.
pub fn verify_call(keys: &[NodeKey], call: &Call<'_>, body: &[u8], sig: &[u8; 32]) -> bool {
    let fields = [
        call.method.as_bytes(),
        call.path_and_query.as_bytes(),
        call.node.as_bytes(),
        call.boot.as_bytes(),
    ];
    if fields
        .iter()
        .chain(&call.headers)
        .any(|f| f.contains(&b'\n'))
    {
        return false;
    }
    keys.iter()
        .any(|key| mac_of(key, call, body).verify_slice(sig).is_ok())
}

/// `Torua-Call-HMAC-SHA256 node=<id>, boot=<hex>, ts=<ms>, nonce=<hex>, sig=<hex>`.
pub fn call_authorization(call: &Call<'_>, sig: &[u8; 32]) -> String {
    format!(
        "{CALL_SCHEME} node={}, boot={}, ts={}, nonce={}, sig={}",
        call.node,
        call.boot,
        call.ts_ms,
        hex::encode(call.nonce),
        hex::encode(sig)
    )
}

/// Signs `call` (whose `node`, `boot`, `ts_ms` and `nonce` go into the header) and
/// returns the `Authorization` value.
pub fn sign_call_header(key: &NodeKey, call: &Call<'_>, body: &[u8]) -> String {
    call_authorization(call, &sign_call(key, call, body))
}

/// A boot id as a node makes one: 16 hex characters from 8 random bytes.
pub fn boot_id(random: [u8; 8]) -> String {
    hex::encode(random)
}

/// 1 to 32 lower-case hex characters.
pub fn is_boot_id(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses a call's `Authorization` value; checks its shape only.
pub fn parse_call_authorization(value: &str) -> Result<CallAuth<'_>, Refusal> {
    let rest = value
        .strip_prefix(CALL_SCHEME)
        .ok_or(Refusal::Missing)?
        .strip_prefix(' ')
        .ok_or(Refusal::Malformed)?;
    let (mut node, mut boot, mut ts, mut nonce, mut sig) = (None, None, None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(Refusal::Malformed)?;
        let fresh = match k {
            "node" => node.replace(v).is_none(),
            "boot" if is_boot_id(v) => boot.replace(v).is_none(),
            "ts" => ts.replace(parse_u64(v)?).is_none(),
            "nonce" => nonce.replace(hex_array::<NONCE_BYTES>(v)?).is_none(),
            "sig" => sig.replace(hex_array::<32>(v)?).is_none(),
            _ => false,
        };
        if !fresh {
            return Err(Refusal::Malformed);
        }
    }
    match (node, boot, ts, nonce, sig) {
        (Some(node), Some(boot), Some(ts_ms), Some(nonce), Some(sig)) if is_valid_name(node) => {
            Ok(CallAuth {
                node,
                boot,
                ts_ms,
                nonce,
                sig,
            })
        }
        _ => Err(Refusal::Malformed),
    }
}

fn parse_u64(v: &str) -> Result<u64, Refusal> {
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::Malformed);
    }
    v.parse().map_err(|_| Refusal::Malformed)
}

fn hex_array<const N: usize>(v: &str) -> Result<[u8; N], Refusal> {
    let mut out = [0u8; N];
    hex::decode_to_slice(v, &mut out).map_err(|_| Refusal::Malformed)?;
    Ok(out)
}

/// `ts` within `max_skew_ms` of `now_ms`, either way.
pub fn check_skew(ts_ms: u64, now_ms: u64, max_skew_ms: u64) -> Result<(), Refusal> {
    let skew = now_ms as i128 - ts_ms as i128;
    if skew.unsigned_abs() > u128::from(max_skew_ms) {
        return Err(Refusal::ClockSkew {
            skew_ms: skew.clamp(i64::MIN.into(), i64::MAX.into()) as i64,
            limit_ms: max_skew_ms,
        });
    }
    Ok(())
}

/// The timestamp + nonce replay rule of one node.
///
/// A call is admitted if its `ts` lies within ±`max_skew` of now and its `(ts, nonce)`
/// pair has not been admitted before. Pairs are kept, ordered by `ts`, until `ts`
/// leaves the window (older than now − `max_skew`): from then on the skew rule alone
/// refuses them, so forgetting them is safe.
///
/// **Across a restart:** the pairs live in memory; what refuses a call captured before
/// a node restart is the boot id it was signed for ([`Refusal::WrongBoot`]), not this.
///
/// **Bounded memory:** at most `capacity` pairs. When a burst fills the guard, the
/// oldest pair is dropped and the floor rises to its `ts`: from then on a call with
/// `ts` at or below the floor is refused as a possible replay. So a replay is never
/// accepted, and under a flood the guard costs a fixed amount of memory; what a flood
/// costs instead is that calls arriving later than the guard's reach (capacity ÷
/// rate: ~60 s at 4,300 calls/s, ~13 s at 20,000) are refused; the coordinator has
/// given up on such a call long before (its node calls time out within seconds).
/// Only calls whose signature verified are admitted, so only the key's holder can
/// fill it.
#[derive(Debug)]
pub struct ReplayGuard {
    max_skew_ms: u64,
    capacity: usize,
    seen: BTreeSet<(u64, Nonce)>,
    /// At or below this `ts`, calls are refused: the highest `ts` dropped to make
    /// room (0 until then).
    floor: u64,
}

impl ReplayGuard {
    pub fn new(max_skew_ms: u64, capacity: usize) -> ReplayGuard {
        ReplayGuard {
            max_skew_ms,
            capacity: capacity.max(1),
            seen: BTreeSet::new(),
            floor: 0,
        }
    }

    pub fn max_skew_ms(&self) -> u64 {
        self.max_skew_ms
    }

    /// Pairs held now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Admits the pair once, if `ts` is within the window at `now_ms`.
    pub fn admit(&mut self, ts_ms: u64, nonce: Nonce, now_ms: u64) -> Result<(), Refusal> {
        let oldest_kept = now_ms.saturating_sub(self.max_skew_ms);
        while self.seen.first().is_some_and(|(ts, _)| *ts < oldest_kept) {
            self.seen.pop_first();
        }
        check_skew(ts_ms, now_ms, self.max_skew_ms)?;
        if ts_ms <= self.floor {
            return Err(Refusal::TooOld {
                ts_ms,
                floor_ms: self.floor,
            });
        }
        if !self.seen.insert((ts_ms, nonce)) {
            return Err(Refusal::Replay);
        }
        if self.seen.len() > self.capacity {
            let (dropped, _) = self.seen.pop_first().expect("over capacity, so not empty");
            self.floor = self.floor.max(dropped);
        }
        Ok(())
    }
}

/// A coordinator's permission for node `dest` to read shard `shard` at `epoch` from
/// node `source`, until `expires_ms` (unix ms), MAC'ed with the source's key. Sent
/// as `Torua-Ticket: shard=<id>, epoch=<n>, from=<source>, to=<dest>, exp=<ms>, sig=<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub shard: u32,
    pub epoch: u64,
    pub source: String,
    pub dest: String,
    pub expires_ms: u64,
}

impl Ticket {
    fn mac(&self, source_key: &NodeKey) -> HmacSha256 {
        let mut mac = source_key.mac();
        mac.update(TICKET_CONTEXT);
        let (mut a, mut b, mut c) = ([0u8; 20], [0u8; 20], [0u8; 20]);
        for field in [
            decimal(self.shard.into(), &mut a),
            decimal(self.epoch, &mut b),
            self.source.as_bytes(),
            self.dest.as_bytes(),
            decimal(self.expires_ms, &mut c),
        ] {
            mac.update(field);
            mac.update(b"\n");
        }
        mac
    }

    /// The `Torua-Ticket` value, signed with the source node's key.
    pub fn sign(&self, source_key: &NodeKey) -> String {
        let sig: [u8; 32] = self.mac(source_key).finalize().into_bytes().into();
        format!(
            "shard={}, epoch={}, from={}, to={}, exp={}, sig={}",
            self.shard,
            self.epoch,
            self.source,
            self.dest,
            self.expires_ms,
            hex::encode(sig)
        )
    }

    /// Parses a `Torua-Ticket` value into the ticket and its signature.
    pub fn parse(value: &str) -> Result<(Ticket, [u8; 32]), Refusal> {
        let bad = || {
            Refusal::BadTicket("must be `shard=<id>, epoch=<n>, from=<node>, to=<node>, exp=<unix ms>, sig=<64 hex>`".into())
        };
        let mut fields: [Option<&str>; 6] = [None; 6];
        const NAMES: [&str; 6] = ["shard", "epoch", "from", "to", "exp", "sig"];
        for part in value.split(',') {
            let (k, v) = part.trim().split_once('=').ok_or_else(bad)?;
            let i = NAMES.iter().position(|n| *n == k).ok_or_else(bad)?;
            if fields[i].replace(v).is_some() {
                return Err(bad());
            }
        }
        let [Some(shard), Some(epoch), Some(from), Some(to), Some(exp), Some(sig)] = fields else {
            return Err(bad());
        };
        if !is_valid_name(from) || !is_valid_name(to) {
            return Err(bad());
        }
        let number = |v: &str| parse_u64(v).map_err(|_| bad());
        let ticket = Ticket {
            shard: u32::try_from(number(shard)?).map_err(|_| bad())?,
            epoch: number(epoch)?,
            source: from.to_string(),
            dest: to.to_string(),
            expires_ms: number(exp)?,
        };
        Ok((ticket, hex_array::<32>(sig).map_err(|_| bad())?))
    }

    /// What the source checks before it streams a snapshot of `shard`: the ticket
    /// names it (`me`) as the source and this shard, its MAC verifies under one of
    /// `keys`, it has not expired at `now_ms`, and it does not expire further ahead
    /// than a ticket's lifetime plus `max_skew_ms` (a coordinator clock far ahead
    /// must not make a long-lived ticket). The epoch is the caller's to check against
    /// the shard's (a fencing question, not an authentication one).
    pub fn verify(
        value: &str,
        keys: &[NodeKey],
        me: &str,
        shard: u32,
        now_ms: u64,
        max_skew_ms: u64,
    ) -> Result<Ticket, Refusal> {
        let (ticket, sig) = Ticket::parse(value)?;
        if ticket.source != me {
            return Err(Refusal::WrongTicket(format!(
                "issued for a pull from {:?}, but this is {me:?}",
                ticket.source
            )));
        }
        if ticket.shard != shard {
            return Err(Refusal::WrongTicket(format!(
                "issued for shard {}, not shard {shard}",
                ticket.shard
            )));
        }
        if !keys
            .iter()
            .any(|k| ticket.mac(k).verify_slice(&sig).is_ok())
        {
            return Err(Refusal::BadTicket(
                "the signature does not verify under this node's key".into(),
            ));
        }
        if now_ms > ticket.expires_ms {
            return Err(Refusal::ExpiredTicket {
                ago_ms: now_ms - ticket.expires_ms,
            });
        }
        let ahead = ticket.expires_ms - now_ms;
        if ahead > TICKET_LIFETIME_MS.saturating_add(max_skew_ms) {
            return Err(Refusal::WrongTicket(format!(
                "expires {ahead} ms from now, more than a ticket lives: the coordinator's \
                 clock and this node's disagree"
            )));
        }
        Ok(ticket)
    }
}

#[cfg(test)]
mod tests;
