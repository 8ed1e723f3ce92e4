//! Chaos soak: a client writes and reads keys through the coordinator while a fault
//! injector SIGSTOPs, SIGCONTs and SIGKILLs+restarts nodes, agents and the
//! coordinator, one fault at a time (the cluster is green again before the next).
//! At the end: no acknowledged write lost or changed, no unhealthy mark for the node
//! that was never touched, a consistent shard map, and flat coordinator memory
//! (within each coordinator process's life: a restart resets it).
//!
//! `TORUA_SOAK_SECS` (default 60; the Jepsen-style suite in `jepsen.rs` covers more
//! faults with a real history checker) sets the length; `TORUA_SOAK_SEED` replays a run.
//! On failure the fault timeline is printed.

use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};
use torua_tests::cluster::{encode_key, shard_holders, Options, TestCluster};
use torua_tests::timeline::Timeline;
use torua_tests::{http, nodecall, try_poll_until};

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Every holder in the map has the shard at (at least) the map's epoch.
fn holders_hold_their_shards(c: &TestCluster) -> Result<(), String> {
    let shards = c.shards_json()?;
    for (i, url) in c.node_urls.iter().enumerate() {
        let id = format!("n{}", i + 1);
        let held = nodecall::send(url, &id, "GET", "/v1/shards", &[], b"")?.json();
        for s in &shards {
            if !shard_holders(s).contains(&id) {
                continue;
            }
            let ok = held["shards"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|h| h["id"] == s["id"] && h["epoch"].as_u64() >= s["epoch"].as_u64());
            if !ok {
                return Err(format!(
                    "{id} is listed for shard {} (epoch {}) but does not hold it",
                    s["id"], s["epoch"]
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn chaos_soak_loses_no_acknowledged_write() {
    let secs: u64 = std::env::var("TORUA_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("TORUA_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id())
        });
    let mut rng = fastrand::Rng::with_seed(seed);
    let timeline = Timeline::default();
    timeline.log(format!(
        "seed {seed} (TORUA_SOAK_SEED={seed} replays this run), {secs}s"
    ));

    // n4 is never touched: it must never be marked unhealthy.
    let mut c = TestCluster::start(Options {
        nodes: 4,
        coordinator_args: [
            "--shards",
            "16",
            "--move-delay",
            "2s",
            "--rebalance-delay",
            "1s",
            "--startup-grace",
            "5s",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    });
    c.wait_all("healthy", Duration::from_secs(30));
    c.wait_green(Duration::from_secs(30));

    let acked: Mutex<BTreeMap<String, Vec<u8>>> = Mutex::new(BTreeMap::new());
    let stop = AtomicBool::new(false);
    let (write_errors, read_errors) = (Mutex::new(0u64), Mutex::new(0u64));
    // (coordinator pid, RSS) after each fault, once green again.
    let mut rss_samples: Vec<(i32, u64)> = Vec::new();

    // The client talks to the coordinator by URL only: the fault injector owns `c`.
    let url = c.url.clone();
    let put = |k: &str, v: &[u8]| -> Result<(), String> {
        let r = http::send("PUT", &format!("{url}/v1/data/{}", encode_key(k)), &[], v)?;
        if r.status == 204 {
            Ok(())
        } else {
            Err(r.text())
        }
    };
    let get = |k: &str| -> Result<Option<Vec<u8>>, String> {
        let r = http::get(&format!("{url}/v1/data/{}", encode_key(k)))?;
        match r.status {
            200 => Ok(Some(r.body)),
            404 => Ok(None),
            _ => Err(r.text()),
        }
    };
    let outcome = thread::scope(|s| {
        let client = s.spawn(|| {
            let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Unique keys: a write that failed may still have landed somewhere,
                // so a key is never written twice and "changed" is unambiguous.
                let key = format!("soak/{i}/{}", rng.u32(..));
                let value: Vec<u8> = (0..rng.usize(1..4096)).map(|_| rng.u8(..)).collect();
                match put(&key, &value) {
                    Ok(()) => {
                        acked.lock().unwrap().insert(key, value);
                    }
                    Err(_) => *write_errors.lock().unwrap() += 1,
                }
                // Read back a random acknowledged key.
                let probe = {
                    let a = acked.lock().unwrap();
                    let n = a.len();
                    (n > 0).then(|| {
                        a.iter()
                            .nth(rng.usize(..n))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .unwrap()
                    })
                };
                if let Some((k, v)) = probe {
                    match get(&k) {
                        Ok(Some(got)) if got == v => {}
                        Ok(other) => {
                            return Err(format!(
                                "acknowledged {k} read back as {:?} bytes",
                                other.map(|g| g.len())
                            ))
                        }
                        Err(_) => *read_errors.lock().unwrap() += 1,
                    }
                }
                i += 1;
            }
            Ok(())
        });

        let end = Instant::now() + Duration::from_secs(secs);
        let mut inject = || -> Result<(), String> {
            while Instant::now() < end {
                let victim = rng.usize(0..3); // n1..n3
                let id = format!("n{}", victim + 1);
                let pause = Duration::from_millis(rng.u64(1500..5000));
                match rng.u8(0..6) {
                    0 => {
                        timeline.log(format!("SIGSTOP node {id} for {pause:?}"));
                        c.nodes[victim].stop();
                        thread::sleep(pause);
                        c.nodes[victim].cont();
                        timeline.log(format!("SIGCONT node {id}"));
                    }
                    1 => {
                        timeline.log(format!("SIGSTOP agent {id} for {pause:?}"));
                        c.agents[victim].stop();
                        thread::sleep(pause);
                        c.agents[victim].cont();
                        timeline.log(format!("SIGCONT agent {id}"));
                    }
                    2 => {
                        timeline.log(format!("SIGKILL+restart node {id} (its memory is lost)"));
                        c.nodes[victim].restart();
                    }
                    3 => {
                        timeline.log(format!("SIGKILL+restart agent {id}"));
                        c.agents[victim].restart();
                    }
                    4 => {
                        timeline.log("SIGKILL+restart coordinator");
                        c.coord.restart();
                    }
                    _ => {
                        let p = pause / 3;
                        timeline.log(format!("SIGSTOP coordinator for {p:?}"));
                        c.coord.signal(Signal::SIGSTOP);
                        thread::sleep(p);
                        c.coord.signal(Signal::SIGCONT);
                    }
                }
                // Back to full health before the next fault: never two down at once.
                let t = Instant::now();
                try_poll_until(
                    Duration::from_secs(90),
                    "cluster healthy and green after a fault",
                    || {
                        let nodes = c.nodes_json()?;
                        let all = nodes.iter().all(|n| n["state"] == "healthy");
                        let cl = c.cluster_json()?;
                        if !(all
                            && nodes.len() == 4
                            && cl["status"] == "green"
                            && cl["moves_in_flight"] == 0)
                        {
                            return Err(format!("{cl}"));
                        }
                        // Green on paper is not enough: every holder really has its copy.
                        holders_hold_their_shards(&c)
                    },
                )?;
                let pid = c.coord.pid().as_raw();
                rss_samples.push((pid, rss_kib(pid)));
                timeline.log(format!(
                    "green again after {:.1}s; {} keys acknowledged",
                    t.elapsed().as_secs_f64(),
                    acked.lock().unwrap().len()
                ));
            }
            Ok(())
        };
        // Whatever ends the injector, a panic included, the client must stop too, or
        // the scope would wait for it forever instead of failing.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let guard = StopOnDrop(&stop);
        let result = inject();
        drop(guard);
        let client = client
            .join()
            .unwrap_or_else(|_| Err("the client thread panicked".into()));
        result.and(client)
    });
    let fail = |msg: String| -> ! { panic!("{msg}\n--- fault timeline ---\n{}", timeline.dump()) };
    if let Err(e) = outcome {
        fail(e);
    }

    // Final audit.
    c.wait_green(Duration::from_secs(60));
    if let Err(e) = c.wait_consistent_map(2, Duration::from_secs(20)) {
        fail(format!("inconsistent shard map: {e}"));
    }
    let acked = acked.into_inner().unwrap();
    let mut lost = Vec::new();
    for (k, v) in &acked {
        match c.get(k) {
            Ok(Some(got)) if got == *v => {}
            other => lost.push(format!("{k}: {:?}", other.map(|o| o.map(|g| g.len())))),
        }
    }
    timeline.log(format!(
        "audit: {} acknowledged writes, {} lost/changed; {} write and {} read errors during faults (not acknowledged / retried)",
        acked.len(),
        lost.len(),
        write_errors.into_inner().unwrap(),
        read_errors.into_inner().unwrap()
    ));
    if !lost.is_empty() {
        fail(format!(
            "{} acknowledged writes lost or changed: {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    if acked.len() < 100 {
        fail(format!(
            "the client made too little progress: {} writes",
            acked.len()
        ));
    }
    let log = c.coord.log_text();
    if let Some(line) = log
        .lines()
        .find(|l| l.contains("node n4 ") && l.contains("→ unhealthy"))
    {
        fail(format!("untouched node n4 was marked unhealthy: {line}"));
    }
    // Memory flat: within each coordinator process's life (a restart starts from
    // scratch), the last sample is not far above the first.
    timeline.log(format!(
        "coordinator (pid, RSS KiB) samples: {rss_samples:?}"
    ));
    let mut lives: Vec<Vec<u64>> = Vec::new();
    for (i, (pid, rss)) in rss_samples.iter().enumerate() {
        if i == 0 || rss_samples[i - 1].0 != *pid {
            lives.push(Vec::new());
        }
        lives.last_mut().unwrap().push(*rss);
    }
    for life in lives.iter().filter(|l| l.len() >= 2) {
        let (first, last) = (life[0], life[life.len() - 1]);
        if last > first + 8 * 1024 {
            fail(format!(
                "coordinator memory grew from {first} KiB to {last} KiB within one process life: {life:?}"
            ));
        }
    }
    let longest = lives.iter().map(Vec::len).max().unwrap_or(0);
    timeline.log(format!(
        "{} coordinator lives; the longest has {longest} samples",
        lives.len()
    ));
    eprintln!("chaos timeline:\n{}", timeline.dump());
}
