//! `torua status`: one cluster line, then a table of nodes.

use super::Api;
use serde_json::{json, Value};

pub fn run(api: &Api, as_json: bool) -> anyhow::Result<()> {
    let cluster = api.get("/v1/cluster")?;
    let nodes = api.get("/v1/nodes")?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"cluster": cluster, "nodes": nodes["nodes"]}))?
        );
        return Ok(());
    }
    print!("{}", render(&cluster, &nodes));
    Ok(())
}

fn render(cluster: &Value, nodes: &Value) -> String {
    let by_state = cluster["nodes_by_state"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut out = format!(
        "cluster {} {} · {} nodes ({}) · up {:.0}s{}\n",
        cluster["cluster_id"].as_str().unwrap_or("?"),
        cluster["status"].as_str().unwrap_or("?"),
        cluster["nodes"],
        by_state,
        cluster["uptime_seconds"].as_f64().unwrap_or(0.0),
        if cluster["moves_frozen"] == true {
            " · MOVES FROZEN"
        } else {
            ""
        },
    );
    out.push_str(&format!(
        "{:<12} {:<10} {:>7} {:>6}  {}\n",
        "NODE", "STATE", "AGE", "PHI", "REASON"
    ));
    for n in nodes["nodes"].as_array().into_iter().flatten() {
        let age = n["heartbeat_age_seconds"]
            .as_f64()
            .map_or("-".to_string(), |a| format!("{a:.1}s"));
        out.push_str(&format!(
            "{:<12} {:<10} {:>7} {:>6.1}  {}\n",
            n["id"].as_str().unwrap_or("?"),
            n["state"].as_str().unwrap_or("?"),
            age,
            n["phi"].as_f64().unwrap_or(0.0),
            n["reason"].as_str().unwrap_or(""),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_state_age_phi_reason() {
        let cluster = json!({"cluster_id": "abc", "status": "yellow", "nodes": 2,
            "nodes_by_state": {"healthy": 1, "unhealthy": 1, "drained": 0}, "uptime_seconds": 12.0,
            "moves_frozen": false});
        let nodes = json!({"nodes": [
            {"id": "n1", "state": "healthy", "heartbeat_age_seconds": 0.42, "phi": 0.1, "reason": "all checks pass"},
            {"id": "n2", "state": "unhealthy", "heartbeat_age_seconds": null, "phi": 9.1, "reason": "no heartbeat for 3.2s (phi 9.1)"}]});
        let out = render(&cluster, &nodes);
        assert!(
            out.starts_with("cluster abc yellow · 2 nodes (1 healthy, 1 unhealthy)"),
            "{out}"
        );
        assert!(
            out.contains("n1           healthy       0.4s    0.1  all checks pass"),
            "{out}"
        );
        assert!(
            out.contains("n2           unhealthy        -    9.1  no heartbeat for 3.2s"),
            "{out}"
        );
    }
}
