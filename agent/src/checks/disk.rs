//! `disk` check: free space of the filesystem holding `path`, e.g. `12.5% free`;
//! warns below `warn_free_percent`, fails below `fail_free_percent`.

use super::Outcome;
use std::path::Path;

/// `(free bytes available to unprivileged users, total bytes)` of `path`'s filesystem.
pub fn space(path: &Path) -> nix::Result<(f64, f64)> {
    let st = nix::sys::statvfs::statvfs(path)?;
    let frag = st.fragment_size() as f64;
    Ok((
        st.blocks_available() as f64 * frag,
        st.blocks() as f64 * frag,
    ))
}

pub fn probe(path: &Path, warn_free_percent: f64, fail_free_percent: f64) -> Outcome {
    let (free, total) = match space(path) {
        Ok(v) => v,
        Err(e) => return Outcome::fail(format!("statvfs {}: {}", path.display(), e.desc())),
    };
    let percent = if total > 0.0 {
        free * 100.0 / total
    } else {
        0.0
    };
    let message = format!("{percent:.1}% free");
    if percent < fail_free_percent {
        Outcome::fail(message)
    } else if percent < warn_free_percent {
        Outcome::warn(message)
    } else {
        Outcome::pass(message)
    }
}
