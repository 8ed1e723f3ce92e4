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
        let msg = format!("{name} not installed (apt-get install {apt_package})");
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true and {msg}");
        }
        skipped(&msg);
    }
    found
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
    let msg = format!("{LIB} not installed (apt-get install faketime)");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {msg}");
    }
    skipped(&msg);
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
