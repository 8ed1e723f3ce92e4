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
    out.push_str(&coordinators_line(cluster));
    out.push_str(&format!(
        "{:<12} {:<10} {:>7} {:>6} {:>18}  {}\n",
        "NODE", "STATE", "AGE", "PHI", "LOAD", "REASON"
    ));
    for n in nodes["nodes"].as_array().into_iter().flatten() {
        let age = n["heartbeat_age_seconds"]
            .as_f64()
            .map_or("-".to_string(), |a| format!("{a:.1}s"));
        out.push_str(&format!(
            "{:<12} {:<10} {:>7} {:>6.1} {:>18}  {}\n",
            n["id"].as_str().unwrap_or("?"),
            n["state"].as_str().unwrap_or("?"),
            age,
            n["phi"].as_f64().unwrap_or(0.0),
            load(&n["load"]),
            n["reason"].as_str().unwrap_or(""),
        ));
    }
    out
}

/// A node's load: its score, then its operations per second (`-` while it has not
/// been measured, or from a coordinator that does not measure).
fn load(l: &Value) -> String {
    let f = |k: &str| l[k].as_f64();
    match (f("score"), f("reads"), f("writes")) {
        (Some(score), Some(reads), Some(writes)) => {
            format!("{score:.1} ({:.0} op/s)", reads + writes)
        }
        _ => "-".to_string(),
    }
}

/// Which coordinator answered and who leads: `coordinator c1 (leader) http://…`, or
/// `coordinator c2 (follower) · leader c1 http://…` (`NO LEADER` while there is
/// none). Nothing when `/v1/cluster` has no `coordinator` (an older coordinator).
fn coordinators_line(cluster: &Value) -> String {
    let me = &cluster["coordinator"];
    if !me.is_object() {
        return String::new();
    }
    let str_of = |v: &Value, k: &str| v[k].as_str().unwrap_or("?").to_string();
    let (id, role) = (str_of(me, "id"), str_of(me, "role"));
    let leader = &cluster["leader"];
    if role == "leader" && (leader.is_null() || str_of(leader, "id") == id) {
        return format!("coordinator {id} (leader) {}\n", str_of(me, "url"));
    }
    let leader = if leader.is_object() {
        format!("leader {} {}", str_of(leader, "id"), str_of(leader, "url"))
    } else {
        "NO LEADER".to_string()
    };
    format!("coordinator {id} ({role}) · {leader}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_state_age_phi_load_reason() {
        let cluster = json!({"cluster_id": "abc", "status": "yellow", "nodes": 2,
            "nodes_by_state": {"healthy": 1, "unhealthy": 1, "drained": 0}, "uptime_seconds": 12.0,
            "moves_frozen": false});
        let nodes = json!({"nodes": [
            {"id": "n1", "state": "healthy", "heartbeat_age_seconds": 0.42, "phi": 0.1, "reason": "all checks pass",
             "load": {"reads": 1200.4, "writes": 33.2, "read_bytes": 1.0e6, "write_bytes": 0.0, "score": 1294.6}},
            {"id": "n2", "state": "unhealthy", "heartbeat_age_seconds": null, "phi": 9.1, "reason": "no heartbeat for 3.2s (phi 9.1)",
             "load": null}]});
        let out = render(&cluster, &nodes);
        assert!(
            out.starts_with("cluster abc yellow · 2 nodes (1 healthy, 1 unhealthy)"),
            "{out}"
        );
        assert!(!out.contains("leader"), "{out}");
        assert!(
            out.contains("NODE         STATE          AGE    PHI               LOAD  REASON\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "n1           healthy       0.4s    0.1 1294.6 (1234 op/s)  all checks pass"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "n2           unhealthy        -    9.1                  -  no heartbeat for 3.2s"
            ),
            "{out}"
        );
        // A coordinator that does not send a load at all.
        let old = json!({"nodes": [{"id": "n3", "state": "healthy", "phi": 0.0, "reason": ""}]});
        assert!(render(&cluster, &old).contains("    - "), "{out}");
    }

    #[test]
    fn coordinator_and_leader_line() {
        let mut cluster = json!({"cluster_id": "abc", "status": "green", "nodes": 0,
            "coordinator": {"id": "c2", "role": "follower", "url": "http://127.0.0.1:7410"},
            "leader": {"id": "c1", "url": "http://127.0.0.1:7400"}});
        let out = render(&cluster, &json!({"nodes": []}));
        assert!(
            out.contains("\ncoordinator c2 (follower) · leader c1 http://127.0.0.1:7400\n"),
            "{out}"
        );
        cluster["leader"] = json!({"id": "c2", "url": "http://127.0.0.1:7410"});
        cluster["coordinator"]["role"] = json!("leader");
        let out = render(&cluster, &json!({"nodes": []}));
        assert!(
            out.contains("\ncoordinator c2 (leader) http://127.0.0.1:7410\n"),
            "{out}"
        );
        cluster["leader"] = Value::Null;
        cluster["coordinator"]["role"] = json!("candidate");
        let out = render(&cluster, &json!({"nodes": []}));
        assert!(
            out.contains("\ncoordinator c2 (candidate) · NO LEADER\n"),
            "{out}"
        );
    }
}
