//! Property tests over the untrusted-input surface: heartbeat decoding, signatures,
//! the `Authorization` header, durations and the key → shard mapping. Case counts
//! stay modest so they run with every `cargo test`; `fuzz/` explores further.

use crate::duration::{format_duration, parse_duration};
use crate::shard::shard_for_key;
use crate::validate::validate;
use crate::{
    authorization_header, decode_heartbeat, derive_node_key, parse_authorization, sign, verify,
    AUTH_SCHEME,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

/// The SPEC §2 example, as the starting point of every mutation.
fn valid_body() -> Value {
    json!({ "v": 1, "node_id": "n1", "incarnation": 1732350000123u64, "seq": 42,
        "sent_at_ms": 1732350042123u64, "interval_ms": 1000,
        "node_addr": "http://127.0.0.1:7401", "state": "running",
        "liveness": "pass", "readiness": "pass",
        "checks": [ { "name": "node-http", "kind": "http", "status": "pass",
                      "duration_ms": 0.8, "message": "200 OK" } ],
        "metrics": { "disk_free_bytes": 1.2e11, "disk_total_bytes": 2.5e11 },
        "capacity": { "weight": 1.0, "max_shards": 10 } })
}

/// Identifiers as SPEC §2 allows them.
fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,64}"
}

/// Any JSON value, small and nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // non-finite becomes null
        "[ -~]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("running"),
            Just("leaving"),
            Just("pass"),
            Just("fail"),
            Just("http"),
            Just("http://h:1"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One byte-level edit, with bytes drawn mostly from JSON's own alphabet.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn json_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => prop::sample::select(b"{}[]\",:0123456789.eE+-truefalsn \\u\n".to_vec()),
        1 => any::<u8>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), json_byte()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), json_byte()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
    ]
}

fn apply(body: &mut Vec<u8>, e: &Edit) {
    match *e {
        Edit::Replace(i, b) if !body.is_empty() => {
            let i = i % body.len();
            body[i] = b;
        }
        Edit::Insert(i, b) => body.insert(i % (body.len() + 1), b),
        Edit::Delete(i) if !body.is_empty() => {
            body.remove(i % body.len());
        }
        _ => {}
    }
}

/// Whatever `decode_heartbeat` accepts is valid, and re-encodes to a body it accepts.
fn check_decode(body: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(hb) = decode_heartbeat(body) {
        prop_assert!(validate(&hb).is_ok());
        let again = serde_json::to_vec(&hb).expect("a heartbeat serialises");
        prop_assert!(decode_heartbeat(&again).is_ok(), "re-encoded body refused");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_decode(&body)?;
    }

    #[test]
    fn decode_never_panics_on_edited_body(edits in prop::collection::vec(edit(), 1..8)) {
        let mut body = serde_json::to_vec(&valid_body()).unwrap();
        for e in &edits {
            apply(&mut body, e);
        }
        check_decode(&body)?;
    }

    #[test]
    fn decode_never_panics_on_replaced_field(
        path in prop::sample::select(vec![
            "v", "node_id", "incarnation", "seq", "sent_at_ms", "interval_ms", "node_addr",
            "state", "liveness", "readiness", "checks", "metrics", "capacity", "extra",
            "checks.0", "checks.0.name", "checks.0.kind", "checks.0.duration_ms",
            "checks.0.message", "metrics.disk_free_bytes", "capacity.weight",
            "capacity.max_shards",
        ]),
        value in json_value(),
    ) {
        let mut body = valid_body();
        let mut slot = &mut body;
        for part in path.split('.') {
            slot = match part.parse::<usize>() {
                Ok(i) => &mut slot[i],
                Err(_) => &mut slot[part],
            };
        }
        *slot = value;
        check_decode(&serde_json::to_vec(&body).unwrap())?;
    }

    #[test]
    fn sign_verify_round_trips(
        secret in prop::collection::vec(any::<u8>(), 0..96),
        node in name(),
        other in name(),
        body in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let key = derive_node_key(&secret, &node);
        let sig = sign(&key, &body);
        prop_assert!(verify(&key, &body, &sig));
        if other != node {
            prop_assert!(!verify(&derive_node_key(&secret, &other), &body, &sig));
        }
    }

    #[test]
    fn any_single_byte_change_breaks_verification(
        secret in prop::collection::vec(any::<u8>(), 0..96),
        node in name(),
        body in prop::collection::vec(any::<u8>(), 1..1024),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let key = derive_node_key(&secret, &node);
        let sig = sign(&key, &body);

        let mut tampered = body.clone();
        tampered[at.index(body.len())] ^= flip;
        prop_assert!(!verify(&key, &tampered, &sig), "body change verified");

        let mut bad_sig = sig;
        bad_sig[at.index(bad_sig.len())] ^= flip;
        prop_assert!(!verify(&key, &body, &bad_sig), "signature change verified");
    }

    #[test]
    fn parse_authorization_never_panics(value in any::<String>(), tail in "[ -~]{0,120}") {
        let _ = parse_authorization(&value);
        // Past the scheme too, where the parsing happens.
        let _ = parse_authorization(&format!("{AUTH_SCHEME} {value}"));
        let _ = parse_authorization(&format!("{AUTH_SCHEME} {tail}"));
    }

    #[test]
    fn authorization_header_round_trips(node in name(), sig in any::<[u8; 32]>()) {
        let header = authorization_header(&node, &sig);
        prop_assert_eq!(parse_authorization(&header), Ok((node.as_str(), sig)));
    }

    #[test]
    fn parse_duration_never_panics(s in any::<String>(), t in "[ 0-9.eE+-]{0,24}(ms|s|m|h|x|)") {
        let _ = parse_duration(&s);
        let _ = parse_duration(&t);
    }

    #[test]
    fn format_duration_round_trips(ms in 0u64..(1 << 40)) {
        let d = Duration::from_millis(ms);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn shard_for_key_is_in_range(key in prop::collection::vec(any::<u8>(), 0..256), shards in any::<u32>()) {
        let s = shard_for_key(&key, shards);
        prop_assert!(s < shards.max(1), "{s} for {shards} shards");
    }
}
