//! Leader election on an etcd lease, the way Kubernetes, Patroni and TiKV PD do it:
//! the leader key is created under this coordinator's lease only if absent; the
//! winner keeps the lease alive every TTL/3 and **stops acting at its own local
//! deadline** (when the last answered keep-alive was sent + TTL − a margin), without
//! waiting for etcd to say so. Losers watch the key and campaign again when it goes.
//! On SIGTERM the leader deletes its key and revokes its lease, so a peer takes over
//! at once instead of after the TTL.

use super::{Peer, Role};
use crate::cluster::Cluster;
use crate::store::etcd::EtcdStore;
use crate::store::StoreError;
use etcd_client::{Compare, CompareOp, EventType, Txn, TxnOp, TxnOpResponse, WatchOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pause after an etcd error before trying again.
const RETRY: Duration = Duration::from_millis(500);

/// What a leadership ended with.
enum Ended {
    Lost(String),
    Shutdown,
}

/// How long before etcd would expire the lease the leader stops acting: covers
/// the clock-rate difference between this host and etcd's, and scheduling delay.
pub fn margin(ttl: Duration) -> Duration {
    (ttl / 6).max(Duration::from_millis(250))
}

pub async fn run(
    cluster: Arc<Cluster>,
    store: Arc<EtcdStore>,
    ttl: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let lead = &cluster.leadership;
    let me = serde_json::to_vec(&lead.me).expect("a peer serialises");
    loop {
        let attempt = campaign(&store, &me, ttl);
        let won = tokio::select! {
            _ = &mut shutdown => return,
            r = attempt => r,
        };
        match won {
            Ok(Campaign::Won { lease, rev, sent }) => {
                // Prepared before the fence is held: heartbeats are taken only once
                // node health has been forgotten, so none is taken and then lost.
                super::follow::took_office(&cluster, &store, rev).await;
                lead.fence.hold(rev, sent + ttl - margin(ttl));
                cluster.moves.wake();
                lead.set_role(Role::Leader, Some(lead.me.clone()));
                cluster.metrics.ha.is_leader.set(1);
                cluster.metrics.ha.leader_changes.inc();
                tracing::info!("became leader (leader key revision {rev}, lease TTL {ttl:?})");
                let ended = tokio::select! {
                    _ = &mut shutdown => Ended::Shutdown,
                    e = keep_alive(&store, &cluster, lease, ttl) => e,
                };
                lead.fence.release();
                cluster.metrics.ha.is_leader.set(0);
                cluster.metrics.ha.leader_changes.inc();
                super::follow::left_office(&cluster);
                match ended {
                    Ended::Shutdown => {
                        resign(&store, lease, rev).await;
                        tracing::info!("resigned the leadership on shutdown");
                        lead.set_role(Role::Follower, None);
                        return;
                    }
                    Ended::Lost(why) => {
                        tracing::warn!("stepped down: {why}");
                        lead.set_role(Role::Candidate, None);
                        let mut c = store.client();
                        let _ = store.timed("lease_revoke", c.lease_revoke(lease)).await;
                    }
                }
            }
            Ok(Campaign::Lost { leader, rev }) => {
                tracing::info!("following leader {} at {}", leader.id, leader.url);
                lead.set_role(Role::Follower, Some(leader));
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = wait_for_vacancy(&store, &cluster, rev) => {}
                }
                lead.set_role(Role::Candidate, None);
            }
            Err(e) => {
                tracing::warn!("leader election: {e}; retrying");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}

enum Campaign {
    /// `sent`: when the lease grant was sent, the start of the lease's life.
    Won { lease: i64, rev: i64, sent: Instant },
    /// Someone else leads; `rev`: the revision the leader key was read at.
    Lost { leader: Peer, rev: i64 },
}

async fn campaign(store: &EtcdStore, me: &[u8], ttl: Duration) -> Result<Campaign, StoreError> {
    let key = store.leader_key();
    let sent = Instant::now();
    let lease = store
        .retried("lease_grant", |mut c| async move {
            c.lease_grant(ttl.as_secs() as i64, None).await
        })
        .await?
        .id();
    let txn = crate::store::etcd::create_or_read(&key, me.to_vec(), Some(lease));
    let resp = store
        .retried("campaign", |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    let rev = resp.header().map_or(0, |h| h.revision());
    if resp.succeeded() {
        // The key was created by this transaction: its create revision is the
        // transaction's revision.
        return Ok(Campaign::Won { lease, rev, sent });
    }
    let mut c = store.client();
    let _ = store.timed("lease_revoke", c.lease_revoke(lease)).await;
    let value = resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
        _ => None,
    });
    match value {
        Some(v) => {
            let leader = crate::store::decode::<Peer>(&key, &v)?;
            Ok(Campaign::Lost { leader, rev })
        }
        // Gone between the compare and the read: campaign again.
        None => Err(StoreError::Etcd(
            "the leader key vanished; campaigning again".into(),
        )),
    }
}

/// Keeps the lease alive until it is lost or this coordinator falls past its own
/// deadline. A keep-alive stream that breaks (its etcd member died) is opened
/// again, on another member, as long as the deadline allows: losing one member of
/// an etcd cluster must not cost the leadership.
async fn keep_alive(store: &EtcdStore, cluster: &Cluster, lease: i64, ttl: Duration) -> Ended {
    let fence = &cluster.leadership.fence;
    let mut stream = None;
    let mut why = String::new();
    loop {
        let sent = Instant::now();
        let Some(deadline) = fence.deadline() else {
            return Ended::Lost("no deadline".into());
        };
        if sent >= deadline {
            return Ended::Lost(format!(
                "the lease deadline passed on this coordinator's clock{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({why})")
                }
            ));
        }
        if stream.is_none() {
            let opened = store
                .retried("keep_alive", |mut c| async move {
                    c.lease_keep_alive(lease).await
                })
                .await;
            match opened {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    why = format!("keep-alive stream: {e}");
                    tokio::time::sleep(RETRY.min(deadline - sent)).await;
                    continue;
                }
            }
        }
        let (keeper, answers) = stream.as_mut().expect("opened above");
        if let Err(e) = keeper.keep_alive().await {
            why = format!("keep-alive not sent: {e}");
            stream = None;
            continue;
        }
        match tokio::time::timeout_at(deadline.into(), answers.message()).await {
            Err(_) => return Ended::Lost("no keep-alive answer before the lease deadline".into()),
            Ok(Ok(Some(a))) if a.ttl() <= 0 => return Ended::Lost("etcd expired the lease".into()),
            Ok(Ok(Some(_))) => {
                cluster
                    .metrics
                    .ha
                    .etcd_seconds
                    .with_label_values(&["keep_alive"])
                    .observe(sent.elapsed().as_secs_f64());
                fence.extend(sent + ttl - margin(ttl));
                why.clear();
            }
            Ok(Ok(None)) => {
                why = "keep-alive stream closed".into();
                stream = None;
                continue;
            }
            Ok(Err(e)) => {
                why = format!("keep-alive failed: {e}");
                stream = None;
                continue;
            }
        }
        // Also notices a fence released by a refused commit.
        if fence.current().is_none() {
            return Ended::Lost("a commit found the leader key taken".into());
        }
        tokio::time::sleep_until((sent + ttl / 3).into()).await;
    }
}

/// Waits until the leader key is deleted (its lease expired, or it resigned), or
/// the watch breaks (etcd restarted, compaction): the caller then campaigns again,
/// which reads the key afresh.
async fn wait_for_vacancy(store: &EtcdStore, cluster: &Cluster, read_at: i64) {
    let mut c = store.client();
    let opts = WatchOptions::new().with_start_revision(read_at + 1);
    let mut stream = match store
        .timed("watch", c.watch(store.leader_key(), Some(opts)))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("watching the leader key: {e}");
            tokio::time::sleep(RETRY).await;
            return;
        }
    };
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) if !resp.canceled() => resp,
            _ => {
                tokio::time::sleep(RETRY).await;
                return;
            }
        };
        for ev in resp.events() {
            match ev.event_type() {
                EventType::Delete => return,
                EventType::Put => {
                    let peer = ev
                        .kv()
                        .and_then(|kv| serde_json::from_slice::<Peer>(kv.value()).ok());
                    if let Some(p) = peer {
                        cluster.leadership.set_role(Role::Follower, Some(p));
                    }
                }
            }
        }
    }
}

/// Gives the leadership up at once: deletes the leader key if it is still ours and
/// revokes the lease.
async fn resign(store: &EtcdStore, lease: i64, rev: i64) {
    let key = store.leader_key();
    let txn = Txn::new()
        .when(vec![Compare::create_revision(
            key.clone(),
            CompareOp::Equal,
            rev,
        )])
        .and_then(vec![TxnOp::delete(key, None)]);
    let mut c = store.client();
    if let Err(e) = store.timed("resign", c.txn(txn)).await {
        tracing::warn!("resigning: {e}");
    }
    let _ = store.timed("lease_revoke", c.lease_revoke(lease)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_stops_before_etcd_expires_its_lease() {
        for ttl in [1, 2, 3, 5, 30] {
            let ttl = Duration::from_secs(ttl);
            let m = margin(ttl);
            assert!(
                m >= Duration::from_millis(250) && m < ttl / 2,
                "{ttl:?}: {m:?}"
            );
        }
    }
}
