//! Load-aware placement over the real binaries: a skewed read workload makes one
//! node hot; the coordinator sheds its load (role swaps, or copies) until the
//! spread narrows, and no acknowledged write is lost on the way.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;
use torua_protocol::shard::shard_for_key;
use torua_tests::cluster::{Options, TestCluster};
use torua_tests::http;
use torua_tests::{poll_until, try_poll_until};

const SHARDS: u32 = 16;
const SOON: Duration = Duration::from_secs(30);

/// Each node's load score as `/v1/nodes` shows it.
fn scores(c: &TestCluster) -> Result<BTreeMap<String, f64>, String> {
    Ok(c.nodes_json()?
        .iter()
        .map(|n| {
            let id = n["id"].as_str().unwrap_or("?").to_string();
            (id, n["load"]["score"].as_f64().unwrap_or(0.0))
        })
        .collect())
}

fn max_over_mean(s: &BTreeMap<String, f64>) -> f64 {
    let mean = s.values().sum::<f64>() / s.len().max(1) as f64;
    let max = s.values().copied().fold(0.0, f64::max);
    if mean > 0.0 {
        max / mean
    } else {
        0.0
    }
}

fn load_moves(c: &TestCluster) -> Vec<Value> {
    let m = http::get(&format!("{}/v1/moves", c.url)).unwrap().json();
    m["recent"]
        .as_array()
        .into_iter()
        .chain(m["in_flight"].as_array())
        .flatten()
        .filter(|x| x["reason"] == "load")
        .cloned()
        .collect()
}

#[test]
fn a_hot_node_sheds_load_and_every_key_survives() {
    let c = TestCluster::start(Options {
        nodes: 4,
        interval: "250ms",
        coordinator_args: [
            "--shards",
            &SHARDS.to_string(),
            "--load-balance-interval",
            "1s",
            "--load-floor",
            "20",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    });
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);

    // The node that is primary of the most shards, and those shards: reads of
    // their keys make it the hot node, each shard carrying a fraction of it.
    let shards = http::get(&format!("{}/v1/shards", c.url)).unwrap().json();
    let mut primaries: HashMap<String, Vec<u32>> = HashMap::new();
    for s in shards["shards"].as_array().expect("shards") {
        if let (Some(p), Some(id)) = (s["primary"].as_str(), s["id"].as_u64()) {
            primaries.entry(p.to_string()).or_default().push(id as u32);
        }
    }
    let (hot_node, hot_shards) = primaries
        .into_iter()
        .max_by_key(|(n, s)| (s.len(), std::cmp::Reverse(n.clone())))
        .expect("a primary");
    assert!(hot_shards.len() >= 4, "{hot_node} leads {hot_shards:?}");
    let mut hot_keys = Vec::new();
    for i in 0.. {
        let k = format!("hot-{i}");
        if hot_shards.contains(&shard_for_key(k.as_bytes(), SHARDS)) {
            hot_keys.push(k);
        }
        if hot_keys.len() == 40 {
            break;
        }
    }
    let model: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    for k in &hot_keys {
        c.put(k, b"v0").unwrap();
        model.lock().unwrap().insert(k.clone(), "v0".into());
    }

    let stop = AtomicBool::new(false);
    let errors = Mutex::new(Vec::new());
    thread::scope(|s| {
        // Readers of the hot keys, and one writer (a tenth of the traffic) that
        // overwrites them, so moves happen under writes.
        for t in 0..3 {
            let (c, keys, stop, errors) = (&c, &hot_keys, &stop, &errors);
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                while !stop.load(Ordering::Relaxed) {
                    let k = &keys[rng.usize(..keys.len())];
                    if let Err(e) = c.get(k) {
                        errors.lock().unwrap().push(format!("GET {k}: {e}"));
                    }
                }
            });
        }
        s.spawn(|| {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                let k = &hot_keys[seq % hot_keys.len()];
                seq += 1;
                let v = format!("v{seq}");
                match c.put(k, v.as_bytes()) {
                    Ok(()) => {
                        model.lock().unwrap().insert(k.clone(), v);
                    }
                    Err(e) => errors.lock().unwrap().push(format!("PUT {k}: {e}")),
                }
                thread::sleep(Duration::from_millis(20));
            }
        });

        let result = (|| -> Result<(f64, f64, Vec<Value>), String> {
            let before = try_poll_until(SOON, "the hot node's load to show", || {
                let s = scores(&c)?;
                let ratio = max_over_mean(&s);
                let hottest = s.iter().max_by(|a, b| a.1.total_cmp(b.1)).map(|x| x.0);
                (ratio > 1.5 && hottest == Some(&hot_node))
                    .then_some(ratio)
                    .ok_or(format!("scores {s:?}"))
            })?;
            let moves = try_poll_until(Duration::from_secs(60), "a load move or swap", || {
                let m = load_moves(&c);
                (!m.is_empty()).then_some(m).ok_or("none yet".to_string())
            })?;
            let after = try_poll_until(Duration::from_secs(60), "the spread to narrow", || {
                let ratio = max_over_mean(&scores(&c)?);
                (ratio < before * 0.85)
                    .then_some(ratio)
                    .ok_or(format!("max/mean {ratio:.2}, {before:.2} before"))
            })?;
            Ok((before, after, moves))
        })();
        stop.store(true, Ordering::Relaxed);
        let (before, after, moves) = result.unwrap_or_else(|e| panic!("{e}"));
        eprintln!("load: max/mean {before:.2} → {after:.2}; load moves {moves:?}");
        let m = &moves[0];
        assert_eq!(m["from"], Value::from(hot_node.clone()), "{m}");
        assert!(
            m["load"]["source_after"].as_f64() < m["load"]["source_before"].as_f64(),
            "the figures that justified it: {m}"
        );
    });
    let errors = errors.into_inner().unwrap();
    assert!(errors.is_empty(), "client errors: {errors:?}");
    poll_until(
        SOON,
        "every key to read back its last acknowledged value",
        || {
            for (k, v) in model.lock().unwrap().iter() {
                let got = c.get(k)?;
                if got.as_deref() != Some(v.as_bytes()) {
                    return Err(format!("{k}: {got:?}, want {v}"));
                }
            }
            Ok(())
        },
    );
}
