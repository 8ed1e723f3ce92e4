//! The node API is authenticated: every call but the probes must be signed with the
//! node's key (timestamp + nonce), a snapshot fetch must show a coordinator ticket
//! signed with the source's key. Unsigned, forged, tampered, stale and replayed calls
//! are refused 401, counted by reason, and change nothing on the node (its whole
//! shard list, epochs and every record, tombstones included, compared before and
//! after); a node refuses to serve a public address without a key; copies between
//! nodes (tickets) work and no honest call is ever refused.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use torua_protocol::node_call::{Ticket, TICKET_LIFETIME_MS};
use torua_protocol::{derive_node_key, NodeKey};
use torua_tests::cluster::{Options, TestCluster};
use torua_tests::nodecall::{self, key, now_ms, Signed};
use torua_tests::proc::{free_port, Proc};
use torua_tests::{http, poll_until};

const SOON: Duration = Duration::from_secs(30);

fn options(extra: &[&str]) -> Options {
    Options {
        coordinator_args: ["--shards", "8"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect(),
        ..Default::default()
    }
}

/// Everything node `i` holds: its shard list (ids, epochs, roles, key and byte
/// counts; not the load counters, which reads through the coordinator move) and each
/// shard's snapshot bytes (every record with its version, tombstones included, sorted
/// by key), read with signed calls.
#[derive(Debug, PartialEq)]
struct NodeContents {
    shards: Value,
    snapshots: BTreeMap<u64, Vec<u8>>,
}

fn contents(c: &TestCluster, i: usize) -> NodeContents {
    let r = c.node_call(i, "GET", "/v1/shards", &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let mut shards = r.json();
    for s in shards["shards"].as_array_mut().unwrap() {
        let state: serde_json::Map<String, Value> = ["id", "epoch", "role", "keys", "bytes"]
            .iter()
            .map(|f| {
                let v = s.get(*f).unwrap_or_else(|| panic!("no {f} in {s}"));
                (f.to_string(), v.clone())
            })
            .collect();
        *s = Value::Object(state);
    }
    let mut snapshots = BTreeMap::new();
    for s in shards["shards"].as_array().unwrap() {
        let id = s["id"].as_u64().unwrap();
        let path = format!("/v1/shards/{id}/snapshot");
        let r = c.node_call(i, "GET", &path, &[], b"").unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        snapshots.insert(id, r.body);
    }
    NodeContents { shards, snapshots }
}

fn failures(url: &str, reason: &str) -> f64 {
    let text = http::get(&format!("{url}/metrics")).unwrap().text();
    http::metric(
        &text,
        &format!("torua_kv_auth_failures_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or_else(|| panic!("no auth failure metric for {reason} at {url}"))
}

/// Every refusal but `challenge`: the coordinator's first call to a node it has not
/// heard from (it learns the node's boot id from the answer and signs again at once).
fn refused_honest_calls(url: &str) -> f64 {
    torua_protocol::node_call::Refusal::REASONS
        .iter()
        .filter(|r| **r != "challenge")
        .map(|r| failures(url, r))
        .sum()
}

#[test]
fn unsigned_forged_tampered_stale_and_replayed_node_calls_are_refused_and_change_nothing() {
    let c = TestCluster::start(options(&[]));
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    for i in 0..40 {
        c.put(&format!("auth/{i}"), format!("value {i}").as_bytes())
            .unwrap();
    }
    c.wait_green(SOON);

    // n1's target: a shard it holds with keys in it, its epoch, and one of its keys.
    let (url, n1) = (c.node_urls[0].clone(), c.node_ids[0].clone());
    assert_eq!(n1, "n1");
    let boot = nodecall::boot(&url).unwrap();
    // A signature under `key` of a call as `node`, made now for n1's current start.
    let sign_as = |key: &NodeKey,
                   node: &str,
                   method: &str,
                   path: &str,
                   headers: &[(&str, &str)],
                   body: &[u8]| {
        Signed::now(node, &boot, method, path, headers, body).authorization(key)
    };
    let held = contents(&c, 0);
    let (shard, epoch) = held.shards["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["keys"].as_u64() > Some(0))
        .map(|s| (s["id"].as_u64().unwrap(), s["epoch"].as_u64().unwrap()))
        .expect("n1 holds a shard with keys");
    let listing = c
        .node_call(0, "GET", &format!("/v1/data?shard={shard}"), &[], b"")
        .unwrap()
        .json();
    let victim = listing["keys"][0].as_str().unwrap().to_string();
    let key_path = format!("/v1/data/{}", torua_tests::cluster::encode_key(&victim));
    let (shard_s, epoch_s) = (shard.to_string(), epoch.to_string());
    let forged_data = [
        ("torua-shard", shard_s.as_str()),
        ("torua-epoch", epoch_s.as_str()),
        ("torua-version", "18446744073709551000"),
    ];
    let reset = json!({"epoch": 1u64 << 62, "role": "primary", "reset": true})
        .to_string()
        .into_bytes();
    let honest = json!({"epoch": epoch, "role": "replica", "reset": false})
        .to_string()
        .into_bytes();
    let foreign_pull = json!({"epoch": epoch, "from": "http://127.0.0.1:1"})
        .to_string()
        .into_bytes();
    let shard_path = format!("/v1/shards/{shard}");
    let pull_path = format!("/v1/shards/{shard}/pull");
    let snapshot_path = format!("/v1/shards/{shard}/snapshot");
    let drop_path = format!("/v1/shards/{shard}?epoch={}", 1u64 << 62);
    let guessed = derive_node_key(b"a guessed cluster secret, 32 bytes!", "n1");
    let mut stale = Signed::now("n1", &boot, "PUT", &shard_path, &[], &reset);
    let mut earlier_start = Signed::now("n1", &boot, "PUT", &shard_path, &[], &reset);
    earlier_start.boot = "0123456789abcdef";
    let mut no_boot = Signed::now("n1", &boot, "PUT", &shard_path, &[], &reset);
    no_boot.boot = "0";
    stale.ts_ms -= 5 * 60 * 1000;
    let ticket = |source: &str, signer: &NodeKey, expires_ms: u64| {
        Ticket {
            shard: shard as u32,
            epoch,
            source: source.into(),
            dest: "n2".into(),
            expires_ms,
        }
        .sign(signer)
    };
    let later = now_ms() + TICKET_LIFETIME_MS;

    struct Attack<'a> {
        what: &'a str,
        method: &'a str,
        path: &'a str,
        auth: Option<String>,
        headers: Vec<(&'a str, String)>,
        body: &'a [u8],
        code: &'a str,
        reason: &'a str,
    }
    let attack = |what, method, path, auth: Option<String>, body, code, reason| Attack {
        what,
        method,
        path,
        auth,
        headers: vec![],
        body,
        code,
        reason,
    };
    let data_hdrs = || -> Vec<(&str, String)> {
        forged_data
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect()
    };
    let mut attacks = vec![
        attack(
            "unsigned reset with a huge epoch",
            "PUT",
            &shard_path,
            None,
            &reset[..],
            "unauthorized",
            "missing",
        ),
        attack(
            "reset signed under a guessed secret",
            "PUT",
            &shard_path,
            Some(sign_as(&guessed, "n1", "PUT", &shard_path, &[], &reset)),
            &reset,
            "bad_signature",
            "bad_signature",
        ),
        attack(
            "reset signed with n2's key, claiming n1",
            "PUT",
            &shard_path,
            Some(sign_as(&key("n2"), "n1", "PUT", &shard_path, &[], &reset)),
            &reset,
            "bad_signature",
            "bad_signature",
        ),
        attack(
            "reset signed for n2, sent to n1",
            "PUT",
            &shard_path,
            Some(sign_as(&key("n2"), "n2", "PUT", &shard_path, &[], &reset)),
            &reset,
            "unauthorized",
            "wrong_node",
        ),
        attack(
            "reset signed 5 minutes ago",
            "PUT",
            &shard_path,
            Some(stale.authorization(&key("n1"))),
            &reset,
            "unauthorized",
            "clock_skew",
        ),
        attack(
            "reset signed for an earlier start of n1",
            "PUT",
            &shard_path,
            Some(earlier_start.authorization(&key("n1"))),
            &reset,
            "unauthorized",
            "wrong_boot",
        ),
        attack(
            "reset signed without n1's boot id",
            "PUT",
            &shard_path,
            Some(no_boot.authorization(&key("n1"))),
            &reset,
            "unauthorized",
            "challenge",
        ),
        attack(
            "an honest assignment's signature on a reset body",
            "PUT",
            &shard_path,
            Some(sign_as(&key("n1"), "n1", "PUT", &shard_path, &[], &honest)),
            &reset,
            "bad_signature",
            "bad_signature",
        ),
        attack(
            "unsigned pull from a foreign URL",
            "POST",
            &pull_path,
            None,
            &foreign_pull,
            "unauthorized",
            "missing",
        ),
        attack(
            "pull signed under a guessed secret",
            "POST",
            &pull_path,
            Some(sign_as(
                &guessed,
                "n1",
                "POST",
                &pull_path,
                &[],
                &foreign_pull,
            )),
            &foreign_pull,
            "bad_signature",
            "bad_signature",
        ),
        attack(
            "unsigned shard delete",
            "DELETE",
            &drop_path,
            None,
            b"",
            "unauthorized",
            "missing",
        ),
        attack(
            "garbled Authorization",
            "DELETE",
            &drop_path,
            Some("Torua-Call-HMAC-SHA256 node=n1, sig=00".into()),
            b"",
            "unauthorized",
            "malformed",
        ),
        attack(
            "bearer token",
            "DELETE",
            &drop_path,
            Some("Bearer admin".into()),
            b"",
            "unauthorized",
            "missing",
        ),
        attack(
            "unsigned snapshot",
            "GET",
            &snapshot_path,
            None,
            b"",
            "unauthorized",
            "missing",
        ),
    ];
    for (what, method, body, auth, code, reason) in [
        (
            "unsigned data PUT with forged headers",
            "PUT",
            &b"forged"[..],
            None,
            "unauthorized",
            "missing",
        ),
        (
            "unsigned data DELETE with forged headers",
            "DELETE",
            b"",
            None,
            "unauthorized",
            "missing",
        ),
        (
            "a signed write with its version raised",
            "PUT",
            b"forged",
            Some(sign_as(
                &key("n1"),
                "n1",
                "PUT",
                &key_path,
                &[
                    ("torua-shard", &shard_s),
                    ("torua-epoch", &epoch_s),
                    ("torua-version", "1"),
                ],
                b"forged",
            )),
            "bad_signature",
            "bad_signature",
        ),
    ] {
        let mut a = attack(what, method, &key_path, auth, body, code, reason);
        a.headers = data_hdrs();
        attacks.push(a);
    }
    for (what, t, code, reason) in [
        (
            "snapshot with a forged ticket",
            ticket("n1", &guessed, later),
            "bad_signature",
            "bad_ticket",
        ),
        (
            "snapshot with an expired ticket",
            ticket("n1", &key("n1"), now_ms() - 1_000),
            "unauthorized",
            "expired_ticket",
        ),
        (
            "snapshot with a ticket for another source",
            ticket("n2", &key("n2"), later),
            "unauthorized",
            "wrong_ticket",
        ),
    ] {
        let mut a = attack(what, "GET", &snapshot_path, None, b"", code, reason);
        a.headers = vec![("torua-ticket", t)];
        attacks.push(a);
    }

    let state = c.state().unwrap();
    for a in &attacks {
        let before = failures(&url, a.reason);
        let mut headers: Vec<(&str, &str)> =
            a.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(auth) = &a.auth {
            headers.push(("authorization", auth));
        }
        let r = http::send(a.method, &format!("{url}{}", a.path), &headers, a.body).unwrap();
        assert_eq!(r.status, 401, "{}: {}", a.what, r.text());
        assert_eq!(
            r.json()["error"]["code"],
            a.code,
            "{}: {}",
            a.what,
            r.text()
        );
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some("Torua-Call-HMAC-SHA256"),
            "{}",
            a.what
        );
        assert_eq!(
            failures(&url, a.reason),
            before + 1.0,
            "{} counted as {}",
            a.what,
            a.reason
        );
    }
    assert_eq!(contents(&c, 0), held, "n1's shards, epochs and records");
    assert_eq!(c.state().unwrap(), state, "the coordinator's nodes and map");
    for (k, v) in (0..40).map(|i| (format!("auth/{i}"), format!("value {i}"))) {
        assert_eq!(c.get(&k).unwrap().as_deref(), Some(v.as_bytes()), "{k}");
    }

    // A real replay: a correctly signed reset, captured and sent twice. The first
    // creates shard 4000 (outside the map: the cluster never uses it); a key is then
    // written into it; the second, if taken, would wipe that key.
    let replayed = failures(&url, "replay");
    let reset_4000 = br#"{"epoch":1,"role":"replica","reset":true}"#;
    let captured = sign_as(&key("n1"), "n1", "PUT", "/v1/shards/4000", &[], reset_4000);
    let r =
        nodecall::send_with(&url, &captured, "PUT", "/v1/shards/4000", &[], reset_4000).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let in_4000 = [
        ("torua-shard", "4000"),
        ("torua-epoch", "1"),
        ("torua-version", "7"),
    ];
    let write = sign_as(&key("n1"), "n1", "PUT", "/v1/data/kept", &in_4000, b"kept");
    let r = nodecall::send_with(&url, &write, "PUT", "/v1/data/kept", &in_4000, b"kept").unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let before = contents(&c, 0);
    assert_eq!(
        before.snapshots[&4000].len(),
        17 + 4 + 4,
        "one record in shard 4000"
    );
    for (auth, method, path, headers, body) in [
        (
            &captured,
            "PUT",
            "/v1/shards/4000",
            &[][..],
            &reset_4000[..],
        ),
        (&write, "PUT", "/v1/data/kept", &in_4000[..], b"kept"),
    ] {
        let r = nodecall::send_with(&url, auth, method, path, headers, body).unwrap();
        assert_eq!(r.status, 401, "replay of {method} {path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "replay");
    }
    assert_eq!(failures(&url, "replay"), replayed + 2.0);
    assert_eq!(contents(&c, 0), before, "the replays changed nothing");
    let r = nodecall::send(&url, "n1", "DELETE", "/v1/shards/4000?epoch=1", &[], b"").unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(contents(&c, 0), held);

    // Nothing the coordinator sent was ever refused.
    for url in &c.node_urls[1..] {
        assert_eq!(refused_honest_calls(url), 0.0, "{url}");
    }
}

#[test]
fn copies_between_nodes_carry_tickets_and_no_honest_call_is_refused() {
    let c = TestCluster::start(options(&["--move-delay", "2s", "--rebalance-delay", "1s"]));
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    for i in 0..60 {
        c.put(&format!("copy/{i}"), format!("value {i}").as_bytes())
            .unwrap();
    }
    let r = http::send("POST", &format!("{}/v1/nodes/n1/drain", c.url), &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    c.wait_state("n1", "drained", Duration::from_secs(60));
    c.wait_green(SOON);
    let copied: f64 = c
        .node_urls
        .iter()
        .map(|u| {
            let m = http::get(&format!("{u}/metrics")).unwrap().text();
            http::metric(&m, r#"torua_kv_copies_total{result="ok"}"#).unwrap()
        })
        .sum();
    assert!(copied > 0.0, "the drain copied shards");
    for url in &c.node_urls {
        assert_eq!(
            refused_honest_calls(url),
            0.0,
            "{url}: an honest call was refused"
        );
    }
    for i in 0..60 {
        let want = format!("value {i}");
        assert_eq!(
            c.get(&format!("copy/{i}")).unwrap().as_deref(),
            Some(want.as_bytes())
        );
    }
    // n1 holds nothing now; n2 and n3 hold the same records for every shard.
    assert_eq!(contents(&c, 0).shards["shards"], json!([]));
    let (n2, n3) = (contents(&c, 1), contents(&c, 2));
    assert_eq!(n2.snapshots, n3.snapshots);
}

/// Starts `torua-node` with `args` in `dir`.
fn node(dir: &std::path::Path, name: &str, args: &[String]) -> Proc {
    Proc::start(name, "torua-node", args, dir)
}

#[test]
fn a_node_on_a_public_address_without_a_key_refuses_to_start() {
    let (dir, secret_file) = torua_tests::cluster::dir_with_secret("torua-e2e-nodekey-");
    let port = free_port();
    let args = |extra: &[&str]| -> Vec<String> {
        ["--listen", &format!("0.0.0.0:{port}"), "--node-id", "n9"]
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let mut refused = node(dir.path(), "refused", &args(&[]));
    let status = refused
        .wait_exit(Duration::from_secs(10))
        .expect("exits at once");
    assert_eq!(status.code(), Some(64), "{}", refused.log_text());
    let log = refused.log_text();
    for want in [
        "without a key",
        "--key-file",
        "--cluster-secret-file",
        "--insecure-no-auth",
        "torua keygen --node n9",
    ] {
        assert!(log.contains(want), "{want}: {log}");
    }

    // A key file others may read is refused too, naming the fix.
    let loose = dir.path().join("loose.key");
    std::fs::write(&loose, key("n9").to_hex()).unwrap();
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut loose_node = node(
        dir.path(),
        "loose",
        &args(&["--key-file", loose.to_str().unwrap()]),
    );
    let status = loose_node
        .wait_exit(Duration::from_secs(10))
        .expect("exits at once");
    assert_eq!(status.code(), Some(64));
    assert!(
        loose_node.log_text().contains("chmod 600"),
        "{}",
        loose_node.log_text()
    );

    let local = format!("http://127.0.0.1:{port}");
    let wait_up = |p: &Proc| {
        poll_until(Duration::from_secs(10), "node up", || {
            match http::get(&format!("{local}/livez")) {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("{}", r.status)),
                Err(e) => Err(format!("{e}: {}", p.log_text())),
            }
        })
    };
    // --insecure-no-auth: it serves, unauthenticated.
    let mut open = node(dir.path(), "open", &args(&["--insecure-no-auth"]));
    wait_up(&open);
    assert_eq!(
        http::get(&format!("{local}/v1/shards")).unwrap().status,
        200
    );
    open.kill();

    // With the cluster secret: it serves, and only signed calls.
    let keyed = node(
        dir.path(),
        "keyed",
        &args(&["--cluster-secret-file", secret_file.to_str().unwrap()]),
    );
    wait_up(&keyed);
    assert_eq!(
        http::get(&format!("{local}/v1/shards")).unwrap().status,
        401
    );
    let r = nodecall::send(&local, "n9", "GET", "/v1/shards", &[], b"").unwrap();
    assert_eq!((r.status, r.json()), (200, json!({"shards": []})));
    let m = http::get(&format!("{local}/metrics")).unwrap().text();
    assert_eq!(
        http::metric(&m, r#"torua_kv_auth_failures_total{reason="missing"}"#),
        Some(1.0)
    );
}
