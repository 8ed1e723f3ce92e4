//! `torua drain|undrain|remove NODE…`.

use super::{Api, ApiError};
use serde_json::Value;

pub fn drain(api: &Api, nodes: &[String], drain: bool, as_json: bool) -> anyhow::Result<()> {
    let action = if drain { "drain" } else { "undrain" };
    each_node(
        nodes,
        as_json,
        |id| api.post(&format!("/v1/nodes/{id}/{action}")),
        |v| v["state"].as_str().unwrap_or("?").to_string(),
    )
}

/// Decommissions nodes: refused while a node holds shards unless `force`, and
/// while it holds a shard's last in-sync copy unless `allow_data_loss` too.
pub fn remove(
    api: &Api,
    nodes: &[String],
    force: bool,
    allow_data_loss: bool,
    as_json: bool,
) -> anyhow::Result<()> {
    let query = match (force, allow_data_loss) {
        (true, true) => "?force=true&allow_data_loss=true",
        (true, false) => "?force=true",
        (false, _) => "",
    };
    each_node(
        nodes,
        as_json,
        |id| api.delete(&format!("/v1/nodes/{id}{query}")),
        |_| "removed".to_string(),
    )
}

/// Runs `call` for every node, printing `id: summary` (or the JSON answer) per
/// success and the error per failure; fails if any node failed.
fn each_node(
    nodes: &[String],
    as_json: bool,
    call: impl Fn(&str) -> Result<Value, ApiError>,
    summary: impl Fn(&Value) -> String,
) -> anyhow::Result<()> {
    anyhow::ensure!(!nodes.is_empty(), "name at least one node");
    let mut failed = 0;
    for id in nodes {
        match call(id) {
            Ok(v) if as_json => println!("{v}"),
            Ok(v) => println!("{id}: {}", summary(&v)),
            Err(e) => {
                eprintln!("{id}: {e}");
                failed += 1;
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of {} nodes failed", nodes.len());
    Ok(())
}
