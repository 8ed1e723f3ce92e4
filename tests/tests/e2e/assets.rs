//! Observability and deployment assets checked with the real tools: alert rules and
//! their unit tests (`promtool`), the Alertmanager example (`amtool`), Prometheus
//! configs, every Grafana dashboard query (parsed by `promtool` as recording rules),
//! metric names against the catalogue, and `compose.yaml` (`docker-compose config`).
//!
//! Missing tools follow the project policy of `torua_tests::tools::require_tool`:
//! fail when `CI=true`, skip loudly otherwise.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use torua_tests::tools::require_tool;

/// The repository root: the parent of the `tests` crate.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

pub(crate) fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs `tool args…` in the repository root; panics with its output on failure, else
/// returns its stdout.
fn run_ok(tool: &Path, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`{} {}` failed ({}):\n{stdout}{}",
        tool.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Metric names the binaries export (SPEC §7, docs/metrics.md). To be replaced by a
/// scrape of live processes.
const KNOWN_METRICS: &[&str] = &[
    // coordinator
    "torua_node_load",
    "torua_shard_load",
    "torua_shards_too_hot",
    "torua_node_state",
    "torua_node_state_changes_total",
    "torua_node_heartbeat_age_seconds",
    "torua_node_phi",
    "torua_node_check_status",
    "torua_node_metric",
    "torua_heartbeats_received_total",
    "torua_heartbeat_handle_seconds",
    "torua_shards",
    "torua_shards_under_replicated",
    "torua_shards_unavailable",
    "torua_shard_moves_total",
    "torua_shard_move_duration_seconds",
    "torua_moves_in_flight",
    "torua_moves_frozen",
    "torua_failure_detection_seconds",
    "torua_build_info",
    "torua_cluster_status",
    "torua_nodes",
    "torua_coordinator_is_leader",
    "torua_leader_changes_total",
    "torua_fenced_commits_total",
    "torua_etcd_request_duration_seconds",
    "torua_data_hedged_reads_total",
    "torua_data_write_superseded_total",
    "torua_node_reachable",
    "torua_node_call_failures_total",
    "torua_shard_commit_failures_total",
    // agent
    "torua_agent_check_status",
    "torua_agent_check_duration_seconds",
    "torua_agent_heartbeats_sent_total",
    "torua_agent_heartbeat_rtt_seconds",
    "torua_agent_liveness",
    "torua_agent_coordinator_switches_total",
    "torua_agent_readiness",
    "torua_agent_build_info",
    // node
    "torua_kv_requests_total",
    "torua_kv_request_duration_seconds",
    "torua_kv_keys",
    "torua_kv_bytes",
    "torua_kv_shards",
    "torua_kv_fenced_total",
    "torua_kv_copy_bytes_total",
    "torua_kv_copies_total",
    "torua_kv_build_info",
];

/// Every `torua_[a-z0-9_]+` token in `text` (not part of a longer identifier).
pub(crate) fn torua_metric_tokens(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut found = BTreeSet::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find("torua_") {
        let start = from + pos;
        let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
        let mut end = start + "torua_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if (start == 0 || !ident(bytes[start - 1])) && end > start + "torua_".len() {
            found.insert(text[start..end].to_string());
        }
        from = end;
    }
    found
}

/// A token is known if it is in the catalogue, possibly with a histogram suffix.
fn is_known_metric(name: &str) -> bool {
    KNOWN_METRICS.contains(&name)
        || ["_bucket", "_sum", "_count"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| KNOWN_METRICS.contains(&base))
        })
}

pub(crate) const DASHBOARDS: &[&str] = &[
    "dashboards/cluster-overview.json",
    "dashboards/node-detail.json",
];

/// A dashboard query as it appears, with the panel it came from.
pub(crate) struct Query {
    pub(crate) where_: String,
    pub(crate) expr: String,
}

/// Parses a dashboard and checks its structure; returns its panel queries.
pub(crate) fn dashboard_queries(rel: &str) -> (Value, Vec<Query>) {
    let dash: Value = serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    for key in ["title", "uid"] {
        let v = dash[key].as_str().unwrap_or_default();
        assert!(!v.is_empty(), "{rel}: missing {key}");
    }
    assert!(
        dash["schemaVersion"].as_u64().is_some(),
        "{rel}: missing schemaVersion"
    );
    let top = dash["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("{rel}: no panels"));
    // Rows may nest their panels when collapsed.
    let mut panels: Vec<&Value> = Vec::new();
    for p in top {
        panels.push(p);
        if let Some(inner) = p["panels"].as_array() {
            panels.extend(inner);
        }
    }
    let mut ids = BTreeSet::new();
    let mut queries = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{rel}: panel {title:?} has no id"));
        assert!(ids.insert(id), "{rel}: duplicate panel id {id}");
        assert!(
            p["gridPos"].is_object(),
            "{rel}: panel {title:?} has no gridPos"
        );
        if p["type"] == "row" {
            continue;
        }
        assert!(!title.is_empty(), "{rel}: panel {id} has no title");
        let ds = &p["datasource"];
        assert_eq!(
            ds["type"], "prometheus",
            "{rel}: panel {title:?} datasource {ds}"
        );
        assert_eq!(
            ds["uid"], "prometheus",
            "{rel}: panel {title:?} datasource {ds}"
        );
        let targets = p["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "{rel}: panel {title:?} has no targets");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                !expr.trim().is_empty(),
                "{rel}: panel {title:?} has a target without expr"
            );
            queries.push(Query {
                where_: format!("{rel}: panel {title:?}"),
                expr: expr.to_string(),
            });
        }
    }
    (dash, queries)
}

/// Replaces Grafana variables with values Prometheus accepts.
fn substitute_grafana_vars(expr: &str) -> String {
    let out = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("=\"$node\"", "=~\".+\"")
        .replace("$node", ".+");
    assert!(
        !out.contains('$'),
        "unknown Grafana variable left in {expr:?}"
    );
    out
}

#[test]
fn alert_rules_pass_promtool_check() {
    let Some(promtool) = require_tool("promtool", "prometheus") else {
        return;
    };
    let out = run_ok(&promtool, &["check", "rules", "alerts/torua.rules.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn alert_rule_unit_tests_pass() {
    let Some(promtool) = require_tool("promtool", "prometheus") else {
        return;
    };
    let out = run_ok(&promtool, &["test", "rules", "alerts/tests/torua.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every alert has a runbook section, a runbook_url pointing at it, and unit tests
/// where it fires and where it does not.
#[test]
fn every_alert_has_a_runbook_and_firing_and_silent_tests() {
    let rules = read("alerts/torua.rules.yml");
    let tests = read("alerts/tests/torua.test.yml");
    let runbooks = read("docs/runbooks.md");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    assert!(
        alerts.len() >= 10,
        "expected at least 10 alerts, found {alerts:?}"
    );
    let test_lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for alert in alerts {
        let anchor = alert.to_lowercase();
        assert!(
            rules.contains(&format!("docs/runbooks.md#{anchor}\"")),
            "{alert}: runbook_url must end in docs/runbooks.md#{anchor}"
        );
        assert!(
            runbooks.lines().any(|l| l.trim() == format!("## {alert}")),
            "docs/runbooks.md: no `## {alert}` section"
        );
        let (mut fires, mut silent) = (false, false);
        for (i, l) in test_lines.iter().enumerate() {
            if *l != format!("alertname: {alert}") {
                continue;
            }
            match test_lines.get(i + 1) {
                Some(&"exp_alerts: []") => silent = true,
                Some(&"exp_alerts:") => fires = true,
                other => panic!("{alert}: unexpected line after alertname in the tests: {other:?}"),
            }
        }
        assert!(fires, "{alert}: no promtool test case where it fires");
        assert!(
            silent,
            "{alert}: no promtool test case where it does not fire"
        );
    }
}

#[test]
fn alertmanager_example_is_valid() {
    let Some(amtool) = require_tool("amtool", "prometheus-alertmanager") else {
        return;
    };
    run_ok(&amtool, &["check-config", "alerts/alertmanager.yml"]);
    let route = |labels: &[&str]| {
        let mut args = vec![
            "config",
            "routes",
            "test",
            "--config.file=alerts/alertmanager.yml",
        ];
        args.extend(labels);
        run_ok(&amtool, &args).trim().to_string()
    };
    assert_eq!(
        route(&["alertname=ToruaShardsUnavailable", "severity=critical"]),
        "torua-pager"
    );
    assert_eq!(
        route(&[
            "alertname=ToruaNodeUnhealthy",
            "severity=warning",
            "node=n1"
        ]),
        "torua-team"
    );
}

#[test]
fn prometheus_configs_are_valid() {
    let Some(promtool) = require_tool("promtool", "prometheus") else {
        return;
    };
    run_ok(
        &promtool,
        &["check", "config", "deploy/prometheus/prometheus-dev.yml"],
    );
    // The compose config loads the rules from the container's path: point it here.
    let dir = tempfile::tempdir().unwrap();
    let alerts = repo_root().join("alerts");
    let text = read("deploy/prometheus/prometheus.yml")
        .replace("/etc/prometheus/alerts/", &format!("{}/", alerts.display()));
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, text).unwrap();
    run_ok(&promtool, &["check", "config", cfg.to_str().unwrap()]);
}

#[test]
fn dashboards_are_well_formed_and_their_queries_parse() {
    let mut queries = Vec::new();
    let mut uids = BTreeSet::new();
    for rel in DASHBOARDS {
        let (dash, qs) = dashboard_queries(rel);
        assert!(
            uids.insert(dash["uid"].as_str().unwrap().to_string()),
            "{rel}: duplicate uid"
        );
        queries.extend(qs);
    }
    assert!(
        queries.len() >= 20,
        "only {} dashboard queries",
        queries.len()
    );
    let Some(promtool) = require_tool("promtool", "prometheus") else {
        return;
    };

    // Each query becomes a recording rule, so promtool parses it.
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let expr = serde_json::to_string(&substitute_grafana_vars(&q.expr)).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {expr}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, &rules).unwrap();
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    if !out.status.success() {
        let index: Vec<String> = queries
            .iter()
            .enumerate()
            .map(|(i, q)| format!("query_{i}: {} {}", q.where_, q.expr))
            .collect();
        panic!(
            "promtool rejects a dashboard query:\n{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            index.join("\n")
        );
    }
}

#[test]
fn alerts_and_dashboards_use_only_known_metrics() {
    let mut sources = vec![(
        "alerts/torua.rules.yml".to_string(),
        read("alerts/torua.rules.yml"),
    )];
    for rel in DASHBOARDS {
        let (dash, queries) = dashboard_queries(rel);
        let mut text: Vec<String> = queries.into_iter().map(|q| q.expr).collect();
        for var in dash["templating"]["list"].as_array().into_iter().flatten() {
            text.push(var["definition"].as_str().unwrap_or_default().to_string());
            text.push(var["query"].to_string());
        }
        sources.push((rel.to_string(), text.join("\n")));
    }
    let mut unknown = Vec::new();
    for (rel, text) in &sources {
        let tokens = torua_metric_tokens(text);
        assert!(!tokens.is_empty(), "{rel}: no torua_ metric found at all");
        unknown.extend(
            tokens
                .into_iter()
                .filter(|t| !is_known_metric(t))
                .map(|t| format!("{rel}: {t}")),
        );
    }
    assert!(
        unknown.is_empty(),
        "metric names not exported by any binary:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn metric_token_scanner() {
    let t = torua_metric_tokens(
        "sum(rate(torua_shard_moves_total[1m])) / x_torua_no torua:rec:rule torua_kv_keys{a=\"torua-node\"}",
    );
    assert_eq!(
        t.into_iter().collect::<Vec<_>>(),
        ["torua_kv_keys", "torua_shard_moves_total"]
    );
    assert!(is_known_metric("torua_heartbeat_handle_seconds_bucket"));
    assert!(!is_known_metric("torua_heartbeat_handle_seconds_total"));
    assert_eq!(
        substitute_grafana_vars("rate(m{node=\"$node\"}[$__rate_interval])"),
        "rate(m{node=~\".+\"}[1m])"
    );
}

#[test]
fn compose_config_is_valid() {
    let Some(dc) = require_tool("docker-compose", "docker-compose") else {
        return;
    };
    run_ok(&dc, &["-f", "compose.yaml", "config", "-q"]);
}
