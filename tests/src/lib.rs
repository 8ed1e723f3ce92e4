//! Test harness for Torua's end-to-end tests: builds and locates the real binaries,
//! starts them on free loopback ports in a temp dir, and offers polling helpers.
//! Every process is killed when its handle drops, so a failing test leaks nothing.

pub mod cluster;
pub mod delay;
pub mod etcd;
pub mod history;
pub mod http;
pub mod netns;
pub mod nodecall;
pub mod otlp;
pub mod proc;
pub mod promstack;
pub mod timeline;
pub mod tools;

use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` and the last
/// observation after `timeout`. Tests never sleep to synchronise.
pub fn poll_until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Result<T, String>) -> T {
    try_poll_until(timeout, what, f).unwrap_or_else(|e| panic!("{e}"))
}

/// [`poll_until`] that returns the timeout as an error, for callers that must clean
/// up (or print a timeline) before failing.
pub fn try_poll_until<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}; last: {last}"
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
