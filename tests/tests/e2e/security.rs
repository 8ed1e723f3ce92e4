//! Identity and replay rules the coordinator judges alone: no two live nodes share
//! an address, and a heartbeat recorded before a restart is refused after it even
//! from an agent whose clock runs ahead (within the allowed skew).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use torua_protocol::heartbeat::COORDINATOR_NONCE_HEADER;
use torua_tests::cluster::{ClusterState, Options, TestCluster, SECRET};
use torua_tests::http::{self, metric};
use torua_tests::poll_until;
use torua_tests::proc::{free_port, Proc};
use torua_tests::tools::{faketime_env, require_faketime};

const SOON: Duration = Duration::from_secs(20);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn hb(node: &str, addr: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "v": 1, "node_id": node, "incarnation": now_ms(),
        "seq": 1, "sent_at_ms": now_ms(), "interval_ms": 1000, "node_addr": addr,
        "state": "running", "liveness": "pass", "readiness": "pass" }))
    .unwrap()
}

fn received(url: &str, result: &str) -> f64 {
    let m = http::get(&format!("{url}/metrics")).unwrap().text();
    metric(
        &m,
        &format!("torua_heartbeats_received_total{{result=\"{result}\"}}"),
    )
    .unwrap_or(0.0)
}

#[test]
fn a_node_cannot_claim_another_live_nodes_address() {
    let c = TestCluster::start(Options {
        nodes: 2,
        ..Default::default()
    });
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    let n1 = c.node("n1").unwrap();
    let n1_addr = n1["addr"].as_str().expect("n1 has an address").to_string();
    let before = ClusterState::read(&c.url).unwrap();
    let conflicts = received(&c.url, "conflict");

    // A correctly signed newcomer, and a known node, each claiming n1's address.
    for (node, why) in [("thief", "a newcomer"), ("n2", "a known node moving")] {
        let r = crate::beat::post(&c.url, SECRET, node, node, &hb(node, &n1_addr));
        assert_eq!(r.status, 409, "{why}: {}", r.text());
        let err = r.json();
        assert_eq!(err["error"]["code"], "conflict", "{why}: {err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains("n1"), "names the holder: {message}");
    }
    assert_eq!(received(&c.url, "conflict"), conflicts + 2.0);
    let after = ClusterState::read(&c.url).unwrap();
    assert_eq!(after, before, "the refused claims changed nothing");

    // Not vacuous: the same newcomer at an address of its own is taken.
    let own = format!("http://127.0.0.1:{}", free_port());
    let r = crate::beat::post(&c.url, SECRET, "thief", "thief", &hb("thief", &own));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.node("thief").unwrap()["addr"], json!(own));
}

/// Requests seen by a [`Recorder`]: `Authorization` and body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A one-connection-at-a-time HTTP/1.1 relay that records every request it
/// forwards to `{to}/v1/heartbeat`: what an attacker on the path would capture.
struct Recorder {
    url: String,
    seen: Seen,
}

impl Recorder {
    fn start(to: String) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let log = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (to, log) = (to.clone(), log.clone());
                thread::spawn(move || relay(stream, &to, &log));
            }
        });
        Recorder { url, seen }
    }

    fn last(&self) -> Option<(String, Vec<u8>)> {
        self.seen.lock().unwrap().last().cloned()
    }
}

fn relay(stream: TcpStream, to: &str, log: &Mutex<Vec<(String, Vec<u8>)>>) {
    let mut out = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let (mut auth, mut len) = (String::new(), 0usize);
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                match k.to_ascii_lowercase().as_str() {
                    "authorization" => auth = v.trim().to_string(),
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().unwrap().push((auth.clone(), body.clone()));
        let Ok(reply) = http::send(
            "POST",
            &format!("{to}/v1/heartbeat"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            &body,
        ) else {
            return;
        };
        let nonce = reply
            .header(COORDINATOR_NONCE_HEADER)
            .map(|n| format!("{COORDINATOR_NONCE_HEADER}: {n}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{nonce}\r\n",
            reply.status,
            reply.body.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(&reply.body).is_err() {
            return;
        }
    }
}

fn replay(url: &str, (auth, body): &(String, Vec<u8>)) -> (u16, Value) {
    let r = http::send(
        "POST",
        &format!("{url}/v1/heartbeat"),
        &[
            ("authorization", auth),
            ("content-type", "application/json"),
        ],
        body,
    )
    .unwrap();
    (r.status, r.json())
}

#[test]
fn a_fast_agents_heartbeat_captured_before_a_restart_is_refused_after_it() {
    let Some(lib) = require_faketime() else {
        return;
    };
    let mut c = TestCluster::start(Options {
        nodes: 0,
        ..Default::default()
    });
    let recorder = Recorder::start(c.url.clone());
    // A real agent whose wall clock runs 20 s ahead: within the 30 s skew allowed,
    // so every heartbeat it signs claims to be sent 20 s from now.
    let port = free_port().to_string();
    let args: Vec<String> = [
        "--node-id",
        "fast",
        "--node-addr",
        &format!("http://127.0.0.1:{}", free_port()),
        "--coordinator",
        &recorder.url,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--interval",
        "250ms",
        "--cluster-secret-file",
        &c.secret_file.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let mut agent = Proc::start_with_env(
        "agent-fast",
        "torua-agent",
        &args,
        c.dir.path(),
        &faketime_env(&lib, "+20"),
    );
    poll_until(SOON, "the fast agent's heartbeats to be taken", || {
        let n = c.node("fast")?;
        (n["state"] != "unknown")
            .then_some(())
            .ok_or(format!("{n}"))
    });
    let captured = recorder.last().expect("a heartbeat went through the relay");
    let sent_at = serde_json::from_slice::<Value>(&captured.1).unwrap()["sent_at_ms"]
        .as_u64()
        .unwrap();
    assert!(
        sent_at > now_ms() + 15_000,
        "the agent's clock runs ahead: sent_at_ms {sent_at}, now {}",
        now_ms()
    );
    agent.kill();

    c.coord.kill();
    c.coord.restart();
    c.wait_ready();
    let before = ClusterState::read(&c.url).unwrap();
    let (challenged, ok) = (received(&c.url, "challenge"), received(&c.url, "ok"));
    // Signed "later" than the restart by the agent's clock: a rule judged by that
    // clock (nothing signed before the start is taken) would accept it.
    assert!(
        sent_at > now_ms(),
        "the capture claims to be from after the restart"
    );
    let (status, err) = replay(&c.url, &captured);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("stale")),
        "{err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("since it started"),
        "{err}"
    );
    assert_eq!(received(&c.url, "challenge"), challenged + 1.0);
    assert_eq!(received(&c.url, "ok"), ok);
    assert_eq!(
        ClusterState::read(&c.url).unwrap(),
        before,
        "nothing changed"
    );

    // Not vacuous: the agent itself, restarted, is taken again at once.
    agent.restart();
    poll_until(SOON, "the restarted agent to be taken", || {
        (received(&c.url, "ok") > ok)
            .then_some(())
            .ok_or_else(|| "no accepted heartbeat yet".to_string())
    });
}

fn rss_kib(c: &TestCluster) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.coord.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn closed(url: &str, reason: &str) -> f64 {
    let m = http::get(&format!("{url}/metrics")).unwrap().text();
    metric(
        &m,
        &format!("torua_http_connections_closed_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Opens a connection to `url` and sends the head of a PUT declaring `len` bytes.
fn put_head(url: &str, key: &str, len: usize) -> std::io::Result<TcpStream> {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "PUT /v1/data/{key} HTTP/1.1\r\nhost: coordinator\r\ncontent-length: {len}\r\n\r\n"
    )?;
    Ok(s)
}

/// Status line and headers of the answer on `s` (lower-cased names).
fn answer_head(s: &TcpStream) -> Option<(u16, Vec<String>)> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        headers.push(h.trim().to_ascii_lowercase());
    }
    Some((status, headers))
}

#[test]
fn a_body_slower_than_the_minimum_rate_is_cut_and_stores_nothing() {
    let c = TestCluster::start(Options {
        nodes: 2,
        coordinator_args: ["--body-timeout", "1s", "--body-min-rate", "1000"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    c.wait_green(SOON);
    let before = closed(&c.url, "body_timeout");
    let mut s = put_head(&c.url, "dribbled", 1000).unwrap();
    // 10 bytes buy 10 ms at 1000 B/s: the deadline is about 1 s after the head.
    s.write_all(b"0123456789").unwrap();
    let started = std::time::Instant::now();
    let dribble = {
        let mut s = s.try_clone().unwrap();
        thread::spawn(move || {
            while s.write_all(b"x").is_ok() && started.elapsed() < Duration::from_secs(20) {
                thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let (status, _) = answer_head(&s).expect("an answer, not a hang");
    assert_eq!(status, 408, "cut for its pace");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut near its deadline, not at some later timeout: {:?}",
        started.elapsed()
    );
    drop(s);
    dribble.join().unwrap();
    assert_eq!(closed(&c.url, "body_timeout"), before + 1.0);
    assert_eq!(c.get("dribbled").unwrap(), None, "nothing stored");
}

#[test]
fn slow_bodies_filling_every_connection_cannot_stop_a_real_agent() {
    let c = TestCluster::start(Options {
        nodes: 1,
        interval: "250ms",
        coordinator_args: ["--max-connections", "16"].map(String::from).to_vec(),
        ..Default::default()
    });
    c.wait_all("healthy", SOON);
    let evicted = closed(&c.url, "evicted");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Three times as many slow senders as connection slots, each dribbling a
    // byte every 300 ms (far below the minimum rate) and reconnecting when cut.
    let attackers: Vec<_> = (0..48)
        .map(|i| {
            let (url, stop) = (c.url.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(mut s) = put_head(&url, &format!("slow-{i}"), 100_000) else {
                        thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && s.write_all(b"x").is_ok()
                    {
                        thread::sleep(Duration::from_millis(300));
                    }
                }
            })
        })
        .collect();
    // For 10 s the node must stay healthy, and a fresh client must get in.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let mut states = std::collections::BTreeSet::new();
    let mut probes = 0;
    while std::time::Instant::now() < until {
        let r = http::get_within(&format!("{}/v1/nodes/n1", c.url), Duration::from_secs(5))
            .expect("a fresh client is served during the attack");
        states.insert(r.json()["state"].as_str().unwrap_or("?").to_string());
        probes += 1;
        thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    assert_eq!(
        states,
        ["healthy".to_string()].into(),
        "n1 stayed healthy through {probes} probes"
    );
    assert!(
        closed(&c.url, "evicted") > evicted,
        "the slow senders were evicted to make room (not vacuous)"
    );
}

#[test]
fn stalled_large_bodies_keep_memory_bounded_and_the_overflow_gets_503() {
    const MIB: usize = 1024 * 1024;
    let c = TestCluster::start(Options {
        nodes: 2,
        coordinator_args: ["--max-inflight-body-bytes", &(64 * MIB).to_string()]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    c.wait_green(SOON);
    let base = rss_kib(&c);
    // 64 clients each declare 16 MiB, send 15 MiB and stall: without a budget the
    // coordinator would hold ~960 MiB of them.
    let chunk = vec![b'v'; MIB];
    let senders: Vec<_> = (0..64)
        .map(|i| {
            let (url, chunk) = (c.url.clone(), chunk.clone());
            thread::spawn(move || {
                let mut s = put_head(&url, &format!("big-{i}"), 16 * MIB).ok()?;
                for _ in 0..15 {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                }
                Some(s)
            })
        })
        .collect();
    let held: Vec<TcpStream> = senders
        .into_iter()
        .filter_map(|t| t.join().unwrap())
        .collect();
    // The budget is full: a newcomer is told to come back, with Retry-After.
    let probe = put_head(&c.url, "probe", 16 * MIB).unwrap();
    let (status, headers) = answer_head(&probe).expect("an answer");
    assert_eq!(status, 503);
    assert!(headers.iter().any(|h| h == "retry-after: 1"), "{headers:?}");
    let grown_mib = rss_kib(&c).saturating_sub(base) / 1024;
    assert!(
        grown_mib < 64 + 48,
        "RSS grew {grown_mib} MiB with 64 stalled 16 MiB bodies (budget 64 MiB)"
    );
    let m = http::get(&format!("{}/metrics", c.url)).unwrap().text();
    let refused = metric(
        &m,
        "torua_http_errors_total{code=\"overloaded\",route=\"data\"}",
    )
    .unwrap_or(0.0);
    assert!(
        refused >= 48.0,
        "the overflow was refused and counted: {refused}\n{}",
        m.lines()
            .filter(|l| l.starts_with("torua_http"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Released, the budget serves again (not vacuous).
    drop(held);
    poll_until(SOON, "a 16 MiB PUT to be taken again", || {
        let r = http::send("PUT", &c.key_url("big-after"), &[], &vec![b'w'; 16 * MIB])?;
        (r.status == 204)
            .then_some(())
            .ok_or(format!("{} {}", r.status, r.text()))
    });
}

#[test]
fn key_listings_come_in_bounded_pages() {
    let c = TestCluster::start(Options {
        nodes: 2,
        coordinator_args: ["--shards", "8"].map(String::from).to_vec(),
        ..Default::default()
    });
    c.wait_green(SOON);
    let mut want: Vec<String> = (0..25).map(|i| format!("page/{i:02}")).collect();
    for k in want
        .iter()
        .chain(["pagf/x".to_string(), "other".to_string()].iter())
    {
        c.put(k, b"v").unwrap();
    }
    want.sort();
    let list = |query: &str| {
        let r = http::get(&format!("{}/v1/data?{query}", c.url)).unwrap();
        (r.status, r.json())
    };
    let (mut got, mut after, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let q = match &after {
            None => "prefix=page/&limit=10".to_string(),
            Some(a) => format!("prefix=page/&limit=10&after={a}"),
        };
        let (status, page) = list(&q);
        assert_eq!(status, 200, "{page}");
        let keys: Vec<String> = page["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        assert!(keys.len() <= 10, "a page holds at most its limit: {keys:?}");
        pages += 1;
        got.extend(keys);
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(
        (got, pages),
        (want, 3),
        "every key once, in order, in 3 pages"
    );
    for bad in [
        "prefix=page/&limit=0",
        "prefix=page/&limit=10001",
        "prefix=&limit=ten",
    ] {
        let (status, err) = list(bad);
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (400, Some("malformed")),
            "{bad}: {err}"
        );
    }
}
