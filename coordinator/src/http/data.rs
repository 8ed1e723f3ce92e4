//! `/v1/data/{key}` and its Torua alias `/data/{key}`: PUT → 204, GET → 200 with the
//! bytes, DELETE → 204, missing → 404; `GET /v1/data?prefix=` lists keys.

use super::body::read_body;
use super::respond::{error, method_not_allowed, ok, Resp};
use crate::cluster::Cluster;
use crate::datapath::DataError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::json;
use torua_protocol::node_api::MAX_VALUE_BYTES;
use torua_protocol::ErrorCode;

pub async fn key_route(cluster: &Cluster, req: Request<Incoming>, raw: &str) -> Resp {
    let key = match percent_decode_str(raw).decode_utf8() {
        Ok(k) => k.into_owned(),
        Err(_) => {
            return error(
                ErrorCode::Malformed,
                "key is not valid UTF-8 after percent-decoding",
            )
        }
    };
    let result = match *req.method() {
        Method::GET => match cluster.data_get(&key).await {
            Ok(bytes) => {
                return Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(Full::new(bytes))
                    .expect("static headers")
            }
            Err(e) => Err(e),
        },
        Method::PUT => {
            let body = match read_body(req, MAX_VALUE_BYTES).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            cluster.data_put(&key, body).await
        }
        Method::DELETE => cluster.data_delete(&key).await,
        _ => return method_not_allowed("GET, PUT, DELETE"),
    };
    match result {
        Ok(()) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()))
            .expect("static headers"),
        Err(e) => data_error(e),
    }
}

/// Keys one page lists when the client names no `limit`, and the most it may ask.
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;

/// `GET /v1/data?prefix=P[&after=K][&limit=N]`: a page of keys and the cursor of
/// the next one (`next`, absent on the last page).
pub async fn list(cluster: &Cluster, req: &Request<Incoming>) -> Resp {
    let param = |name: &str| {
        req.uri()
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .map(|p| {
                percent_decode_str(&p.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            })
    };
    let prefix = param("prefix").unwrap_or_default();
    let after = param("after");
    let limit = match param("limit") {
        None => DEFAULT_PAGE,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return error(
                    ErrorCode::Malformed,
                    format!("limit must be a number within 1..={MAX_PAGE}, not {l:?}"),
                )
            }
        },
    };
    match cluster.data_list(&prefix, after.as_deref(), limit).await {
        Ok((keys, next)) => ok(&json!({ "prefix": prefix, "keys": keys, "next": next })),
        Err(e) => data_error(e),
    }
}

fn data_error(e: DataError) -> Resp {
    match e {
        DataError::BadKey(_) => error(ErrorCode::Malformed, e.to_string()),
        DataError::NotFound(_) => error(ErrorCode::NotFound, e.to_string()),
        DataError::Unavailable { .. } => error(ErrorCode::Unavailable, e.to_string()),
    }
}
