//! Key and secret files as the agent and the node read them: a node key as 64 hex
//! characters (`torua keygen --node N`) or the raw cluster secret, in a file that
//! group and others may not read.
//!
//! Why here, the one place this crate touches the filesystem: the agent and the node
//! on one host may share one key file, so both must accept and refuse exactly the
//! same files with the same messages. Written once, they cannot drift apart.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::sign::{derive_node_key, NodeKey};

/// Shortest cluster secret accepted (SPEC §2).
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Error)]
pub enum KeyFileError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is readable but not usable: its mode, its length or its contents.
    #[error("{0}")]
    Refused(String),
}

/// Reads a key or secret file, refusing one that group or others may read unless
/// `allow_insecure` (`--allow-insecure-key-file`).
pub fn read_secret(path: &Path, allow_insecure: bool) -> Result<Vec<u8>, KeyFileError> {
    let read_err = |source| KeyFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(read_err)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 && !allow_insecure {
        return Err(KeyFileError::Refused(format!(
            "{}: mode {:03o} lets group or others read this secret; run `chmod 600 {}` \
             or pass --allow-insecure-key-file",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    std::fs::read(path).map_err(read_err)
}

/// A node key file: 64 hex characters, surrounding whitespace ignored.
pub fn load_key_file(path: &Path, allow_insecure: bool) -> Result<NodeKey, KeyFileError> {
    let bytes = read_secret(path, allow_insecure)?;
    NodeKey::from_hex(&String::from_utf8_lossy(&bytes)).map_err(|_| {
        KeyFileError::Refused(format!(
            "{}: a node key must be 64 hex characters (see `torua keygen`)",
            path.display()
        ))
    })
}

/// A cluster secret file: its bytes exactly, except that one trailing `\n` is
/// stripped; at least [`MIN_SECRET_BYTES`].
pub fn load_cluster_secret(path: &Path, allow_insecure: bool) -> Result<Vec<u8>, KeyFileError> {
    let mut secret = read_secret(path, allow_insecure)?;
    if secret.last() == Some(&b'\n') {
        secret.pop();
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(KeyFileError::Refused(format!(
            "{}: the cluster secret is {} bytes, at least {MIN_SECRET_BYTES} are needed",
            path.display(),
            secret.len()
        )));
    }
    Ok(secret)
}

/// `node_id`'s key derived from the cluster secret in `path`.
pub fn load_secret_as_key(
    path: &Path,
    node_id: &str,
    allow_insecure: bool,
) -> Result<NodeKey, KeyFileError> {
    Ok(derive_node_key(
        &load_cluster_secret(path, allow_insecure)?,
        node_id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn key_and_secret_files() {
        let dir = std::env::temp_dir().join(format!("torua-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hex = derive_node_key(b"x", "n1").to_hex();
        let key = write(&dir, "key", &format!("{hex}\n"), 0o600);
        assert_eq!(load_key_file(&key, false).unwrap().to_hex(), hex);
        // Exact bytes, only one trailing newline stripped.
        let s = write(&dir, "s", "0123456789abcdef0123456789abcdef\n\n", 0o600);
        assert_eq!(
            load_secret_as_key(&s, "n1", false).unwrap().to_hex(),
            derive_node_key(b"0123456789abcdef0123456789abcdef\n", "n1").to_hex()
        );
        let open = write(&dir, "open", &hex, 0o644);
        let cases: [(Result<NodeKey, KeyFileError>, &str); 5] = [
            (load_key_file(&open, false), "mode 644"),
            (
                load_key_file(&write(&dir, "g", &hex, 0o640), false),
                "chmod 600",
            ),
            (
                load_key_file(&write(&dir, "bad", "zz", 0o600), false),
                "64 hex",
            ),
            (
                load_secret_as_key(&write(&dir, "short", "short\n", 0o600), "n1", false),
                "5 bytes, at least 32",
            ),
            (load_key_file(&dir.join("nope"), false), "nope"),
        ];
        for (got, want) in cases {
            let err = got.expect_err(want).to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        assert_eq!(load_key_file(&open, true).unwrap().to_hex(), hex);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
