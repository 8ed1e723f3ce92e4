//! `/v1/data`: fenced reads and versioned writes of one key.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use torua_protocol::ErrorCode;

use super::body::{full, read_bounded, RespBody};
use super::{empty, json, parse_num, query_param, required_query, ApiError, App};
use crate::key::decode_key;
use crate::wire::{Record, MAX_VALUE_BYTES};

pub const SHARD_HEADER: &str = "torua-shard";
pub const EPOCH_HEADER: &str = "torua-epoch";
pub const VERSION_HEADER: &str = "torua-version";

fn header<T: std::str::FromStr>(
    req: &Request<Incoming>,
    name: &str,
    display: &str,
) -> Result<Option<T>, ApiError> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| ApiError::malformed(format!("header {display} is not ASCII")))?;
            parse_num(&format!("header {display}"), s).map(Some)
        }
    }
}

fn required<T: std::str::FromStr>(
    req: &Request<Incoming>,
    name: &str,
    display: &str,
) -> Result<T, ApiError> {
    header(req, name, display)?
        .ok_or_else(|| ApiError::malformed(format!("missing header {display}")))
}

struct Target {
    key: String,
    shard: u32,
    epoch: u64,
}

fn target(raw_key: &str, req: &Request<Incoming>) -> Result<Target, ApiError> {
    let key = decode_key(raw_key).map_err(|e| ApiError::malformed(e.to_string()))?;
    Ok(Target {
        key,
        shard: required(req, SHARD_HEADER, "Torua-Shard")?,
        epoch: required(req, EPOCH_HEADER, "Torua-Epoch")?,
    })
}

pub async fn get(
    app: &App,
    raw_key: &str,
    req: &Request<Incoming>,
) -> Result<Response<RespBody>, ApiError> {
    let t = target(raw_key, req)?;
    let found = app
        .store
        .get(t.shard, t.epoch, &t.key)
        .map_err(|f| fenced(app, f.into()))?;
    let Some((value, version)) = found else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("key {:?} not found", t.key),
        ));
    };
    let mut resp = Response::new(full(value));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(VERSION_HEADER, HeaderValue::from(version));
    Ok(resp)
}

pub async fn put(
    app: &App,
    raw_key: &str,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, ApiError> {
    let t = target(raw_key, &req)?;
    let version: u64 = required(&req, VERSION_HEADER, "Torua-Version")?;
    // Fence before reading the body, so a refused write does not cost 16 MiB.
    app.store
        .epoch(t.shard)
        .map_err(|f| fenced(app, f.into()))
        .and_then(|current| {
            crate::store::fence(t.shard, current, t.epoch).map_err(|f| fenced(app, f.into()))
        })?;
    let (parts, body) = req.into_parts();
    let value = read_bounded(&parts.headers, body, MAX_VALUE_BYTES, "value").await?;
    write(app, t, version, Some(value)).await
}

pub async fn delete(
    app: &App,
    raw_key: &str,
    req: &Request<Incoming>,
) -> Result<Response<RespBody>, ApiError> {
    let t = target(raw_key, req)?;
    let version: u64 = required(req, VERSION_HEADER, "Torua-Version")?;
    write(app, t, version, None).await
}

/// Older and duplicate versions are acknowledged too: the write is idempotent, and
/// the newer state the node already has is what the coordinator wants.
async fn write(
    app: &App,
    t: Target,
    version: u64,
    value: Option<bytes::Bytes>,
) -> Result<Response<RespBody>, ApiError> {
    let (shard, epoch) = (t.shard, t.epoch);
    let record = Record {
        key: t.key,
        version,
        value,
    };
    app.store_op(move |s| s.write(shard, epoch, vec![record]))
        .await
        .map_err(|e| fenced(app, e.into()))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

fn fenced(app: &App, e: ApiError) -> ApiError {
    app.count_fence(&e);
    e
}

#[derive(Serialize)]
struct Keys {
    keys: Vec<String>,
}

/// `GET /v1/data?shard=N&prefix=P`; `Torua-Epoch` is checked when sent.
pub fn list(app: &App, req: &Request<Incoming>) -> Result<Response<RespBody>, ApiError> {
    let shard: u32 = required_query(req, "shard")?;
    let prefix = query_param(req, "prefix")?.unwrap_or_default();
    let epoch: Option<u64> = header(req, EPOCH_HEADER, "Torua-Epoch")?;
    let keys = app
        .store
        .keys(shard, epoch, &prefix)
        .map_err(|f| fenced(app, f.into()))?;
    Ok(json(StatusCode::OK, &Keys { keys }))
}
