//! The observability assets against the real Prometheus and Alertmanager and a live
//! cluster: every dashboard query evaluates and returns series, every alert and
//! recording rule evaluates without error, every metric the alerts and dashboards use
//! is exported by the live processes, and ToruaNodeUnhealthy travels from the rules
//! through Alertmanager to a webhook, firing and then resolved.
//!
//! Missing tools follow `torua_tests::tools::require_tool`: fail when `CI=true`, skip
//! loudly otherwise.

use crate::assets::{dashboard_queries, read, torua_metric_tokens, DASHBOARDS};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use torua_tests::cluster::{Options, TestCluster};
use torua_tests::proc::workspace_root;
use torua_tests::promstack::{
    alertmanager_config, prometheus_config, target_count, Alertmanager, Prometheus, Webhook,
};
use torua_tests::tools::require_tool;
use torua_tests::{http, poll_until};

const SOON: Duration = Duration::from_secs(30);
const DEADLINE: Duration = Duration::from_secs(60);

/// Dashboard queries (after [`live_expr`]) allowed to return no series in a healthy
/// cluster, each with the reason. Empty: every metric initialises its known label sets
/// to 0, histograms without observations still yield (NaN) quantile series, and the
/// test writes keys and drains a node so data-path and move series exist.
const MAY_BE_EMPTY: &[(&str, &str)] = &[];

/// A dashboard query with Grafana's variables replaced: intervals by `1m`, `$node` by
/// `n1` (in both `="$node"` and `=~"$node"` forms).
fn live_expr(expr: &str) -> String {
    let out = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1m")
        .replace("$node", "n1");
    assert!(
        !out.contains('$'),
        "unknown Grafana variable left in {expr:?}: teach live_expr about it"
    );
    out
}

/// Every `<prefix>[a-z0-9_]+` token in `text` that is not part of a longer identifier.
fn prefixed_tokens(text: &str, prefix: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut found = BTreeSet::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find(prefix) {
        let start = from + pos;
        let mut end = start + prefix.len();
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_')
        {
            end += 1;
        }
        if (start == 0 || !ident(b[start - 1])) && end > start + prefix.len() {
            found.insert(text[start..end].to_string());
        }
        from = end;
    }
    found
}

/// Metric names the alerts and dashboards reference, histogram suffixes stripped;
/// recording rules (names with `:`) are not metrics the processes export.
fn referenced_metrics() -> BTreeSet<String> {
    let mut text = vec![read("alerts/torua.rules.yml")];
    for rel in DASHBOARDS {
        let (dash, queries) = dashboard_queries(rel);
        text.extend(queries.into_iter().map(|q| q.expr));
        for var in dash["templating"]["list"].as_array().into_iter().flatten() {
            text.push(var["definition"].as_str().unwrap_or_default().to_string());
            text.push(var["query"].to_string());
        }
    }
    let text = text.join("\n");
    let mut names = torua_metric_tokens(&text);
    names.extend(prefixed_tokens(&text, "process_"));
    names
        .into_iter()
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .map(str::to_string)
                .unwrap_or(n)
        })
        .filter(|n| !n.contains(':'))
        .collect()
}

fn post(url: &str) -> Value {
    let r = http::send("POST", url, &[], b"").unwrap();
    assert_eq!(r.status, 200, "POST {url}: {}", r.text());
    r.json()
}

#[test]
fn dashboards_evaluate_against_a_live_cluster() {
    let Some(prom_bin) = require_tool("prometheus", "prometheus") else {
        return;
    };
    let started = Instant::now();
    let c = TestCluster::start(Options {
        coordinator_args: [
            "--shards",
            "16",
            "--move-delay",
            "2s",
            "--rebalance-delay",
            "1s",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    });
    c.wait_all("healthy", SOON);
    c.wait_green(SOON);
    for i in 0..32 {
        let k = format!("dash/{i}");
        c.put(&k, k.as_bytes()).unwrap();
        assert_eq!(c.get(&k).unwrap().as_deref(), Some(k.as_bytes()));
    }

    let rules = workspace_root().join("alerts/torua.rules.yml");
    let prom = Prometheus::start(
        &prom_bin,
        c.dir.path(),
        &prometheus_config(&c, &[rules], None),
    );
    prom.wait_targets_up(target_count(&c), DEADLINE);

    // Make shards move: drain n3 (its shards move away), then undrain (they rebalance
    // back), and wait until Prometheus has seen finished drain moves.
    post(&format!("{}/v1/nodes/n3/drain", c.url));
    c.wait_state("n3", "drained", Duration::from_secs(40));
    post(&format!("{}/v1/nodes/n3/undrain", c.url));
    poll_until(DEADLINE, "Prometheus to see finished drain moves", || {
        let r = prom.query(r#"sum(torua_shard_moves_total{reason="drain",result="ok"}) > 0"#)?;
        if r.is_empty() {
            Err("no drain moves scraped yet".into())
        } else {
            Ok(())
        }
    });

    // Every panel query evaluates without a PromQL error.
    let mut queries = Vec::new();
    for rel in DASHBOARDS {
        queries.extend(dashboard_queries(rel).1);
    }
    assert!(
        queries.len() >= 20,
        "only {} dashboard queries",
        queries.len()
    );
    let exprs: Vec<(String, String)> = queries
        .iter()
        .map(|q| (q.where_.clone(), live_expr(&q.expr)))
        .collect();
    let errors: Vec<String> = exprs
        .iter()
        .filter_map(|(w, e)| {
            prom.query(e)
                .err()
                .map(|err| format!("{w}: {e}\n    {err}"))
        })
        .collect();
    assert!(
        errors.is_empty(),
        "dashboard queries fail in Prometheus:\n{}",
        errors.join("\n")
    );

    // Every panel query returns series, bar the allow-list (polled: rates need two
    // samples in their window).
    let mut results: Vec<Vec<Value>> = vec![Vec::new(); exprs.len()];
    let deadline = Instant::now() + DEADLINE;
    loop {
        for (i, (_, e)) in exprs.iter().enumerate() {
            if results[i].is_empty() {
                results[i] = prom.query(e).unwrap_or_default();
            }
        }
        let empty: Vec<String> = exprs
            .iter()
            .zip(&results)
            .filter(|((_, e), r)| r.is_empty() && !MAY_BE_EMPTY.iter().any(|(a, _)| a == e))
            .map(|((w, e), _)| format!("{w}: {e}"))
            .collect();
        if empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard queries without any series after {DEADLINE:?}:\n{}",
            empty.join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Series count and the first series' value (NaN: a quantile of a histogram
    // without observations in the window).
    println!(
        "\n{:>6}  {:>12}  dashboard query (live)",
        "series", "first value"
    );
    for ((_, e), r) in exprs.iter().zip(&results) {
        let first = r
            .first()
            .and_then(|s| s["value"][1].as_str())
            .unwrap_or("-");
        println!("{:>6}  {first:>12.12}  {e}", r.len());
    }

    // The node variable's query lists the nodes.
    let nodes = prom
        .api("label/node/values?match[]=torua_node_state")
        .unwrap();
    assert_eq!(nodes, serde_json::json!(["n1", "n2", "n3"]));

    // Every recording and alerting rule has been evaluated without error.
    let rules = poll_until(SOON, "every rule evaluated", || {
        let groups = prom.api("rules")?["groups"].clone();
        let rules: Vec<Value> = groups
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        if !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown") {
            Ok(rules)
        } else {
            Err(serde_json::to_string(&rules).unwrap())
        }
    });
    assert_eq!(rules.len(), 19, "3 recording rules and 16 alerts");
    let bad: Vec<String> = rules
        .iter()
        .filter(|r| r["health"] != "ok")
        .map(|r| format!("{}: {} {}", r["name"], r["health"], r["lastError"]))
        .collect();
    assert!(
        bad.is_empty(),
        "rules failing to evaluate:\n{}",
        bad.join("\n")
    );

    // The live-metrics catalogue: everything the alerts and dashboards reference is
    // exported by a live process (known label sets are initialised, so nothing
    // should depend on an event having happened).
    let live: BTreeSet<String> = prom
        .api("label/__name__/values")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let referenced = referenced_metrics();
    assert!(
        referenced.len() >= 30,
        "too few metric names found: {referenced:?}"
    );
    // A histogram is exported as its `_bucket`, `_sum` and `_count` series.
    let is_live = |m: &String| {
        live.contains(m)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .all(|s| live.contains(&format!("{m}{s}")))
    };
    // Exported only by coordinators sharing etcd (this cluster runs one on redb);
    // tests/e2e/ha.rs reads them from an HA cluster.
    let ha_only = |m: &String| m == "torua_etcd_request_duration_seconds";
    let missing: Vec<&String> = referenced
        .iter()
        .filter(|m| !is_live(m) && !ha_only(m))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics referenced by alerts/dashboards but not exported by the live processes:\n{}",
        missing
            .iter()
            .map(|m| format!("  {m}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!(
        "{} referenced metrics all live; test took {:?}",
        referenced.len(),
        started.elapsed()
    );
}

/// The rules with ToruaNodeUnhealthy's `for:` shortened to 1s; nothing else changes.
fn with_fast_node_unhealthy(rules: &str) -> String {
    let mut out = String::new();
    let (mut in_rule, mut rewritten) = (false, 0);
    for line in rules.lines() {
        let t = line.trim_start();
        if t.starts_with("- alert:") || t.starts_with("- record:") || t.starts_with("- name:") {
            in_rule = t == "- alert: ToruaNodeUnhealthy";
        }
        if in_rule && t.starts_with("for:") {
            out.push_str(&line[..line.len() - t.len()]);
            out.push_str("for: 1s\n");
            rewritten += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_eq!(rewritten, 1, "ToruaNodeUnhealthy has no single `for:` line");
    out
}

/// The first alert in the webhook's notifications for `alertname` on `node` with
/// `status` (`firing` or `resolved`).
fn notified(hook: &Webhook, alertname: &str, node: &str, status: &str) -> Result<Value, String> {
    let bodies = hook.bodies();
    for b in &bodies {
        let v: Value = serde_json::from_str(b).map_err(|e| format!("bad webhook body {b}: {e}"))?;
        for a in v["alerts"].as_array().into_iter().flatten() {
            if a["labels"]["alertname"] == alertname
                && a["labels"]["node"] == node
                && a["status"] == status
            {
                return Ok(a.clone());
            }
        }
    }
    Err(format!("{} notification(s): {bodies:?}", bodies.len()))
}

#[test]
fn node_unhealthy_alert_reaches_a_webhook() {
    let Some(prom_bin) = require_tool("prometheus", "prometheus") else {
        return;
    };
    let Some(am_bin) = require_tool("prometheus-alertmanager", "prometheus-alertmanager") else {
        return;
    };
    let started = Instant::now();
    let c = TestCluster::start(Options::default());
    c.wait_all("healthy", SOON);

    let hook = Webhook::start();
    let am = Alertmanager::start(&am_bin, c.dir.path(), &alertmanager_config(&hook.url));
    let rules = c.dir.path().join("torua.rules.yml");
    std::fs::write(
        &rules,
        with_fast_node_unhealthy(&read("alerts/torua.rules.yml")),
    )
    .unwrap();
    let prom = Prometheus::start(
        &prom_bin,
        c.dir.path(),
        &prometheus_config(&c, &[rules], Some(am.port)),
    );
    prom.wait_targets_up(target_count(&c), DEADLINE);
    poll_until(DEADLINE, "Prometheus to see n2 healthy", || {
        let r = prom.query(r#"torua_node_state{node="n2",state="healthy"} == 1"#)?;
        if r.len() == 1 {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
    assert!(
        notified(&hook, "ToruaNodeUnhealthy", "n2", "firing").is_err(),
        "fired before anything happened"
    );

    // Freeze n2's storage node: its agent's HTTP check fails, the coordinator marks
    // n2 unhealthy, the rule fires, Alertmanager posts to the webhook.
    c.nodes[1].stop();
    let stopped = Instant::now();
    let alert = poll_until(
        DEADLINE,
        "ToruaNodeUnhealthy n2 firing at the webhook",
        || notified(&hook, "ToruaNodeUnhealthy", "n2", "firing"),
    );
    println!(
        "firing notification {:?} after SIGSTOP: {alert}",
        stopped.elapsed()
    );
    assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
    assert_eq!(alert["labels"]["job"], "torua-coordinator", "{alert}");
    assert_eq!(alert["labels"]["cluster"], "e2e", "{alert}");
    let ann = &alert["annotations"];
    assert_eq!(ann["summary"], "Torua node n2 is unhealthy", "{alert}");
    let description = ann["description"].as_str().unwrap_or_default();
    assert!(description.contains("marked node n2"), "{alert}");
    assert!(!description.contains("{{"), "unexpanded template: {alert}");
    let runbook = ann["runbook_url"].as_str().unwrap_or_default();
    assert!(
        runbook.ends_with("docs/runbooks.md#toruanodeunhealthy"),
        "{alert}"
    );

    // Continue it: the node turns healthy and a resolved notification follows.
    c.nodes[1].cont();
    let resolved = poll_until(
        DEADLINE,
        "ToruaNodeUnhealthy n2 resolved at the webhook",
        || notified(&hook, "ToruaNodeUnhealthy", "n2", "resolved"),
    );
    assert_eq!(resolved["labels"]["alertname"], "ToruaNodeUnhealthy");
    println!("test took {:?}", started.elapsed());
}
