//! The etcd backend, for several coordinators: everything durable lives under one
//! key prefix, and every change is one etcd transaction guarded by the leader key's
//! create revision (this coordinator's [`Fence`]) and by the mod revision of each
//! record it replaces, so a deposed leader (frozen, cut off) can never commit and a
//! change never overwrites one it did not see.
//!
//! Layout under the prefix: `cluster` (identity), `term` (bumped for write versions),
//! `leader` (the elected coordinator, on its lease), `nodes/<id>`, `shards/<id>`.
//! Values are JSON; a value that does not parse is refused with its key named.

use super::{decode, ClusterMeta, NodeRecord, StateStore, StoreError};
use crate::leader::fence::Fence;
use crate::metrics::HaMetrics;
use crate::shards::record::ShardRecord;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for one etcd request: past it the call fails and is retried by
/// whoever made it (a leader's commit is fenced anyway).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

pub struct EtcdStore {
    client: Client,
    prefix: String,
    fence: Arc<Fence>,
    metrics: HaMetrics,
    /// Mod revision of every record key as last read, written or watched: the
    /// compare that makes a commit refuse to overwrite a change it did not see.
    seen: Mutex<HashMap<String, i64>>,
}

/// One transaction: put `value` at `key` (on `lease`, if any) if the key does not
/// exist, else read what is there.
pub fn create_or_read(key: &str, value: Vec<u8>, lease: Option<i64>) -> Txn {
    let opts = lease.map(|l| etcd_client::PutOptions::new().with_lease(l));
    Txn::new()
        .when(vec![Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then(vec![TxnOp::put(key, value, opts)])
        .or_else(vec![TxnOp::get(key, None)])
}

/// Tries of one request that never reached etcd (see [`EtcdStore::retried`]).
const ATTEMPTS: u32 = 5;

/// Whether the request surely did not reach an etcd member that could apply it.
fn never_arrived(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => s.code() == tonic::Code::Unavailable,
        _ => false,
    }
}

fn etcd_err(e: etcd_client::Error) -> StoreError {
    StoreError::Etcd(e.to_string())
}

/// Connects without per-request timeouts in the client (they would also cut the
/// long-lived watch and keep-alive streams); requests are timed out one by one.
pub async fn connect(endpoints: &[String]) -> Result<Client, StoreError> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        // etcd answers pings more often than every 5 s (its default
        // `grpc-keepalive-min-time`) with GOAWAY "too_many_pings", which broke every
        // follower's watch every few seconds.
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(3))
        .with_keep_alive_while_idle(true);
    tokio::time::timeout(REQUEST_TIMEOUT, Client::connect(endpoints, Some(opts)))
        .await
        .map_err(|_| StoreError::Etcd(format!("connecting to {endpoints:?} timed out")))?
        .map_err(etcd_err)
}

impl EtcdStore {
    pub fn new(client: Client, prefix: &str, fence: Arc<Fence>, metrics: HaMetrics) -> EtcdStore {
        EtcdStore {
            client,
            prefix: prefix.to_string(),
            fence,
            metrics,
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    pub fn node_key(&self, id: &str) -> String {
        self.key(&format!("nodes/{id}"))
    }

    pub fn shard_key(&self, id: u32) -> String {
        self.key(&format!("shards/{id}"))
    }

    pub fn leader_key(&self) -> String {
        self.key("leader")
    }

    pub fn metrics(&self) -> &HaMetrics {
        &self.metrics
    }

    /// Runs one etcd request with a deadline, timed into
    /// `torua_etcd_request_duration_seconds{op}`.
    pub async fn timed<T>(
        &self,
        op: &str,
        f: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        let t = Instant::now();
        let r = tokio::time::timeout(REQUEST_TIMEOUT, f).await;
        self.metrics
            .etcd_seconds
            .with_label_values(&[op])
            .observe(t.elapsed().as_secs_f64());
        r.map_err(|_| StoreError::Etcd(format!("{op} timed out after {REQUEST_TIMEOUT:?}")))?
            .map_err(etcd_err)
    }

    /// [`EtcdStore::timed`], tried again (up to [`ATTEMPTS`] times in all) while
    /// etcd answers "unavailable" or cannot be connected to: with one member of a
    /// cluster dead, the client still sends some requests to it, and such a
    /// request never reached etcd, so sending it again is safe.
    pub async fn retried<T, Fut>(
        &self,
        op: &str,
        mut f: impl FnMut(Client) -> Fut,
    ) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut attempt = 1;
        loop {
            let t = Instant::now();
            let r = tokio::time::timeout(REQUEST_TIMEOUT, f(self.client.clone())).await;
            self.metrics
                .etcd_seconds
                .with_label_values(&[op])
                .observe(t.elapsed().as_secs_f64());
            match r {
                Err(_) => {
                    return Err(StoreError::Etcd(format!(
                        "{op} timed out after {REQUEST_TIMEOUT:?}"
                    )))
                }
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if attempt < ATTEMPTS && never_arrived(&e) => {
                    tracing::debug!("etcd {op}: {e}; trying another member");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Err(e)) => return Err(etcd_err(e)),
            }
        }
    }

    /// Records that `key` is at `mod_rev` (0: absent), as read or watched.
    pub fn saw(&self, key: &str, mod_rev: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let e = seen.entry(key.to_string()).or_insert(0);
        *e = (*e).max(mod_rev);
    }

    fn last_seen(&self, key: &str) -> i64 {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(key).copied().unwrap_or(0)
    }

    /// Every value under `rest` (a sub-prefix), with the revision they were read at.
    pub async fn list(&self, rest: &str) -> Result<(Vec<(String, Vec<u8>, i64)>, i64), StoreError> {
        let key = self.key(rest);
        let resp = self
            .retried("list", |mut c| {
                let key = key.clone();
                async move { c.get(key, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let rev = resp.header().map_or(0, |h| h.revision());
        let mut out = Vec::new();
        for kv in resp.kvs() {
            let k = String::from_utf8_lossy(kv.key()).into_owned();
            self.saw(&k, kv.mod_revision());
            out.push((k, kv.value().to_vec(), kv.mod_revision()));
        }
        Ok((out, rev))
    }

    /// Commits `puts` (key, Some(value)) and deletes (key, None) in one transaction,
    /// if this coordinator still leads and every key is as it last saw it.
    async fn commit(
        &self,
        op: &str,
        writes: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let Some(rev) = self.fence.current() else {
            self.metrics.fenced_commits.inc();
            return Err(StoreError::Fenced(
                "its lease lapsed on its own clock, or it was never elected".into(),
            ));
        };
        let leader = self.leader_key();
        let mut when = vec![Compare::create_revision(
            leader.clone(),
            CompareOp::Equal,
            rev,
        )];
        let mut ops = Vec::new();
        for (k, v) in &writes {
            when.push(Compare::mod_revision(
                k.clone(),
                CompareOp::Equal,
                self.last_seen(k),
            ));
            ops.push(match v {
                Some(v) => TxnOp::put(k.clone(), v.clone(), None),
                None => TxnOp::delete(k.clone(), None),
            });
        }
        let txn = Txn::new()
            .when(when)
            .and_then(ops)
            .or_else(vec![TxnOp::get(leader, None)]);
        let resp = self
            .retried(op, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if resp.succeeded() {
            let at = resp.header().map_or(0, |h| h.revision());
            for (k, v) in &writes {
                self.saw(k, if v.is_some() { at } else { 0 });
                if v.is_none() {
                    self.seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(k);
                }
            }
            return Ok(());
        }
        // Which compare failed: the leader key (deposed) or a record (a change
        // this coordinator has not seen yet; its watch brings it).
        let leader_now = resp.op_responses().into_iter().find_map(|r| match r {
            etcd_client::TxnOpResponse::Get(g) => {
                Some(g.kvs().first().map_or(0, |kv| kv.create_revision()))
            }
            _ => None,
        });
        if leader_now != Some(rev) {
            self.fence.release();
            self.metrics.fenced_commits.inc();
            return Err(StoreError::Fenced(format!(
                "etcd refused the commit: the leader key is no longer revision {rev}"
            )));
        }
        Err(StoreError::Conflict(
            writes
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ))
    }
}

impl StateStore for EtcdStore {
    fn cluster_meta(
        &self,
        now_ms: u64,
        shards: u32,
        rf: u32,
    ) -> BoxFuture<'_, Result<ClusterMeta, StoreError>> {
        Box::pin(async move {
            let key = self.key("cluster");
            let fresh = ClusterMeta {
                cluster_id: format!("{:016x}", fastrand::u64(..)),
                created_ms: now_ms,
                shards,
                replication_factor: rf,
            };
            // Create-if-absent, then read: the first coordinator ever to start
            // decides the layout; every other one reads it.
            let txn = create_or_read(
                &key,
                serde_json::to_vec(&fresh).expect("meta serialises"),
                None,
            );
            let resp = self
                .retried("cluster_meta", |mut c| {
                    let txn = txn.clone();
                    async move { c.txn(txn).await }
                })
                .await?;
            if resp.succeeded() {
                return Ok(fresh);
            }
            let value = resp
                .op_responses()
                .into_iter()
                .find_map(|r| match r {
                    etcd_client::TxnOpResponse::Get(g) => {
                        g.kvs().first().map(|kv| kv.value().to_vec())
                    }
                    _ => None,
                })
                .ok_or_else(|| StoreError::Etcd(format!("{key} vanished while being read")))?;
            decode(&key, &value)
        })
    }

    fn next_term(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            // The revision of this put is unique to it: no other coordinator process,
            // now or later, gets the same term, and later ones get larger ones.
            let key = self.key("term");
            let resp = self
                .retried("next_term", |mut c| {
                    let key = key.clone();
                    async move { c.put(key, "", None).await }
                })
                .await?;
            let rev = resp.header().map_or(0, |h| h.revision());
            u64::try_from(rev)
                .ok()
                .filter(|r| *r > 0)
                .ok_or_else(|| StoreError::Etcd(format!("etcd answered revision {rev}")))
        })
    }

    fn load_nodes(&self) -> BoxFuture<'_, Result<Vec<(String, NodeRecord)>, StoreError>> {
        Box::pin(async move {
            let (kvs, _) = self.list("nodes/").await?;
            let base = self.key("nodes/");
            kvs.into_iter()
                .map(|(k, v, _)| {
                    let id = k.strip_prefix(&base).unwrap_or(&k).to_string();
                    Ok((id, decode(&k, &v)?))
                })
                .collect()
        })
    }

    fn put_nodes(
        &self,
        batch: Vec<(String, Option<NodeRecord>)>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // One transaction may not touch a key twice: the last write of a node wins.
            let mut last: HashMap<String, Option<Vec<u8>>> = HashMap::new();
            for (id, rec) in batch {
                let v = rec.map(|r| serde_json::to_vec(&r).expect("records serialise"));
                last.insert(self.node_key(&id), v);
            }
            self.commit("put_nodes", last.into_iter().collect()).await
        })
    }

    fn load_shards(&self) -> BoxFuture<'_, Result<Vec<ShardRecord>, StoreError>> {
        Box::pin(async move {
            let (kvs, _) = self.list("shards/").await?;
            kvs.into_iter().map(|(k, v, _)| decode(&k, &v)).collect()
        })
    }

    fn put_shards(&self, records: Vec<ShardRecord>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let writes = records
                .iter()
                .map(|r| {
                    (
                        self.shard_key(r.id),
                        Some(serde_json::to_vec(r).expect("records serialise")),
                    )
                })
                .collect();
            self.commit("put_shards", writes).await
        })
    }
}
