//! `/v1/shards` (alias `/shards`): the shard map, one shard, manual assignment.

use super::respond::{error, ok, Resp};
use crate::cluster::Cluster;
use crate::shardmap::ShardRecord;
use serde::Deserialize;
use serde_json::{json, Value};
use torua_protocol::ErrorCode;

fn view(r: &ShardRecord, cluster: &Cluster) -> Value {
    json!({
        "id": r.id,
        "epoch": r.epoch,
        "primary": r.primary,
        "replicas": r.replicas,
        "health": r.health(cluster.shards.rf, |n| cluster.nodes.is_down(n)),
        "pinned": r.pinned,
    })
}

pub async fn list(cluster: &Cluster) -> Resp {
    let rf = cluster.shards.rf;
    let shards: Vec<Value> = cluster
        .shards
        .snapshot()
        .iter()
        .map(|r| view(r, cluster))
        .collect();
    ok(&json!({ "replication_factor": rf, "shards": shards }))
}

/// `GET /shards` in Torua's shape (`num_shards`, one `{shard_id, node_id,
/// is_primary}` entry per holder), so a client written for Torua keeps working.
pub fn list_torua(cluster: &Cluster) -> Resp {
    let mut shards = Vec::new();
    for r in cluster.shards.snapshot() {
        for (node, _) in r.write_set() {
            shards.push(json!({
                "shard_id": r.id,
                "node_id": node,
                "is_primary": r.primary.as_deref() == Some(node),
            }));
        }
    }
    ok(&json!({ "num_shards": cluster.shards.slots.len(), "shards": shards }))
}

#[allow(clippy::result_large_err)] // the error is the ready response, built once
fn parse_id(cluster: &Cluster, id: &str) -> Result<u32, Resp> {
    id.parse::<u32>()
        .ok()
        .filter(|i| cluster.shards.slot(*i).is_some())
        .ok_or_else(|| {
            error(
                ErrorCode::NotFound,
                format!(
                    "no shard {id:?} (shards are 0..{})",
                    cluster.shards.slots.len()
                ),
            )
        })
}

pub async fn get(cluster: &Cluster, id: &str) -> Resp {
    match parse_id(cluster, id) {
        Ok(i) => ok(&view(&*cluster.shards.read(i).await, cluster)),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Assign {
    primary: Option<String>,
    #[serde(default)]
    replicas: Vec<String>,
}

/// Pins the shard's holders; the reconciler copies and hands over towards the pin.
/// `{"primary": null}` removes the pin and returns the shard to placement.
pub async fn assign(cluster: &Cluster, id: &str, body: &[u8]) -> Resp {
    let id = match parse_id(cluster, id) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let req: Assign = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => {
            return error(
                ErrorCode::Malformed,
                format!("expected {{\"primary\": \"n1\", \"replicas\": [\"n2\"]}}: {e}"),
            )
        }
    };
    let pin = match req.primary {
        None => None,
        Some(p) => {
            let mut all = vec![p];
            for r in req.replicas {
                if !all.contains(&r) {
                    all.push(r);
                }
            }
            if let Some(unknown) = all.iter().find(|n| cluster.nodes.get(n).is_none()) {
                return error(ErrorCode::Invalid, format!("no node {unknown:?}"));
            }
            Some(all)
        }
    };
    match cluster
        .shards
        .change(id, &cluster.nodes, None, |r| r.pinned = pin)
        .await
    {
        Ok(_) => {
            cluster.mover.wake();
            ok(&view(&*cluster.shards.read(id).await, cluster))
        }
        Err(e) => error(
            ErrorCode::Internal,
            format!("could not commit the assignment: {e}"),
        ),
    }
}
