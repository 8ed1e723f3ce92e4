//! The node API's contract (SPEC §5): the control bodies the coordinator sends to a
//! storage node and the answers it reads back, the data headers, the shard roles,
//! the key rules and the value limit.
//!
//! Why here: `torua-node` serves this API and the coordinator's node client calls it.
//! Defined once, the two cannot drift apart — a renamed field or a new role is a
//! compile error on both sides instead of a silently ignored JSON key. The coordinator
//! also applies the same key rules and value limit to client requests, so a write it
//! accepts is one every node accepts.

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

/// Header carrying the shard id on `/v1/data/{key}` requests.
pub const SHARD_HEADER: &str = "torua-shard";
/// Header carrying the epoch on data requests and on a snapshot answer.
pub const EPOCH_HEADER: &str = "torua-epoch";
/// Header carrying the write version on `PUT`/`DELETE` and on a `GET` answer.
pub const VERSION_HEADER: &str = "torua-version";
/// Header carrying a pull's ticket on `GET /v1/shards/{id}/snapshot`
/// ([`crate::node_call::Ticket`]).
pub const TICKET_HEADER: &str = "torua-ticket";

/// Longest key, in bytes (after percent-decoding).
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value, on the data API and inside a snapshot (SPEC §4).
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// What a node holds a shard as. Spelled `primary` / `replica` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Primary, Role::Replica];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// `PUT /v1/shards/{id}`: hold the shard at `epoch` in `role`; `reset` clears its
/// data first (absent means `false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignRequest {
    pub epoch: u64,
    pub role: Role,
    #[serde(default)]
    pub reset: bool,
}

/// `POST /v1/shards/{id}/pull`: copy the shard at `epoch` from the node at `from`,
/// showing it `ticket` (sent as `Torua-Ticket`; absent when the cluster runs without
/// keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub epoch: u64,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// One held shard, as `GET /v1/shards/{id}` and `PUT /v1/shards/{id}` answer it.
/// `keys` and `bytes` count live entries (keys plus values).
///
/// The load signal: `reads` (`GET`s of a key) and `writes` (`PUT`s and `DELETE`s)
/// this copy served to client data calls, and their value bytes (`read_bytes`
/// answered, `write_bytes` received; keys not counted), cumulative since the shard
/// was taken here (created or reset, or the node restarted). Copies do not count.
/// Absent from older nodes' answers: read as 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub id: u32,
    pub epoch: u64,
    pub role: Role,
    pub keys: u64,
    pub bytes: u64,
    #[serde(default)]
    pub reads: u64,
    #[serde(default)]
    pub writes: u64,
    #[serde(default)]
    pub read_bytes: u64,
    #[serde(default)]
    pub write_bytes: u64,
}

/// `GET /v1/shards`: every shard the node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardList {
    pub shards: Vec<ShardInfo>,
}

/// `GET /v1/data?shard=N&prefix=P`: the shard's live keys under the prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key is empty")]
    Empty,
    #[error("key is {0} bytes after percent-decoding; the limit is {MAX_KEY_BYTES}")]
    TooLong(usize),
    #[error("key is not valid UTF-8 after percent-decoding")]
    NotUtf8,
    #[error("key contains control character U+{0:04X} at byte {1}")]
    Control(u32, usize),
}

/// Keys are opaque UTF-8 (`/`, spaces, `@`, `:`, unicode are fine) but must be
/// non-empty, at most [`MAX_KEY_BYTES`] and printable: control characters would
/// corrupt logs and listings.
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong(key.len()));
    }
    if let Some((at, c)) = key.char_indices().find(|(_, c)| c.is_control()) {
        return Err(KeyError::Control(c as u32, at));
    }
    Ok(())
}

/// Decodes the raw (still percent-encoded) path segment after `/v1/data/` and
/// validates it. `/` may appear literally or as `%2F`: both name the same key.
pub fn decode_key(raw: &str) -> Result<String, KeyError> {
    let key = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| KeyError::NotUtf8)?
        .into_owned();
    validate_key(&key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{from_str, json, to_value};

    #[test]
    fn role_is_lowercase_and_unknown_roles_are_refused() {
        for role in Role::ALL {
            assert_eq!(to_value(role).unwrap(), json!(role.as_str()));
            assert_eq!(
                from_str::<Role>(&format!("{:?}", role.as_str())).unwrap(),
                role
            );
        }
        assert_eq!(Role::Primary.as_str(), "primary");
        assert_eq!(Role::Replica.as_str(), "replica");
        for bad in [r#""Primary""#, r#""leader""#, r#""""#, "1"] {
            assert!(from_str::<Role>(bad).is_err(), "{bad}");
        }
        assert!(from_str::<AssignRequest>(r#"{"epoch":1,"role":"leader"}"#).is_err());
    }

    #[test]
    fn assign_request_shape() {
        let a = AssignRequest {
            epoch: 7,
            role: Role::Primary,
            reset: true,
        };
        assert_eq!(
            to_value(&a).unwrap(),
            json!({"epoch": 7, "role": "primary", "reset": true})
        );
        assert_eq!(
            from_str::<AssignRequest>(&serde_json::to_string(&a).unwrap()).unwrap(),
            a
        );
        // `reset` is optional and defaults to false.
        assert_eq!(
            from_str::<AssignRequest>(r#"{"epoch":6,"role":"replica"}"#).unwrap(),
            AssignRequest {
                epoch: 6,
                role: Role::Replica,
                reset: false
            }
        );
        assert!(from_str::<AssignRequest>(r#"{"role":"replica"}"#).is_err());
    }

    #[test]
    fn pull_request_shape() {
        let mut p = PullRequest {
            epoch: 3,
            from: "http://127.0.0.1:7402".into(),
            ticket: None,
        };
        assert_eq!(
            to_value(&p).unwrap(),
            json!({"epoch": 3, "from": "http://127.0.0.1:7402"})
        );
        assert_eq!(
            from_str::<PullRequest>(&serde_json::to_string(&p).unwrap()).unwrap(),
            p
        );
        p.ticket = Some("shard=3, epoch=3, from=n1, to=n2, exp=1, sig=00".into());
        assert_eq!(
            to_value(&p).unwrap()["ticket"],
            json!("shard=3, epoch=3, from=n1, to=n2, exp=1, sig=00")
        );
        assert_eq!(
            from_str::<PullRequest>(&serde_json::to_string(&p).unwrap()).unwrap(),
            p
        );
        assert!(from_str::<PullRequest>(r#"{"epoch":3}"#).is_err());
    }

    #[test]
    fn shard_list_shape() {
        let list = ShardList {
            shards: vec![
                ShardInfo {
                    id: 3,
                    epoch: 7,
                    role: Role::Primary,
                    keys: 1,
                    bytes: 6,
                    reads: 40,
                    writes: 2,
                    read_bytes: 200,
                    write_bytes: 10,
                },
                ShardInfo {
                    id: 4,
                    epoch: 2,
                    role: Role::Replica,
                    keys: 0,
                    bytes: 0,
                    reads: 0,
                    writes: 0,
                    read_bytes: 0,
                    write_bytes: 0,
                },
            ],
        };
        let wire = json!({"shards": [
            {"id": 3, "epoch": 7, "role": "primary", "keys": 1, "bytes": 6,
             "reads": 40, "writes": 2, "read_bytes": 200, "write_bytes": 10},
            {"id": 4, "epoch": 2, "role": "replica", "keys": 0, "bytes": 0,
             "reads": 0, "writes": 0, "read_bytes": 0, "write_bytes": 0},
        ]});
        assert_eq!(to_value(&list).unwrap(), wire);
        assert_eq!(serde_json::from_value::<ShardList>(wire).unwrap(), list);
        // An older node sends no load counters: they read as 0.
        let old = json!({"shards": [
            {"id": 4, "epoch": 2, "role": "replica", "keys": 0, "bytes": 0},
        ]});
        assert_eq!(
            serde_json::from_value::<ShardList>(old).unwrap().shards[0],
            list.shards[1]
        );
        assert_eq!(
            from_str::<ShardList>(r#"{"shards":[]}"#).unwrap().shards,
            vec![]
        );
    }

    #[test]
    fn key_list_shape() {
        let keys = KeyList {
            keys: vec!["a".into(), "dir/b c".into(), "ключ".into()],
        };
        let wire = json!({"keys": ["a", "dir/b c", "ключ"]});
        assert_eq!(to_value(&keys).unwrap(), wire);
        assert_eq!(serde_json::from_value::<KeyList>(wire).unwrap(), keys);
    }

    #[test]
    fn headers_are_lowercase() {
        for h in [SHARD_HEADER, EPOCH_HEADER, VERSION_HEADER, TICKET_HEADER] {
            assert_eq!(h, h.to_ascii_lowercase());
            assert!(h.starts_with("torua-"));
        }
    }

    #[test]
    fn validation_table() {
        for ok in [
            "a",
            "a/b/c",
            "with space",
            "user@host:1",
            "ключ/値",
            "../etc/passwd",
        ] {
            assert_eq!(validate_key(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(validate_key(&"k".repeat(MAX_KEY_BYTES)), Ok(()));
        assert_eq!(validate_key(""), Err(KeyError::Empty));
        assert_eq!(
            validate_key(&"k".repeat(MAX_KEY_BYTES + 1)),
            Err(KeyError::TooLong(MAX_KEY_BYTES + 1))
        );
        assert_eq!(validate_key("a\nb"), Err(KeyError::Control(0x0a, 1)));
        assert_eq!(validate_key("nul\0"), Err(KeyError::Control(0, 3)));
    }

    fn check(raw: &str, want: Result<&str, KeyError>) {
        assert_eq!(decode_key(raw), want.map(str::to_owned), "raw {raw:?}");
    }

    #[test]
    fn decoding_table() {
        check("plain", Ok("plain"));
        check("a/b/c", Ok("a/b/c"));
        check("a%2Fb", Ok("a/b"));
        check("a%2fb", Ok("a/b"));
        check("with%20space", Ok("with space"));
        check("user@host:8080", Ok("user@host:8080"));
        check("%E2%9C%93%20ok", Ok("✓ ok"));
        check("h%C3%A9", Ok("hé"));
        check("100%", Ok("100%")); // a lone % is not an escape and stays literal
        check("a+b", Ok("a+b"));
        check("", Err(KeyError::Empty));
        check("%00", Err(KeyError::Control(0, 0)));
        check("ab%0A", Err(KeyError::Control(0x0a, 2)));
        check("x%7F", Err(KeyError::Control(0x7f, 1)));
        check("%C2%85", Err(KeyError::Control(0x85, 0)));
        check("%FF", Err(KeyError::NotUtf8));
        check("%C3", Err(KeyError::NotUtf8));
        check(&"k".repeat(1024), Ok(&"k".repeat(1024)));
        check(&"k".repeat(1025), Err(KeyError::TooLong(1025)));
        check(&"%41".repeat(1025), Err(KeyError::TooLong(1025)));
    }
}
