//! An HTTPS coordinator: agents heartbeat and the CLI talks to it over TLS with a CA
//! made by `torua tls create`; plain HTTP and clients that do not trust the CA are
//! refused (and counted); SIGHUP swaps the certificate, and a broken one is refused
//! while the old one stays in force.

use assert_cmd::Command;
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::Duration;
use torua_tests::cluster::{create_certificates, Options, TestCluster};
use torua_tests::proc::bin;
use torua_tests::{http, poll_until};

const SOON: Duration = Duration::from_secs(20);

/// `torua status --json` against the coordinator, trusting `ca` if given.
fn status(url: &str, ca: Option<&Path>) -> Result<serde_json::Value, String> {
    let mut cmd = Command::new(bin("torua"));
    cmd.args(["status", "--json", "--coordinator", url])
        .env_remove("TORUA_CA_FILE");
    if let Some(ca) = ca {
        cmd.arg("--ca-file").arg(ca);
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn counter(c: &TestCluster, series: &str) -> f64 {
    http::metric(&c.metrics(), series).unwrap_or(-1.0)
}

#[test]
fn an_https_coordinator_serves_agents_and_the_cli_and_reloads_its_certificate() {
    let c = TestCluster::start(Options {
        nodes: 2,
        tls: true,
        ..Default::default()
    });
    assert!(c.url.starts_with("https://"), "{}", c.url);
    // Healthy means the agents' signed heartbeats got through TLS.
    c.wait_all("healthy", SOON);
    let ca = c.ca_file.clone().unwrap();

    let v = status(&c.url, Some(&ca)).unwrap();
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(2), "{v}");
    let err = status(&c.url, None).unwrap_err();
    assert!(err.contains("certificate"), "untrusted CA: {err}");

    // Plain HTTP to the HTTPS port is told so, and the failed handshake counts.
    let plain = c.url.replace("https://", "http://");
    let r = http::get(&format!("{plain}/livez")).unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "malformed", "{}", r.text());
    assert!(r.text().contains("use an https:// URL"), "{}", r.text());
    poll_until(SOON, "a counted TLS handshake failure", || {
        match counter(
            &c,
            r#"torua_http_connections_closed_total{reason="tls_handshake"}"#,
        ) {
            n if n >= 1.0 => Ok(()),
            n => Err(format!("tls_handshake = {n}")),
        }
    });

    // Rotate onto a certificate from a new CA: SIGHUP, and new handshakes use it.
    let tls = c.dir.path().join("tls");
    let fresh = create_certificates(&c.dir.path().join("tls-new"));
    for f in ["server.pem", "server-key.pem"] {
        std::fs::copy(fresh.join(f), tls.join(f)).unwrap();
    }
    c.coord.signal(Signal::SIGHUP);
    poll_until(SOON, "the new certificate in force", || {
        status(&c.url, Some(&fresh.join("ca.pem"))).map(|_| ())
    });
    assert_eq!(
        counter(&c, r#"torua_tls_certificate_reloads_total{result="ok"}"#),
        1.0
    );

    // A broken certificate is refused; the one in force stays.
    std::fs::write(tls.join("server.pem"), "garbage").unwrap();
    c.coord.signal(Signal::SIGHUP);
    poll_until(SOON, "the failed reload counted", || {
        match counter(&c, r#"torua_tls_certificate_reloads_total{result="error"}"#) {
            n if n >= 1.0 => Ok(()),
            n => Err(format!("errors = {n}")),
        }
    });
    status(&c.url, Some(&fresh.join("ca.pem"))).unwrap();
    let log = c.coord.log_text();
    assert!(
        log.contains("no CERTIFICATE found") && log.contains("the previous one stays"),
        "{log}"
    );
}
