//! The coordinator's bearer tokens (issue 13): an admin scope for mutating admin
//! routes and a client scope for the data path, both read from 0600 files.
//!
//! - data calls without the client token, with a wrong one or without `Bearer ` are
//!   401 `unauthorized` (counted as `route="data"`), and no key, node or shard
//!   changes; the admin token opens the data path too;
//! - admin calls without a token, with the client token or a wrong one are 401
//!   (`route="admin"`), nothing changes; status reads, `/metrics`, probes and `/ui`
//!   stay open; neither token reaches the log or `/metrics`;
//! - the CLI sends the right token per command, from a flag's file or the env;
//! - off loopback a coordinator without both tokens exits 64 saying how to make
//!   them (at the config line that set `listen`); `--insecure-no-auth` lets it start;
//! - `torua dev` makes both tokens and the CLI finds them with no flag;
//! - a forced removal of the node holding shards' last in-sync copies is refused 409
//!   naming them, nothing changes, and `allow_data_loss` lets it through;
//! - HA: a follower refuses an admin call without the token itself (the leader never
//!   sees it) and forwards it with the token.

use assert_cmd::Command;
use nix::sys::signal::Signal;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use torua_tests::cluster::{encode_key, ClusterState, Options, TestCluster, SECRET};
use torua_tests::http::{self, metric, Reply};
use torua_tests::proc::{bin, free_port, free_port_block, Proc};
use torua_tests::{etcd, poll_until};

const ADMIN: &str = "e2e-admin-token-3b9f0c1d2e4a5968";
const CLIENT: &str = "e2e-client-token-7a6c5e4d3b2a1908";
const SOON: Duration = Duration::from_secs(30);

fn write_secret(path: &Path, content: &str, mode: u32) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `admin.token` and `client.token` (mode 0600) in `dir`.
fn token_files(dir: &Path) -> (PathBuf, PathBuf) {
    let (admin, client) = (dir.join("admin.token"), dir.join("client.token"));
    write_secret(&admin, &format!("{ADMIN}\n"), 0o600);
    write_secret(&client, &format!("{CLIENT}\n"), 0o600);
    (admin, client)
}

fn token_args(admin: &Path, client: &Path) -> Vec<String> {
    vec![
        "--admin-token-file".into(),
        admin.display().to_string(),
        "--client-token-file".into(),
        client.display().to_string(),
    ]
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn key_url(base: &str, key: &str) -> String {
    format!("{base}/v1/data/{}", encode_key(key))
}

fn send(method: &str, url: &str, auth: Option<&str>, body: &[u8]) -> Reply {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    http::send(method, url, &headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Writes `key` with the client token; panics unless 204.
fn put(base: &str, key: &str, value: &[u8]) {
    let r = send("PUT", &key_url(base, key), Some(&bearer(CLIENT)), value);
    assert_eq!(r.status, 204, "PUT {key}: {}", r.text());
}

/// Reads `key` with the client token: Some(value), or None for 404.
fn value(base: &str, key: &str) -> Option<Vec<u8>> {
    let r = send("GET", &key_url(base, key), Some(&bearer(CLIENT)), b"");
    match r.status {
        200 => Some(r.body),
        404 => None,
        s => panic!("GET {key}: {s} {}", r.text()),
    }
}

/// A counter of `/metrics` at `base`, 0 while the series does not exist.
fn counter(base: &str, series: &str) -> f64 {
    let text = http::get(&format!("{base}/metrics")).unwrap().text();
    metric(&text, series).unwrap_or(0.0)
}

fn http_errors(base: &str, route: &str, code: &str) -> f64 {
    counter(
        base,
        &format!("torua_http_errors_total{{code=\"{code}\",route=\"{route}\"}}"),
    )
}

/// Asserts a refusal: 401 `unauthorized` in the usual shape, with the challenge
/// naming the scope.
fn assert_unauthorized(r: &Reply, scope: &str, what: &str) {
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{what}: {}",
        r.text()
    );
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(&format!("scope=\"{scope}\"")),
        "{what}: WWW-Authenticate {challenge:?}"
    );
}

/// The `torua` CLI with no token in its environment and no `torua dev` pointer to
/// find (an empty runtime dir).
fn torua(runtime_dir: &Path) -> Command {
    let mut cmd = Command::new(bin("torua"));
    cmd.env_remove("TORUA_ADMIN_TOKEN")
        .env_remove("TORUA_CLIENT_TOKEN")
        .env_remove("TORUA_COORDINATOR")
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .timeout(Duration::from_secs(30));
    cmd
}

fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

fn stdout_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

/// A two-node cluster (8 shards, two copies each) whose coordinator demands both
/// tokens, logging at debug (to show no token reaches the log); green and settled.
fn token_cluster(dir: &Path) -> (TestCluster, PathBuf, PathBuf) {
    let (admin, client) = token_files(dir);
    let mut args = token_args(&admin, &client);
    args.extend(["--shards".into(), "8".into()]);
    let c = TestCluster::start_with_env(
        Options {
            nodes: 2,
            coordinator_args: args,
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
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    (c, admin, client)
}

#[test]
fn data_and_admin_calls_without_their_token_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, _, _) = token_cluster(tmp.path());
    let url = c.url.clone();
    let keys: Vec<String> = (0..8).map(|i| format!("k/{i}")).collect();
    for k in &keys {
        put(&url, k, format!("value of {k}").as_bytes());
    }
    let unchanged = |why: &str, before: &ClusterState| {
        for k in &keys {
            assert_eq!(
                value(&url, k).as_deref(),
                Some(format!("value of {k}").as_bytes()),
                "{k} changed after {why}"
            );
        }
        assert_eq!(
            &c.state().unwrap(),
            before,
            "{why} changed the nodes or the shard map"
        );
    };
    let before = c.state().unwrap();

    // The data path: no token, a wrong one, the token without `Bearer `, a
    // prefix of it, another scheme.
    let wrong = [
        None,
        Some(bearer("not-the-token")),
        Some(CLIENT.to_string()),
        Some(bearer(&CLIENT[..CLIENT.len() - 1])),
        Some(format!("Basic {CLIENT}")),
    ];
    let data_calls: [(&str, String, &[u8]); 7] = [
        ("PUT", key_url(&url, "k/0"), b"overwritten"),
        ("PUT", format!("{url}/data/k/1"), b"overwritten"),
        ("PUT", key_url(&url, "new-key"), b"created"),
        ("DELETE", key_url(&url, "k/2"), b""),
        ("DELETE", format!("{url}/data/k/3"), b""),
        ("GET", key_url(&url, "k/4"), b""),
        ("GET", format!("{url}/v1/data?prefix=k"), b""),
    ];
    for (method, call_url, body) in &data_calls {
        for auth in &wrong {
            let count = http_errors(&url, "data", "unauthorized");
            let r = send(method, call_url, auth.as_deref(), body);
            assert_unauthorized(&r, "client", &format!("{method} {call_url} {auth:?}"));
            assert!(
                !r.text().contains("value of"),
                "a refused read showed data: {}",
                r.text()
            );
            assert_eq!(
                http_errors(&url, "data", "unauthorized"),
                count + 1.0,
                "{method} {call_url} {auth:?} not counted"
            );
        }
    }
    assert_eq!(value(&url, "new-key"), None, "a refused PUT created a key");
    unchanged("refused data calls", &before);

    // Admin calls: no token, the client token, a wrong one.
    let admin_calls: [(&str, &str, &[u8]); 7] = [
        ("POST", "/v1/nodes/n1/drain", b""),
        ("POST", "/v1/nodes/n2/undrain", b""),
        (
            "DELETE",
            "/v1/nodes/n2?force=true&allow_data_loss=true",
            b"",
        ),
        (
            "PUT",
            "/v1/shards/0",
            br#"{"primary":"n2","replicas":["n1"]}"#,
        ),
        ("POST", "/v1/rebalance?unfreeze=true", b""),
        (
            "POST",
            "/v1/internal/shards/0/evict",
            br#"{"epoch":1,"nodes":["n1","n2"]}"#,
        ),
        ("PUT", "/v1/shards/1", br#"{"primary":null}"#),
    ];
    for (method, path, body) in &admin_calls {
        for auth in [None, Some(bearer(CLIENT)), Some(bearer("x"))] {
            let count = http_errors(&url, "admin", "unauthorized");
            let r = send(method, &format!("{url}{path}"), auth.as_deref(), body);
            assert_unauthorized(&r, "admin", &format!("{method} {path} {auth:?}"));
            assert_eq!(
                http_errors(&url, "admin", "unauthorized"),
                count + 1.0,
                "{method} {path} {auth:?} not counted"
            );
        }
    }
    unchanged("refused admin calls", &before);

    // Open to anyone: status reads, metrics, probes, the page.
    for path in [
        "/v1/nodes",
        "/v1/nodes/n1",
        "/nodes",
        "/v1/shards",
        "/v1/shards/0",
        "/shards",
        "/v1/cluster",
        "/v1/moves",
        "/v1/leader",
        "/metrics",
        "/livez",
        "/readyz",
        "/health",
        "/ui",
        "/ui/app.js",
    ] {
        let r = http::get(&format!("{url}{path}")).unwrap();
        assert_eq!(r.status, 200, "GET {path} without a token: {}", r.text());
    }

    // The right tokens: the client's on the data path, the admin's on both.
    let r = send(
        "PUT",
        &key_url(&url, "k/0"),
        Some(&bearer(ADMIN)),
        b"by admin",
    );
    assert_eq!(
        r.status,
        204,
        "the admin token on the data path: {}",
        r.text()
    );
    let r = send("GET", &key_url(&url, "k/0"), Some(&bearer(ADMIN)), b"");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"by admin"[..]));
    let r = send("DELETE", &key_url(&url, "k/7"), Some(&bearer(CLIENT)), b"");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(value(&url, "k/7"), None);
    let r = send(
        "GET",
        &format!("{url}/v1/data?prefix=k/"),
        Some(&bearer(CLIENT)),
        b"",
    );
    assert_eq!(
        r.json()["keys"].as_array().map(Vec::len),
        Some(7),
        "{}",
        r.text()
    );
    for (method, path) in [
        ("POST", "/v1/nodes/n1/drain"),
        ("POST", "/v1/nodes/n1/undrain"),
        ("POST", "/v1/rebalance"),
    ] {
        let r = send(method, &format!("{url}{path}"), Some(&bearer(ADMIN)), b"");
        assert_eq!(
            r.status,
            200,
            "{method} {path} with the admin token: {}",
            r.text()
        );
    }

    // Neither token is ever written out.
    let log = c.coord.log_text();
    let metrics = c.metrics();
    assert!(
        log.contains("DEBUG"),
        "the coordinator did not log at debug"
    );
    for token in [ADMIN, CLIENT] {
        assert!(!log.contains(token), "a token in the coordinator's log");
        assert!(!metrics.contains(token), "a token in /metrics");
    }
}

#[test]
fn the_cli_sends_each_command_its_token_from_a_flag_or_the_env() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, admin, client) = token_cluster(tmp.path());
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let at = ["--coordinator", c.url.as_str()];

    // No token anywhere: refused, and the error says which token is missing.
    let out = torua(&run)
        .args(["put", "cli/k", "v"])
        .args(at)
        .assert()
        .failure();
    let err = stderr_of(&out);
    assert!(err.contains("401") && err.contains("client token"), "{err}");
    assert_eq!(value(&c.url, "cli/k"), None);

    // The client token from the env, then from a file.
    torua(&run)
        .args(["put", "cli/k", "from env"])
        .args(at)
        .env("TORUA_CLIENT_TOKEN", CLIENT)
        .assert()
        .success();
    assert_eq!(value(&c.url, "cli/k").as_deref(), Some(&b"from env"[..]));
    torua(&run)
        .args(["put", "cli/k", "from file"])
        .args(at)
        .arg("--client-token-file")
        .arg(&client)
        .assert()
        .success();
    let out = torua(&run)
        .args(["get", "cli/k"])
        .args(at)
        .arg("--client-token-file")
        .arg(&client)
        .assert()
        .success();
    assert_eq!(stdout_of(&out), "from file");
    // The admin token is good for data too.
    torua(&run)
        .args(["del", "cli/k"])
        .args(at)
        .env("TORUA_ADMIN_TOKEN", ADMIN)
        .assert()
        .success();
    assert_eq!(value(&c.url, "cli/k"), None);

    // Admin commands send the admin token, never the client's.
    let before = c.state().unwrap();
    let out = torua(&run)
        .args(["drain", "n1"])
        .args(at)
        .env("TORUA_CLIENT_TOKEN", CLIENT)
        .assert()
        .failure();
    let err = stderr_of(&out);
    assert!(err.contains("401") && err.contains("admin token"), "{err}");
    assert_eq!(
        c.state().unwrap(),
        before,
        "a refused drain changed the cluster"
    );
    let out = torua(&run)
        .args(["drain", "n1"])
        .args(at)
        .arg("--admin-token-file")
        .arg(&admin)
        .assert()
        .success();
    let said = stdout_of(&out);
    assert!(
        said == "n1: draining\n" || said == "n1: drained\n",
        "{said}"
    );
    assert_eq!(c.node("n1").unwrap()["admin_drain"], true);
    torua(&run)
        .args(["undrain", "n1"])
        .args(at)
        .env("TORUA_ADMIN_TOKEN", ADMIN)
        .assert()
        .success();
    assert_eq!(c.node("n1").unwrap()["admin_drain"], false);

    // A token file others can read is refused before anything is sent.
    let loose = tmp.path().join("loose.token");
    write_secret(&loose, ADMIN, 0o644);
    let out = torua(&run)
        .args(["drain", "n1"])
        .args(at)
        .arg("--admin-token-file")
        .arg(&loose)
        .assert()
        .failure();
    let err = stderr_of(&out);
    assert!(err.contains("chmod 600") && !err.contains(ADMIN), "{err}");
    assert_eq!(c.node("n1").unwrap()["admin_drain"], false);
}

#[test]
fn off_loopback_a_coordinator_without_both_tokens_exits_saying_how_to_make_them() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("cluster-secret");
    write_secret(&secret, SECRET, 0o600);
    let (admin, _) = token_files(tmp.path());
    let port = free_port();
    let base = |data: &str| -> Vec<String> {
        vec![
            "--data-dir".into(),
            tmp.path().join(data).display().to_string(),
            "--cluster-secret-file".into(),
            secret.display().to_string(),
        ]
    };
    let refused = |args: &[String]| -> String {
        let out = Command::new(bin("torua-coordinator"))
            .args(args)
            .env_remove("TORUA_INSECURE_NO_AUTH")
            .env_remove("TORUA_ADMIN_TOKEN_FILE")
            .env_remove("TORUA_CLIENT_TOKEN_FILE")
            .timeout(Duration::from_secs(10))
            .assert()
            .code(64);
        stderr_of(&out)
    };
    let listen = format!("0.0.0.0:{port}");
    let how = [
        "is not a loopback address",
        "torua keygen --token > admin.token",
        "chmod 600 admin.token client.token",
        "admin_token_file: ",
        "client_token_file: ",
        "--insecure-no-auth",
    ];

    // Neither token.
    let mut args = vec!["--listen".to_string(), listen.clone()];
    args.extend(base("d1"));
    let err = refused(&args);
    assert!(
        err.contains(&format!("`listen` {listen} is not a loopback address"))
            && err.contains("`admin_token_file` and `client_token_file` are not set"),
        "{err}"
    );
    for fix in how {
        assert!(err.contains(fix), "no {fix:?} in: {err}");
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a refused coordinator listened"
    );
    // One token only: the message names the other.
    let mut one = args.clone();
    one.extend(["--admin-token-file".into(), admin.display().to_string()]);
    let err = refused(&one);
    assert!(err.contains("`client_token_file` is not set"), "{err}");
    // From a config file: the message points at the line that set `listen`.
    let file = tmp.path().join("coordinator.yaml");
    std::fs::write(
        &file,
        format!(
            "data_dir: {}\ncluster_secret_file: {}\nlisten: \"[::]:{port}\"\n",
            tmp.path().join("d2").display(),
            secret.display()
        ),
    )
    .unwrap();
    let err = refused(&["--config".into(), file.display().to_string()]);
    assert!(
        err.contains(&format!("{}:3:1: `listen` [::]:{port}", file.display())),
        "{err}"
    );

    // --insecure-no-auth: it starts, warns, and the data path is open.
    let mut insecure = args.clone();
    insecure.push("--insecure-no-auth".into());
    let coord = Proc::start(
        "coordinator-insecure",
        "torua-coordinator",
        &insecure,
        tmp.path(),
    );
    let url = format!("http://127.0.0.1:{port}");
    torua_tests::cluster::wait_coordinator_ready(&url, &coord);
    let r = send("GET", &key_url(&url, "k"), None, b"");
    assert_ne!(r.status, 401, "{}", r.text());
    assert!(
        coord.log_text().contains("insecure_no_auth"),
        "{}",
        coord.log_text()
    );
    drop(coord);

    // Both tokens, made as the message says: it starts, and the data path wants
    // the client token.
    let made = tmp.path().join("made");
    std::fs::create_dir(&made).unwrap();
    let mut made_tokens = Vec::new();
    for name in ["admin.token", "client.token"] {
        let out = Command::new(bin("torua"))
            .args(["keygen", "--token"])
            .assert()
            .success();
        let token = stdout_of(&out);
        assert!(
            token.len() == 65 && token.trim().bytes().all(|b| b.is_ascii_hexdigit()),
            "{token:?}"
        );
        write_secret(&made.join(name), &token, 0o600);
        made_tokens.push(token.trim().to_string());
    }
    assert_ne!(made_tokens[0], made_tokens[1], "two keygens, one token");
    let port = free_port();
    let mut args = vec!["--listen".to_string(), format!("0.0.0.0:{port}")];
    args.extend(base("d3"));
    args.extend(token_args(
        &made.join("admin.token"),
        &made.join("client.token"),
    ));
    let coord = Proc::start("coordinator-tokens", "torua-coordinator", &args, tmp.path());
    let url = format!("http://127.0.0.1:{port}");
    torua_tests::cluster::wait_coordinator_ready(&url, &coord);
    let r = send("GET", &key_url(&url, "k"), None, b"");
    assert_unauthorized(&r, "client", "GET without a token off loopback");
    let r = send(
        "POST",
        &format!("{url}/v1/rebalance"),
        Some(&bearer(&made_tokens[0])),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = send(
        "GET",
        &key_url(&url, "k"),
        Some(&bearer(&made_tokens[1])),
        b"",
    );
    assert_ne!(r.status, 401, "{}", r.text());
}

#[test]
fn torua_dev_makes_both_tokens_and_the_cli_finds_them_without_flags() {
    let base = free_port_block(&[0, 1, 2, 101, 102]);
    let tmp = tempfile::tempdir().unwrap();
    let dev_dir = tmp.path().join("dev");
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let env = vec![("XDG_RUNTIME_DIR".to_string(), run.display().to_string())];
    let mut dev = Proc::start_with_env(
        "torua-dev",
        "torua",
        &[
            "dev".into(),
            "--nodes".into(),
            "2".into(),
            "--base-port".into(),
            base.to_string(),
            "--dir".into(),
            dev_dir.display().to_string(),
        ],
        tmp.path(),
        &env,
    );
    let url = format!("http://127.0.0.1:{base}");
    poll_until(Duration::from_secs(40), "dev cluster green", || {
        let r = http::get(&format!("{url}/v1/cluster"))
            .map_err(|e| format!("{e}\n{}", dev.log_text()))?;
        let c = r.json();
        if c["status"] == "green" && c["nodes"] == 2 && c["moves_in_flight"] == 0 {
            Ok(())
        } else {
            Err(r.text())
        }
    });

    // Two different random tokens, 0600, and a pointer to the dev dir.
    let mut tokens = Vec::new();
    for name in ["admin.token", "client.token"] {
        let f = dev_dir.join(name);
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
        let t = std::fs::read_to_string(&f).unwrap().trim().to_string();
        assert!(
            t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: {t:?}"
        );
        tokens.push(t);
    }
    assert_ne!(tokens[0], tokens[1]);
    let pointer = run.join("torua").join(format!("dev-{base}"));
    assert_eq!(
        std::fs::read_to_string(&pointer).unwrap().trim(),
        dev_dir.display().to_string()
    );
    let banner = dev.log_text();
    assert!(
        banner.contains(&format!("{}/admin.token", dev_dir.display())),
        "{banner}"
    );

    // The coordinator demands them...
    let r = send("PUT", &key_url(&url, "users/42"), None, b"x");
    assert_unauthorized(&r, "client", "PUT to the dev cluster without a token");
    // ...and the CLI finds them: the README's tour, unchanged but for the URL.
    let at = ["--coordinator", url.as_str()];
    torua(&run)
        .args(["put", "users/42", r#"{"name":"Ada"}"#])
        .args(at)
        .assert()
        .success();
    let out = torua(&run)
        .args(["get", "users/42"])
        .args(at)
        .assert()
        .success();
    assert_eq!(stdout_of(&out), r#"{"name":"Ada"}"#);
    torua(&run)
        .args(["drain", "n2"])
        .args(at)
        .assert()
        .success();
    assert_eq!(
        http::get(&format!("{url}/v1/nodes/n2")).unwrap().json()["admin_drain"],
        true
    );
    torua(&run)
        .args(["undrain", "n2"])
        .args(at)
        .assert()
        .success();
    // Without the pointer the same command has no token.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let out = torua(&elsewhere)
        .args(["get", "users/42"])
        .args(at)
        .assert()
        .failure();
    assert!(stderr_of(&out).contains("401"), "{}", stderr_of(&out));

    dev.signal(Signal::SIGTERM);
    let status = dev
        .wait_exit(Duration::from_secs(15))
        .expect("torua dev exits on SIGTERM");
    assert!(status.success(), "{status}: {}", dev.log_text());
    assert!(!pointer.exists(), "the pointer outlived its dev cluster");
}

#[test]
fn a_forced_removal_that_would_lose_a_last_copy_needs_allow_data_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut c, admin, _) = token_cluster(tmp.path());
    let url = c.url.clone();
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let keys: Vec<String> = (0..16).map(|i| format!("r/{i}")).collect();
    for k in &keys {
        put(&url, k, k.as_bytes());
    }
    let delete = |path: &str| {
        send(
            "DELETE",
            &format!("{url}/v1/nodes/{path}"),
            Some(&bearer(ADMIN)),
            b"",
        )
    };

    // n1's removal loses nothing (n2 holds an in-sync copy of every shard): forced,
    // it goes through without allow_data_loss. Its agent is stopped first, or it
    // would join again.
    c.agents[0].kill();
    let r = delete("n1?force=true");
    assert_eq!(r.status, 200, "{}", r.text());
    let settled = poll_until(SOON, "n1 gone from every shard", || {
        let s = c.state()?;
        let named = s.shards.to_string().contains("\"n1\"");
        let moving = c.cluster_json()?["moves_in_flight"] != 0;
        if s.nodes.len() == 1 && !named && !moving {
            Ok(s)
        } else {
            Err(format!("{:?}", s))
        }
    });
    // Settled means nothing moves by itself now: one node, under-replicated.
    assert_eq!(c.state().unwrap(), settled);

    // n2 now holds the last in-sync copy of all 8 shards.
    let conflicts = http_errors(&url, "admin", "conflict");
    let r = delete("n2?force=true");
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{}",
        r.text()
    );
    let msg = r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        msg.contains("last in-sync copy of shard(s) 0, 1, 2, 3, 4, 5, 6, 7")
            && msg.contains("allow_data_loss=true"),
        "{msg}"
    );
    assert_eq!(http_errors(&url, "admin", "conflict"), conflicts + 1.0);
    // allow_data_loss alone is no force.
    let r = delete("n2?allow_data_loss=true");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("drain it first"), "{}", r.text());
    // The CLI says the same; --allow-data-loss needs --force.
    let at = ["--coordinator", url.as_str()];
    let out = torua(&run)
        .args(["remove", "n2", "--force"])
        .args(at)
        .arg("--admin-token-file")
        .arg(&admin)
        .assert()
        .failure();
    let err = stderr_of(&out);
    assert!(
        err.contains("409") && err.contains("--allow-data-loss"),
        "{err}"
    );
    torua(&run)
        .args(["remove", "n2", "--allow-data-loss"])
        .args(at)
        .assert()
        .code(2);
    assert_eq!(
        c.state().unwrap(),
        settled,
        "a refused removal changed the cluster"
    );
    for k in &keys {
        assert_eq!(value(&url, k).as_deref(), Some(k.as_bytes()), "{k}");
    }

    // With it, the removal goes through.
    c.agents[1].kill();
    let out = torua(&run)
        .args(["remove", "n2", "--force", "--allow-data-loss"])
        .args(at)
        .arg("--admin-token-file")
        .arg(&admin)
        .assert()
        .success();
    assert_eq!(stdout_of(&out), "n2: removed\n");
    assert!(c.nodes_json().unwrap().is_empty());
    assert!(
        c.coord.log_text().contains("removed with allow_data_loss"),
        "the data loss was not logged"
    );
}

#[test]
fn a_follower_refuses_admin_calls_without_the_token_and_forwards_them_with_it() {
    if etcd::available().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (admin, client) = token_files(tmp.path());
    let mut args = token_args(&admin, &client);
    args.extend(["--shards".into(), "8".into()]);
    let c = TestCluster::start(Options {
        nodes: 2,
        coordinators: 2,
        etcd_members: 1,
        coordinator_args: args,
        ..Default::default()
    });
    let leader = c.wait_leader(SOON);
    let follower = 1 - leader;
    let (l_url, f_url) = (
        c.coord_url(leader).to_string(),
        c.coord_url(follower).to_string(),
    );
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    let drain = format!("{f_url}/v1/nodes/n1/drain");
    let series = "torua_http_errors_total{code=\"unauthorized\",route=\"admin\"}";

    for auth in [None, Some(bearer(CLIENT))] {
        let (on_follower, on_leader) = (
            c.metric_of(follower, series).unwrap_or(0.0),
            c.metric_of(leader, series).unwrap_or(0.0),
        );
        let r = send("POST", &drain, auth.as_deref(), b"");
        assert_unauthorized(&r, "admin", &format!("drain through the follower {auth:?}"));
        assert_eq!(
            c.metric_of(follower, series).unwrap_or(0.0),
            on_follower + 1.0
        );
        assert_eq!(
            c.metric_of(leader, series).unwrap_or(0.0),
            on_leader,
            "the follower forwarded a call it should refuse"
        );
    }
    assert_eq!(
        http::get(&format!("{l_url}/v1/nodes/n1")).unwrap().json()["admin_drain"],
        false
    );
    let r = send("POST", &drain, Some(&bearer(ADMIN)), b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        http::get(&format!("{l_url}/v1/nodes/n1")).unwrap().json()["admin_drain"],
        true
    );
    let r = send(
        "POST",
        &format!("{f_url}/v1/nodes/n1/undrain"),
        Some(&bearer(ADMIN)),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // The data path through the follower wants the client token too.
    let r = send("PUT", &key_url(&f_url, "via-follower"), None, b"v");
    assert_unauthorized(&r, "client", "PUT through the follower");
    put(&f_url, "via-follower", b"v");
    assert_eq!(value(&l_url, "via-follower").as_deref(), Some(&b"v"[..]));
}
