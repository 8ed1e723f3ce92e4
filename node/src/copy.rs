//! Pulling a shard from another node: stream its snapshot and apply each record
//! under the version rule while live writes keep arriving.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode, Uri};
use serde::Serialize;
use torua_protocol::node_api::TICKET_HEADER;

use crate::api::App;
use crate::store::StoreError;
use crate::wire::Decoder;

/// A source that sends nothing for this long is treated as failed, so a pull cannot
/// hang forever on a half-dead peer.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CopyStats {
    /// Records received (values and tombstones).
    pub keys: u64,
    /// Snapshot bytes received.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source failed, answered an error, or sent a broken or truncated stream.
    #[error("{0}")]
    Source(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `{from}/v1/shards/{id}/snapshot`, refusing anything but a plain `http://host:port`.
pub fn snapshot_uri(from: &str, id: u32) -> Result<Uri, String> {
    let base = from.trim_end_matches('/');
    let uri: Uri = format!("{base}/v1/shards/{id}/snapshot")
        .parse()
        .map_err(|e| format!("from {from:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(format!("from {from:?} must be an http:// URL with a host"));
    }
    Ok(uri)
}

/// Streams `uri` (a source's snapshot of shard `id`) into the shard at `epoch`,
/// showing the source the coordinator's `ticket` as `Torua-Ticket`.
pub async fn pull(
    app: &App,
    id: u32,
    epoch: u64,
    uri: Uri,
    ticket: Option<&str>,
) -> Result<CopyStats, CopyError> {
    let src = |m: String| CopyError::Source(format!("pull of shard {id} from {uri}: {m}"));
    let mut req = Request::get(uri.clone());
    if let Some(t) = ticket {
        req = req.header(TICKET_HEADER, t);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| src(format!("bad ticket header: {e}")))?;
    let resp = tokio::time::timeout(IDLE_TIMEOUT, app.client.request(req))
        .await
        .map_err(|_| src("no response".into()))?
        .map_err(|e| src(format!("request failed: {e}")))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != StatusCode::OK {
        // Keep only the start of an error body for the message.
        let mut msg = Vec::new();
        while let Ok(Some(Ok(f))) = tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
            if let Ok(d) = f.into_data() {
                msg.extend_from_slice(&d);
            }
            if msg.len() > 1024 {
                break;
            }
        }
        msg.truncate(1024);
        return Err(src(format!(
            "source answered {status}: {}",
            String::from_utf8_lossy(&msg)
        )));
    }
    let mut decoder = Decoder::new();
    let mut stats = CopyStats { keys: 0, bytes: 0 };
    loop {
        let frame = match tokio::time::timeout(IDLE_TIMEOUT, body.frame()).await {
            Err(_) => return Err(src(format!("stream stalled for {IDLE_TIMEOUT:?}"))),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(src(format!(
                    "stream failed after {} bytes: {e}",
                    stats.bytes
                )))
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        stats.bytes += data.len() as u64;
        app.metrics.copy_bytes(data.len() as u64);
        decoder.push(&data);
        let mut batch = Vec::new();
        while let Some(r) = decoder.next_record().map_err(|e| src(e.to_string()))? {
            batch.push(r);
        }
        if !batch.is_empty() {
            stats.keys += batch.len() as u64;
            // Applied under the pull's epoch: if the shard is reassigned meanwhile,
            // the pull stops instead of writing into the new assignment.
            app.store_op(move |s| s.write(id, epoch, batch)).await?;
        }
    }
    decoder.finish().map_err(|e| src(e.to_string()))?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_uris() {
        let ok =
            |from: &str, want: &str| assert_eq!(snapshot_uri(from, 3).unwrap().to_string(), want);
        ok(
            "http://127.0.0.1:7402",
            "http://127.0.0.1:7402/v1/shards/3/snapshot",
        );
        ok("http://n2:7402/", "http://n2:7402/v1/shards/3/snapshot");
        for bad in [
            "",
            "127.0.0.1:7402",
            "https://n2",
            "ftp://n2",
            "http://",
            "not a url",
        ] {
            assert!(snapshot_uri(bad, 3).is_err(), "{bad:?}");
        }
    }
}
