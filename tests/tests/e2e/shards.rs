//! Shards end to end: no acknowledged write is lost and every key stays readable
//! through a node stop, a coordinator crash mid-rebalance, a drain under load; a
//! failure storm freezes moves; Torua's `/data/{key}` patterns keep working.

use serde_json::Value;
use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};
use torua_tests::cluster::{shard_holders as holders, Options, TestCluster};
use torua_tests::{http, poll_until};

const SOON: Duration = Duration::from_secs(20);

fn fast() -> Options {
    Options {
        coordinator_args: [
            "--move-delay",
            "2s",
            "--rebalance-delay",
            "1s",
            "--shards",
            "16",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ..Default::default()
    }
}

/// A few hundred keys of mixed sizes, one of them over 1 MiB, with awkward names.
fn dataset(n: usize) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for i in 0..n {
        let key = match i % 5 {
            0 => format!("users/{i}/profile"),
            1 => format!("with space {i}"),
            2 => format!("mail@host:{i}"),
            3 => format!("ключ/値/{i}"),
            _ => format!("plain-{i}"),
        };
        let len = if i == 7 {
            1_300_000
        } else {
            (i * 37) % 3000 + 1
        };
        m.insert(key, (0..len).map(|j| ((i * 31 + j) % 251) as u8).collect());
    }
    m
}

fn write_all(c: &TestCluster, data: &BTreeMap<String, Vec<u8>>) {
    for (k, v) in data {
        c.put(k, v).unwrap();
    }
}

/// Every key reads back exactly; returns the first problem otherwise.
fn check_all(c: &TestCluster, data: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    for (k, v) in data {
        match c.get(k)? {
            Some(got) if got == *v => {}
            Some(got) => {
                return Err(format!(
                    "{k}: {} bytes differ from the {} written",
                    got.len(),
                    v.len()
                ))
            }
            None => return Err(format!("{k}: missing")),
        }
    }
    Ok(())
}

fn shard_counts(c: &TestCluster) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in c.shards_json().unwrap() {
        for n in holders(&s) {
            *m.entry(n).or_default() += 1;
        }
    }
    m
}

#[test]
fn node_stop_keeps_every_key_readable_and_repairs_then_rebalances_back() {
    let c = TestCluster::start(fast());
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    let data = dataset(300);
    write_all(&c, &data);
    check_all(&c, &data).unwrap();

    let t = Instant::now();
    c.nodes[1].stop();
    poll_until(SOON, "every key readable after the stop", || {
        check_all(&c, &data)
    });
    let readable = t.elapsed();
    // Writes work again too.
    poll_until(SOON, "writes accepted", || c.put("after-stop", b"x"));
    poll_until(
        Duration::from_secs(40),
        "under-replication repaired",
        || {
            let cl = c.cluster_json()?;
            if cl["shards_under_replicated"] == 0 && cl["status"] == "green" {
                Ok(())
            } else {
                Err(cl.to_string())
            }
        },
    );
    let repaired = t.elapsed();
    eprintln!("SIGSTOP node: every key readable after {readable:?}, under-replication 0 after {repaired:?}");
    assert!(
        !shard_counts(&c).contains_key("n2"),
        "n2 holds nothing while stopped: {:?}",
        c.shards_json()
    );
    check_all(&c, &data).unwrap();

    c.nodes[1].cont();
    c.wait_state("n2", "healthy", SOON);
    poll_until(
        Duration::from_secs(40),
        "shards spread over all three nodes",
        || {
            let counts = shard_counts(&c);
            let cl = c.cluster_json()?;
            let even = counts.len() == 3 && counts.values().all(|&n| n >= 6);
            if even && cl["status"] == "green" && cl["moves_in_flight"] == 0 {
                Ok(())
            } else {
                Err(format!("{counts:?} {cl}"))
            }
        },
    );
    check_all(&c, &data).unwrap();
    assert_eq!(c.get("after-stop").unwrap().as_deref(), Some(&b"x"[..]));
    c.wait_consistent_map(2, SOON).unwrap();
}

#[test]
fn coordinator_sigkill_mid_rebalance_loses_nothing() {
    let mut opts = fast();
    opts.nodes = 2;
    opts.coordinator_args
        .extend(["--max-concurrent-moves", "1"].map(String::from));
    let mut c = TestCluster::start(opts);
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    let mut data = dataset(200);
    // Enough bytes per shard that a copy takes a while: the kill must land mid-move.
    for i in 0..48 {
        data.insert(format!("bulk/{i}"), vec![i as u8; 384 * 1024]);
    }
    write_all(&c, &data);

    c.add_node("n3", "1s");
    let deadline = Instant::now() + SOON;
    loop {
        let m = http::get(&format!("{}/v1/moves", c.url)).unwrap().json();
        if m["in_flight"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rebalance move seen in flight: {m}"
        );
        thread::sleep(Duration::from_millis(5));
    }
    c.coord.kill();
    c.coord.restart();
    c.wait_ready();
    c.wait_all("healthy", SOON);
    poll_until(
        Duration::from_secs(60),
        "rebalance finished after the restart",
        || {
            let counts = shard_counts(&c);
            let cl = c.cluster_json()?;
            // The surplus copy is trimmed in the pass after its move ends.
            if counts.get("n3").copied().unwrap_or(0) >= 6
                && cl["status"] == "green"
                && cl["moves_in_flight"] == 0
            {
                c.check_consistent_map(2)
            } else {
                Err(format!("{counts:?} {cl}"))
            }
        },
    );
    check_all(&c, &data).unwrap();
}

#[test]
fn two_of_three_down_freezes_moves_and_nothing_flaps() {
    let c = TestCluster::start(fast());
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    c.agents[0].stop();
    c.agents[1].stop();
    poll_until(SOON, "moves frozen", || {
        let cl = c.cluster_json()?;
        if cl["moves_frozen"] == true {
            Ok(())
        } else {
            Err(cl.to_string())
        }
    });
    assert!(c.metrics().contains("torua_moves_frozen 1"));
    let before: Vec<Value> = c.shards_json().unwrap();
    // Well past move_delay and rebalance_delay: still nothing may move.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(
            c.shards_json().unwrap(),
            before,
            "the shard map changed while frozen"
        );
        thread::sleep(Duration::from_millis(250));
    }
    assert!(c.coord.log_text().contains("storm guard"), "logged");
    c.agents[0].cont();
    c.agents[1].cont();
    poll_until(SOON, "moves unfrozen", || {
        let cl = c.cluster_json()?;
        if cl["moves_frozen"] == false {
            Ok(())
        } else {
            Err(cl.to_string())
        }
    });
}

#[test]
fn drain_under_load_has_no_client_errors_and_ends_drained() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let c = TestCluster::start(fast());
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    // Progress is counted, not timed: on a loaded CI machine the drain can finish
    // before a fixed number of writes, so the writer must be seen writing both
    // before the drain starts and after it ends.
    let writes_reach = |n: usize, what: &str| {
        poll_until(SOON, what, || {
            let d = done.load(Ordering::Relaxed);
            if d >= n {
                Ok(d)
            } else {
                Err(format!("{d} writes acknowledged"))
            }
        })
    };
    let (written, errors, slowest) = thread::scope(|s| {
        let writer = s.spawn(|| {
            let (mut written, mut errors) = (Vec::new(), Vec::new());
            let mut slowest = Duration::ZERO;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("load/{i}");
                let t = Instant::now();
                match c.put(&k, k.as_bytes()) {
                    Ok(()) => written.push(k),
                    Err(e) => errors.push(e),
                }
                slowest = slowest.max(t.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            (written, errors, slowest)
        });
        let before = writes_reach(10, "the writer writing before the drain");
        let r = http::send("POST", &format!("{}/v1/nodes/n1/drain", c.url), &[], b"").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        c.wait_state("n1", "drained", Duration::from_secs(40));
        let drained_at = done.load(Ordering::Relaxed);
        writes_reach(drained_at + 10, "the writer writing after the drain");
        stop.store(true, Ordering::Relaxed);
        eprintln!("drain: {before} writes before, {drained_at} when drained");
        writer.join().unwrap()
    });
    assert!(
        errors.is_empty(),
        "client errors during the drain: {errors:?}"
    );
    eprintln!("drain: {} writes, slowest {slowest:?}", written.len());
    assert!(!shard_counts(&c).contains_key("n1"));
    for k in &written {
        assert_eq!(c.get(k).unwrap().as_deref(), Some(k.as_bytes()), "{k}");
    }
}

#[test]
fn torua_data_alias_patterns_and_limits() {
    let c = TestCluster::start(Options { nodes: 2, ..fast() });
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    let alias = |k: &str| format!("{}/data/{}", c.url, torua_tests::cluster::encode_key(k));
    let big: Vec<u8> = (0..1_000_000).map(|i| (i % 253) as u8).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("simple", b"v".to_vec()),
        ("path/with/slashes", b"nested".to_vec()),
        ("key with spaces", b"spaced".to_vec()),
        ("user@example.com:8080", b"at-colon".to_vec()),
        ("日本語/キー", "unicode ✓".as_bytes().to_vec()),
        ("big-1mb", big),
    ];
    for (k, v) in &cases {
        let r = http::send("PUT", &alias(k), &[], v).unwrap();
        assert_eq!(r.status, 204, "PUT {k}: {}", r.text());
        let r = http::get(&alias(k)).unwrap();
        assert_eq!((r.status, r.body.len()), (200, v.len()), "GET {k}");
        assert_eq!(&r.body, v, "{k}");
    }
    assert_eq!(http::get(&alias("missing")).unwrap().status, 404);
    // Torua's `/shards`: num_shards and one {ShardID, NodeID, IsPrimary} per holder,
    // the Go coordinator's field names exactly.
    let v = http::get(&format!("{}/shards", c.url)).unwrap().json();
    assert_eq!(v["num_shards"], 16, "{v}");
    let entries = v["shards"].as_array().unwrap();
    assert_eq!(entries.len(), 32, "16 shards × 2 holders: {v}");
    for id in 0..16u64 {
        let of: Vec<&Value> = entries.iter().filter(|e| e["ShardID"] == id).collect();
        let primaries = of.iter().filter(|e| e["IsPrimary"] == true).count();
        assert_eq!((of.len(), primaries), (2, 1), "shard {id}: {v}");
        for e in &of {
            let mut fields: Vec<&str> = e.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            fields.sort_unstable();
            assert_eq!(fields, ["IsPrimary", "NodeID", "ShardID"], "{v}");
            assert!(e["NodeID"].is_string(), "{v}");
        }
    }
    // A wrong method on a known route: 405 `malformed` with Allow, as the node answers.
    for (method, path, allow) in [
        ("POST", "/shards", "GET"),
        ("DELETE", "/v1/cluster", "GET"),
        ("GET", "/v1/rebalance", "POST"),
        ("POST", "/v1/data/simple", "GET, PUT, DELETE"),
        ("PATCH", "/v1/shards/3", "GET, PUT"),
    ] {
        let r = http::send(method, &format!("{}{path}", c.url), &[], b"").unwrap();
        assert_eq!(r.status, 405, "{method} {path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "malformed", "{method} {path}");
        assert_eq!(r.header("allow").as_deref(), Some(allow), "{method} {path}");
    }
    let r = http::send("DELETE", &alias("simple"), &[], b"").unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(http::get(&alias("simple")).unwrap().status, 404);
    let listed = http::get(&format!("{}/v1/data?prefix=path/", c.url))
        .unwrap()
        .json();
    assert_eq!(listed["keys"], serde_json::json!(["path/with/slashes"]));
    let huge = vec![0u8; 16 * 1024 * 1024 + 1];
    let r = http::send("PUT", &alias("huge"), &[], &huge).unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("limit"), "{}", r.text());
    let r = http::send("PUT", &alias("bad\u{1}key"), &[], b"x").unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn a_shard_whose_every_copy_is_down_waits_for_them_and_loses_nothing() {
    // Four nodes and a storm threshold no two failures reach: the reconciler acts.
    let mut opts = fast();
    opts.nodes = 4;
    opts.coordinator_args
        .extend(["--storm-fraction", "0.9"].map(String::from));
    let c = TestCluster::start(opts);
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    let data = dataset(120);
    write_all(&c, &data);

    // Stop both holders of shard 0: it (and any shard on the same pair) has no
    // copy left; every other shard still has one.
    let shards = c.shards_json().unwrap();
    let mut pair = holders(&shards[0]);
    assert_eq!(pair.len(), 2, "{}", shards[0]);
    pair.sort();
    let stranded: Vec<&Value> = shards
        .iter()
        .filter(|s| {
            let mut h = holders(s);
            h.sort();
            h == pair
        })
        .collect();
    // n1 is c.nodes[0] and c.agents[0], and so on.
    let index = |id: &str| id.trim_start_matches('n').parse::<usize>().unwrap() - 1;
    for id in &pair {
        c.agents[index(id)].stop();
        c.nodes[index(id)].stop();
    }
    // The others fail over and are re-replicated onto the two live nodes; the
    // stranded ones keep their holders and wait.
    poll_until(
        Duration::from_secs(40),
        "the rest repaired, the stranded waiting",
        || {
            let cl = c.cluster_json()?;
            let done = cl["status"] == "red"
                && cl["shards_unavailable"] == stranded.len()
                && cl["shards_under_replicated"] == 0
                && cl["moves_in_flight"] == 0;
            if done {
                Ok(())
            } else {
                Err(cl.to_string())
            }
        },
    );
    let now = c.shards_json().unwrap();
    for s in &stranded {
        let id = s["id"].as_u64().unwrap() as usize;
        // The two convictions land a few ms apart: in between, the first convicted
        // holder may leave the in-sync set because the other still looked up
        // (Kafka's ISR shrink). What must hold is that the last in-sync holder is
        // kept, never dropped for a live node that has no copy.
        let (kept, had) = (holders(&now[id]), holders(s));
        assert!(
            !kept.is_empty() && kept.iter().all(|h| had.contains(h)),
            "shard {id} lost its only copies' holders: {} (had {had:?})",
            now[id]
        );
        assert_eq!(now[id]["health"], "unavailable", "{}", now[id]);
    }
    let log = c.coord.log_text();
    assert!(
        log.contains("every in-sync copy is on a down node"),
        "not logged"
    );

    for id in &pair {
        c.nodes[index(id)].cont();
        c.agents[index(id)].cont();
    }
    c.wait_green(Duration::from_secs(40));
    check_all(&c, &data).unwrap();
    c.wait_consistent_map(2, SOON).unwrap();
}

#[test]
fn an_agent_leaving_drains_its_node_and_remove_then_decommissions_it() {
    let mut c = TestCluster::start(fast());
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    let data = dataset(60);
    write_all(&c, &data);
    let torua = || assert_cmd::Command::new(torua_tests::proc::bin("torua"));

    // Removing a node that holds shards is refused: they may be its last copies.
    // (Green can come before n3 gets its share: shards bootstrapped while only two
    // nodes had reported move to n3 after the rebalance delay.)
    poll_until(
        Duration::from_secs(20),
        "n3 holding shards",
        || match shard_counts(&c).get("n3").copied().unwrap_or(0) {
            0 => Err("n3 holds nothing yet".to_string()),
            _ => Ok(()),
        },
    );
    c.wait_green(SOON);
    let out = torua()
        .args(["remove", "n3", "--coordinator", &c.url])
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.contains("409") && err.contains("drain it first"),
        "{err}"
    );

    // The agent's SIGTERM announces `leaving`: n3's shards move off, it ends drained.
    c.agents[2].signal(nix::sys::signal::Signal::SIGTERM);
    poll_until(
        Duration::from_secs(40),
        "n3 drained, the cluster green",
        || {
            let n = c.node("n3")?;
            let cl = c.cluster_json()?;
            let held = shard_counts(&c).get("n3").copied().unwrap_or(0);
            if n["state"] == "drained" && held == 0 && cl["status"] == "green" {
                Ok(())
            } else {
                Err(format!("n3 {} holds {held}; {cl}", n["state"]))
            }
        },
    );
    check_all(&c, &data).unwrap();

    torua()
        .args(["remove", "n3", "--coordinator", &c.url])
        .assert()
        .success();
    let ids: Vec<String> = c
        .nodes_json()
        .unwrap()
        .iter()
        .filter_map(|n| n["id"].as_str().map(String::from))
        .collect();
    assert_eq!(ids, ["n1", "n2"]);
    assert!(!c.metrics().contains(r#"node="n3""#), "n3's series remain");
    check_all(&c, &data).unwrap();
    let _ = c.agents[2].wait_exit(SOON);
}
