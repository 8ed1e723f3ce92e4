//! `torua shards`, `torua assign`, `torua rebalance`.

use super::Api;
use serde_json::{json, Value};

pub fn list(api: &Api, as_json: bool) -> anyhow::Result<()> {
    let v = api.get("/v1/shards")?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print!("{}", render(&v));
    Ok(())
}

fn render(v: &Value) -> String {
    let mut out = format!(
        "{:>5} {:>6}  {:<10} {:<24} {:>8}  {}\n",
        "SHARD", "EPOCH", "PRIMARY", "REPLICAS", "LOAD", "HEALTH"
    );
    for s in v["shards"].as_array().into_iter().flatten() {
        let replicas: Vec<String> = s["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let node = r["node"].as_str().unwrap_or("?");
                if r["in_sync"] == true {
                    node.to_string()
                } else {
                    format!("{node}(copying)")
                }
            })
            .collect();
        let pin = if s["pinned"].is_null() { "" } else { " pinned" };
        // The load score its holders served (`-` while not measured).
        let load = s["load"]["score"]
            .as_f64()
            .map_or("-".to_string(), |l| format!("{l:.1}"));
        out.push_str(&format!(
            "{:>5} {:>6}  {:<10} {:<24} {load:>8}  {}{pin}\n",
            s["id"].as_u64().unwrap_or(0),
            s["epoch"].as_u64().unwrap_or(0),
            s["primary"].as_str().unwrap_or("-"),
            replicas.join(","),
            s["health"].as_str().unwrap_or("?"),
        ));
    }
    out
}

pub fn assign(
    api: &Api,
    shard: u32,
    primary: String,
    replicas: Vec<String>,
    as_json: bool,
) -> anyhow::Result<()> {
    let v = api.put_json(
        &format!("/v1/shards/{shard}"),
        &json!({ "primary": primary, "replicas": replicas }),
    )?;
    if as_json {
        println!("{v}");
    } else {
        println!(
            "shard {shard} pinned to {}; the coordinator moves it there",
            v["pinned"]
        );
    }
    Ok(())
}

pub fn rebalance(api: &Api, unfreeze: bool) -> anyhow::Result<()> {
    let path = if unfreeze {
        "/v1/rebalance?unfreeze=true"
    } else {
        "/v1/rebalance"
    };
    api.post(path)?;
    println!(
        "rebalance requested{}",
        if unfreeze { " (moves unfrozen)" } else { "" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_load_and_marks_copies_and_pins() {
        let v = json!({"shards": [
            {"id": 0, "epoch": 3, "primary": "n1", "replicas": [{"node": "n2", "in_sync": true}], "health": "ok", "pinned": null,
             "load": {"reads": 250.0, "writes": 2.0, "read_bytes": 0.0, "write_bytes": 0.0, "score": 252.04}},
            {"id": 1, "epoch": 9, "primary": "n3", "replicas": [{"node": "n1", "in_sync": false}], "health": "under_replicated", "pinned": ["n3", "n1"],
             "load": null}]});
        let out = render(&v);
        assert!(
            out.starts_with("SHARD  EPOCH  PRIMARY    REPLICAS                     LOAD  HEALTH\n"),
            "{out}"
        );
        assert!(
            out.contains("    0      3  n1         n2                          252.0  ok\n"),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "n1(copying){}-  under_replicated pinned\n",
                " ".repeat(21)
            )),
            "{out}"
        );
        assert!(
            out.contains("n1(copying)") && out.contains("under_replicated pinned"),
            "{out}"
        );
    }
}
