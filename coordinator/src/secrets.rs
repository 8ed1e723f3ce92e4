//! Loading the cluster secret(s) and the bearer tokens (admin, client), and deriving
//! node keys from them. Secret material never reaches logs or metrics.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use thiserror::Error;
use torua_protocol::{derive_node_key, NodeKey};

/// Shortest cluster secret accepted (SPEC §2).
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Error)]
pub enum SecretError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: permissions {mode:o} let other users read it; run `chmod 600 {file}`")]
    LoosePermissions { file: String, mode: u32 },
    #[error("{file}: a cluster secret needs at least {MIN_SECRET_BYTES} bytes, found {len}")]
    TooShort { file: String, len: usize },
    #[error("{file}: the token is empty (make one with `torua keygen --token > {file}`)")]
    EmptyToken { file: String },
}

/// Reads a secret file, refusing files that group or others can read, and strips
/// one trailing newline (what `echo` and editors add).
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, SecretError> {
    let file = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| SecretError::Read {
        file: file.clone(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError::LoosePermissions { file, mode });
    }
    let mut bytes = std::fs::read(path).map_err(|source| SecretError::Read {
        file: file.clone(),
        source,
    })?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Ok(bytes)
}

/// The cluster secrets in force: the current one and, during a rotation, the
/// previous one.
pub struct KeyRing {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRing(<redacted>)")
    }
}

impl KeyRing {
    pub fn load(current: &Path, previous: Option<&Path>) -> Result<KeyRing, SecretError> {
        let check = |path: &Path| -> Result<Vec<u8>, SecretError> {
            let s = read_secret_file(path)?;
            if s.len() < MIN_SECRET_BYTES {
                return Err(SecretError::TooShort {
                    file: path.display().to_string(),
                    len: s.len(),
                });
            }
            Ok(s)
        };
        Ok(KeyRing {
            current: check(current)?,
            previous: previous.map(check).transpose()?,
        })
    }

    pub fn from_secret(current: Vec<u8>) -> KeyRing {
        KeyRing {
            current,
            previous: None,
        }
    }

    /// The node's keys, current first.
    pub fn node_keys(&self, node_id: &str) -> NodeKeys {
        NodeKeys {
            current: derive_node_key(&self.current, node_id),
            previous: self
                .previous
                .as_deref()
                .map(|p| Box::new(derive_node_key(p, node_id))),
        }
    }
}

/// A node's derived keys, cached per node so the hot path hashes only the body.
#[derive(Debug, Clone)]
pub struct NodeKeys {
    pub current: NodeKey,
    /// Boxed: only during a rotation does a node carry a second key, and the
    /// registry holds one of these per node.
    pub previous: Option<Box<NodeKey>>,
}

impl NodeKeys {
    pub fn verify(&self, body: &[u8], sig: &[u8; 32]) -> bool {
        torua_protocol::verify(&self.current, body, sig)
            || self
                .previous
                .as_ref()
                .is_some_and(|k| torua_protocol::verify(k, body, sig))
    }
}

/// A bearer token read from a file (same permission rule as secrets). It is never
/// formatted: `Debug` prints `<redacted>` and there is no `Display`.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Reads a token file: mode 600 (or stricter), surrounding whitespace ignored,
    /// not empty.
    pub fn load(path: &Path) -> Result<Token, SecretError> {
        let bytes = read_secret_file(path)?;
        let token = String::from_utf8_lossy(&bytes).trim().to_string();
        if token.is_empty() {
            return Err(SecretError::EmptyToken {
                file: path.display().to_string(),
            });
        }
        Ok(Token(token))
    }

    pub fn new(token: impl Into<String>) -> Token {
        Token(token.into())
    }

    /// Whether a presented token is this one (constant time, see [`token_matches`]).
    pub fn matches(&self, given: &str) -> bool {
        token_matches(given, &self.0)
    }

    /// The token itself, for the `Authorization` header of a call this process makes.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The coordinator's bearer tokens, one per scope; a scope without a token is open
/// (allowed on a loopback listener only, or with `insecure_no_auth`).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// Mutating admin routes (and, like a superuser, the data path).
    pub admin: Option<Token>,
    /// The data path (`/v1/data/…`, `/data/…`).
    pub client: Option<Token>,
}

impl Tokens {
    pub fn load(admin: Option<&Path>, client: Option<&Path>) -> Result<Tokens, SecretError> {
        Ok(Tokens {
            admin: admin.map(Token::load).transpose()?,
            client: client.map(Token::load).transpose()?,
        })
    }
}

/// Whether a presented token is the configured one. Both are reduced to
/// fixed-length MACs first and compared by the `hmac` crate in constant time, so a
/// wrong token's timing reveals neither the right one's bytes nor its length.
pub fn token_matches(given: &str, token: &str) -> bool {
    use hmac::{KeyInit, Mac};
    type HmacSha256 = hmac::Hmac<sha2::Sha256>;
    let mac = |s: &str| {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(b"torua admin token")
            .expect("HMAC takes any key length");
        m.update(s.as_bytes());
        m
    };
    let expected = mac(token).finalize().into_bytes();
    mac(given).verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(mode: u32, content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    #[test]
    fn secret_files() {
        let good = file_with(0o600, b"0123456789abcdef0123456789abcdef\n");
        assert!(KeyRing::load(good.path(), None).is_ok());
        let loose = file_with(0o644, b"0123456789abcdef0123456789abcdef");
        let e = KeyRing::load(loose.path(), None).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        let short = file_with(0o600, b"short\n");
        let e = KeyRing::load(short.path(), None).unwrap_err().to_string();
        assert!(e.contains("at least 32 bytes, found 5"), "{e}");
    }

    #[test]
    fn rotation_accepts_previous_secret() {
        let old = b"old-secret-old-secret-old-secret".to_vec();
        let new = b"new-secret-new-secret-new-secret".to_vec();
        let ring = KeyRing {
            current: new.clone(),
            previous: Some(old.clone()),
        };
        let body = b"{}";
        let by_old = torua_protocol::sign(&derive_node_key(&old, "n1"), body);
        let by_new = torua_protocol::sign(&derive_node_key(&new, "n1"), body);
        let keys = ring.node_keys("n1");
        assert!(keys.verify(body, &by_old) && keys.verify(body, &by_new));
        assert!(!KeyRing::from_secret(new)
            .node_keys("n1")
            .verify(body, &by_old));
        assert!(
            !ring.node_keys("n2").verify(body, &by_new),
            "keys are per node"
        );
    }

    #[test]
    fn token_files() {
        let good = file_with(0o600, b"  tok-123\n");
        let t = Token::load(good.path()).unwrap();
        assert!(t.matches("tok-123") && !t.matches("tok-12"));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        let loose = file_with(0o640, b"tok-123\n");
        let e = Token::load(loose.path()).unwrap_err().to_string();
        assert!(
            e.contains("permissions 640") && e.contains("chmod 600"),
            "{e}"
        );
        let empty = file_with(0o600, b" \n");
        let e = Token::load(empty.path()).unwrap_err().to_string();
        assert!(
            e.contains("the token is empty") && e.contains("torua keygen --token"),
            "{e}"
        );
        let tokens = Tokens::load(Some(good.path()), None).unwrap();
        assert!(tokens.admin.is_some() && tokens.client.is_none());
        assert!(!format!("{tokens:?}").contains("tok-123"));
    }

    #[test]
    fn token_compare() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
        assert!(!token_matches("", "abc"));
    }
}
