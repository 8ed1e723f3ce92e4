//! The load signal over the real binaries: client reads and writes through the
//! coordinator show as per-second load on the holders of their shard, in
//! `/v1/nodes/{id}`, `/v1/shards`, `/metrics`, `torua status` and `torua shards`,
//! within a generous factor of what the client sent.

use assert_cmd::Command;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use torua_protocol::shard::shard_for_key;
use torua_tests::cluster::{shard_holders, Options, TestCluster};
use torua_tests::http;
use torua_tests::poll_until;
use torua_tests::proc::bin;

const SHARDS: u32 = 8;
const SOON: Duration = Duration::from_secs(30);
/// Bytes of the hot key's value.
const VALUE: usize = 1000;

/// A series' value in an exposition.
fn series(metrics: &str, name: &str) -> Option<f64> {
    http::metric(metrics, name)
}

/// A number from a JSON load (`kind` of `load`), 0 when absent.
fn num(load: &Value, kind: &str) -> f64 {
    load[kind].as_f64().unwrap_or(0.0)
}

#[test]
fn client_reads_and_writes_show_as_load_on_the_holders_of_their_shard() {
    let c = TestCluster::start(Options {
        coordinator_args: [
            "--shards",
            &SHARDS.to_string(),
            // Sampled every 200 ms; a floor no load here reaches, so the balancer
            // moves nothing while the test reads the figures.
            "--load-balance-interval",
            "1s",
            "--load-floor",
            "1000000000",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    });
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);

    let key = "load/hot";
    let shard = shard_for_key(key.as_bytes(), SHARDS);
    let value = vec![b'v'; VALUE];
    c.put(key, &value).unwrap();
    let view = c.shards_json().unwrap();
    let holders = shard_holders(&view[shard as usize]);
    assert_eq!(holders.len(), 2, "{}", view[shard as usize]);
    let idle: Vec<String> = c
        .node_ids
        .iter()
        .filter(|n| !holders.contains(n))
        .cloned()
        .collect();
    assert_eq!(idle.len(), 1, "{holders:?} of {:?}", c.node_ids);

    // One client: nine reads of the hot key, then one write of it, as fast as the
    // coordinator answers.
    let stop = AtomicBool::new(false);
    let (reads, writes) = (AtomicU64::new(0), AtomicU64::new(0));
    thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                if i.is_multiple_of(10) {
                    c.put(key, &value).unwrap();
                    writes.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert_eq!(c.get(key).unwrap().map(|v| v.len()), Some(VALUE));
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check(&c, shard, &holders, &idle[0], &reads, &writes)
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(p) = checked {
            std::panic::resume_unwind(p);
        }
    });
}

fn check(
    c: &TestCluster,
    shard: u32,
    holders: &[String],
    idle: &str,
    reads: &AtomicU64,
    writes: &AtomicU64,
) {
    // Every holder serves the writes; the reads go to one of them (the primary,
    // hedged now and then to the other). The idle node served nothing.
    let loads = poll_until(SOON, "load on every holder of the hot shard", || {
        let mut loads = Vec::new();
        for h in holders {
            let n = c.node(h)?;
            let load = &n["load"];
            if num(load, "writes") <= 0.0 || num(load, "score") <= 0.0 {
                return Err(format!("{h}: {n}"));
            }
            loads.push(load.clone());
        }
        if loads.iter().map(|l| num(l, "reads")).sum::<f64>() <= 0.0 {
            return Err(format!("no reads yet: {loads:?}"));
        }
        let other = c.node(idle)?;
        if !other["load"].is_object() {
            return Err(format!("{idle} not sampled: {other}"));
        }
        Ok(loads)
    });
    let other = c.node(idle).unwrap();
    assert_eq!(num(&other["load"], "score"), 0.0, "{other}");
    for l in &loads {
        for kind in ["reads", "writes", "read_bytes", "write_bytes", "score"] {
            assert!(l[kind].is_number(), "{kind} in {l}");
        }
    }

    // The shard's load (the sum over its holders) against what the client sent
    // over the last 2 s or more: within a factor of 3 (the figure is a median of
    // 200 ms rates; a read may be hedged, a write reaches both holders).
    let mut sent: Vec<(Instant, u64, u64)> = Vec::new();
    let (shard_load, (read_rate, write_rate)) =
        poll_until(SOON, "the shard's load to match what was sent", || {
            let now = Instant::now();
            sent.push((
                now,
                reads.load(Ordering::Relaxed),
                writes.load(Ordering::Relaxed),
            ));
            let Some(&(then, r0, w0)) = sent
                .iter()
                .rev()
                .find(|(t, _, _)| now.duration_since(*t) >= Duration::from_secs(2))
            else {
                return Err("measuring the client's rate".into());
            };
            let (_, r1, w1) = *sent.last().unwrap();
            let secs = now.duration_since(then).as_secs_f64();
            let rates = ((r1 - r0) as f64 / secs, (w1 - w0) as f64 / secs);
            let view = c.shards_json()?;
            let load = view[shard as usize]["load"].clone();
            let within = |got: f64, want: f64| got >= want / 3.0 && got <= want * 3.0;
            if rates.0 > 0.0
                && within(num(&load, "reads"), rates.0)
                && within(num(&load, "writes"), 2.0 * rates.1)
            {
                Ok((load, rates))
            } else {
                Err(format!("sent {rates:?}/s, shard {shard} shows {load}"))
            }
        });
    println!(
        "client sent {read_rate:.0} reads/s, {write_rate:.0} writes/s; shard {shard} shows {shard_load}"
    );
    // Every read answers the whole value; every write carries it.
    let per_read = num(&shard_load, "read_bytes") / num(&shard_load, "reads");
    let per_write = num(&shard_load, "write_bytes") / num(&shard_load, "writes");
    for (what, per) in [("read", per_read), ("write", per_write)] {
        assert!(
            per > VALUE as f64 / 2.0 && per < VALUE as f64 * 2.0,
            "{per} bytes per {what}: {shard_load}"
        );
    }
    // No other shard served anything.
    for s in c.shards_json().unwrap() {
        if s["id"] != shard {
            assert_eq!(num(&s["load"], "score"), 0.0, "{s}");
        }
    }

    // Metrics: the holders' series and the hot shard's; the idle node at 0.
    let m = poll_until(SOON, "torua_node_load and torua_shard_load", || {
        let m = c.metrics();
        let reads_of = |n: &str| {
            series(
                &m,
                &format!("torua_node_load{{node=\"{n}\",kind=\"reads\"}}"),
            )
        };
        let hot = series(
            &m,
            &format!("torua_shard_load{{shard=\"{shard}\",kind=\"reads\"}}"),
        );
        let held: f64 = holders.iter().filter_map(|h| reads_of(h)).sum();
        if held > 0.0 && hot.is_some_and(|r| r > 0.0) && reads_of(idle).is_some() {
            Ok(m)
        } else {
            Err(m
                .lines()
                .filter(|l| l.contains("_load{"))
                .collect::<Vec<_>>()
                .join("\n"))
        }
    });
    assert_eq!(
        series(
            &m,
            &format!("torua_node_load{{node=\"{idle}\",kind=\"writes\"}}")
        ),
        Some(0.0)
    );
    let shard_series = m
        .lines()
        .filter(|l| l.starts_with("torua_shard_load{"))
        .count();
    assert_eq!(shard_series, 4, "only the one busy shard has series:\n{m}");

    // The CLI's tables.
    let out = |args: &[&str]| {
        let o = Command::new(bin("torua"))
            .args(args)
            .args(["--coordinator", &c.url])
            .assert()
            .success();
        String::from_utf8(o.get_output().stdout.clone()).unwrap()
    };
    let status = out(&["status"]);
    assert!(status.contains(" LOAD "), "{status}");
    for h in holders {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(h.as_str()) && l.contains(" op/s)")),
            "{h}: {status}"
        );
    }
    let shards = out(&["shards"]);
    let row = shards
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&shard.to_string()))
        .unwrap_or_else(|| panic!("no row for shard {shard}: {shards}"));
    let score: f64 = row
        .split_whitespace()
        .find_map(|w| w.parse::<f64>().ok().filter(|_| w.contains('.')))
        .unwrap_or_else(|| panic!("no load in {row:?}"));
    assert!(score > 0.0, "{row}");
}
