//! Client reads and writes through the coordinator (SPEC §4). A write goes to every
//! holder of the key's shard and is acknowledged once every in-sync holder has it; a
//! holder that fails is evicted from the in-sync set (committed) before the ack, so an
//! acknowledged write is always on every copy that can become primary.

use crate::cluster::{unix_ms, Cluster};
use crate::nodeclient::CallError;
use bytes::Bytes;
use futures_util::future::join_all;
use thiserror::Error;

/// Largest value accepted (SPEC §4).
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;
pub const MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("invalid key: {0}")]
    BadKey(String),
    #[error("no key {0:?}")]
    NotFound(String),
    #[error("shard {shard} is unavailable: {why}")]
    Unavailable { shard: u32, why: String },
}

/// Keys are opaque UTF-8 (`/`, spaces, `@`, `:`, unicode are fine) but must be
/// printable: control characters would corrupt logs and listings.
pub fn check_key(key: &str) -> Result<(), DataError> {
    if key.is_empty() {
        return Err(DataError::BadKey("empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(DataError::BadKey(format!(
            "{} bytes, the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(DataError::BadKey(format!(
            "contains control character {:?}",
            c
        )));
    }
    Ok(())
}

enum Write {
    Put(Bytes),
    Delete,
}

impl Cluster {
    pub async fn data_put(&self, key: &str, value: Bytes) -> Result<(), DataError> {
        self.data_write(key, Write::Put(value)).await
    }

    pub async fn data_delete(&self, key: &str) -> Result<(), DataError> {
        self.data_write(key, Write::Delete).await
    }

    async fn data_write(&self, key: &str, op: Write) -> Result<(), DataError> {
        check_key(key)?;
        let slot = self.shards.slot_for_key(key);
        let mut last_err = String::new();
        // A second attempt covers a map change racing with the first one.
        for _ in 0..2 {
            let rec = slot.record.read().await;
            if rec.primary.is_none() {
                return Err(DataError::Unavailable {
                    shard: slot.id,
                    why: "no copy is available".into(),
                });
            }
            let version = self.shards.next_version(unix_ms());
            let calls = rec.write_set().map(|(node, in_sync)| {
                let addr = self.addr_of(node);
                let client = &self.shards.client;
                let op = &op;
                let (id, epoch) = (rec.id, rec.epoch);
                async move {
                    let result = match addr {
                        None => Err(CallError::Unreachable {
                            addr: node.into(),
                            message: "unknown address".into(),
                        }),
                        Some(addr) => match op {
                            Write::Put(v) => {
                                client.put(&addr, key, id, epoch, version, v.clone()).await
                            }
                            Write::Delete => client.delete(&addr, key, id, epoch, version).await,
                        },
                    };
                    (node.to_string(), in_sync, result)
                }
            });
            let results = join_all(calls).await;
            let mut ok_in_sync = 0;
            let mut failed = Vec::new();
            for (node, in_sync, r) in results {
                match (r, in_sync) {
                    (Ok(()), true) => ok_in_sync += 1,
                    (Ok(()), false) => {}
                    (Err(e), false) => {
                        tracing::warn!(
                            "shard {}: live write to copy on {node} failed: {e}",
                            slot.id
                        );
                        slot.copy_broken
                            .store(true, std::sync::atomic::Ordering::Release);
                    }
                    (Err(e), true) => {
                        last_err = e.to_string();
                        failed.push(node);
                    }
                }
            }
            let epoch = rec.epoch;
            drop(rec);
            if failed.is_empty() {
                return Ok(());
            }
            if ok_in_sync == 0 {
                continue;
            }
            // Some in-sync holders have the write and some do not: the ones that do
            // not stop being in sync (durably) before the client hears "ok".
            let evicted = self
                .shards
                .change(slot.id, &self.nodes, None, |r| {
                    if r.epoch == epoch {
                        for n in &failed {
                            r.remove(n, &[]);
                        }
                    }
                })
                .await;
            match evicted {
                Ok(Some(r)) if r.epoch == epoch + 1 => {
                    tracing::warn!("shard {}: evicted {failed:?} from the in-sync set after a failed write: {last_err}", slot.id);
                    self.mover.wake();
                    return Ok(());
                }
                // The map moved on meanwhile: the write's fate is unclear, retry it.
                Ok(_) => continue,
                Err(e) => {
                    return Err(DataError::Unavailable {
                        shard: slot.id,
                        why: format!("could not commit eviction: {e}"),
                    })
                }
            }
        }
        Err(DataError::Unavailable {
            shard: slot.id,
            why: last_err,
        })
    }

    /// Reads from the primary, then from in-sync replicas. Reads work on a copy of
    /// the record and do not hold the shard lock: a hung node must not delay the
    /// failover that routes around it. A read racing a change meets a fenced node
    /// (409) and falls through to the next copy.
    pub async fn data_get(&self, key: &str) -> Result<Bytes, DataError> {
        check_key(key)?;
        let slot = self.shards.slot_for_key(key);
        for attempt in 0..2 {
            match self.read_once(slot, key).await {
                Err(DataError::Unavailable { .. }) if attempt == 0 => continue,
                r => return r,
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn read_once(&self, slot: &crate::shards::Slot, key: &str) -> Result<Bytes, DataError> {
        let rec = slot.record.read().await.clone();
        let mut why = String::from("no copy is available");
        for node in rec.in_sync() {
            let Some(addr) = self.addr_of(node) else {
                continue;
            };
            match self.shards.client.get(&addr, key, rec.id, rec.epoch).await {
                Ok(Some(v)) => return Ok(v.bytes),
                Ok(None) => return Err(DataError::NotFound(key.into())),
                Err(e) => why = e.to_string(),
            }
        }
        Err(DataError::Unavailable {
            shard: slot.id,
            why,
        })
    }

    /// Every live key with `prefix`, sorted, across all shards.
    pub async fn data_list(&self, prefix: &str) -> Result<Vec<String>, DataError> {
        let mut keys = Vec::new();
        for slot in &self.shards.slots {
            let rec = slot.record.read().await.clone();
            if !rec.assigned {
                continue;
            }
            let mut got = None;
            let mut why = String::from("no copy is available");
            for node in rec.in_sync() {
                let Some(addr) = self.addr_of(node) else {
                    continue;
                };
                match self.shards.client.list(&addr, rec.id, prefix).await {
                    Ok(k) => {
                        got = Some(k);
                        break;
                    }
                    Err(e) => why = e.to_string(),
                }
            }
            keys.extend(got.ok_or(DataError::Unavailable {
                shard: slot.id,
                why,
            })?);
        }
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in [
            "a",
            "a/b/c",
            "with space",
            "user@host:1",
            "ключ/値",
            "../etc/passwd",
        ] {
            assert!(check_key(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", "a\nb", "nul\0", &"k".repeat(MAX_KEY_BYTES + 1)] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
