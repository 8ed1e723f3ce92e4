//! Test harness for Torua's end-to-end tests: builds and locates the real binaries,
//! starts them on free loopback ports in a temp dir, and offers polling helpers.
//! Every process is killed when its handle drops, so a failing test leaks nothing.

pub mod cluster;
pub mod http;
pub mod otlp;
pub mod proc;
pub mod promstack;
pub mod tools;

use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it returns `Some`, or panics with `what` and the last
/// observation after `timeout`. Tests never sleep to synchronise.
pub fn poll_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
