//! Decoding and validating a heartbeat body: size, JSON shape, then the limits of
//! SPEC §2. Every error carries the field path so a sender can fix it.

use crate::heartbeat::Heartbeat;
use crate::PROTOCOL_VERSION;
use thiserror::Error;

/// Largest heartbeat body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_CHECKS: usize = 64;
pub const MAX_METRICS: usize = 128;
pub const MAX_MESSAGE_CHARS: usize = 1024;
pub const MAX_ADDR_CHARS: usize = 256;
pub const MIN_INTERVAL_MS: u64 = 10;
pub const MAX_INTERVAL_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    #[error("body is {len} bytes, the limit is {MAX_BODY_BYTES}")]
    TooLarge { len: usize },
    #[error("malformed JSON at `{path}`: {message}")]
    Malformed { path: String, message: String },
    #[error("invalid `{path}`: {message}")]
    Invalid { path: String, message: String },
}

/// Parses and validates a heartbeat body.
///
/// The fast path is a plain `serde_json` parse; only a failing body is parsed a
/// second time to recover the field path, so well-formed traffic pays nothing for it.
pub fn decode_heartbeat(body: &[u8]) -> Result<Heartbeat, DecodeError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(DecodeError::TooLarge { len: body.len() });
    }
    let hb: Heartbeat = match serde_json::from_slice(body) {
        Ok(hb) => hb,
        Err(_) => return Err(malformed(body)),
    };
    validate(&hb)?;
    Ok(hb)
}

fn malformed(body: &[u8]) -> DecodeError {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, Heartbeat>(&mut de) {
        Ok(_) => match de.end() {
            Ok(()) => DecodeError::Malformed {
                path: ".".into(),
                message: "unparseable body".into(),
            },
            Err(e) => DecodeError::Malformed {
                path: ".".into(),
                message: e.to_string(),
            },
        },
        Err(e) => {
            let path = e.path().to_string();
            DecodeError::Malformed {
                path,
                message: e.into_inner().to_string(),
            }
        }
    }
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> DecodeError {
    DecodeError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// True for the identifier charset of SPEC §2: `[A-Za-z0-9_.:-]{1,64}`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

// Paths are built only on failure: the happy path of a heartbeat allocates nothing
// here.
fn check_name(path: impl FnOnce() -> String, s: &str) -> Result<(), DecodeError> {
    if is_valid_name(s) {
        Ok(())
    } else {
        Err(invalid(
            path(),
            format!("{s:?} must match [A-Za-z0-9_.:-]{{1,64}}"),
        ))
    }
}

fn check_finite(path: impl FnOnce() -> String, x: f64) -> Result<(), DecodeError> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(invalid(path(), "must be a finite number"))
    }
}

/// Checks `addr` is an `http(s)://host:port` base URL without path tricks.
pub fn check_node_addr(addr: &str) -> Result<(), String> {
    if addr.len() > MAX_ADDR_CHARS {
        return Err(format!("longer than {MAX_ADDR_CHARS} characters"));
    }
    let rest = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .ok_or_else(|| "must start with http:// or https://".to_string())?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || !authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    {
        return Err("must be a base URL like http://host:port".into());
    }
    Ok(())
}

/// Applies the SPEC §2 limits to an already parsed heartbeat.
pub fn validate(hb: &Heartbeat) -> Result<(), DecodeError> {
    if hb.v != PROTOCOL_VERSION {
        return Err(invalid(
            "v",
            format!("unsupported version {}, expected {PROTOCOL_VERSION}", hb.v),
        ));
    }
    check_name(|| "node_id".into(), &hb.node_id)?;
    if hb.incarnation == 0 {
        return Err(invalid("incarnation", "must be > 0"));
    }
    if hb.seq == 0 {
        return Err(invalid("seq", "must be >= 1"));
    }
    if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&hb.interval_ms) {
        return Err(invalid(
            "interval_ms",
            format!("must be within {MIN_INTERVAL_MS}..={MAX_INTERVAL_MS}"),
        ));
    }
    check_node_addr(&hb.node_addr).map_err(|m| invalid("node_addr", m))?;
    if let Some(n) = &hb.coordinator_nonce {
        if n.len() > crate::heartbeat::MAX_NONCE_CHARS || !n.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(invalid(
                "coordinator_nonce",
                format!(
                    "must be at most {} hex digits",
                    crate::heartbeat::MAX_NONCE_CHARS
                ),
            ));
        }
    }
    if hb.checks.len() > MAX_CHECKS {
        return Err(invalid(
            "checks",
            format!("{} checks, the limit is {MAX_CHECKS}", hb.checks.len()),
        ));
    }
    for (i, c) in hb.checks.iter().enumerate() {
        check_name(|| format!("checks[{i}].name"), &c.name)?;
        // A linear scan: there are at most MAX_CHECKS, usually a handful.
        if hb.checks[..i].iter().any(|o| o.name == c.name) {
            return Err(invalid(
                format!("checks[{i}].name"),
                format!("duplicate check {:?}", c.name),
            ));
        }
        check_finite(|| format!("checks[{i}].duration_ms"), c.duration_ms)?;
        if c.duration_ms < 0.0 {
            return Err(invalid(format!("checks[{i}].duration_ms"), "must be >= 0"));
        }
        if c.message.len() > MAX_MESSAGE_CHARS && c.message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(invalid(
                format!("checks[{i}].message"),
                format!("longer than {MAX_MESSAGE_CHARS} characters"),
            ));
        }
    }
    if hb.metrics.len() > MAX_METRICS {
        return Err(invalid(
            "metrics",
            format!("{} metrics, the limit is {MAX_METRICS}", hb.metrics.len()),
        ));
    }
    for (name, value) in &hb.metrics {
        check_name(|| format!("metrics.{name}"), name)?;
        check_finite(|| format!("metrics.{name}"), *value)?;
    }
    check_finite(|| "capacity.weight".into(), hb.capacity.weight)?;
    if hb.capacity.weight <= 0.0 {
        return Err(invalid("capacity.weight", "must be > 0"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn base() -> Value {
        json!({ "v": 1, "node_id": "n1", "incarnation": 1732350000123u64, "seq": 42,
            "sent_at_ms": 1732350042123u64, "interval_ms": 1000,
            "node_addr": "http://127.0.0.1:7401", "state": "running",
            "liveness": "pass", "readiness": "pass",
            "checks": [ { "name": "node-http", "kind": "http", "status": "pass",
                          "duration_ms": 0.8, "message": "200 OK" } ],
            "metrics": { "disk_free_bytes": 1.2e11, "disk_total_bytes": 2.5e11 },
            "capacity": { "weight": 1.0 } })
    }

    fn decode(v: &Value) -> Result<Heartbeat, DecodeError> {
        decode_heartbeat(&serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn spec_example_decodes() {
        let hb = decode(&base()).unwrap();
        assert_eq!(hb.node_id, "n1");
        assert_eq!(hb.checks.len(), 1);
    }

    /// One line per case: a mutation of the SPEC example and the error it must give.
    #[test]
    fn rejections() {
        type Mutate = fn(&mut Value);
        let cases: &[(&str, Mutate, &str)] = &[
            (
                "wrong type",
                |v| v["seq"] = json!("42"),
                "malformed JSON at `seq`",
            ),
            (
                "missing field",
                |v| {
                    v.as_object_mut().unwrap().remove("node_id");
                },
                "malformed",
            ),
            ("unknown field", |v| v["extra"] = json!(1), "malformed"),
            (
                "unknown state",
                |v| v["state"] = json!("zombie"),
                "malformed JSON at `state`",
            ),
            (
                "bad check kind",
                |v| v["checks"][0]["kind"] = json!("ftp"),
                "malformed JSON at `checks[0].kind`",
            ),
            ("bad version", |v| v["v"] = json!(2), "invalid `v`"),
            (
                "bad node id",
                |v| v["node_id"] = json!("n 1"),
                "invalid `node_id`",
            ),
            (
                "long node id",
                |v| v["node_id"] = json!("n".repeat(65)),
                "invalid `node_id`",
            ),
            ("zero seq", |v| v["seq"] = json!(0), "invalid `seq`"),
            (
                "zero interval",
                |v| v["interval_ms"] = json!(0),
                "invalid `interval_ms`",
            ),
            (
                "bad addr",
                |v| v["node_addr"] = json!("ftp://x"),
                "invalid `node_addr`",
            ),
            (
                "addr with path",
                |v| v["node_addr"] = json!("http://x/../etc"),
                "invalid `node_addr`",
            ),
            (
                "dup check",
                |v| {
                    let c = v["checks"][0].clone();
                    v["checks"].as_array_mut().unwrap().push(c);
                },
                "duplicate",
            ),
            (
                "too many checks",
                |v| {
                    v["checks"] = Value::Array((0..=MAX_CHECKS).map(|i| json!({"name": format!("c{i}"), "kind": "tcp", "status": "pass", "duration_ms": 1.0})).collect());
                },
                "invalid `checks`",
            ),
            (
                "too many metrics",
                |v| {
                    v["metrics"] = Value::Object(
                        (0..=MAX_METRICS)
                            .map(|i| (format!("m{i}"), json!(1.0)))
                            .collect(),
                    );
                },
                "invalid `metrics`",
            ),
            (
                "bad metric name",
                |v| v["metrics"]["a b"] = json!(1.0),
                "invalid `metrics.a b`",
            ),
            (
                "negative duration",
                |v| v["checks"][0]["duration_ms"] = json!(-1.0),
                "invalid `checks[0].duration_ms`",
            ),
            (
                "zero weight",
                |v| v["capacity"]["weight"] = json!(0.0),
                "invalid `capacity.weight`",
            ),
        ];
        for (name, mutate, want) in cases {
            let mut v = base();
            mutate(&mut v);
            let err = decode(&v).expect_err(name).to_string();
            assert!(err.contains(want), "{name}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn non_finite_and_garbage_bodies() {
        let text = serde_json::to_string(&base())
            .unwrap()
            .replace("120000000000.0", "1e999");
        let err = decode_heartbeat(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("metrics.disk_free_bytes"), "{err}");
        for body in [&b""[..], b"{", b"null", b"[]", b"\xff\xfe", b"{\"v\":1}"] {
            assert!(
                matches!(decode_heartbeat(body), Err(DecodeError::Malformed { .. })),
                "{body:?}"
            );
        }
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            decode_heartbeat(&big),
            Err(DecodeError::TooLarge {
                len: MAX_BODY_BYTES + 1
            })
        );
    }
}
