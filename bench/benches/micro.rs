//! Micro-benchmarks of the hot paths: heartbeat sign/verify, decode, the phi detector
//! update, placement of 64 shards over 1,000 nodes, and the node API's signed calls
//! (the node's check of a call, the coordinator's signing, a cached node key).
//! Run: `cargo bench -p torua-bench --bench micro`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::HashMap;
use std::hint::black_box;
use torua_coordinator::detector::PhiDetector;
use torua_coordinator::shards::placement::{place, Candidate};
use torua_protocol::node_call::{
    parse_call_authorization, sign_call_header, verify_call, Call, ReplayGuard,
    REPLAY_GUARD_CAPACITY,
};
use torua_protocol::{decode_heartbeat, derive_node_key, sign, verify, NodeKey};

const SECRET: &[u8] = b"torua-bench-cluster-secret-0123456789abcdef01234";

/// The SPEC §2 example heartbeat (one check, two metrics).
fn body() -> Vec<u8> {
    concat!(
        r#"{"v":1,"node_id":"n1","incarnation":1732350000123,"seq":42,"sent_at_ms":1732350042123,"#,
        r#""interval_ms":1000,"node_addr":"http://127.0.0.1:7401","state":"running","#,
        r#""liveness":"pass","readiness":"pass","checks":[{"name":"node-http","kind":"http","#,
        r#""status":"pass","duration_ms":0.8,"message":"200 OK"}],"#,
        r#""metrics":{"disk_free_bytes":1.2e11,"disk_total_bytes":2.5e11},"capacity":{"weight":1.0}}"#
    )
    .as_bytes()
    .to_vec()
}

fn signing(c: &mut Criterion) {
    let key = derive_node_key(SECRET, "n1");
    let b = body();
    let sig = sign(&key, &b);
    c.bench_function("sign heartbeat", |bench| {
        bench.iter(|| sign(&key, black_box(&b)))
    });
    c.bench_function("verify heartbeat", |bench| {
        bench.iter(|| verify(&key, black_box(&b), black_box(&sig)))
    });
    c.bench_function("derive node key", |bench| {
        bench.iter(|| derive_node_key(SECRET, black_box("node-123456")))
    });
}

fn decoding(c: &mut Criterion) {
    let b = body();
    c.bench_function("decode heartbeat", |bench| {
        bench.iter(|| decode_heartbeat(black_box(&b)).expect("valid"))
    });
}

fn detector(c: &mut Criterion) {
    let mut d = PhiDetector::new(1000);
    let mut x = 990u64;
    c.bench_function("phi detector record", |bench| {
        bench.iter(|| {
            x = if x >= 1010 { 990 } else { x + 1 };
            d.record(black_box(x));
        })
    });
    let d = {
        let mut d = PhiDetector::new(1000);
        for i in 0..32 {
            d.record(990 + i % 20);
        }
        d
    };
    c.bench_function("phi detector phi", |bench| {
        bench.iter(|| d.phi(black_box(1500.0)))
    });
}

fn placement(c: &mut Criterion) {
    let nodes: Vec<Candidate> = (0..1000)
        .map(|i| Candidate {
            id: format!("node-{i}"),
            weight: 1.0 + (i % 3) as f64,
            max_shards: None,
        })
        .collect();
    c.bench_function("place 64 shards rf 2 over 1000 nodes", |bench| {
        bench.iter(|| place(black_box(64), 2, black_box(&nodes)))
    });
}

/// A data `PUT` of `body` to n1 as the coordinator signs it.
fn node_call(body: &[u8]) -> (String, Call<'static>) {
    let call = Call {
        method: "PUT",
        path_and_query: "/v1/data/users/42/profile",
        node: "n1",
        boot: "00112233aabbccdd",
        ts_ms: 1_732_350_042_123,
        nonce: [0x5a; 16],
        headers: [b"3", b"7", b"1732350042123456", b""],
    };
    (
        sign_call_header(&derive_node_key(SECRET, "n1"), &call, body),
        call,
    )
}

/// What `torua-node` does with each call before routing it (`node/src/auth.rs`):
/// parse `Authorization`, check the signature over the call and its body under the
/// node's key, then admit `(ts, nonce)` to the replay guard (measured on its own).
fn node_calls(c: &mut Criterion) {
    let keys = [derive_node_key(SECRET, "n1")];
    for (name, len) in [("100 B", 100), ("16 KiB", 16 * 1024)] {
        let body = vec![0x42u8; len];
        let (header, call) = node_call(&body);
        c.bench_function(
            &format!("node: verify a signed call, {name} body"),
            |bench| {
                bench.iter(|| {
                    let auth = parse_call_authorization(black_box(&header)).expect("parses");
                    assert!(verify_call(
                        &keys,
                        black_box(&call),
                        black_box(&body),
                        &auth.sig
                    ));
                })
            },
        );
    }
    let mut guard = ReplayGuard::new(30_000, REPLAY_GUARD_CAPACITY);
    let now = 1_732_350_042_123u64;
    let mut i = 0u64;
    let mut nonce = [0u8; 16];
    // Full: every admit also drops the oldest pair.
    while guard.len() < REPLAY_GUARD_CAPACITY {
        i += 1;
        nonce[..8].copy_from_slice(&i.to_be_bytes());
        guard
            .admit(now - 20_000 + i / 16, nonce, now)
            .expect("fresh");
    }
    c.bench_function("node: replay guard admit, full (2^18 pairs)", |bench| {
        bench.iter(|| {
            i += 1;
            nonce[..8].copy_from_slice(&i.to_be_bytes());
            guard.admit(now - 20_000 + i / 16, black_box(nonce), now)
        })
    });
    let body = vec![0x42u8; 100];
    let (_, call) = node_call(&body);
    let key = derive_node_key(SECRET, "n1");
    c.bench_function("coordinator: sign a call, 100 B body", |bench| {
        bench.iter(|| sign_call_header(&key, black_box(&call), black_box(&body)))
    });
    // The coordinator caches node keys instead of deriving one per call ("derive
    // node key" above): a read-locked map lookup.
    let cache: std::sync::RwLock<HashMap<String, NodeKey>> = std::sync::RwLock::new(
        (0..1000)
            .map(|i| {
                let id = format!("node-{i}");
                let k = derive_node_key(SECRET, &id);
                (id, k)
            })
            .collect(),
    );
    c.bench_function(
        "coordinator: cached node key lookup (1000 nodes)",
        |bench| {
            bench.iter(|| {
                cache
                    .read()
                    .unwrap()
                    .get(black_box("node-123"))
                    .map(|k| black_box(k as *const NodeKey))
            })
        },
    );
}

criterion_group!(benches, signing, decoding, detector, placement, node_calls);
criterion_main!(benches);
