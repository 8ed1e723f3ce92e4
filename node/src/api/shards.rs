//! `/v1/shards`: assignments from the coordinator, snapshots out, pulls in.

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode, Uri};
use torua_protocol::node_api::{AssignRequest, PullRequest, EPOCH_HEADER};
use torua_protocol::node_call::Ticket;
use torua_protocol::ErrorCode;

use super::body::{RespBody, SnapshotBody};
use super::{empty, json, parse_json, required_query, ApiError, App};
use crate::copy::{self, CopyError};

pub fn get(app: &App, id: u32) -> Result<Response<RespBody>, ApiError> {
    app.store
        .info(id)
        .map(|info| json(StatusCode::OK, &info))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("shard {id} not held")))
}

pub async fn put(app: &App, id: u32, body: &[u8]) -> Result<Response<RespBody>, ApiError> {
    let a: AssignRequest = parse_json(body)?;
    let info = app
        .store_op(move |s| s.assign(id, a.epoch, a.role, a.reset))
        .await?;
    tracing::info!(
        shard = id,
        epoch = info.epoch,
        role = info.role.as_str(),
        reset = a.reset,
        "shard assigned"
    );
    Ok(json(StatusCode::OK, &info))
}

pub async fn delete(app: &App, id: u32, uri: &Uri) -> Result<Response<RespBody>, ApiError> {
    let epoch: u64 = required_query(uri, "epoch")?;
    app.store_op(move |s| s.drop_shard(id, epoch)).await?;
    tracing::info!(shard = id, epoch, "shard dropped");
    Ok(empty(StatusCode::NO_CONTENT))
}

/// A pull's `ticket` (a node authenticated by one) reads the shard only at the
/// ticket's epoch: a ticket for an earlier assignment is refused as `stale`.
pub fn snapshot(
    app: &App,
    id: u32,
    ticket: Option<&Ticket>,
) -> Result<Response<RespBody>, ApiError> {
    let (epoch, records) = app.store.snapshot(id)?;
    if let Some(t) = ticket {
        crate::store::fence(id, epoch, t.epoch)?;
    }
    let mut resp = Response::new(http_body_util::BodyExt::boxed(SnapshotBody::new(records)));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(EPOCH_HEADER, HeaderValue::from(epoch));
    Ok(resp)
}

pub async fn pull(app: &App, id: u32, body: &[u8]) -> Result<Response<RespBody>, ApiError> {
    let p: PullRequest = parse_json(body)?;
    let uri = copy::snapshot_uri(&p.from, id).map_err(ApiError::malformed)?;
    // The coordinator assigns (usually with reset) before it pulls; a pull under any
    // other epoch belongs to a plan that has since changed.
    let current = app.store.epoch(id)?;
    crate::store::fence(id, current, p.epoch)?;
    tracing::info!(shard = id, epoch = p.epoch, from = %p.from, "pull started");
    match copy::pull(app, id, p.epoch, uri, p.ticket.as_deref()).await {
        Ok(stats) => {
            app.metrics.copy_done(true);
            tracing::info!(
                shard = id,
                keys = stats.keys,
                bytes = stats.bytes,
                "pull complete"
            );
            Ok(json(StatusCode::OK, &stats))
        }
        Err(e) => {
            app.metrics.copy_done(false);
            tracing::warn!(shard = id, error = %e, "pull failed");
            Err(match e {
                CopyError::Store(s) => s.into(),
                CopyError::Source(m) => {
                    ApiError::new(ErrorCode::Unavailable, m).with_status(StatusCode::BAD_GATEWAY)
                }
            })
        }
    }
}
