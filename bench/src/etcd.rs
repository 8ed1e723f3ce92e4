//! etcd lease keep-alives, the way Kubernetes-style nodes heartbeat: one lease per
//! simulated node, renewed at the same aggregate rate as Torua's heartbeats.
//! Needs the `etcd` cargo feature (etcd-client, which needs `protoc` to build).

use crate::heartbeats::{Args, Step};
use anyhow::{bail, Result};
use serde_json::Value;

#[cfg(not(feature = "etcd"))]
pub async fn compare(_args: &Args, _torua: &[Step]) -> Result<Value> {
    bail!(
        "built without the `etcd` feature: apt-get install -y protobuf-compiler etcd-server, \
         then cargo build --release -p torua-bench --features etcd"
    )
}
