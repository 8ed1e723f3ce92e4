//! The `torua` CLI and binary entry points: status, keygen (and an agent running on
//! a derived node key), config errors with file/line/field, and `torua dev`.

use assert_cmd::Command;
use nix::sys::signal::Signal;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use torua_tests::cluster::{Options, TestCluster};
use torua_tests::proc::{bin, free_port, free_port_block, Proc};
use torua_tests::{http, poll_until};

fn torua() -> Command {
    Command::new(bin("torua"))
}

#[test]
fn status_keygen_and_an_agent_on_a_derived_key() {
    let mut c = TestCluster::start(Options {
        nodes: 1,
        ..Default::default()
    });
    c.wait_all("healthy", Duration::from_secs(20));

    let out = torua()
        .args(["status", "--coordinator", &c.url])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    // One node cannot hold two copies: the cluster is rightly yellow.
    assert!(
        text.contains("yellow") && text.contains("(1 healthy)"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("n1") && l.contains("healthy")),
        "{text}"
    );
    let out = torua()
        .args(["status", "--json", "--coordinator", &c.url])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["nodes"][0]["id"], "n1");

    // Production mode: the agent (and its node) hold only their node key, never the
    // cluster secret.
    let out = torua()
        .args(["keygen", "--node", "k1", "--secret-file"])
        .arg(&c.secret_file)
        .assert()
        .success();
    let key = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(key.trim().len(), 64, "{key}");
    let key_file = c.dir.path().join("k1.key");
    std::fs::write(&key_file, &key).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // k1 gets a node of its own: an address is one live node's only.
    let node_port = free_port();
    let node_url = format!("http://127.0.0.1:{node_port}");
    let node = Proc::start(
        "node-k1",
        "torua-node",
        &[
            "--listen".into(),
            format!("127.0.0.1:{node_port}"),
            "--node-id".into(),
            "k1".into(),
            "--key-file".into(),
            key_file.display().to_string(),
        ],
        c.dir.path(),
    );
    let mut args = c.agent_args("k1", &node_url, free_port(), "1s");
    let i = args
        .iter()
        .position(|a| a == "--cluster-secret-file")
        .unwrap();
    args[i] = "--key-file".into();
    args[i + 1] = key_file.display().to_string();
    let agent = Proc::start("agent-k1", "torua-agent", &args, c.dir.path());
    c.wait_state("k1", "healthy", Duration::from_secs(15));
    // Stop its agent (or k1 joins again) and decommission it: forced, as it may hold
    // copies, and n1 holds an in-sync copy of every shard, so nothing is lost.
    drop(agent);
    torua()
        .args(["remove", "k1", "--force", "--coordinator", &c.url])
        .assert()
        .success()
        .stdout("k1: removed\n");
    drop(node);

    // Drain and undrain through the CLI.
    // One node holding shards has nowhere to move them: draining (or drained if no
    // shard was placed yet), never an error.
    let out = torua()
        .args(["drain", "n1", "--coordinator", &c.url])
        .assert()
        .success();
    let said = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        said == "n1: draining\n" || said == "n1: drained\n",
        "{said}"
    );
    torua()
        .args(["undrain", "n1", "--coordinator", &c.url])
        .assert()
        .success()
        .stdout("n1: healthy\n");
    torua()
        .args(["drain", "nope", "--coordinator", &c.url])
        .assert()
        .failure();
    c.coord.kill();
}

#[test]
fn bad_config_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("coordinator.yaml");
    std::fs::write(&file, "listen: 127.0.0.1:0\nheartbeat_timeout: soon\n").unwrap();
    let out = Command::new(bin("torua-coordinator"))
        .arg("--config")
        .arg(&file)
        .assert()
        .code(64);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    let want = format!("{}:2:", file.display());
    assert!(
        err.contains(&want) && err.contains("heartbeat_timeout"),
        "{err}"
    );

    // A world-readable secret is refused with the fix in the message.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "x".repeat(40)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(bin("torua-coordinator"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("d"))
        .arg("--cluster-secret-file")
        .arg(&secret)
        .timeout(Duration::from_secs(10))
        .assert()
        .failure();
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn torua_dev_runs_a_cluster_and_stops_it_on_sigterm() {
    // The dev layout: coordinator on base, nodes on base+1.., agents on base+101..
    let base = free_port_block(&[0, 1, 2, 101, 102]);
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Proc::start(
        "torua-dev",
        "torua",
        &[
            "dev".into(),
            "--nodes".into(),
            "2".into(),
            "--base-port".into(),
            base.to_string(),
        ],
        dir.path(),
    );
    let url = format!("http://127.0.0.1:{base}");
    poll_until(Duration::from_secs(30), "dev cluster healthy", || {
        let r = http::get(&format!("{url}/v1/nodes"))
            .map_err(|e| format!("{e}\n{}", dev.log_text()))?;
        let nodes = r.json()["nodes"].as_array().cloned().unwrap_or_default();
        if nodes.len() == 2 && nodes.iter().all(|n| n["state"] == "healthy") {
            Ok(())
        } else {
            Err(r.text())
        }
    });
    assert!(
        dev.log_text().contains(&format!("coordinator  {url}")),
        "{}",
        dev.log_text()
    );
    dev.signal(Signal::SIGTERM);
    let status = dev
        .wait_exit(Duration::from_secs(15))
        .expect("torua dev exits on SIGTERM");
    assert!(status.success(), "{status}: {}", dev.log_text());
    for port in [base, base + 1, base + 2, base + 101, base + 102] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open after torua dev stopped"
        );
    }
}

#[test]
fn data_shards_and_manual_assignment_through_the_cli() {
    let c = TestCluster::start(Options {
        coordinator_args: ["--shards", "8", "--rebalance-delay", "1s"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    c.wait_all("healthy", Duration::from_secs(20));
    c.wait_green(Duration::from_secs(20));
    let at = ["--coordinator", c.url.as_str()];
    torua()
        .args(["put", "greeting/en", "hello world"])
        .args(at)
        .assert()
        .success();
    torua()
        .args(["get", "greeting/en"])
        .args(at)
        .assert()
        .success()
        .stdout("hello world");
    torua()
        .args(["del", "greeting/en"])
        .args(at)
        .assert()
        .success();
    torua()
        .args(["get", "greeting/en"])
        .args(at)
        .assert()
        .failure();

    let out = torua().arg("shards").args(at).assert().success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 9, "header + 8 shards:\n{text}");

    // Pin shard 0 onto n3 (primary) and n1; the coordinator converges to it.
    torua()
        .args(["assign", "0", "--primary", "n3", "--replica", "n1"])
        .args(at)
        .assert()
        .success();
    poll_until(Duration::from_secs(30), "shard 0 on n3+n1", || {
        let s = http::get(&format!("{}/v1/shards/0", c.url))?.json();
        let replicas: Vec<_> = s["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["node"].clone(), r["in_sync"].clone()))
            .collect();
        if s["primary"] == "n3"
            && replicas == vec![(serde_json::json!("n1"), serde_json::json!(true))]
        {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    torua()
        .args(["assign", "0", "--primary", "n9"])
        .args(at)
        .assert()
        .failure();
}
