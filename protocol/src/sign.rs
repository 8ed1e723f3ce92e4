//! HMAC-SHA256 heartbeat signatures, per-node key derivation and the
//! `Authorization` header format (SPEC §2).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;
use thiserror::Error;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The `Authorization` scheme name.
pub const AUTH_SCHEME: &str = "Torua-HMAC-SHA256";
const KEY_CONTEXT: &str = "torua/node-key/v1/";

/// A node's signing key, with the HMAC state pre-keyed so each sign or verify
/// hashes only the body (the keyed pads are computed once, not per message).
#[derive(Clone)]
pub struct NodeKey {
    raw: [u8; 32],
    mac: HmacSha256,
}

impl NodeKey {
    /// Builds a key from its 32 raw bytes (as printed hex by `torua keygen`).
    pub fn from_bytes(raw: [u8; 32]) -> Self {
        let mac = HmacSha256::new_from_slice(&raw).expect("HMAC takes keys of any length");
        NodeKey { raw, mac }
    }

    /// Parses a key given as 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Result<Self, AuthError> {
        let mut raw = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut raw).map_err(|_| AuthError::BadKey)?;
        Ok(Self::from_bytes(raw))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.raw)
    }

    /// The pre-keyed HMAC state, for the other messages signed with this key
    /// (`node_call`): cloning it costs a copy, not two key-pad compressions.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material, not even in debug logs.
        f.write_str("NodeKey(<redacted>)")
    }
}

/// `node_key = HMAC-SHA256(cluster_secret, "torua/node-key/v1/" + node_id)`.
pub fn derive_node_key(cluster_secret: &[u8], node_id: &str) -> NodeKey {
    let mut mac =
        HmacSha256::new_from_slice(cluster_secret).expect("HMAC takes keys of any length");
    mac.update(KEY_CONTEXT.as_bytes());
    mac.update(node_id.as_bytes());
    NodeKey::from_bytes(mac.finalize().into_bytes().into())
}

/// Signs the exact body bytes.
pub fn sign(key: &NodeKey, body: &[u8]) -> [u8; 32] {
    let mut mac = key.mac.clone();
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Constant-time check of `sig` over the exact body bytes.
pub fn verify(key: &NodeKey, body: &[u8], sig: &[u8; 32]) -> bool {
    let mut mac = key.mac.clone();
    mac.update(body);
    mac.verify_slice(sig).is_ok()
}

/// `Torua-HMAC-SHA256 node=<node_id>, sig=<hex>`.
pub fn authorization_header(node_id: &str, sig: &[u8; 32]) -> String {
    format!("{AUTH_SCHEME} node={node_id}, sig={}", hex::encode(sig))
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("missing Authorization header")]
    Missing,
    #[error("Authorization scheme must be {AUTH_SCHEME}")]
    Scheme,
    #[error("Authorization must be `{AUTH_SCHEME} node=<id>, sig=<64 hex>`")]
    Format,
    #[error("a key must be 64 hex characters")]
    BadKey,
}

/// Parses the header into `(node_id, signature)`, without checking anything else.
pub fn parse_authorization(value: &str) -> Result<(&str, [u8; 32]), AuthError> {
    let rest = value
        .strip_prefix(AUTH_SCHEME)
        .ok_or(AuthError::Scheme)?
        .strip_prefix(' ')
        .ok_or(AuthError::Format)?;
    let mut node = None;
    let mut sig = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or(AuthError::Format)?;
        match k {
            "node" if node.is_none() => node = Some(v),
            "sig" if sig.is_none() => {
                let mut raw = [0u8; 32];
                hex::decode_to_slice(v, &mut raw).map_err(|_| AuthError::Format)?;
                sig = Some(raw);
            }
            _ => return Err(AuthError::Format),
        }
    }
    match (node, sig) {
        (Some(n), Some(s)) if crate::validate::is_valid_name(n) => Ok((n, s)),
        _ => Err(AuthError::Format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_stable_and_per_node() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let a = derive_node_key(secret, "n1");
        assert_eq!(a.to_hex(), derive_node_key(secret, "n1").to_hex());
        assert_ne!(a.to_hex(), derive_node_key(secret, "n2").to_hex());
        assert_eq!(NodeKey::from_hex(&a.to_hex()).unwrap().to_hex(), a.to_hex());
    }

    #[test]
    fn sign_verify_round_trip_and_tamper() {
        let key = derive_node_key(b"0123456789abcdef0123456789abcdef", "n1");
        let body = br#"{"v":1}"#;
        let sig = sign(&key, body);
        assert!(verify(&key, body, &sig));
        assert!(!verify(&key, br#"{"v":2}"#, &sig));
        let other = derive_node_key(b"0123456789abcdef0123456789abcdef", "n2");
        assert!(!verify(&other, body, &sig));
        for i in 0..body.len() {
            let mut t = body.to_vec();
            t[i] ^= 1;
            assert!(
                !verify(&key, &t, &sig),
                "byte {i} flip must break the signature"
            );
        }
    }

    #[test]
    fn header_round_trip_and_rejections() {
        let sig = [7u8; 32];
        let h = authorization_header("n1", &sig);
        assert_eq!(parse_authorization(&h), Ok(("n1", sig)));
        let cases = [
            ("", AuthError::Scheme),
            ("Bearer abc", AuthError::Scheme),
            ("Torua-HMAC-SHA256 node=n1", AuthError::Format),
            ("Torua-HMAC-SHA256 node=n1, sig=zz", AuthError::Format),
            ("Torua-HMAC-SHA256 node=n 1, sig=00", AuthError::Format),
            (
                "Torua-HMAC-SHA256 node=n1, node=n2, sig=00",
                AuthError::Format,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_authorization(input).unwrap_err(), want, "{input:?}");
        }
    }

    #[test]
    fn key_debug_is_redacted() {
        let key = derive_node_key(b"secret-secret-secret-secret-1234", "n1");
        assert!(!format!("{key:?}").contains(&key.to_hex()));
    }
}
