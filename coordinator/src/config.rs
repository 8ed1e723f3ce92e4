//! Coordinator configuration: a YAML file, overridden by flags and `TORUA_*` env vars
//! (SPEC §6). Errors name the file, line and field.

use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use torua_protocol::duration::{parse_duration, serde_opt};

/// Request bodies in memory at once: 16 full-size values.
const DEFAULT_INFLIGHT_BODY_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: field `{field}`: {message}")]
    Yaml {
        file: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
    #[error("invalid `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A listener others can reach, without a token for every scope.
    #[error(
        "`listen` {listen} is not a loopback address and {} not set: anyone who \
         reaches that port could drain or remove nodes and read or overwrite data. \
         Make the tokens and give them to the coordinator:\n  \
         torua keygen --token > admin.token; torua keygen --token > client.token; \
         chmod 600 admin.token client.token\n  \
         admin_token_file: /etc/torua/admin.token    (or --admin-token-file, \
         TORUA_ADMIN_TOKEN_FILE)\n  \
         client_token_file: /etc/torua/client.token  (or --client-token-file, \
         TORUA_CLIENT_TOKEN_FILE)\n\
         or listen on 127.0.0.1, or start with --insecure-no-auth \
         (insecure_no_auth: true) to run without them",
        missing_fields(missing)
    )]
    Unprotected {
        listen: SocketAddr,
        missing: Vec<&'static str>,
    },
    /// A resolve error located at the line of the config file that sets its field.
    #[error("{file}:{line}:{column}: {source}")]
    At {
        file: String,
        line: usize,
        column: usize,
        source: Box<ConfigError>,
    },
}

/// "`a` is" / "`a` and `b` are", for [`ConfigError::Unprotected`].
fn missing_fields(missing: &[&'static str]) -> String {
    let names: Vec<String> = missing.iter().map(|f| format!("`{f}`")).collect();
    match names.len() {
        1 => format!("{} is", names[0]),
        _ => format!("{} are", names.join(" and ")),
    }
}

impl ConfigError {
    /// Points an error found after the file was merged with flags and env (a value
    /// out of range, a missing token) at the line of the config `file` (content
    /// `text`) that sets its field, unless `from_flags` says a flag or env var set
    /// that field instead. Errors that already carry a location are unchanged.
    pub fn locate(self, file: &str, text: &str, from_flags: impl Fn(&str) -> bool) -> ConfigError {
        let field = match &self {
            ConfigError::Invalid { field, .. } => *field,
            ConfigError::Unprotected { .. } => "listen",
            _ => return self,
        };
        if from_flags(field) {
            return self;
        }
        match line_of_key(text, field) {
            Some((line, column)) => ConfigError::At {
                file: file.to_string(),
                line,
                column,
                source: Box::new(self),
            },
            None => self,
        }
    }
}

/// Every key of the coordinator's YAML file; each is also a flag and an env var.
#[derive(Debug, Default, Clone, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address of the HTTP API (heartbeats, admin, data, metrics).
    #[arg(long, env = "TORUA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory of the embedded database (coordinator.redb).
    #[arg(long, env = "TORUA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// File holding the cluster secret (>= 32 bytes; one trailing newline ignored).
    #[arg(long, env = "TORUA_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// The previous cluster secret, still accepted during a key rotation.
    #[arg(long, env = "TORUA_PREVIOUS_SECRET_FILE")]
    pub previous_secret_file: Option<PathBuf>,
    /// File holding the bearer token that mutating admin routes require (it is also
    /// accepted on the data path). Mode 600; required off loopback.
    #[arg(long, env = "TORUA_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the bearer token that the data path (`/v1/data/…`) requires.
    /// Mode 600; required off loopback.
    #[arg(long, env = "TORUA_CLIENT_TOKEN_FILE")]
    pub client_token_file: Option<PathBuf>,
    /// Start on a non-loopback `listen` address without admin and client tokens:
    /// whoever reaches the port may then call every route. Never needed on loopback.
    #[arg(
        long,
        env = "TORUA_INSECURE_NO_AUTH",
        num_args = 0..=1,
        default_missing_value = "true",
        // As torua-node's flag of the same env var: true/false, 1/0, yes/no, on/off.
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub insecure_no_auth: Option<bool>,
    /// PEM certificate chain (leaf first): serve HTTPS instead of HTTP. Re-read on SIGHUP.
    #[arg(long, env = "TORUA_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file` (mode 0600). Re-read on SIGHUP.
    #[arg(long, env = "TORUA_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Interval the coordinator asks agents to use (default: keep the agent's own).
    #[arg(long, env = "TORUA_HEARTBEAT_INTERVAL", value_parser = parse_duration)]
    #[serde(default, with = "serde_opt")]
    pub heartbeat_interval: Option<Duration>,
    /// A node without heartbeats for this long is unhealthy, whatever phi says.
    #[arg(long, env = "TORUA_HEARTBEAT_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, with = "serde_opt")]
    pub heartbeat_timeout: Option<Duration>,
    /// phi at which a healthy node turns degraded.
    #[arg(long, env = "TORUA_SUSPECT_PHI")]
    pub suspect_phi: Option<f64>,
    /// phi at which a node turns unhealthy.
    #[arg(long, env = "TORUA_CONVICT_PHI")]
    pub convict_phi: Option<f64>,
    /// Good heartbeats needed to go from unhealthy back to healthy.
    #[arg(long, env = "TORUA_RECOVER_AFTER")]
    pub recover_after: Option<u32>,
    /// Largest accepted difference between a heartbeat's sent_at_ms and our clock.
    #[arg(long, env = "TORUA_MAX_CLOCK_SKEW", value_parser = parse_duration)]
    #[serde(default, with = "serde_opt")]
    pub max_clock_skew: Option<Duration>,
    /// After a restart, nothing moves for this long unless nodes report in.
    #[arg(long, env = "TORUA_STARTUP_GRACE", value_parser = parse_duration)]
    #[serde(default, with = "serde_opt")]
    pub startup_grace: Option<Duration>,
    /// Accept heartbeats from correctly signed node ids never seen before.
    #[arg(long, env = "TORUA_AUTO_JOIN")]
    pub auto_join: Option<bool>,
    /// Simultaneous client connections; further ones wait in the accept queue.
    #[arg(long, env = "TORUA_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Request-body bytes held in memory at once, over all requests; beyond it
    /// requests get 503 `overloaded` with `Retry-After`.
    #[arg(long, env = "TORUA_MAX_INFLIGHT_BODY_BYTES")]
    pub max_inflight_body_bytes: Option<usize>,
    /// Time a request body gets before its bytes start earning more (see
    /// `body_min_rate`); a slower body is cut with 408 `timeout`.
    #[arg(long, env = "TORUA_BODY_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, with = "serde_opt")]
    pub body_timeout: Option<Duration>,
    /// Bytes per second a request body must keep up beyond `body_timeout`.
    #[arg(long, env = "TORUA_BODY_MIN_RATE")]
    pub body_min_rate: Option<u64>,
    /// Number of shards, fixed when the cluster is created.
    #[arg(long, env = "TORUA_SHARDS")]
    pub shards: Option<u32>,
    /// Copies of each shard, fixed when the cluster is created.
    #[arg(long, env = "TORUA_REPLICATION_FACTOR")]
    pub replication_factor: Option<u32>,
    /// How long a node stays unhealthy before its shards are re-replicated elsewhere.
    #[arg(long, env = "TORUA_MOVE_DELAY", value_parser = parse_duration)]
    #[serde(default, with = "serde_opt")]
    pub move_delay: Option<Duration>,
    /// Quiet time after a membership change before rebalancing onto new/returned nodes.
    #[arg(long, env = "TORUA_REBALANCE_DELAY", value_parser = parse_duration)]
    #[serde(default, with = "serde_opt")]
    pub rebalance_delay: Option<Duration>,
    /// Shard copies in flight at once.
    #[arg(long, env = "TORUA_MAX_CONCURRENT_MOVES")]
    pub max_concurrent_moves: Option<usize>,
    /// Move load off hot nodes (role swaps, then copies).
    #[arg(long, env = "TORUA_LOAD_BALANCE")]
    pub load_balance: Option<bool>,
    /// How often the load balancer decides; nodes are sampled 5 times as often.
    #[arg(long, env = "TORUA_LOAD_BALANCE_INTERVAL", value_parser = parse_duration)]
    #[serde(default, with = "serde_opt")]
    pub load_balance_interval: Option<Duration>,
    /// A node is hot above the mean load times (1 + this).
    #[arg(long, env = "TORUA_LOAD_TOLERANCE")]
    pub load_tolerance: Option<f64>,
    /// ... and above this load (operations per second, bytes at 16 KiB per op).
    #[arg(long, env = "TORUA_LOAD_FLOOR")]
    pub load_floor: Option<f64>,
    /// Fraction of unhealthy nodes at which moves freeze (storm guard).
    #[arg(long, env = "TORUA_STORM_FRACTION")]
    pub storm_fraction: Option<f64>,
    /// Calls to a node in a row that go unanswered before the coordinator counts it
    /// unreachable (unhealthy), whatever its heartbeats say.
    #[arg(long, env = "TORUA_UNREACHABLE_AFTER")]
    pub unreachable_after: Option<u32>,
    /// Longest a client write waits for an in-sync holder before that holder is
    /// evicted from the in-sync set and the write acknowledged without it.
    #[arg(long, env = "TORUA_WRITE_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, with = "serde_opt")]
    pub write_timeout: Option<Duration>,
    /// The same for a holder the coordinator already suspects (degraded,
    /// unhealthy, unreachable or slow to answer lately).
    #[arg(long, env = "TORUA_SUSPECT_WRITE_TIMEOUT", value_parser = parse_duration)]
    #[serde(default, with = "serde_opt")]
    pub suspect_write_timeout: Option<Duration>,
    /// Hedged reads: ask another in-sync holder when the first is slow to answer.
    #[arg(long, env = "TORUA_HEDGE_READS")]
    pub hedge_reads: Option<bool>,
    /// etcd endpoints (comma-separated on the command line): keep every durable
    /// state in etcd and elect one leader among the coordinators sharing them.
    /// Without it, state lives in redb under `data_dir` (one coordinator).
    #[arg(long, env = "TORUA_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Option<Vec<String>>,
    /// Key prefix of this cluster in etcd.
    #[arg(long, env = "TORUA_ETCD_PREFIX")]
    pub etcd_prefix: Option<String>,
    /// TTL of the leader's etcd lease: how long a dead leader can hold leadership.
    #[arg(long, env = "TORUA_LEADER_LEASE_TTL", value_parser = parse_duration)]
    #[serde(default, with = "serde_opt")]
    pub leader_lease_ttl: Option<Duration>,
    /// This coordinator's name among its peers (default: `coord-<listen port>`).
    #[arg(long, env = "TORUA_COORDINATOR_ID")]
    pub coordinator_id: Option<String>,
    /// The URL peers, agents and the CLI use to reach this coordinator (default:
    /// the listen address with the scheme it serves).
    #[arg(long, env = "TORUA_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
}

/// The resolved configuration with every default applied.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub cluster_secret_file: PathBuf,
    pub previous_secret_file: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    pub client_token_file: Option<PathBuf>,
    /// A non-loopback listener may start without tokens (`--insecure-no-auth`).
    pub insecure_no_auth: bool,
    /// Certificate and key files when the listener speaks HTTPS.
    pub tls: Option<TlsFiles>,
    pub heartbeat_interval: Option<Duration>,
    pub heartbeat_timeout: Duration,
    pub suspect_phi: f64,
    pub convict_phi: f64,
    pub recover_after: u32,
    pub max_clock_skew: Duration,
    pub startup_grace: Duration,
    pub auto_join: bool,
    pub max_connections: usize,
    pub max_inflight_body_bytes: usize,
    pub body_timeout: Duration,
    pub body_min_rate: u64,
    pub shards: u32,
    pub replication_factor: u32,
    pub move_delay: Duration,
    pub rebalance_delay: Duration,
    pub max_concurrent_moves: usize,
    pub load_balance: bool,
    pub load_balance_interval: Duration,
    pub load_tolerance: f64,
    pub load_floor: f64,
    pub storm_fraction: f64,
    pub unreachable_after: u32,
    pub write_timeout: Duration,
    pub suspect_write_timeout: Duration,
    pub hedge_reads: bool,
    /// Set when state lives in etcd (coordinator HA).
    pub etcd: Option<EtcdConfig>,
    pub coordinator_id: String,
    pub advertise_url: String,
}

/// Where and how coordinators share state and elect a leader.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// Always ends with `/`.
    pub prefix: String,
    pub lease_ttl: Duration,
}

impl Config {
    /// The token files not set, by their keys: a listener off loopback needs none
    /// missing (unless `insecure_no_auth`).
    pub fn missing_tokens(&self) -> Vec<&'static str> {
        [
            ("admin_token_file", self.admin_token_file.is_none()),
            ("client_token_file", self.client_token_file.is_none()),
        ]
        .into_iter()
        .filter_map(|(k, missing)| missing.then_some(k))
        .collect()
    }

    /// Every default, with a placeholder secret path: for unit tests that build a
    /// [`crate::cluster::Cluster`] with `Cluster::for_tests`.
    pub fn for_tests() -> Config {
        Settings {
            cluster_secret_file: Some("/unit-test-secret".into()),
            ..Default::default()
        }
        .resolve()
        .expect("the defaults are valid")
    }
}

fn resolve_etcd(
    endpoints: Option<Vec<String>>,
    prefix: Option<String>,
    ttl: Option<Duration>,
) -> Result<Option<EtcdConfig>, ConfigError> {
    let endpoints: Vec<String> = endpoints
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        if prefix.is_some() || ttl.is_some() {
            return Err(ConfigError::Invalid {
                field: "etcd_endpoints",
                message: "required when etcd_prefix or leader_lease_ttl is set".into(),
            });
        }
        return Ok(None);
    }
    for e in &endpoints {
        // The etcd client is built without TLS (it would pull a second TLS stack):
        // refuse https:// here rather than fail to connect later.
        if !e.starts_with("http://") {
            return Err(ConfigError::Invalid {
                field: "etcd_endpoints",
                message: format!(
                    "{e:?} is not an http:// URL (TLS to etcd is not supported yet: \
                     reach etcd over a private network or a local TLS proxy)"
                ),
            });
        }
    }
    let mut prefix = prefix.unwrap_or_else(|| "/torua/".into());
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    let lease_ttl = ttl.unwrap_or(Duration::from_secs(3));
    if lease_ttl < Duration::from_secs(1) || lease_ttl.subsec_nanos() != 0 {
        return Err(ConfigError::Invalid {
            field: "leader_lease_ttl",
            message: "must be a whole number of seconds, at least 1s (etcd leases count seconds)"
                .into(),
        });
    }
    Ok(Some(EtcdConfig {
        endpoints,
        prefix,
        lease_ttl,
    }))
}

/// The listener's certificate chain and private key (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Calls the macro `$m` with every field of [`Settings`].
macro_rules! settings_fields {
    ($m:ident) => {
        $m!(
            listen,
            data_dir,
            cluster_secret_file,
            previous_secret_file,
            admin_token_file,
            client_token_file,
            insecure_no_auth,
            tls_cert_file,
            tls_key_file,
            heartbeat_interval,
            heartbeat_timeout,
            suspect_phi,
            convict_phi,
            recover_after,
            max_clock_skew,
            startup_grace,
            auto_join,
            max_connections,
            max_inflight_body_bytes,
            body_timeout,
            body_min_rate,
            shards,
            replication_factor,
            move_delay,
            rebalance_delay,
            max_concurrent_moves,
            load_balance,
            load_balance_interval,
            load_tolerance,
            load_floor,
            storm_fraction,
            unreachable_after,
            write_timeout,
            suspect_write_timeout,
            hedge_reads,
            etcd_endpoints,
            etcd_prefix,
            leader_lease_ttl,
            coordinator_id,
            advertise_url
        )
    };
}

impl Settings {
    /// Reads a YAML settings file.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        Self::from_file_with_text(path).map(|(s, _)| s)
    }

    /// [`Settings::from_file`], also returning the file's text (to locate errors
    /// found later with [`ConfigError::locate`]).
    pub fn from_file_with_text(path: &Path) -> Result<(Settings, String), ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::from_yaml(&file, &text).map(|s| (s, text))
    }

    pub fn from_yaml(file: &str, text: &str) -> Result<Settings, ConfigError> {
        let de = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            // Errors raised by our own field parsers (durations) carry the document's
            // location, not the field's: point at the line that sets the field.
            let (line, column) = line_of_key(text, &field)
                .or_else(|| inner.location().map(|l| (l.line(), l.column())))
                .unwrap_or((1, 1));
            ConfigError::Yaml {
                file: file.to_string(),
                line,
                column,
                field,
                message: strip_location(&inner.to_string()),
            }
        })
    }

    /// Flags and env (`self`) win over the file (`file`).
    pub fn over(self, file: Settings) -> Settings {
        macro_rules! pick {
            ($($f:ident),*) => { Settings { $($f: self.$f.or(file.$f)),* } };
        }
        settings_fields!(pick)
    }

    /// Whether the key `name` (as in the YAML file) is set here.
    pub fn sets(&self, name: &str) -> bool {
        macro_rules! find {
            ($($f:ident),*) => { match name { $(stringify!($f) => self.$f.is_some(),)* _ => false } };
        }
        settings_fields!(find)
    }

    pub fn resolve(self) -> Result<Config, ConfigError> {
        let tls = match (self.tls_cert_file, self.tls_key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    field: "tls_key_file",
                    message: "required when tls_cert_file is set".into(),
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    field: "tls_cert_file",
                    message: "required when tls_key_file is set".into(),
                })
            }
        };
        let listen = self
            .listen
            .unwrap_or_else(|| "127.0.0.1:7400".parse().unwrap());
        let etcd = resolve_etcd(self.etcd_endpoints, self.etcd_prefix, self.leader_lease_ttl)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let cfg = Config {
            listen,
            etcd,
            coordinator_id: self
                .coordinator_id
                .unwrap_or_else(|| format!("coord-{}", listen.port())),
            advertise_url: self
                .advertise_url
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| format!("{scheme}://{listen}")),
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("torua-data")),
            cluster_secret_file: self.cluster_secret_file.ok_or(ConfigError::Invalid {
                field: "cluster_secret_file",
                message: "required (create one with `head -c 32 /dev/urandom | xxd -p -c 64`)"
                    .into(),
            })?,
            previous_secret_file: self.previous_secret_file,
            admin_token_file: self.admin_token_file,
            client_token_file: self.client_token_file,
            insecure_no_auth: self.insecure_no_auth.unwrap_or(false),
            tls,
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_timeout: self.heartbeat_timeout.unwrap_or(Duration::from_secs(5)),
            suspect_phi: self.suspect_phi.unwrap_or(3.0),
            convict_phi: self.convict_phi.unwrap_or(8.0),
            recover_after: self.recover_after.unwrap_or(3),
            max_clock_skew: self.max_clock_skew.unwrap_or(Duration::from_secs(30)),
            startup_grace: self.startup_grace.unwrap_or(Duration::from_secs(10)),
            auto_join: self.auto_join.unwrap_or(true),
            max_connections: self.max_connections.unwrap_or(10_000),
            max_inflight_body_bytes: self
                .max_inflight_body_bytes
                .unwrap_or(DEFAULT_INFLIGHT_BODY_BYTES),
            body_timeout: self.body_timeout.unwrap_or(Duration::from_secs(10)),
            body_min_rate: self.body_min_rate.unwrap_or(64 * 1024),
            shards: self.shards.unwrap_or(64),
            replication_factor: self.replication_factor.unwrap_or(2),
            move_delay: self.move_delay.unwrap_or(Duration::from_secs(30)),
            rebalance_delay: self.rebalance_delay.unwrap_or(Duration::from_secs(10)),
            max_concurrent_moves: self.max_concurrent_moves.unwrap_or(4),
            load_balance: self.load_balance.unwrap_or(true),
            load_balance_interval: self
                .load_balance_interval
                .unwrap_or(Duration::from_secs(30)),
            load_tolerance: self.load_tolerance.unwrap_or(0.10),
            load_floor: self.load_floor.unwrap_or(50.0),
            storm_fraction: self.storm_fraction.unwrap_or(0.5),
            unreachable_after: self.unreachable_after.unwrap_or(3),
            write_timeout: self.write_timeout.unwrap_or(Duration::from_secs(1)),
            suspect_write_timeout: self
                .suspect_write_timeout
                .unwrap_or(Duration::from_millis(100)),
            hedge_reads: self.hedge_reads.unwrap_or(true),
        };
        let invalid = |field, message: &str| {
            Err(ConfigError::Invalid {
                field,
                message: message.into(),
            })
        };
        if !(cfg.suspect_phi > 0.0 && cfg.suspect_phi.is_finite()) {
            return invalid("suspect_phi", "must be a positive number");
        }
        if !(cfg.convict_phi > cfg.suspect_phi && cfg.convict_phi.is_finite()) {
            return invalid("convict_phi", "must be a number above suspect_phi");
        }
        if cfg.recover_after == 0 {
            return invalid("recover_after", "must be at least 1");
        }
        if cfg.heartbeat_timeout < Duration::from_millis(10) {
            return invalid("heartbeat_timeout", "must be at least 10ms");
        }
        if cfg.body_min_rate == 0 {
            return invalid("body_min_rate", "must be at least 1 byte per second");
        }
        if cfg.max_inflight_body_bytes < 17 * 1024 * 1024 {
            return invalid(
                "max_inflight_body_bytes",
                "must hold at least one largest value (17 MiB)",
            );
        }
        if cfg.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if !(1..=65_536).contains(&cfg.shards) {
            return invalid("shards", "must be within 1..=65536");
        }
        if !(1..=7).contains(&cfg.replication_factor) {
            return invalid("replication_factor", "must be within 1..=7");
        }
        if !(cfg.load_tolerance > 0.0 && cfg.load_tolerance.is_finite()) {
            return invalid("load_tolerance", "must be a positive number (0.10 is 10 %)");
        }
        if !(cfg.load_floor >= 0.0 && cfg.load_floor.is_finite()) {
            return invalid("load_floor", "must be a number >= 0");
        }
        if cfg.load_balance_interval < Duration::from_millis(500) {
            return invalid("load_balance_interval", "must be at least 500ms");
        }
        if cfg.max_concurrent_moves == 0 {
            return invalid("max_concurrent_moves", "must be at least 1");
        }
        if cfg.unreachable_after == 0 {
            return invalid("unreachable_after", "must be at least 1");
        }
        if cfg.write_timeout < Duration::from_millis(10) {
            return invalid("write_timeout", "must be at least 10ms");
        }
        if cfg.suspect_write_timeout < Duration::from_millis(10)
            || cfg.suspect_write_timeout > cfg.write_timeout
        {
            return invalid(
                "suspect_write_timeout",
                "must be at least 10ms and at most write_timeout",
            );
        }
        if !(cfg.storm_fraction > 0.0 && cfg.storm_fraction <= 1.0) {
            return invalid("storm_fraction", "must be within (0, 1]");
        }
        let missing = cfg.missing_tokens();
        if !missing.is_empty() && !cfg.listen.ip().is_loopback() && !cfg.insecure_no_auth {
            return Err(ConfigError::Unprotected {
                listen: cfg.listen,
                missing,
            });
        }
        Ok(cfg)
    }
}

fn line_of_key(text: &str, field: &str) -> Option<(usize, usize)> {
    let key = field.rsplit('.').next()?;
    text.lines().enumerate().find_map(|(i, l)| {
        let indent = l.len() - l.trim_start().len();
        l.trim_start()
            .strip_prefix(key)
            .filter(|rest| rest.trim_start().starts_with(':'))
            .map(|_| (i + 1, indent + 1))
    })
}

/// serde_norway appends "at line L column C", which our prefix already says.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_round_trips() {
        let text = include_str!("../coordinator.example.yaml");
        let cfg = Settings::from_yaml("coordinator.example.yaml", text)
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(cfg.listen.port(), 7400);
        assert_eq!(cfg.heartbeat_timeout, Duration::from_secs(5));
    }

    #[test]
    fn bad_files_name_file_line_and_field() {
        let table = [
            (
                "listen: 1.2.3.4:1\nbogus: 3\n",
                "c.yaml:2:",
                "unknown field `bogus`",
            ),
            (
                "listen: 127.0.0.1:7400\nheartbeat_timeout: 5\n",
                "c.yaml:2:",
                "field `heartbeat_timeout`",
            ),
            (
                "listen: 127.0.0.1:7400\nheartbeat_timeout: 5x\n",
                "c.yaml:2:",
                "unknown unit",
            ),
            ("recover_after: -1\n", "c.yaml:1:", "field `recover_after`"),
            ("listen: [1\n", "c.yaml:", "field"),
        ];
        for (text, at, what) in table {
            let err = Settings::from_yaml("c.yaml", text).unwrap_err().to_string();
            assert!(
                err.starts_with(at) && err.contains(what),
                "{text:?} → {err}"
            );
        }
    }

    #[test]
    fn flags_win_and_values_are_checked() {
        let file = Settings::from_yaml(
            "f",
            "suspect_phi: 2\nconvict_phi: 9\ncluster_secret_file: /s\n",
        )
        .unwrap();
        let flags = Settings {
            convict_phi: Some(10.0),
            ..Default::default()
        };
        let cfg = flags.over(file).resolve().unwrap();
        assert_eq!((cfg.suspect_phi, cfg.convict_phi), (2.0, 10.0));
        let bad = Settings {
            suspect_phi: Some(9.0),
            convict_phi: Some(8.0),
            cluster_secret_file: Some("/s".into()),
            ..Default::default()
        };
        assert!(bad
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("convict_phi"));
        assert!(Settings::default()
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("cluster_secret_file"));
    }

    #[test]
    fn tls_needs_both_files() {
        let half = Settings::from_yaml("f", "cluster_secret_file: /s\ntls_cert_file: /c.pem\n")
            .unwrap()
            .resolve()
            .unwrap_err();
        assert_eq!(
            half.to_string(),
            "invalid `tls_key_file`: required when tls_cert_file is set"
        );
        let both = Settings::from_yaml(
            "f",
            "cluster_secret_file: /s\ntls_cert_file: /c.pem\ntls_key_file: /k.pem\n",
        )
        .unwrap()
        .resolve()
        .unwrap();
        let tls = both.tls.unwrap();
        assert_eq!(
            (tls.cert.to_str(), tls.key.to_str()),
            (Some("/c.pem"), Some("/k.pem"))
        );
    }

    #[test]
    fn etcd_settings_resolve_with_defaults_and_are_checked() {
        let secret = Some(PathBuf::from("/s"));
        let yaml = "etcd_endpoints: [\"http://a:2379\", \"http://b:2379\"]\netcd_prefix: /prod\n";
        let cfg = Settings::from_yaml("c.yaml", yaml)
            .unwrap()
            .over(Settings {
                cluster_secret_file: secret.clone(),
                listen: Some("127.0.0.1:7410".parse().unwrap()),
                ..Default::default()
            })
            .resolve()
            .unwrap();
        let etcd = cfg.etcd.unwrap();
        assert_eq!(etcd.endpoints, ["http://a:2379", "http://b:2379"]);
        assert_eq!(etcd.prefix, "/prod/");
        assert_eq!(etcd.lease_ttl, Duration::from_secs(3));
        assert_eq!(cfg.coordinator_id, "coord-7410");
        assert_eq!(cfg.advertise_url, "http://127.0.0.1:7410");

        let bad = |s: Settings, field: &str, why: &str| {
            let e = Settings {
                cluster_secret_file: secret.clone(),
                ..s
            }
            .resolve()
            .unwrap_err()
            .to_string();
            assert!(e.contains(field) && e.contains(why), "{e}");
        };
        bad(
            Settings {
                etcd_endpoints: Some(vec!["a:2379".into()]),
                ..Default::default()
            },
            "etcd_endpoints",
            "http://",
        );
        bad(
            Settings {
                etcd_endpoints: Some(vec!["http://a:2379".into()]),
                leader_lease_ttl: Some(Duration::from_millis(1500)),
                ..Default::default()
            },
            "leader_lease_ttl",
            "whole number",
        );
        bad(
            Settings {
                etcd_prefix: Some("/x/".into()),
                ..Default::default()
            },
            "etcd_endpoints",
            "required",
        );
        let e = Settings::from_yaml("c.yaml", "listen: 127.0.0.1:1\netcd_endpoints: 5\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.yaml:2:") && e.contains("etcd_endpoints"),
            "{e}"
        );
    }

    fn with_secret(yaml: &str) -> String {
        format!("cluster_secret_file: /s\n{yaml}")
    }

    #[test]
    fn off_loopback_both_tokens_are_required_unless_insecure() {
        #[rustfmt::skip]
        let cases: [(&str, Option<&str>); 10] = [
            ("listen: 127.0.0.1:7400\n", None),
            ("listen: 127.3.2.1:7400\n", None),
            ("listen: \"[::1]:7400\"\n", None),
            ("listen: 0.0.0.0:7400\n", Some("`admin_token_file` and `client_token_file` are not set")),
            ("listen: \"[::]:7400\"\n", Some("`admin_token_file` and `client_token_file` are not set")),
            ("listen: 10.0.0.5:7400\nadmin_token_file: /a\n", Some("`client_token_file` is not set")),
            ("listen: 10.0.0.5:7400\nclient_token_file: /c\n", Some("`admin_token_file` is not set")),
            ("listen: 10.0.0.5:7400\nadmin_token_file: /a\nclient_token_file: /c\n", None),
            ("listen: 0.0.0.0:7400\ninsecure_no_auth: true\n", None),
            ("listen: 0.0.0.0:7400\ninsecure_no_auth: false\n", Some("are not set")),
        ];
        for (yaml, want) in cases {
            let got = Settings::from_yaml("c.yaml", &with_secret(yaml))
                .unwrap()
                .resolve();
            match (got, want) {
                (Ok(_), None) => {}
                (Err(e), Some(want)) => {
                    let e = e.to_string();
                    assert!(e.contains(want), "{yaml:?}: {e}");
                    // The message says how to make the tokens and where to put them.
                    for fix in [
                        "torua keygen --token > admin.token",
                        "chmod 600 admin.token client.token",
                        "admin_token_file: ",
                        "client_token_file: ",
                        "--insecure-no-auth",
                    ] {
                        assert!(e.contains(fix), "{yaml:?}: no {fix:?} in {e}");
                    }
                }
                (got, want) => panic!("{yaml:?}: got {got:?}, want {want:?}"),
            }
        }
        let cfg = Settings::from_yaml(
            "c.yaml",
            &with_secret("listen: 0.0.0.0:1\ninsecure_no_auth: true\n"),
        )
        .unwrap()
        .resolve()
        .unwrap();
        assert!(cfg.insecure_no_auth);
        assert_eq!(
            cfg.missing_tokens(),
            ["admin_token_file", "client_token_file"]
        );
        let e = Settings::from_yaml("c.yaml", "listen: 0.0.0.0:1\ninsecure_no_auth: maybe\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.yaml:2:") && e.contains("field `insecure_no_auth`"),
            "{e}"
        );
    }

    #[test]
    fn errors_after_merging_point_at_the_file_line_that_set_the_field() {
        let text = with_secret("shards: 8\nlisten: 0.0.0.0:7400\n");
        let file = Settings::from_yaml("c.yaml", &text).unwrap();
        let none = Settings::default();
        let e = none.clone().over(file.clone()).resolve().unwrap_err();
        let e = e.locate("c.yaml", &text, |f| none.sets(f)).to_string();
        assert!(
            e.starts_with("c.yaml:3:1: `listen` 0.0.0.0:7400 is not a loopback address"),
            "{e}"
        );
        // Set by a flag instead: the file's line would mislead, so no location.
        let flags = Settings {
            listen: Some("0.0.0.0:7401".parse().unwrap()),
            ..Default::default()
        };
        let e = flags.clone().over(file).resolve().unwrap_err();
        let e = e.locate("c.yaml", &text, |f| flags.sets(f)).to_string();
        assert!(e.starts_with("`listen` 0.0.0.0:7401"), "{e}");

        let text = with_secret("recover_after: 0\n");
        let e = Settings::from_yaml("c.yaml", &text)
            .unwrap()
            .resolve()
            .unwrap_err()
            .locate("c.yaml", &text, |_| false)
            .to_string();
        assert_eq!(e, "c.yaml:2:1: invalid `recover_after`: must be at least 1");
    }

    #[test]
    fn the_no_auth_flag_needs_no_value() {
        use clap::Parser;
        #[derive(Parser)]
        struct Args {
            #[command(flatten)]
            settings: Settings,
        }
        let parse = |args: &[&str]| Args::try_parse_from(args).map(|a| a.settings.insecure_no_auth);
        assert_eq!(parse(&["c", "--insecure-no-auth"]).unwrap(), Some(true));
        assert_eq!(
            parse(&["c", "--insecure-no-auth", "--shards", "4"]).unwrap(),
            Some(true)
        );
        assert_eq!(
            parse(&["c", "--insecure-no-auth", "false"]).unwrap(),
            Some(false)
        );
        assert_eq!(
            parse(&["c", "--insecure-no-auth", "1"]).unwrap(),
            Some(true)
        );
        assert!(parse(&["c", "--insecure-no-auth", "maybe"]).is_err());
        let s = Args::try_parse_from(["c", "--client-token-file", "/c"])
            .unwrap()
            .settings;
        assert!(s.sets("client_token_file") && !s.sets("admin_token_file") && !s.sets("nope"));
    }
}
