//! The agent's configuration: YAML file, `--flags` and `TORUA_*` env vars merged with
//! the precedence flag/env > file > default, then validated; errors name file, line, field.

use crate::locate::locate;
use clap::Parser;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use torua_protocol::duration::parse_duration;
use torua_protocol::keyfile::{self, KeyFileError};
use torua_protocol::validate::{check_node_addr, is_valid_name};
use torua_protocol::{Capacity, CheckKind, NodeKey, MAX_CHECKS};

/// Shortest secret accepted in `cluster_secret_file` (SPEC §2).
pub use torua_protocol::keyfile::MIN_SECRET_BYTES;
/// Most coordinators an agent may be given.
pub const MAX_COORDINATORS: usize = 16;

/// Command line of `torua-agent`. Every flag also reads a `TORUA_*` env var; a flag or
/// env var wins over the config file, which wins over the built-in default.
#[derive(Debug, Default, Clone, Parser)]
#[command(
    name = "torua-agent",
    version,
    about = "Torua sidecar: local checks, probes, signed heartbeats"
)]
pub struct Cli {
    /// YAML config file.
    #[arg(long, env = "TORUA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's id, `[A-Za-z0-9_.:-]{1,64}`.
    #[arg(long, env = "TORUA_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// Base URL of the storage node, reported in heartbeats.
    #[arg(long, env = "TORUA_NODE_ADDR", value_name = "URL")]
    pub node_addr: Option<String>,
    /// Base URL(s) of the coordinators (http:// or https://), comma-separated:
    /// heartbeats go to one of them and follow the leader.
    #[arg(long, env = "TORUA_COORDINATOR", value_name = "URL[,URL...]")]
    pub coordinator: Option<String>,
    /// CA certificate(s) to trust for an https:// coordinator (default: the system's).
    #[arg(long, env = "TORUA_COORDINATOR_CA_FILE", value_name = "FILE")]
    pub coordinator_ca_file: Option<PathBuf>,
    /// Address of the agent's own HTTP server (probes and metrics).
    #[arg(long, env = "TORUA_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Heartbeat interval, e.g. `1s`.
    #[arg(long, env = "TORUA_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// File holding this node's key as 64 hex characters (production).
    #[arg(long, env = "TORUA_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// File holding the raw cluster secret (dev); the node key is derived from it.
    #[arg(long, env = "TORUA_CLUSTER_SECRET_FILE", value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Accept a key or secret file that group or others may read.
    #[arg(long, env = "TORUA_ALLOW_INSECURE_KEY_FILE")]
    pub allow_insecure_key_file: bool,
    /// Placement weight reported as `capacity.weight`.
    #[arg(long, env = "TORUA_CAPACITY_WEIGHT", value_name = "WEIGHT")]
    pub capacity_weight: Option<f64>,
    /// Most shards placement may put on this node (`capacity.max_shards`).
    #[arg(long, env = "TORUA_CAPACITY_MAX_SHARDS", value_name = "N")]
    pub capacity_max_shards: Option<u32>,
    /// Path whose filesystem is reported as `disk_free_bytes`/`disk_total_bytes`.
    #[arg(long, env = "TORUA_METRICS_DISK_PATH", value_name = "PATH")]
    pub metrics_disk_path: Option<PathBuf>,
    /// Adds an http check named `node-http` on URL, affecting liveness and readiness.
    #[arg(long, env = "TORUA_HTTP_CHECK", value_name = "URL")]
    pub http_check: Option<String>,
}

/// The agent's configuration (the YAML file's shape). See `docs/agent.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's id, `[A-Za-z0-9_.:-]{1,64}`. Required (here or `--node-id`).
    #[serde(default)]
    pub node_id: String,
    /// Base URL of the storage node reported in heartbeats.
    #[serde(default = "default_node_addr")]
    pub node_addr: String,
    /// Base URLs of the coordinators (YAML: one URL or a list); heartbeats go to
    /// `{coordinator}/v1/heartbeat` of one of them, which follows the leader.
    #[serde(
        default = "default_coordinator",
        deserialize_with = "url_list::deserialize"
    )]
    pub coordinator: Vec<String>,
    /// PEM CA certificate(s) to trust for an `https://` coordinator; without it, the
    /// system's trust roots.
    #[serde(default)]
    pub coordinator_ca_file: Option<PathBuf>,
    /// Address the agent's probe and metrics server binds.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Heartbeat interval (the coordinator may ask for another one in its ack).
    #[serde(default = "default_interval", with = "serde_str")]
    pub interval: Duration,
    /// File holding the node key as 64 hex characters (production).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// File holding the raw cluster secret (dev). Its bytes are used exactly, except
    /// that one trailing `\n` is stripped.
    #[serde(default)]
    pub cluster_secret_file: Option<PathBuf>,
    /// Accept a key or secret file that group or others may read.
    #[serde(default)]
    pub allow_insecure_key_file: bool,
    /// What this node offers to placement.
    #[serde(default)]
    pub capacity: Capacity,
    /// Node metrics pushed in every heartbeat.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Local checks; liveness and readiness are the worst of the checks affecting them.
    #[serde(default)]
    pub checks: Vec<CheckConfig>,
}

/// `metrics:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Path whose filesystem is reported as `disk_free_bytes` and `disk_total_bytes`.
    #[serde(default = "default_disk_path")]
    pub disk_path: PathBuf,
}

/// One entry of `checks:`. Kind-specific fields are only valid for their kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Unique name, `[A-Za-z0-9_.:-]{1,64}`.
    pub name: String,
    /// `http`, `tcp`, `exec`, `disk` or `process`.
    pub kind: CheckKind,
    /// http: URL to GET (plain `http://`).
    #[serde(default)]
    pub url: Option<String>,
    /// http: status code that passes (default 200).
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// tcp: `host:port` to connect to.
    #[serde(default)]
    pub addr: Option<String>,
    /// exec: argv; exit 0 passes, 1 warns, anything else (or a timeout) fails.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// disk: path whose filesystem is checked.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// disk: warn below this free percentage (default 10).
    #[serde(default)]
    pub warn_free_percent: Option<f64>,
    /// disk: fail below this free percentage (default 5).
    #[serde(default)]
    pub fail_free_percent: Option<f64>,
    /// process: file holding the pid; fails if it is gone or stopped.
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// How often the check runs.
    #[serde(default = "default_check_interval", with = "serde_str")]
    pub interval: Duration,
    /// A run taking longer fails with `timeout after …`. Must be <= interval.
    #[serde(default = "default_check_timeout", with = "serde_str")]
    pub timeout: Duration,
    /// Consecutive failures before the reported status becomes `fail`.
    #[serde(default = "default_threshold")]
    pub failure_threshold: u32,
    /// Consecutive non-failures before a failed check is reported healthy again.
    #[serde(default = "default_threshold")]
    pub success_threshold: u32,
    /// Which aggregate statuses this check feeds.
    #[serde(default = "default_affects")]
    pub affects: Vec<Affect>,
}

/// An aggregate a check contributes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affect {
    Liveness,
    Readiness,
}

/// A check's kind with its validated, defaulted parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeSpec {
    Http {
        url: hyper::Uri,
        expect_status: u16,
    },
    Tcp {
        addr: String,
    },
    Exec {
        argv: Vec<String>,
    },
    Disk {
        path: PathBuf,
        warn_free_percent: f64,
        fail_free_percent: f64,
    },
    Process {
        pid_file: PathBuf,
    },
}

fn default_node_addr() -> String {
    "http://127.0.0.1:7401".into()
}
fn default_coordinator() -> Vec<String> {
    vec!["http://127.0.0.1:7400".into()]
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7501))
}
fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_disk_path() -> PathBuf {
    PathBuf::from("/")
}
fn default_check_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_check_timeout() -> Duration {
    Duration::from_millis(500)
}
fn default_threshold() -> u32 {
    1
}
fn default_affects() -> Vec<Affect> {
    vec![Affect::Liveness, Affect::Readiness]
}
fn default_expect_status() -> u16 {
    200
}
fn default_warn_free_percent() -> f64 {
    10.0
}
fn default_fail_free_percent() -> f64 {
    5.0
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            disk_path: default_disk_path(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        serde_norway::from_str("{}").expect("every field has a default")
    }
}

/// Why the configuration cannot be used. Displays as `FILE:LINE:COL: field `x`: …`
/// when the fault is in the file.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid YAML or does not fit the schema.
    #[error("{0}")]
    Yaml(String),
    /// A value is out of range or inconsistent; `at` is `FILE:LINE:COL` when known.
    #[error("{}field `{field}`: {message}", at.as_ref().map(|a| format!("{a}: ")).unwrap_or_default())]
    Invalid {
        at: Option<String>,
        field: String,
        message: String,
    },
    #[error("{0}")]
    Key(String),
}

impl Config {
    /// Reads `--config` (if any), overlays flags and env vars, and validates,
    /// including that the key or secret file is usable.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let (mut config, source) = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                (Self::parse(&text, path)?, Some((path.as_path(), text)))
            }
            None => (Config::default(), None),
        };
        config.overlay(cli);
        let src = source.as_ref().map(|(p, t)| (*p, t.as_str()));
        config.validate().map_err(|(field, message)| {
            let at = src.map(|(path, text)| {
                let (line, col) = locate_nearest(text, &field);
                format!("{}:{line}:{col}", path.display())
            });
            ConfigError::Invalid { at, field, message }
        })?;
        config.node_key()?;
        Ok(config)
    }

    /// Parses YAML text; `file` only names the source in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        serde_norway::from_str(text).map_err(|e| ConfigError::Yaml(render_yaml_error(file, &e)))
    }

    /// Flags and env vars win over the file.
    fn overlay(&mut self, cli: &Cli) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        set(&mut self.node_id, &cli.node_id);
        set(&mut self.node_addr, &cli.node_addr);
        if let Some(list) = &cli.coordinator {
            self.coordinator = split_list(list);
        }
        set(&mut self.listen, &cli.listen);
        set(&mut self.interval, &cli.interval);
        set(&mut self.capacity.weight, &cli.capacity_weight);
        set(&mut self.metrics.disk_path, &cli.metrics_disk_path);
        if cli.capacity_max_shards.is_some() {
            self.capacity.max_shards = cli.capacity_max_shards;
        }
        if cli.key_file.is_some() {
            self.key_file = cli.key_file.clone();
        }
        if cli.coordinator_ca_file.is_some() {
            self.coordinator_ca_file = cli.coordinator_ca_file.clone();
        }
        if cli.cluster_secret_file.is_some() {
            self.cluster_secret_file = cli.cluster_secret_file.clone();
        }
        self.allow_insecure_key_file |= cli.allow_insecure_key_file;
        if let Some(url) = &cli.http_check {
            self.checks.push(CheckConfig::http("node-http", url));
        }
    }

    /// Checks ranges and consistency; the error is `(field path, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_string(), m));
        if self.node_id.is_empty() {
            return err(
                "node_id",
                "missing: set it in the config file, with --node-id or TORUA_NODE_ID".into(),
            );
        }
        if !is_valid_name(&self.node_id) {
            return err(
                "node_id",
                format!("{:?} must match [A-Za-z0-9_.:-]{{1,64}}", self.node_id),
            );
        }
        if let Err(m) = check_node_addr(&self.node_addr) {
            return err("node_addr", format!("{:?} {m}", self.node_addr));
        }
        validate_coordinators(&self.coordinator)?;
        if self.coordinator_ca_file.is_some()
            && !self.coordinator.iter().any(|c| c.starts_with("https://"))
        {
            return err(
                "coordinator_ca_file",
                format!(
                    "is set, but no coordinator is https:// ({})",
                    self.coordinator.join(", ")
                ),
            );
        }
        let ms = self.interval.as_millis();
        if !(10..=600_000).contains(&ms) {
            return err("interval", "must be within 10ms..=10m".into());
        }
        match (&self.key_file, &self.cluster_secret_file) {
            (Some(_), Some(_)) => {
                return err(
                    "key_file",
                    "set exactly one of key_file and cluster_secret_file, not both".into(),
                )
            }
            (None, None) => return err(
                "key_file",
                "missing: set key_file (--key-file) or cluster_secret_file (--cluster-secret-file)"
                    .into(),
            ),
            _ => {}
        }
        if !(self.capacity.weight.is_finite() && self.capacity.weight > 0.0) {
            return err("capacity.weight", "must be a finite number > 0".into());
        }
        if self.checks.len() > MAX_CHECKS {
            return err("checks", format!("at most {MAX_CHECKS} checks"));
        }
        let mut names = HashSet::new();
        for (i, c) in self.checks.iter().enumerate() {
            let field = |f: &str| format!("checks[{i}].{f}");
            if !is_valid_name(&c.name) {
                return Err((
                    field("name"),
                    format!("{:?} must match [A-Za-z0-9_.:-]{{1,64}}", c.name),
                ));
            }
            if !names.insert(c.name.as_str()) {
                return Err((field("name"), format!("duplicate check name {:?}", c.name)));
            }
            if c.interval < Duration::from_millis(10) {
                return Err((field("interval"), "must be at least 10ms".into()));
            }
            if c.timeout.is_zero() || c.timeout > c.interval {
                return Err((
                    field("timeout"),
                    "must be > 0 and <= the check's interval".into(),
                ));
            }
            if c.failure_threshold == 0 {
                return Err((field("failure_threshold"), "must be >= 1".into()));
            }
            if c.success_threshold == 0 {
                return Err((field("success_threshold"), "must be >= 1".into()));
            }
            c.probe().map_err(|(f, m)| (field(f), m))?;
        }
        Ok(())
    }

    /// Loads the signing key: from `key_file`, or derived from `cluster_secret_file`
    /// (the rules are `torua_protocol::keyfile`'s, shared with `torua-node`).
    pub fn node_key(&self) -> Result<NodeKey, ConfigError> {
        let insecure = self.allow_insecure_key_file;
        match (&self.key_file, &self.cluster_secret_file) {
            (Some(path), None) => Ok(keyfile::load_key_file(path, insecure)?),
            (None, Some(path)) => Ok(keyfile::load_secret_as_key(path, &self.node_id, insecure)?),
            _ => Err(ConfigError::Key(
                "set exactly one of key_file and cluster_secret_file".into(),
            )),
        }
    }
}

impl CheckConfig {
    /// An http check with every default, as `--http-check` adds.
    pub fn http(name: &str, url: &str) -> CheckConfig {
        CheckConfig {
            name: name.into(),
            kind: CheckKind::Http,
            url: Some(url.into()),
            expect_status: None,
            addr: None,
            command: None,
            path: None,
            warn_free_percent: None,
            fail_free_percent: None,
            pid_file: None,
            interval: default_check_interval(),
            timeout: default_check_timeout(),
            failure_threshold: default_threshold(),
            success_threshold: default_threshold(),
            affects: default_affects(),
        }
    }

    pub fn affects(&self, a: Affect) -> bool {
        self.affects.contains(&a)
    }

    /// The kind's parameters, or `(field, message)` for a missing or misplaced one.
    pub fn probe(&self) -> Result<ProbeSpec, (&'static str, String)> {
        let kind = self.kind.as_str();
        let given: [(&'static str, bool, CheckKind); 8] = [
            ("url", self.url.is_some(), CheckKind::Http),
            (
                "expect_status",
                self.expect_status.is_some(),
                CheckKind::Http,
            ),
            ("addr", self.addr.is_some(), CheckKind::Tcp),
            ("command", self.command.is_some(), CheckKind::Exec),
            ("path", self.path.is_some(), CheckKind::Disk),
            (
                "warn_free_percent",
                self.warn_free_percent.is_some(),
                CheckKind::Disk,
            ),
            (
                "fail_free_percent",
                self.fail_free_percent.is_some(),
                CheckKind::Disk,
            ),
            ("pid_file", self.pid_file.is_some(), CheckKind::Process),
        ];
        for (field, set, owner) in given {
            if set && owner != self.kind {
                return Err((field, format!("not used by kind {kind}")));
            }
        }
        let required = |field: &'static str| (field, format!("required for kind {kind}"));
        Ok(match self.kind {
            CheckKind::Http => {
                let url = self.url.as_deref().ok_or_else(|| required("url"))?;
                ProbeSpec::Http {
                    url: http_uri(url).map_err(|m| ("url", m))?,
                    expect_status: self.expect_status.unwrap_or_else(default_expect_status),
                }
            }
            CheckKind::Tcp => ProbeSpec::Tcp {
                addr: self.addr.clone().ok_or_else(|| required("addr"))?,
            },
            CheckKind::Exec => {
                let argv = self.command.clone().ok_or_else(|| required("command"))?;
                if argv.is_empty() || argv[0].is_empty() {
                    return Err(("command", "needs at least the program to run".into()));
                }
                ProbeSpec::Exec { argv }
            }
            CheckKind::Disk => {
                let warn = self
                    .warn_free_percent
                    .unwrap_or_else(default_warn_free_percent);
                let fail = self
                    .fail_free_percent
                    .unwrap_or_else(default_fail_free_percent);
                if !(0.0..=100.0).contains(&warn) {
                    return Err(("warn_free_percent", "must be within 0..=100".into()));
                }
                if !(0.0..=warn).contains(&fail) {
                    return Err((
                        "fail_free_percent",
                        "must be within 0..=warn_free_percent".into(),
                    ));
                }
                ProbeSpec::Disk {
                    path: self.path.clone().ok_or_else(|| required("path"))?,
                    warn_free_percent: warn,
                    fail_free_percent: fail,
                }
            }
            CheckKind::Process => ProbeSpec::Process {
                pid_file: self.pid_file.clone().ok_or_else(|| required("pid_file"))?,
            },
        })
    }
}

/// Parses a plain `http://host:port[/path]` URL.
pub fn http_uri(s: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") if uri.authority().is_some() => Ok(uri),
        Some("https") => Err(format!(
            "{s:?}: checks speak plain http:// (local checks need no TLS; use a tcp or exec check for an https endpoint)"
        )),
        _ => Err(format!("{s:?} must be a URL like http://host:port")),
    }
}

/// The coordinator's URL: `http://`, or `https://` in an agent built with TLS.
pub fn coordinator_uri(s: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("https") if !cfg!(feature = "tls") => Err(format!(
            "{s:?}: this agent was built without TLS (cargo feature `tls`, on by default)"
        )),
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        _ => Err(format!(
            "{s:?} must be a URL like http://host:port or https://host:port"
        )),
    }
}

/// A comma-separated list of URLs as given by `--coordinator` / `TORUA_COORDINATOR`
/// (or a YAML string): each entry trimmed; empty entries stay, for validation to name.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(|e| e.trim().to_string()).collect()
}

/// A coordinator base URL without its trailing `/`, the form entries are compared in.
pub fn normalize_base(s: &str) -> &str {
    s.trim_end_matches('/')
}

/// Every entry a usable coordinator URL, at least one, none twice. The field is
/// `coordinator` for a single entry, `coordinator[i]` in a list.
fn validate_coordinators(list: &[String]) -> Result<(), (String, String)> {
    if list.is_empty() {
        return Err((
            "coordinator".into(),
            "is empty: give at least one coordinator URL".into(),
        ));
    }
    if list.len() > MAX_COORDINATORS {
        return Err((
            "coordinator".into(),
            format!(
                "lists {} coordinators, at most {MAX_COORDINATORS} are allowed",
                list.len()
            ),
        ));
    }
    let field = |i: usize| {
        if list.len() == 1 {
            "coordinator".to_string()
        } else {
            format!("coordinator[{i}]")
        }
    };
    for (i, c) in list.iter().enumerate() {
        coordinator_uri(c).map_err(|m| (field(i), m))?;
        if let Some(j) = list[..i]
            .iter()
            .position(|o| normalize_base(o) == normalize_base(c))
        {
            return Err((field(i), format!("{c:?} is listed twice (also entry {j})")));
        }
    }
    Ok(())
}

/// Where `field` or, failing that, its closest spelled-out ancestor sits.
fn locate_nearest(text: &str, field: &str) -> (usize, usize) {
    let mut path = field;
    loop {
        if let Some(at) = locate(text, path) {
            return at;
        }
        match path.rfind(['.', '[']) {
            Some(cut) => path = &path[..cut],
            None => return (1, 1),
        }
    }
}

/// Serde for durations written `500ms`, `2s`, `1m`. The value is parsed inside the
/// visitor so the YAML error carries the value's own line and column.
mod serde_str {
    use serde::de::{Deserializer, Error, Visitor};
    use std::fmt;
    use std::time::Duration;

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration like 500ms, 2s or 1m")
        }

        fn visit_str<E: Error>(self, s: &str) -> Result<Duration, E> {
            super::parse_duration(s).map_err(E::custom)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationVisitor)
    }
}

/// Serde for `coordinator:`: one URL (commas separate several, as on the command
/// line) or a list of URLs.
mod url_list {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use std::fmt;

    struct UrlListVisitor;

    impl<'de> Visitor<'de> for UrlListVisitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a URL or a list of URLs")
        }

        fn visit_str<E: Error>(self, s: &str) -> Result<Vec<String>, E> {
            Ok(super::split_list(s))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(url) = seq.next_element::<String>()? {
                out.push(url.trim().to_string());
            }
            Ok(out)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_any(UrlListVisitor)
    }
}

impl From<KeyFileError> for ConfigError {
    fn from(e: KeyFileError) -> Self {
        match e {
            KeyFileError::Read { path, source } => ConfigError::Read { path, source },
            KeyFileError::Refused(message) => ConfigError::Key(message),
        }
    }
}

/// `FILE:LINE:COL: field `x`: message` from a serde_norway error.
fn render_yaml_error(file: &Path, e: &serde_norway::Error) -> String {
    let mut text = e.to_string();
    let at = match e.location() {
        Some(loc) => {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(stripped) = text.strip_suffix(&suffix) {
                text = stripped.to_string();
            }
            format!("{}:{}:{}", file.display(), loc.line(), loc.column())
        }
        None => format!("{}:1:1", file.display()),
    };
    let (path, message) = match text.split_once(": ") {
        Some((p, m)) if !p.is_empty() && !p.contains(char::is_whitespace) => {
            (Some(p.to_string()), m.to_string())
        }
        _ => (None, text.clone()),
    };
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|pre| message.strip_prefix(pre))
        .and_then(|rest| rest.split('`').next());
    let field = match (path, named) {
        (Some(p), Some(n)) => format!("{p}.{n}"),
        (None, Some(n)) => n.to_string(),
        (Some(p), None) => p,
        (None, None) => return format!("{at}: {message}"),
    };
    format!("{at}: field `{field}`: {message}")
}

#[cfg(test)]
mod tests;
