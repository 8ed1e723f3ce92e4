//! `/v1/shards`: assignments from the coordinator, snapshots out, pulls in.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use torua_protocol::ErrorCode;

use super::body::{read_bounded, RespBody, SnapshotBody};
use super::{empty, json, parse_json, required_query, ApiError, App};
use crate::copy::{self, CopyError};
use crate::store::{Role, ShardInfo};

/// Assignment and pull bodies are tiny; this bounds what a broken client can send.
const JSON_LIMIT: usize = 64 * 1024;

#[derive(Serialize)]
pub struct List {
    pub shards: Vec<ShardInfo>,
}

#[derive(Deserialize)]
struct Assign {
    epoch: u64,
    role: Role,
    #[serde(default)]
    reset: bool,
}

#[derive(Deserialize)]
struct Pull {
    epoch: u64,
    from: String,
}

pub fn get(app: &App, id: u32) -> Result<Response<RespBody>, ApiError> {
    app.store
        .info(id)
        .map(|info| json(StatusCode::OK, &info))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("shard {id} not held")))
}

pub async fn put(
    app: &App,
    id: u32,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, ApiError> {
    let (parts, body) = req.into_parts();
    let body = read_bounded(&parts.headers, body, JSON_LIMIT, "request body").await?;
    let a: Assign = parse_json(&body)?;
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

pub async fn delete(
    app: &App,
    id: u32,
    req: &Request<Incoming>,
) -> Result<Response<RespBody>, ApiError> {
    let epoch: u64 = required_query(req, "epoch")?;
    app.store_op(move |s| s.drop_shard(id, epoch)).await?;
    tracing::info!(shard = id, epoch, "shard dropped");
    Ok(empty(StatusCode::NO_CONTENT))
}

pub fn snapshot(app: &App, id: u32) -> Result<Response<RespBody>, ApiError> {
    let (epoch, records) = app.store.snapshot(id)?;
    let mut resp = Response::new(http_body_util::BodyExt::boxed(SnapshotBody::new(records)));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(super::data::EPOCH_HEADER, HeaderValue::from(epoch));
    Ok(resp)
}

pub async fn pull(
    app: &App,
    id: u32,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, ApiError> {
    let (parts, body) = req.into_parts();
    let body = read_bounded(&parts.headers, body, JSON_LIMIT, "request body").await?;
    let p: Pull = parse_json(&body)?;
    let uri = copy::snapshot_uri(&p.from, id).map_err(ApiError::malformed)?;
    // The coordinator assigns (usually with reset) before it pulls; a pull under any
    // other epoch belongs to a plan that has since changed.
    let current = app.store.epoch(id)?;
    crate::store::fence(id, current, p.epoch)?;
    tracing::info!(shard = id, epoch = p.epoch, from = %p.from, "pull started");
    match copy::pull(app, id, p.epoch, uri).await {
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
