//! Hostile input against the real coordinator, beyond what `heartbeats.rs` covers:
//! bad heartbeat bodies, unknown nodes, truncated bodies, slowloris, idle-connection
//! floods, forged-heartbeat floods, hostile data keys and values, the admin token,
//! secret rotation, and secrets kept out of logs and `/metrics`. Every case is
//! answered with a clear error, counted, and leaves the process healthy and the
//! cluster unchanged. docs/security.md lists them.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use torua_protocol::{authorization_header, derive_node_key, sign};
use torua_tests::cluster::{ClusterState, Options, TestCluster, SECRET};
use torua_tests::http::{self, metric};
use torua_tests::poll_until;
use torua_tests::proc::{bin, free_port, Proc};

const OLD_SECRET: &str = "e2e-previous-secret-abcdef0123456789abcdef01";
const TOKEN: &str = "e2e-admin-token-7f3a9c2e5b1d4806";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn hb(node: &str, incarnation: u64, seq: u64) -> Value {
    json!({ "v": 1, "node_id": node, "incarnation": incarnation, "seq": seq,
        // One address per node: two live nodes may not share one.
        "sent_at_ms": now_ms(), "interval_ms": 1000, "node_addr": format!("http://{node}.invalid:9"),
        "state": "running", "liveness": "pass", "readiness": "pass", "checks": [],
        "metrics": {}, "capacity": {"weight": 1.0} })
}

/// POSTs `body` as a heartbeat from `node`, signed with `node`'s key under `secret`.
fn post_signed(url: &str, secret: &str, node: &str, body: &[u8]) -> (u16, Value) {
    let r = crate::beat::post(url, secret, node, node, body);
    (r.status, r.json())
}

/// A counter sample, 0 when the series does not exist yet.
fn counter(url: &str, series: &str) -> f64 {
    let text = http::get(&format!("{url}/metrics")).unwrap().text();
    metric(&text, series).unwrap_or(0.0)
}

fn hb_counter(url: &str, code: &str) -> f64 {
    counter(
        url,
        &format!("torua_heartbeats_received_total{{result=\"{code}\"}}"),
    )
}

fn http_errors(url: &str, route: &str, code: &str) -> f64 {
    counter(
        url,
        &format!("torua_http_errors_total{{code=\"{code}\",route=\"{route}\"}}"),
    )
}

fn assert_ready(url: &str) {
    let r = http::get(&format!("{url}/readyz")).expect("coordinator answers /readyz");
    assert_eq!(r.status, 200, "{}", r.text());
}

fn write_secret(path: &Path, content: &str, mode: u32) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A coordinator alone, with its own dir and secret, for cases needing special flags.
struct Coord {
    dir: tempfile::TempDir,
    port: u16,
    url: String,
    proc: Proc,
}

impl Coord {
    fn start(extra: &[&str]) -> Coord {
        let dir = tempfile::Builder::new()
            .prefix("torua-hostile-")
            .tempdir()
            .unwrap();
        write_secret(&dir.path().join("secret"), SECRET, 0o600);
        let port = free_port();
        let proc = Coord::spawn(dir.path(), port, extra);
        let c = Coord {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            port,
            proc,
        };
        c.wait_ready();
        c
    }

    fn spawn(dir: &Path, port: u16, extra: &[&str]) -> Proc {
        let mut args = vec![
            "--listen".to_string(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--cluster-secret-file".into(),
            dir.join("secret").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::start_with_env(
            "coordinator",
            "torua-coordinator",
            &args,
            dir,
            &[("RUST_LOG".into(), "debug".into())],
        )
    }

    /// Stops this coordinator and starts it again on the same port, dir and log
    /// with other extra flags.
    fn restart_with(&mut self, extra: &[&str]) {
        self.proc.kill();
        self.proc = Coord::spawn(self.dir.path(), self.port, extra);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        torua_tests::cluster::wait_coordinator_ready(&self.url, &self.proc);
    }

    fn node_ids(&self) -> Vec<Value> {
        let r = http::get(&format!("{}/v1/nodes", self.url)).unwrap().json();
        r["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].clone())
            .collect()
    }
}

/// Secrets and the admin token appear neither in the log nor in `/metrics`.
fn assert_no_secrets(url: &str, log: &str) {
    let metrics = http::get(&format!("{url}/metrics")).unwrap().text();
    for secret in [SECRET, OLD_SECRET, TOKEN] {
        assert!(!log.contains(secret), "a secret is in the log:\n{log}");
        assert!(!metrics.contains(secret), "a secret is in /metrics");
    }
    let key = derive_node_key(SECRET.as_bytes(), "probe").to_hex();
    assert!(
        !log.contains(&key) && !metrics.contains(&key),
        "a node key leaked"
    );
}

/// Reads one HTTP/1.1 response (status line, headers, Content-Length body).
fn read_response(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = 0;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((status, body))
}

#[test]
fn bad_heartbeat_bodies_are_refused_counted_and_change_nothing() {
    let c = Coord::start(&[]);
    let inc = now_ms();
    let (status, ack) = post_signed(
        &c.url,
        SECRET,
        "probe",
        &serde_json::to_vec(&hb("probe", inc, 1)).unwrap(),
    );
    assert_eq!(status, 200, "{ack}");
    let before = http::get(&format!("{}/v1/nodes/probe", c.url))
        .unwrap()
        .json();

    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut v = hb("probe", inc, 2);
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let checks: Vec<Value> = (0..65)
        .map(|i| json!({"name": format!("c{i}"), "kind": "tcp", "status": "pass", "duration_ms": 1.0, "message": ""}))
        .collect();
    let metrics: serde_json::Map<String, Value> =
        (0..129).map(|i| (format!("m{i}"), json!(1.0))).collect();
    let good = String::from_utf8(mutate(&|_| {})).unwrap();
    let mut invalid_utf8 = good.replace(".invalid:9", ".invalid:9XX").into_bytes();
    let at = invalid_utf8.windows(2).position(|w| w == b"XX").unwrap();
    invalid_utf8[at..at + 2].copy_from_slice(&[0xC3, 0x28]);

    // (case, body, status, code): each row must also bump both counters.
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "missing field",
            mutate(&|v| {
                v.as_object_mut().unwrap().remove("seq");
            }),
            400,
            "malformed",
        ),
        (
            "unknown field",
            mutate(&|v| v["admin"] = json!(true)),
            400,
            "malformed",
        ),
        (
            "wrong type (nested)",
            mutate(&|v| v["capacity"]["weight"] = json!("heavy")),
            400,
            "malformed",
        ),
        ("not an object", b"[1,2,3]".to_vec(), 400, "malformed"),
        ("empty body", Vec::new(), 400, "malformed"),
        ("invalid UTF-8", invalid_utf8, 400, "malformed"),
        (
            "NaN literal",
            good.replace("\"weight\":1.0", "\"weight\":NaN")
                .into_bytes(),
            400,
            "malformed",
        ),
        (
            "number overflowing to infinity",
            good.replace("\"weight\":1.0", "\"weight\":1e999")
                .into_bytes(),
            400,
            "malformed",
        ),
        (
            "negative weight",
            mutate(&|v| v["capacity"]["weight"] = json!(-1.0)),
            422,
            "invalid",
        ),
        (
            "too many checks",
            mutate(&|v| v["checks"] = json!(checks)),
            422,
            "invalid",
        ),
        (
            "too many metrics",
            mutate(&|v| v["metrics"] = json!(metrics)),
            422,
            "invalid",
        ),
        (
            "node id with a slash",
            mutate(&|v| v["node_id"] = json!("../probe")),
            422,
            "invalid",
        ),
    ];
    for (name, body, want_status, code) in &cases {
        let (hb_before, http_before) = (
            hb_counter(&c.url, code),
            http_errors(&c.url, "heartbeat", code),
        );
        let (status, err) = post_signed(&c.url, SECRET, "probe", body);
        assert_eq!(status, *want_status, "{name}: {err}");
        assert_eq!(err["error"]["code"], *code, "{name}: {err}");
        let message = err["error"]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "{name}: {err}");
        assert_eq!(
            hb_counter(&c.url, code),
            hb_before + 1.0,
            "{name}: heartbeat counter"
        );
        assert_eq!(
            http_errors(&c.url, "heartbeat", code),
            http_before + 1.0,
            "{name}: http counter"
        );
    }
    // The field path is named for shape errors.
    let (_, err) = post_signed(&c.url, SECRET, "probe", &cases[2].1);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("capacity.weight"),
        "{err}"
    );

    assert_ready(&c.url);
    let after = http::get(&format!("{}/v1/nodes/probe", c.url))
        .unwrap()
        .json();
    assert_eq!(after["incarnation"], before["incarnation"]);
    assert_eq!(c.node_ids(), vec![json!("probe")]);
    let (status, ack) = post_signed(
        &c.url,
        SECRET,
        "probe",
        &serde_json::to_vec(&hb("probe", inc, 3)).unwrap(),
    );
    assert_eq!(status, 200, "the next genuine heartbeat is accepted: {ack}");
    assert_no_secrets(&c.url, &c.proc.log_text());
}

#[test]
fn unknown_node_is_refused_without_auto_join() {
    let c = Coord::start(&["--auto-join", "false"]);
    let before = hb_counter(&c.url, "unknown_node");
    let (status, err) = post_signed(
        &c.url,
        SECRET,
        "stranger",
        &serde_json::to_vec(&hb("stranger", now_ms(), 1)).unwrap(),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("unknown_node")),
        "{err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("auto_join"),
        "{err}"
    );
    assert_eq!(hb_counter(&c.url, "unknown_node"), before + 1.0);
    assert!(c.node_ids().is_empty());
    assert_ready(&c.url);
}

#[test]
fn truncated_body_is_refused_without_hanging() {
    let c = Coord::start(&[]);
    let before = hb_counter(&c.url, "malformed");
    let body = serde_json::to_vec(&hb("probe", now_ms(), 1)).unwrap();
    let auth = authorization_header(
        "probe",
        &sign(&derive_node_key(SECRET.as_bytes(), "probe"), &body),
    );
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "POST /v1/heartbeat HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-length: {}\r\n\r\n",
        body.len() + 500
    )
    .unwrap();
    s.write_all(&body).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let started = Instant::now();
    let mut reader = BufReader::new(s);
    // Either a 400 malformed answer or a close; never a hang, never a crash.
    match read_response(&mut reader) {
        Ok((status, body)) => {
            let err: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert_eq!(
                (status, err["error"]["code"].as_str()),
                (400, Some("malformed")),
                "{err}"
            );
            assert_eq!(hb_counter(&c.url, "malformed"), before + 1.0);
        }
        Err(e) => assert!(
            e.kind() != std::io::ErrorKind::WouldBlock,
            "coordinator hung: {e}"
        ),
    }
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "took {:?}",
        started.elapsed()
    );
    assert_ready(&c.url);
    assert!(
        c.node_ids().is_empty(),
        "a truncated heartbeat registered a node"
    );
}

#[test]
fn slowloris_headers_are_cut_by_the_header_timeout() {
    let c = Coord::start(&[]);
    let mut s = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    s.write_all(b"POST /v1/heartbeat HTTP/1.1\r\nx-slow: ")
        .unwrap();
    let started = Instant::now();
    // The reader ends when the server hangs up (EOF or reset, perhaps after a 408).
    let mut r = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
        started.elapsed()
    });
    let mut i = 0;
    while !reader.is_finished() && started.elapsed() < Duration::from_secs(20) {
        let _ = s.write_all(b"x"); // one header byte every 250 ms
        std::thread::sleep(Duration::from_millis(250));
        i += 1;
        if i % 8 == 0 {
            assert_ready(&c.url); // everyone else is served meanwhile
        }
    }
    let closed_after = reader.is_finished().then(|| reader.join().unwrap());
    let after = closed_after.expect("the server never closed a dribbling connection");
    assert!(
        after >= Duration::from_secs(8) && after <= Duration::from_secs(15),
        "closed after {after:?}, header timeout is 10 s"
    );
    poll_until(Duration::from_secs(5), "header_timeout counted", || {
        let n = counter(
            &c.url,
            "torua_http_connections_closed_total{reason=\"header_timeout\"}",
        );
        if n >= 1.0 {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    assert_ready(&c.url);
}

#[test]
fn idle_connections_cannot_starve_real_agents() {
    let c = TestCluster::start(Options {
        nodes: 1,
        interval: "500ms",
        coordinator_args: ["--max-connections", "64"].map(String::from).to_vec(),
        ..Default::default()
    });
    c.wait_all("healthy", Duration::from_secs(20));
    let port: u16 = c.url.rsplit(':').next().unwrap().parse().unwrap();
    // 500 connections that never send a byte: far over the limit.
    let idle: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();

    // A fresh client still gets its heartbeat through promptly.
    let started = Instant::now();
    let body = serde_json::to_vec(&hb("fresh", now_ms(), 1)).unwrap();
    let (status, ack) = post_signed(&c.url, SECRET, "fresh", &body);
    assert_eq!(status, 200, "{ack}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_ready(&c.url);
    // The real agent never misses enough heartbeats to look unhealthy.
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        let n = c.node("n1").unwrap();
        assert_eq!(n["state"], "healthy", "{n}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let evicted = counter(
        &c.url,
        "torua_http_connections_closed_total{reason=\"evicted\"}",
    );
    assert!(evicted >= 64.0, "idle connections were evicted: {evicted}");
    drop(idle);
    let open = poll_until(Duration::from_secs(10), "idle connections gone", || {
        let n = counter(&c.url, "torua_http_connections_open");
        if n <= 64.0 {
            Ok(n)
        } else {
            Err(n.to_string())
        }
    });
    assert!(open >= 1.0);
}

#[test]
fn forged_heartbeat_flood_costs_no_memory() {
    let c = Coord::start(&[]);
    let pid = c.proc.pid().as_raw();
    let flood = |count: usize, tag: &str| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (port, tag) = (c.port, tag.to_string());
                std::thread::spawn(move || {
                    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut w = s.try_clone().unwrap();
                    let mut r = BufReader::new(s);
                    let wrong = derive_node_key(b"not-the-cluster-secret-0123456789abcdef", "x");
                    for i in 0..count / 4 {
                        let node = format!("{tag}-{t}-{i}-{:x}", now_ms());
                        let body = serde_json::to_vec(&hb(&node, now_ms(), 1)).unwrap();
                        let auth = authorization_header(&node, &sign(&wrong, &body));
                        write!(
                            w,
                            "POST /v1/heartbeat HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        )
                        .unwrap();
                        w.write_all(&body).unwrap();
                        let (status, _) = read_response(&mut r).unwrap();
                        assert_eq!(status, 401);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    flood(2_000, "warm"); // let allocator pools and lazy statics settle
    let rss_before = rss_kib(pid);
    let bad_before = hb_counter(&c.url, "bad_signature");
    flood(20_000, "flood");
    let rss_after = rss_kib(pid);
    assert_eq!(hb_counter(&c.url, "bad_signature"), bad_before + 20_000.0);
    assert!(
        rss_after < rss_before + 4 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB under 20k forged heartbeats"
    );
    assert!(c.node_ids().is_empty(), "forged ids created nodes");
    assert_ready(&c.url);
}

/// Data keys, values and admin authorisation on a cluster with an admin token.
#[test]
fn data_keys_values_and_the_admin_token() {
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("admin-token");
    write_secret(&token_file, &format!("{TOKEN}\n"), 0o600);
    let c = TestCluster::start_with_env(
        Options {
            nodes: 2,
            coordinator_args: vec![
                "--admin-token-file".into(),
                token_file.display().to_string(),
                "--shards".into(),
                "8".into(),
            ],
            // On disk, so a key used as a path would make a file somewhere.
            node_data_dirs: true,
            ..Default::default()
        },
        Arc::new(|name| {
            if name == "coordinator" {
                vec![("RUST_LOG".into(), "debug".into())]
            } else {
                Vec::new()
            }
        }),
    );
    c.wait_all("healthy", Duration::from_secs(20));
    c.wait_green(Duration::from_secs(30));

    // Control characters in keys: 400 malformed, counted, nothing stored.
    for raw in ["a%00b", "line%0Abreak", "tab%09", "esc%1B[31m", "del%7F"] {
        let before = http_errors(&c.url, "data", "malformed");
        let r = http::send("PUT", &format!("{}/v1/data/{raw}", c.url), &[], b"v").unwrap();
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (400, Some("malformed")),
            "{raw}: {}",
            r.text()
        );
        assert_eq!(
            http_errors(&c.url, "data", "malformed"),
            before + 1.0,
            "{raw}"
        );
        let r = http::get(&format!("{}/v1/data/{raw}", c.url)).unwrap();
        assert_eq!(r.status, 400, "{raw}");
    }
    let r = http::send("PUT", &format!("{}/v1/data/%FF%FE", c.url), &[], b"v").unwrap();
    assert_eq!(r.status, 400, "invalid UTF-8 key: {}", r.text());

    // Path-traversal-looking keys are opaque keys: stored and read back as such, and
    // no file is made for them. Each node's data dir is <dir>/nodes/<id>/data, so a
    // node that joined a key to it would write `../escaped` to <dir>/nodes/<id>,
    // `../../../escaped` to <dir> itself, `./x` and `a/../b` into the data dir, and
    // (if it made the directories) `../../etc/passwd` under <dir>/nodes: every one of
    // them inside <dir>, where no file may appear but the node's own layout
    // (`assignments.json`, `shard-<n>.log`). Checked once by making the node also
    // write each value to `data_dir.join(key)`, ignoring errors: the check then
    // listed <dir>/escaped, nodes/<id>/escaped, and data/x and `data/..\..\win` in
    // each data dir. (A path resolved against the working directory is not covered:
    // the processes run in the test's.)
    let files_before = files_under(c.dir.path());
    let mut written: Vec<(String, Vec<u8>)> = Vec::new();
    for key in [
        "../../etc/passwd",
        "..",
        "a/../b",
        "./x",
        "..\\..\\win",
        "%2e%2e/literal",
        "../escaped",
        "../../../escaped",
    ] {
        let value = format!("value of {key}");
        c.put(key, value.as_bytes()).unwrap();
        assert_eq!(
            c.get(key).unwrap().as_deref(),
            Some(value.as_bytes()),
            "{key}"
        );
        written.push((key.into(), value.into_bytes()));
    }
    let r = http::get(&format!("{}/v1/data?prefix=..", c.url))
        .unwrap()
        .json();
    let keys: Vec<&str> = r["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "..",
            "../../../escaped",
            "../../etc/passwd",
            "../escaped",
            "..\\..\\win"
        ],
        "{r}"
    );
    // Percent-encoded dots decode to the same key.
    let r = http::get(&format!("{}/v1/data/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", c.url)).unwrap();
    assert_eq!(r.body, b"value of ../../etc/passwd");
    let data_dirs: Vec<PathBuf> = ["n1", "n2"]
        .iter()
        .map(|id| c.node_data_dir(id).unwrap())
        .collect();
    let new_files: Vec<PathBuf> = files_under(c.dir.path())
        .difference(&files_before)
        .filter(|f| !is_node_data_file(f, &data_dirs))
        .cloned()
        .collect();
    assert!(
        new_files.is_empty(),
        "keys touched the filesystem: {new_files:?}"
    );
    // The check looks where the data is: the nodes did write their logs there.
    for dir in &data_dirs {
        assert!(
            files_under(dir)
                .iter()
                .any(|f| is_node_data_file(f, &data_dirs)
                    && std::fs::metadata(f).is_ok_and(|m| m.len() > 0)),
            "no shard log in {}",
            dir.display()
        );
    }

    // A value over 16 MiB: 413, counted, not stored.
    let before = http_errors(&c.url, "data", "too_large");
    let r = http::send(
        "PUT",
        &c.key_url("big"),
        &[],
        &vec![b'x'; 16 * 1024 * 1024 + 1],
    )
    .unwrap();
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{}",
        r.text()
    );
    assert_eq!(http_errors(&c.url, "data", "too_large"), before + 1.0);
    assert_eq!(c.get("big").unwrap(), None);
    let at_limit = vec![b'y'; 16 * 1024 * 1024];
    c.put("at-limit", &at_limit).unwrap();
    written.push(("at-limit".into(), at_limit));

    // Mutating admin routes: 401 without or with a wrong token, 200 with the right one.
    let routes: [(&str, String, &[u8]); 5] = [
        ("POST", "/v1/nodes/n1/drain".into(), b""),
        ("POST", "/v1/nodes/n1/undrain".into(), b""),
        ("PUT", "/v1/shards/0".into(), br#"{"primary":null}"#),
        ("POST", "/v1/rebalance".into(), b""),
        ("DELETE", "/v1/nodes/n2?force=true".into(), b""),
    ];
    let wrong = format!("Bearer {}", TOKEN.replace('7', "8"));
    let right = format!("Bearer {TOKEN}");
    // Every refused call first, on a settled cluster, so nothing else moves meanwhile.
    c.wait_all("healthy", Duration::from_secs(20));
    c.wait_green(Duration::from_secs(30));
    let state_before = c.state().unwrap();
    for (method, path, body) in &routes {
        let url = format!("{}{path}", c.url);
        for headers in [
            vec![],
            vec![("authorization", wrong.as_str())],
            vec![("authorization", TOKEN)],
        ] {
            let before = http_errors(&c.url, "admin", "unauthorized");
            let r = http::send(method, &url, &headers, body).unwrap();
            assert_eq!(
                (r.status, r.json()["error"]["code"].as_str()),
                (401, Some("unauthorized")),
                "{method} {path} {headers:?}: {}",
                r.text()
            );
            assert_eq!(http_errors(&c.url, "admin", "unauthorized"), before + 1.0);
        }
        assert_eq!(
            c.state().unwrap(),
            state_before,
            "a refused {method} {path} changed the nodes or the shard map"
        );
    }
    for (key, value) in &written {
        let got = c.get(key).unwrap();
        assert!(
            got.as_deref() == Some(value.as_slice()),
            "{key} changed after the refused admin calls: {:?} bytes",
            got.map(|v| v.len())
        );
    }
    for (method, path, body) in &routes {
        let url = format!("{}{path}", c.url);
        let r = http::send(method, &url, &[("authorization", right.as_str())], body).unwrap();
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
    }
    // Read-only routes stay open.
    for path in [
        "/v1/nodes",
        "/v1/nodes/n1",
        "/v1/shards",
        "/v1/shards/0",
        "/v1/cluster",
        "/v1/moves",
        "/metrics",
    ] {
        assert_eq!(
            http::get(&format!("{}{path}", c.url)).unwrap().status,
            200,
            "{path}"
        );
    }
    assert_ready(&c.url);
    assert_no_secrets(&c.url, &c.coord.log_text());
}

/// Every file under `dir`, at any depth.
fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files.extend(files_under(&p));
        } else {
            files.insert(p);
        }
    }
    files
}

/// A file of a node's `--data-dir` layout (docs/node.md), directly in one of `dirs`.
fn is_node_data_file(f: &Path, dirs: &[PathBuf]) -> bool {
    let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let shard_log = name
        .strip_prefix("shard-")
        .and_then(|n| n.strip_suffix(".log"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    f.parent().is_some_and(|p| dirs.iter().any(|d| d == p))
        && (shard_log || name == "assignments.json" || name == "assignments.json.tmp")
}

#[test]
fn a_world_readable_admin_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_secret(&dir.path().join("secret"), SECRET, 0o600);
    write_secret(&dir.path().join("token"), TOKEN, 0o644);
    let out = assert_cmd::Command::new(bin("torua-coordinator"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("d"))
        .arg("--cluster-secret-file")
        .arg(dir.path().join("secret"))
        .arg("--admin-token-file")
        .arg(dir.path().join("token"))
        .timeout(Duration::from_secs(10))
        .assert()
        .failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("chmod 600") && err.contains("token"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
}

#[test]
fn secret_rotation_accepts_current_and_previous_until_removed() {
    let mut c = Coord::start(&[]);
    let old = c.dir.path().join("old-secret");
    write_secret(&old, OLD_SECRET, 0o600);
    let old_arg = old.display().to_string();
    c.restart_with(&["--previous-secret-file", &old_arg]);

    let inc = now_ms();
    let send = |secret: &str, node: &str, seq: u64| {
        post_signed(
            &c.url,
            secret,
            node,
            &serde_json::to_vec(&hb(node, inc, seq)).unwrap(),
        )
    };
    assert_eq!(send(SECRET, "new-keyed", 1).0, 200);
    assert_eq!(send(OLD_SECRET, "old-keyed", 1).0, 200);
    // The same node may use either key during the rotation.
    assert_eq!(send(SECRET, "old-keyed", 2).0, 200);
    assert_eq!(send(OLD_SECRET, "new-keyed", 2).0, 200);
    let (status, err) = send("some-third-secret-that-nobody-holds-0123", "new-keyed", 3);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("bad_signature"))
    );

    // Rotation done: only the new secret.
    c.restart_with(&[]);
    let inc = now_ms();
    let send = |secret: &str, node: &str, seq: u64| {
        post_signed(
            &c.url,
            secret,
            node,
            &serde_json::to_vec(&hb(node, inc, seq)).unwrap(),
        )
    };
    let before = hb_counter(&c.url, "bad_signature");
    let (status, err) = send(OLD_SECRET, "old-keyed", 1);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("bad_signature")),
        "{err}"
    );
    assert_eq!(hb_counter(&c.url, "bad_signature"), before + 1.0);
    assert_eq!(send(SECRET, "old-keyed", 2).0, 200);
    assert_ready(&c.url);
    assert_no_secrets(&c.url, &c.proc.log_text());
}

/// A recorded heartbeat replayed after a coordinator restart: the restarted process
/// has lost the node's last `seq`, so only "nothing signed before this coordinator
/// started" (SPEC §2, protocol/src/replay.rs) stands between the replay and its
/// acceptance. The identical bytes and header are sent before and after a SIGKILL and
/// restart on the same data dir.
#[test]
fn a_heartbeat_captured_before_a_coordinator_restart_is_refused_after_it() {
    let mut c = Coord::start(&[]);
    let inc = now_ms();
    let signed = |body: &[u8]| {
        authorization_header(
            "probe",
            &sign(&derive_node_key(SECRET.as_bytes(), "probe"), body),
        )
    };
    // First contact is challenged; the answer names the nonce to echo.
    let first = serde_json::to_vec(&hb("probe", inc, 1)).unwrap();
    let r = http::send(
        "POST",
        &format!("{}/v1/heartbeat", c.url),
        &[
            ("authorization", &signed(&first)),
            ("content-type", "application/json"),
        ],
        &first,
    )
    .unwrap();
    assert_eq!(r.status, 409, "{}", r.text());
    let nonce = r
        .header(torua_protocol::heartbeat::COORDINATOR_NONCE_HEADER)
        .expect("a challenge carries the nonce");
    assert_eq!(hb_counter(&c.url, "challenge"), 1.0);
    let mut captured = hb("probe", inc, 1);
    captured["coordinator_nonce"] = json!(nonce);
    let body = serde_json::to_vec(&captured).unwrap();
    let auth = signed(&body);
    let replay = |url: &str| {
        let r = http::send(
            "POST",
            &format!("{url}/v1/heartbeat"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            &body,
        )
        .unwrap();
        (r.status, r.json())
    };
    let (status, ack) = replay(&c.url);
    assert_eq!(status, 200, "{ack}");
    // An auto-join is committed in the background; a drain is answered once durable,
    // so the record is on disk before the kill.
    let r = http::send("POST", &format!("{}/v1/nodes/probe/drain", c.url), &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    c.restart_with(&[]); // SIGKILL, then the same flags, port and data dir
    let restarted = ClusterState::read(&c.url).unwrap();
    let nodes = &restarted.nodes;
    assert_eq!(nodes.len(), 1, "{restarted:?}");
    assert_eq!(
        (
            &nodes[0]["id"],
            &nodes[0]["state"],
            &nodes[0]["admin_drain"]
        ),
        (&json!("probe"), &json!("unknown"), &json!(true)),
        "the record came back from disk, not yet heard from: {restarted:?}"
    );
    assert_eq!(nodes[0]["incarnation"], inc, "{restarted:?}");

    let (challenged, ok) = (hb_counter(&c.url, "challenge"), hb_counter(&c.url, "ok"));
    let (status, err) = replay(&c.url);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("stale")),
        "{err}"
    );
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("since it started"),
        "refused by the restarted process's nonce, not by a clock: {err}"
    );
    assert_eq!(hb_counter(&c.url, "challenge"), challenged + 1.0);
    assert_eq!(hb_counter(&c.url, "ok"), ok);
    assert_eq!(ClusterState::read(&c.url).unwrap(), restarted);

    // Not vacuous: the same incarnation and seq, echoing the new nonce, is
    // accepted, since the restarted coordinator does not remember seq 1.
    let (status, ack) = post_signed(
        &c.url,
        SECRET,
        "probe",
        &serde_json::to_vec(&hb("probe", inc, 1)).unwrap(),
    );
    assert_eq!(status, 200, "{ack}");
    assert_eq!(hb_counter(&c.url, "ok"), ok + 1.0);
    assert_ready(&c.url);
}
