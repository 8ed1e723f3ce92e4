//! External tools policy: a test that needs a tool fails in CI (`CI=true`) when it is
//! missing, and skips with a loud message elsewhere.

use std::path::PathBuf;

pub fn require_tool(name: &str, apt_package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        missing(&format!(
            "{name} not installed (apt-get install {apt_package})"
        ));
    }
    found
}

/// A tool a test needs is missing: fails the test under `CI=true`, else says loudly
/// that it skips.
fn missing(msg: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {msg}");
    }
    skipped(msg);
}

/// `promtool check metrics` on an exposition (`what` names it in the failure): it
/// must parse and lint clean. Follows the tool policy; false when it skipped.
pub fn promtool_check_metrics(what: &str, text: &str) -> bool {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Some(promtool) = require_tool("promtool", "prometheus") else {
        return false;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool's answer");
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "promtool check metrics on {what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Says loudly that a test skips, where `cargo test` shows it: straight to the
/// process's stderr, which libtest does not capture (it captures only `eprintln!`
/// and friends, and throws that away for a passing test).
pub fn skipped(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: {msg} ***\n");
}

/// libfaketime's preload library (Debian `faketime`), for processes whose wall clock
/// a test steps. Follows the tool policy.
pub fn require_faketime() -> Option<PathBuf> {
    const LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    if std::path::Path::new(LIB).is_file() {
        return Some(LIB.into());
    }
    missing(&format!("{LIB} not installed (apt-get install faketime)"));
    None
}

/// Environment that runs a process with its wall clock `offset` away (libfaketime
/// syntax: `-20`, `+1h`), monotonic clocks untouched: an NTP step or a restored VM
/// snapshot, not a clock that runs at another speed.
pub fn faketime_env(lib: &std::path::Path, offset: &str) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME".into(), offset.into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ("FAKETIME_DONT_RESET".into(), "1".into()),
    ]
}
