//! Coordinator configuration: a YAML file, overridden by flags and `TORUA_*` env vars
//! (SPEC §6). Errors name the file, line and field.

use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use torua_protocol::duration::{parse_duration, serde_opt};

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
    /// File holding the bearer token that mutating admin routes require.
    #[arg(long, env = "TORUA_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
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
    /// Fraction of unhealthy nodes at which moves freeze (storm guard).
    #[arg(long, env = "TORUA_STORM_FRACTION")]
    pub storm_fraction: Option<f64>,
}

/// The resolved configuration with every default applied.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub cluster_secret_file: PathBuf,
    pub previous_secret_file: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
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
    pub shards: u32,
    pub replication_factor: u32,
    pub move_delay: Duration,
    pub rebalance_delay: Duration,
    pub max_concurrent_moves: usize,
    pub storm_fraction: f64,
}

/// The listener's certificate chain and private key (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Settings {
    /// Reads a YAML settings file.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::from_yaml(&file, &text)
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
        pick!(
            listen,
            data_dir,
            cluster_secret_file,
            previous_secret_file,
            admin_token_file,
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
            shards,
            replication_factor,
            move_delay,
            rebalance_delay,
            max_concurrent_moves,
            storm_fraction
        )
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
        let cfg = Config {
            listen: self
                .listen
                .unwrap_or_else(|| "127.0.0.1:7400".parse().unwrap()),
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("torua-data")),
            cluster_secret_file: self.cluster_secret_file.ok_or(ConfigError::Invalid {
                field: "cluster_secret_file",
                message: "required (create one with `head -c 32 /dev/urandom | xxd -p -c 64`)"
                    .into(),
            })?,
            previous_secret_file: self.previous_secret_file,
            admin_token_file: self.admin_token_file,
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
            shards: self.shards.unwrap_or(64),
            replication_factor: self.replication_factor.unwrap_or(2),
            move_delay: self.move_delay.unwrap_or(Duration::from_secs(30)),
            rebalance_delay: self.rebalance_delay.unwrap_or(Duration::from_secs(10)),
            max_concurrent_moves: self.max_concurrent_moves.unwrap_or(4),
            storm_fraction: self.storm_fraction.unwrap_or(0.5),
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
        if cfg.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if !(1..=65_536).contains(&cfg.shards) {
            return invalid("shards", "must be within 1..=65536");
        }
        if !(1..=7).contains(&cfg.replication_factor) {
            return invalid("replication_factor", "must be within 1..=7");
        }
        if cfg.max_concurrent_moves == 0 {
            return invalid("max_concurrent_moves", "must be at least 1");
        }
        if !(cfg.storm_fraction > 0.0 && cfg.storm_fraction <= 1.0) {
            return invalid("storm_fraction", "must be within (0, 1]");
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
}
