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
        eprintln!("\n*** SKIPPED: {msg} ***\n");
    }
    found
}
