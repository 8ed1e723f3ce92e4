//! `/v1/data`: fenced reads and versioned writes of one key.

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode, Uri};
use torua_protocol::node_api::{decode_key, KeyList, EPOCH_HEADER, SHARD_HEADER, VERSION_HEADER};
use torua_protocol::ErrorCode;

use super::body::{full, RespBody};
use super::{empty, json, parse_num, query_param, required_query, ApiError, App};
use crate::wire::Record;

fn header<T: std::str::FromStr>(
    headers: &HeaderMap,
    name: &str,
    display: &str,
) -> Result<Option<T>, ApiError> {
    match headers.get(name) {
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
    headers: &HeaderMap,
    name: &str,
    display: &str,
) -> Result<T, ApiError> {
    header(headers, name, display)?
        .ok_or_else(|| ApiError::malformed(format!("missing header {display}")))
}

struct Target {
    key: String,
    shard: u32,
    epoch: u64,
}

fn target(raw_key: &str, headers: &HeaderMap) -> Result<Target, ApiError> {
    let key = decode_key(raw_key).map_err(|e| ApiError::malformed(e.to_string()))?;
    Ok(Target {
        key,
        shard: required(headers, SHARD_HEADER, "Torua-Shard")?,
        epoch: required(headers, EPOCH_HEADER, "Torua-Epoch")?,
    })
}

pub async fn get(
    app: &App,
    raw_key: &str,
    headers: &HeaderMap,
) -> Result<Response<RespBody>, ApiError> {
    let t = target(raw_key, headers)?;
    let found = app
        .store
        .get(t.shard, t.epoch, &t.key)
        .map_err(|f| fenced(app, f.into()))?;
    let (Some(value), version) = found else {
        let mut e = ApiError::new(ErrorCode::NotFound, format!("key {:?} not found", t.key));
        if found.1 > 0 {
            // A delete: its version orders it among the key's writes for readers.
            e = e.with_version(found.1);
        }
        return Err(e);
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

/// `value` was read (within [`MAX_VALUE_BYTES`](torua_protocol::node_api::MAX_VALUE_BYTES))
/// before the write is fenced: the call's signature covers it.
pub async fn put(
    app: &App,
    raw_key: &str,
    headers: &HeaderMap,
    value: Bytes,
) -> Result<Response<RespBody>, ApiError> {
    let t = target(raw_key, headers)?;
    let version: u64 = required(headers, VERSION_HEADER, "Torua-Version")?;
    write(app, t, version, Some(value)).await
}

pub async fn delete(
    app: &App,
    raw_key: &str,
    headers: &HeaderMap,
) -> Result<Response<RespBody>, ApiError> {
    let t = target(raw_key, headers)?;
    let version: u64 = required(headers, VERSION_HEADER, "Torua-Version")?;
    write(app, t, version, None).await
}

/// A duplicate version is acknowledged (the write is idempotent); an older one is
/// refused as `superseded` with the held version in `Torua-Version`, so the
/// coordinator retries above it instead of acknowledging a write that is not there.
async fn write(
    app: &App,
    t: Target,
    version: u64,
    value: Option<Bytes>,
) -> Result<Response<RespBody>, ApiError> {
    let (shard, epoch) = (t.shard, t.epoch);
    let record = Record {
        key: t.key,
        version,
        value,
    };
    app.store_op(move |s| s.write_live(shard, epoch, record))
        .await
        .map_err(|e| fenced(app, e.into()))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

fn fenced(app: &App, e: ApiError) -> ApiError {
    app.count_fence(&e);
    e
}

/// Most keys one list call returns.
pub const MAX_LIST_KEYS: usize = 10_000;

/// `GET /v1/data?shard=N&prefix=P[&after=K][&limit=L]`: a page of the shard's
/// live keys under the prefix, after `K`, at most `L` (default and cap
/// [`MAX_LIST_KEYS`]); `Torua-Epoch` is checked when sent.
pub fn list(app: &App, uri: &Uri, headers: &HeaderMap) -> Result<Response<RespBody>, ApiError> {
    let shard: u32 = required_query(uri, "shard")?;
    let prefix = query_param(uri, "prefix")?.unwrap_or_default();
    let after = query_param(uri, "after")?;
    let limit = match query_param(uri, "limit")? {
        None => MAX_LIST_KEYS,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIST_KEYS).contains(l))
            .ok_or_else(|| {
                ApiError::malformed(format!("limit must be within 1..={MAX_LIST_KEYS}"))
            })?,
    };
    let epoch: Option<u64> = header(headers, EPOCH_HEADER, "Torua-Epoch")?;
    let keys = app
        .store
        .keys_page(shard, epoch, &prefix, after.as_deref(), limit)
        .map_err(|f| fenced(app, f.into()))?;
    Ok(json(StatusCode::OK, &KeyList { keys }))
}
