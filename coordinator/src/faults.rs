//! Guarantees a test can break on purpose, to prove that the history checker of the
//! end-to-end suite bites. Read from `TORUA_UNSAFE_TEST_FAULT`, and honoured only in
//! debug builds (what `cargo test` runs): a release build ignores the variable.

/// A broken guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestFault {
    /// Write versions from the wall clock, as before terms, and a node's
    /// `superseded` refusal taken as success: a coordinator restarted with its clock
    /// behind acknowledges writes that are not there.
    WallClockVersions,
}

pub const ENV: &str = "TORUA_UNSAFE_TEST_FAULT";

/// The fault switched on in the environment, if any (debug builds only).
pub fn from_env() -> Option<TestFault> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let fault = match std::env::var(ENV).ok()?.as_str() {
        "wall-clock-versions" => TestFault::WallClockVersions,
        other => {
            tracing::error!("{ENV}={other:?} is not a known fault; ignored");
            return None;
        }
    };
    tracing::warn!("{ENV}: running with a broken guarantee ({fault:?}), for tests only");
    Some(fault)
}
