//! `/v1/shards` (alias `/shards`): the shard map, one shard, manual assignment.

use super::respond::{error, ok, Resp};
use super::views::LoadView;
use crate::cluster::Cluster;
use crate::load::shard_totals;
use crate::shards::balance::Load;
use crate::shards::change::ChangeKind;
use crate::shards::commit::commit;
use crate::shards::record::ShardRecord;
use serde::Deserialize;
use serde_json::{json, Value};
use torua_protocol::ErrorCode;

/// `load`: what its holders served, per second (the sum over them; null while
/// not measured).
fn view(r: &ShardRecord, cluster: &Cluster, load: Option<&Load>) -> Value {
    json!({
        "id": r.id,
        "epoch": r.epoch,
        "primary": r.primary,
        "replicas": r.replicas,
        "health": r.health(cluster.shards.rf, |n| cluster.nodes.is_down(n)),
        "pinned": r.pinned,
        "load": load.map(LoadView::of),
    })
}

/// One shard's load from the last published view.
fn load_of(cluster: &Cluster, id: u32) -> Option<Load> {
    shard_totals(&cluster.load.snapshot()).remove(&id)
}

pub async fn list(cluster: &Cluster) -> Resp {
    let rf = cluster.shards.rf;
    let loads = shard_totals(&cluster.load.snapshot());
    let shards: Vec<Value> = cluster
        .shards
        .snapshot()
        .iter()
        .map(|r| view(r, cluster, loads.get(&r.id)))
        .collect();
    ok(&json!({ "replication_factor": rf, "shards": shards }))
}

/// `GET /shards` in Torua's shape (`num_shards`, one `{shard_id, node_id,
/// is_primary}` entry per holder), so a client written for Torua keeps working.
pub fn list_torua(cluster: &Cluster) -> Resp {
    let mut shards = Vec::new();
    for r in cluster.shards.snapshot() {
        for (node, _) in r.write_set() {
            // The Go coordinator's struct has no JSON tags: its field names are
            // what its clients read.
            shards.push(json!({
                "ShardID": r.id,
                "NodeID": node,
                "IsPrimary": r.primary.as_deref() == Some(node),
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
        Ok(i) => ok(&view(
            &*cluster.shards.read(i).await,
            cluster,
            load_of(cluster, i).as_ref(),
        )),
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
    match commit(cluster, id, ChangeKind::Assign, None, |r| r.pinned = pin).await {
        Ok(_) => {
            cluster.moves.wake();
            ok(&view(
                &*cluster.shards.read(id).await,
                cluster,
                load_of(cluster, id).as_ref(),
            ))
        }
        Err(e) => error(
            ErrorCode::Internal,
            format!("could not commit the assignment: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::load::Counters;
    use http_body_util::BodyExt;
    use std::time::{Duration, Instant};

    async fn body(r: Resp) -> Value {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn each_shard_shows_the_load_its_holders_served() {
        let dir = tempfile::tempdir().unwrap();
        let (cluster, _armed) = Cluster::for_tests(Config::for_tests(), dir.path());
        let c = |reads, writes| Counters {
            reads,
            writes,
            read_bytes: reads * 10,
            write_bytes: writes * 100,
        };
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        // Shard 3 on two holders: 100 + 20 reads/s and 10 writes/s each.
        cluster
            .load
            .observe("n1", t0, &[(3, c(0, 0)), (4, c(0, 0))]);
        cluster
            .load
            .observe("n1", t1, &[(3, c(200, 20)), (4, c(0, 0))]);
        cluster.load.observe("n2", t0, &[(3, c(0, 0))]);
        cluster.load.observe("n2", t1, &[(3, c(40, 20))]);
        cluster.load.publish();

        let all = body(list(&cluster).await).await;
        let shards = all["shards"].as_array().unwrap();
        assert_eq!(shards.len(), 64);
        assert_eq!(
            shards[3]["load"],
            json!({"reads": 120.0, "writes": 20.0, "read_bytes": 1200.0,
                   "write_bytes": 2000.0, "score": 140.195})
        );
        assert_eq!(shards[4]["load"]["score"], json!(0.0), "measured idle");
        assert_eq!(shards[5]["load"], Value::Null, "not measured");
        for key in ["id", "epoch", "primary", "replicas", "health", "pinned"] {
            assert!(shards[3].get(key).is_some(), "{key} missing");
        }
        let one = body(get(&cluster, "3").await).await;
        assert_eq!(one["load"], shards[3]["load"]);
    }
}
