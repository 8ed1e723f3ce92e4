//! `torua drain|undrain|remove NODE…`.

use super::Api;

pub fn drain(api: &Api, nodes: &[String], drain: bool, as_json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(!nodes.is_empty(), "name at least one node");
    let action = if drain { "drain" } else { "undrain" };
    let mut failed = 0;
    for id in nodes {
        match api.post(&format!("/v1/nodes/{id}/{action}")) {
            Ok(v) if as_json => println!("{v}"),
            Ok(v) => println!("{id}: {}", v["state"].as_str().unwrap_or("?")),
            Err(e) => {
                eprintln!("{id}: {e}");
                failed += 1;
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of {} nodes failed", nodes.len());
    Ok(())
}

/// Decommissions nodes: refused while a node holds shards unless `force`.
pub fn remove(api: &Api, nodes: &[String], force: bool, as_json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(!nodes.is_empty(), "name at least one node");
    let query = if force { "?force=true" } else { "" };
    let mut failed = 0;
    for id in nodes {
        match api.delete(&format!("/v1/nodes/{id}{query}")) {
            Ok(v) if as_json => println!("{v}"),
            Ok(_) => println!("{id}: removed"),
            Err(e) => {
                eprintln!("{id}: {e}");
                failed += 1;
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of {} nodes failed", nodes.len());
    Ok(())
}
