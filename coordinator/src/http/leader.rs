//! The HTTP side of coordinator HA: who leads (`/v1/leader`, the `coordinator` and
//! `leader` fields of `/v1/cluster`), the calls a follower sends on to the leader,
//! and the leader's end of a follower's eviction request.

use super::body::read_body;
use super::respond::{error, ok, Resp};
use super::views::{cluster_view, coordinator_view};
use crate::cluster::Cluster;
use crate::leader::forward::{EvictRequest, ForwardError, FORWARDED_HEADER};
use crate::shards::change::ChangeKind;
use crate::shards::commit::commit;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request};
use std::time::Instant;
use torua_protocol::api::LEADER_HEADER;
use torua_protocol::ErrorCode;

/// Largest admin request body forwarded.
const MAX_FORWARD_BODY: usize = 1 << 20;

/// `503 not_leader`, naming the leader in `Torua-Leader` when it is known.
pub fn not_leader(cluster: &Cluster, what: &str) -> Resp {
    let leader = cluster.leadership.leader();
    let message = match &leader {
        Some(l) => format!(
            "coordinator {} is not the leader ({what}): {} at {} is",
            cluster.leadership.me.id, l.id, l.url
        ),
        None => format!(
            "coordinator {} is not the leader ({what}) and knows of none yet",
            cluster.leadership.me.id
        ),
    };
    let mut resp = error(ErrorCode::NotLeader, message);
    if let Some(v) = leader.and_then(|l| HeaderValue::from_str(&l.url).ok()) {
        resp.headers_mut().insert(LEADER_HEADER, v);
    }
    resp
}

/// Whether only the leader may answer this call: every mutating admin call.
pub fn leader_only(method: &Method, segs: &[&str]) -> bool {
    match (method, segs) {
        (&Method::GET, _) => false,
        (_, ["v1", "nodes", ..] | ["v1", "shards", _] | ["v1", "rebalance"]) => true,
        (_, ["v1", "internal", ..]) => true,
        _ => false,
    }
}

/// Whether this is a view that needs node health or moves, which only the leader
/// has (it alone hears heartbeats and runs moves): a follower shows the leader's,
/// and its own (health unknown) only when the leader cannot be asked.
pub fn leaders_view(method: &Method, segs: &[&str]) -> bool {
    method == Method::GET
        && matches!(
            segs,
            ["v1", "nodes"]
                | ["nodes"]
                | ["v1", "nodes", _]
                | ["v1", "moves"]
                | ["v1", "shards"]
                | ["v1", "shards", _]
                | ["shards"]
        )
}

/// The leader's answer to a view (see [`leaders_view`]); None if it cannot be had.
pub async fn view_from_leader(cluster: &Cluster, req: &Request<Incoming>) -> Option<Resp> {
    if req.headers().contains_key(FORWARDED_HEADER) {
        return None;
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let leader = cluster.leadership.leader()?;
    cluster
        .forwarder
        .relay(
            Some(leader),
            Method::GET,
            &path,
            req.headers(),
            bytes::Bytes::new(),
        )
        .await
        .ok()
        .filter(|r| r.status().is_success() || r.status().is_client_error())
}

/// Relays the call to the leader and its answer back.
pub async fn forward(cluster: &Cluster, req: Request<Incoming>) -> Resp {
    if req.headers().contains_key(FORWARDED_HEADER) {
        // Forwarded to us by a peer that thinks we lead: we do not (any more).
        return not_leader(cluster, "forwarded by a peer");
    }
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let headers = req.headers().clone();
    let body = match read_body(req, MAX_FORWARD_BODY).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let leader = cluster.leadership.leader_within_election().await;
    match cluster
        .forwarder
        .relay(leader, method, &path, &headers, body)
        .await
    {
        Ok(resp) => resp,
        Err(ForwardError::NoLeader) => not_leader(cluster, "no leader to forward to"),
        Err(e) => error(ErrorCode::Unavailable, e.to_string()),
    }
}

/// `GET /v1/cluster`: a follower shows the leader's view of the cluster (node
/// health lives there), with its own `coordinator` part; its own view if the
/// leader cannot be asked.
pub async fn cluster(cluster: &Cluster) -> Resp {
    if cluster.leadership.shared && !cluster.leadership.is_leader() {
        let leader = cluster.leadership.leader();
        if leader.is_some() {
            if let Ok(mut v) = cluster.forwarder.get_json(leader, "/v1/cluster").await {
                if let Some(o) = v.as_object_mut() {
                    o.insert(
                        "coordinator".into(),
                        serde_json::to_value(coordinator_view(cluster)).expect("serialises"),
                    );
                    return ok(&v);
                }
            }
        }
    }
    ok(&cluster_view(cluster, Instant::now()))
}

/// `GET /v1/leader`: 200 on the leader, 503 elsewhere (for load balancers, as
/// Patroni's `/leader`).
pub fn leader(cluster: &Cluster) -> Resp {
    if cluster.leadership.is_leader() {
        ok(&cluster.leadership.me)
    } else {
        not_leader(cluster, "GET /v1/leader")
    }
}

/// `POST /v1/internal/shards/{id}/evict`: a follower's write failed on in-sync
/// holders; evict them if the shard is still at the write's epoch. Answers the
/// shard's record after that, so the follower can install it.
pub async fn evict(cluster: &Cluster, id: &str, body: &[u8]) -> Resp {
    if !cluster.leadership.is_leader() {
        return not_leader(cluster, "evictions are committed by the leader");
    }
    let Some(slot) = id.parse::<u32>().ok().and_then(|i| cluster.shards.slot(i)) else {
        return error(ErrorCode::NotFound, format!("no shard {id:?}"));
    };
    let req: EvictRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error(ErrorCode::Malformed, format!("eviction request: {e}")),
    };
    let shard = slot.id;
    let result = commit(cluster, shard, ChangeKind::WriteEvict, None, |r| {
        if r.epoch == req.epoch {
            for n in &req.nodes {
                r.remove(n, &[]);
            }
        }
    })
    .await;
    match result {
        Ok(Some((rec, _))) => {
            tracing::warn!(
                "shard {shard}: evicted {:?} after a failed write through a follower",
                req.nodes
            );
            cluster.moves.wake();
            ok(&rec)
        }
        Ok(None) => ok(&*cluster.shards.read(shard).await),
        Err(e) => error(ErrorCode::Unavailable, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_sends_on_mutations_and_health_views_and_serves_the_rest() {
        let segs = |p: &'static str| p.split('/').collect::<Vec<&str>>();
        for (m, p) in [
            (Method::POST, "v1/nodes/n1/drain"),
            (Method::DELETE, "v1/nodes/n1"),
            (Method::PUT, "v1/shards/3"),
            (Method::POST, "v1/rebalance"),
            (Method::POST, "v1/internal/shards/3/evict"),
        ] {
            assert!(
                leader_only(&m, &segs(p)) && !leaders_view(&m, &segs(p)),
                "{m} {p}"
            );
        }
        for p in [
            "v1/nodes",
            "v1/nodes/n1",
            "v1/moves",
            "v1/shards",
            "v1/shards/3",
            "shards",
        ] {
            let m = Method::GET;
            assert!(
                leaders_view(&m, &segs(p)) && !leader_only(&m, &segs(p)),
                "{p}"
            );
        }
        for p in ["v1/cluster", "v1/leader", "metrics", "v1/data/k", "ui"] {
            let m = Method::GET;
            assert!(
                !leaders_view(&m, &segs(p)) && !leader_only(&m, &segs(p)),
                "{p}"
            );
        }
    }
}
