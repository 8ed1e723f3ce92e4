//! Tests of the config module: the example parses, bad configs name line and field,
//! flags win over the file, key files are loaded and guarded.

use super::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use torua_protocol::derive_node_key;

const EXAMPLE: &str = include_str!("../../agent.example.yaml");

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn secret(dir: &Path) -> PathBuf {
    write(dir, "secret", "0123456789abcdef0123456789abcdef\n", 0o600)
}

#[test]
fn example_config_parses() {
    let c = Config::parse(EXAMPLE, Path::new("agent.example.yaml")).unwrap();
    assert_eq!(c.node_id, "n1");
    assert_eq!(c.checks.len(), 5);
    assert_eq!(c.capacity.max_shards, Some(64));
    assert_eq!(c.checks[0].interval, Duration::from_millis(500));
    assert_eq!(c.checks[1].affects, vec![Affect::Liveness]);
    c.validate().unwrap();
    let probes: Vec<_> = c.checks.iter().map(|c| c.probe().unwrap()).collect();
    assert!(matches!(
        &probes[0],
        ProbeSpec::Http {
            expect_status: 200,
            ..
        }
    ));
    assert!(
        matches!(&probes[2], ProbeSpec::Disk { warn_free_percent, .. } if *warn_free_percent == 10.0)
    );
}

#[test]
fn docs_embed_the_example() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/agent.md");
    let docs = std::fs::read_to_string(path).expect("docs/agent.md");
    assert!(
        docs.contains(EXAMPLE.trim()),
        "docs/agent.md must contain agent/agent.example.yaml verbatim"
    );
}

#[test]
fn defaults() {
    let c = Config::parse(
        "node_id: n1\ncluster_secret_file: /s\nchecks: [{name: t, kind: tcp, addr: 'x:1'}]\n",
        Path::new("f"),
    )
    .unwrap();
    assert_eq!(c.listen, "127.0.0.1:7501".parse().unwrap());
    assert_eq!(c.interval, Duration::from_secs(1));
    assert_eq!(c.capacity.weight, 1.0);
    assert_eq!(c.metrics.disk_path, PathBuf::from("/"));
    let t = &c.checks[0];
    assert_eq!(
        (t.interval, t.timeout),
        (Duration::from_secs(1), Duration::from_millis(500))
    );
    assert_eq!((t.failure_threshold, t.success_threshold), (1, 1));
    assert_eq!(t.affects, vec![Affect::Liveness, Affect::Readiness]);
}

/// Each bad file must fail with a message naming `FILE:LINE` and the field.
#[test]
fn bad_configs_name_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret(dir.path());
    let head = format!("cluster_secret_file: {}\n", s.display());
    let cases: &[(&str, String, &str, &str)] = &[
        ("unknown top-level field", format!("node_id: n1\n{head}nodeid: n2\n"), ":3:1:", "nodeid"),
        ("unknown check field", format!("node_id: n1\n{head}checks:\n  - name: a\n    kind: tcp\n    addr: x:1\n    adress: y\n"), ":7:5:", "checks[0].adress"),
        ("bad duration", format!("node_id: n1\n{head}interval: 5x\n"), ":3:", "interval"),
        ("bad check duration", format!("node_id: n1\n{head}checks:\n  - name: a\n    kind: tcp\n    addr: x:1\n    timeout: soon\n"), ":7:", "checks[0].timeout"),
        ("missing node_id", format!("{head}interval: 1s\n"), ":1:", "node_id"),
        ("bad node_id", format!("{head}node_id: 'n 1'\n"), ":2:1:", "node_id"),
        ("duplicate check", format!("node_id: n1\n{head}checks:\n  - name: a\n    kind: tcp\n    addr: x:1\n  - name: a\n    kind: tcp\n    addr: x:2\n"), ":7:5:", "checks[1].name"),
        ("timeout over interval", format!("node_id: n1\n{head}checks:\n  - name: a\n    kind: tcp\n    addr: x:1\n    interval: 1s\n    timeout: 2s\n"), ":8:5:", "checks[0].timeout"),
        ("missing url", format!("node_id: n1\n{head}checks:\n  - name: a\n    kind: http\n"), ":4:5:", "checks[0].url"),
        ("misplaced field", format!("node_id: n1\n{head}checks:\n  - name: a\n    kind: http\n    url: http://x:1/\n    addr: x:1\n"), ":7:5:", "checks[0].addr"),
        ("bad kind", format!("node_id: n1\n{head}checks:\n  - name: a\n    kind: ftp\n"), ":5:", "checks[0].kind"),
        ("bad affects", format!("node_id: n1\n{head}checks:\n  - name: a\n    kind: tcp\n    addr: x:1\n    affects: [traffic]\n"), ":7:15:", "checks[0].affects[0]"),
        ("both keys", format!("node_id: n1\n{head}key_file: /k\n"), ":3:1:", "key_file"),
        ("ftp coordinator", format!("node_id: n1\n{head}coordinator: ftp://c:1\n"), ":3:1:", "coordinator"),
        ("CA for plain http", format!("node_id: n1\n{head}coordinator: http://c:1\ncoordinator_ca_file: /ca.pem\n"), ":4:1:", "coordinator_ca_file"),
        ("bad entry in a list", format!("node_id: n1\n{head}coordinator:\n  - http://a:1\n  - ftp://b:1\n"), ":5:5:", "coordinator[1]"),
        ("bad entry in a flow list", format!("node_id: n1\n{head}coordinator: [http://a:1, 'b:1']\n"), ":3:1:", "coordinator[1]"),
        ("bad entry in a comma list", format!("node_id: n1\n{head}coordinator: http://a:1,b\n"), ":3:1:", "coordinator[1]"),
        ("empty entry", format!("node_id: n1\n{head}coordinator: http://a:1,\n"), ":3:1:", "coordinator[1]"),
        ("empty list", format!("node_id: n1\n{head}coordinator: []\n"), ":3:1:", "coordinator"),
        ("listed twice", format!("node_id: n1\n{head}coordinator: [http://a:1, http://b:1, http://a:1/]\n"), ":3:1:", "coordinator[2]"),
        ("a number", format!("node_id: n1\n{head}coordinator: 7400\n"), ":3:", "coordinator"),
        ("CA for a plain list", format!("node_id: n1\n{head}coordinator: [http://c:1, http://d:1]\ncoordinator_ca_file: /ca.pem\n"), ":4:1:", "coordinator_ca_file"),
        ("https check", format!("node_id: n1\n{head}checks:\n  - name: a\n    kind: http\n    url: https://x:1/\n"), ":6:5:", "checks[0].url"),
        ("wrong type", "node_id: [\n".to_string(), ":1:10:", "node_id"),
        ("not yaml", "node_id: 'n1\n".to_string(), ":", ""),
    ];
    let mut failures = Vec::new();
    for (name, text, want_at, want_field) in cases {
        let file = write(dir.path(), "agent.yaml", text, 0o600);
        let cli = Cli {
            config: Some(file.clone()),
            ..Cli::default()
        };
        let err = Config::load(&cli).expect_err(name).to_string();
        let want_prefix = format!("{}{want_at}", file.display());
        if !err.starts_with(&want_prefix)
            || (!want_field.is_empty() && !err.contains(&format!("field `{want_field}`")))
        {
            failures.push(format!(
                "{name}: {err:?} should start with {want_prefix:?} and name `{want_field}`"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn flags_win_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret(dir.path());
    let file = write(
        dir.path(),
        "a.yaml",
        &format!(
            "node_id: n1\ninterval: 2s\nlisten: 127.0.0.1:9000\ncluster_secret_file: {}\n",
            s.display()
        ),
        0o600,
    );
    let cli = Cli {
        config: Some(file),
        node_id: Some("n7".into()),
        interval: Some(Duration::from_millis(250)),
        http_check: Some("http://127.0.0.1:7407/health".into()),
        ..Cli::default()
    };
    let c = Config::load(&cli).unwrap();
    assert_eq!(c.node_id, "n7");
    assert_eq!(c.interval, Duration::from_millis(250));
    assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.checks.len(), 1);
    assert_eq!(c.checks[0].name, "node-http");
    assert_eq!(
        c.node_key().unwrap().to_hex(),
        derive_node_key(b"0123456789abcdef0123456789abcdef", "n7").to_hex()
    );
}

#[test]
fn flags_alone_suffice() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::try_parse_from([
        "torua-agent",
        "--node-id",
        "n2",
        "--cluster-secret-file",
        secret(dir.path()).to_str().unwrap(),
        "--interval",
        "500ms",
        "--http-check",
        "http://127.0.0.1:7402/health",
        "--listen",
        "127.0.0.1:7502",
    ])
    .unwrap();
    let c = Config::load(&cli).unwrap();
    assert_eq!(
        (c.node_id.as_str(), c.interval),
        ("n2", Duration::from_millis(500))
    );
    let err = Config::load(&Cli::default()).unwrap_err().to_string();
    assert!(
        err.contains("field `node_id`") && err.contains("--node-id"),
        "{err}"
    );
}

#[test]
fn key_files() {
    let dir = tempfile::tempdir().unwrap();
    let base = |key_file: Option<PathBuf>, secret_file: Option<PathBuf>, insecure: bool| Config {
        node_id: "n1".into(),
        key_file,
        cluster_secret_file: secret_file,
        allow_insecure_key_file: insecure,
        ..Config::default()
    };
    let hex = derive_node_key(b"x", "n1").to_hex();
    let key = write(dir.path(), "key", &format!("{hex}\n"), 0o600);
    assert_eq!(
        base(Some(key), None, false).node_key().unwrap().to_hex(),
        hex
    );

    // Exact bytes, only one trailing newline stripped.
    let two_newlines = write(
        dir.path(),
        "s2",
        "0123456789abcdef0123456789abcdef\n\n",
        0o600,
    );
    let want = derive_node_key(b"0123456789abcdef0123456789abcdef\n", "n1").to_hex();
    assert_eq!(
        base(None, Some(two_newlines), false)
            .node_key()
            .unwrap()
            .to_hex(),
        want
    );

    let cases: &[(&str, Config, &str)] = &[
        (
            "group readable",
            base(Some(write(dir.path(), "k1", &hex, 0o640)), None, false),
            "chmod 600",
        ),
        (
            "short secret",
            base(None, Some(write(dir.path(), "s1", "short\n", 0o600)), false),
            "at least 32",
        ),
        (
            "bad hex",
            base(Some(write(dir.path(), "k2", "zz", 0o600)), None, false),
            "64 hex",
        ),
        (
            "missing",
            base(Some(dir.path().join("nope")), None, false),
            "nope",
        ),
    ];
    for (name, config, want) in cases {
        let err = config.node_key().expect_err(name).to_string();
        assert!(err.contains(want), "{name}: {err}");
    }
    let open = write(dir.path(), "k3", &hex, 0o644);
    assert!(base(Some(open), None, true).node_key().is_ok());
}

#[test]
fn coordinator_lists() {
    let dir = tempfile::tempdir().unwrap();
    let s = secret(dir.path());
    let parse = |coordinator: &str| {
        let text = format!(
            "node_id: n1\ncluster_secret_file: {}\n{coordinator}",
            s.display()
        );
        let c = Config::parse(&text, Path::new("f")).unwrap();
        c.validate().unwrap();
        c.coordinator
    };
    let abc = ["http://a:1", "http://b:1", "http://c:1/"].map(String::from);
    assert_eq!(parse(""), ["http://127.0.0.1:7400"]);
    assert_eq!(parse("coordinator: http://a:1\n"), ["http://a:1"]);
    assert_eq!(
        parse("coordinator: [http://a:1, http://b:1, 'http://c:1/']\n"),
        abc
    );
    assert_eq!(
        parse("coordinator:\n  - http://a:1\n  - http://b:1\n  - http://c:1/\n"),
        abc
    );
    assert_eq!(
        parse("coordinator: http://a:1, http://b:1 ,http://c:1/\n"),
        abc
    );

    // --coordinator / TORUA_COORDINATOR: comma-separated, replacing the file's list.
    let file = write(
        dir.path(),
        "a.yaml",
        &format!(
            "node_id: n1\ncluster_secret_file: {}\ncoordinator: [http://x:1, http://y:1]\n",
            s.display()
        ),
        0o600,
    );
    let cli = Cli::try_parse_from([
        "torua-agent",
        "--config",
        file.to_str().unwrap(),
        "--coordinator",
        "http://a:1,http://b:1, http://c:1/",
    ])
    .unwrap();
    assert_eq!(Config::load(&cli).unwrap().coordinator, abc);
    let cli = Cli {
        coordinator: Some("http://a:1,,http://b:1".into()),
        ..cli
    };
    let err = Config::load(&cli).unwrap_err().to_string();
    assert!(err.contains("field `coordinator[1]`"), "{err}");

    // A CA file needs one https:// coordinator among them.
    if cfg!(feature = "tls") {
        let c = Config::parse(
        &format!(
            "node_id: n1\ncluster_secret_file: {}\ncoordinator: [http://a:1, https://b:1]\ncoordinator_ca_file: /ca.pem\n",
            s.display()
        ),
            Path::new("f"),
        )
        .unwrap();
        c.validate().unwrap();
    }
    let mut c = Config::parse(
        &format!("node_id: n1\ncluster_secret_file: {}\n", s.display()),
        Path::new("f"),
    )
    .unwrap();
    c.coordinator = (0..=MAX_COORDINATORS)
        .map(|i| format!("http://c{i}:1"))
        .collect();
    let (field, message) = c.validate().unwrap_err();
    assert_eq!(field, "coordinator");
    assert!(message.contains("at most 16"), "{message}");
}
