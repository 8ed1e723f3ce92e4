//! Micro-benchmarks of the hot paths: heartbeat sign/verify, decode, the phi detector
//! update, and placement of 64 shards over 1,000 nodes.
//! Run: `cargo bench -p torua-bench --bench micro`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use torua_coordinator::detector::PhiDetector;
use torua_coordinator::placement::{place, Candidate};
use torua_protocol::{decode_heartbeat, derive_node_key, sign, verify};

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

criterion_group!(benches, signing, decoding, detector, placement);
criterion_main!(benches);
