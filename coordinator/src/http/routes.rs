//! Request routing and the handlers of SPEC §5.

use super::respond::{error, json, method_not_allowed, ok, text, Resp};
use super::views::{cluster_view, node_view};
use crate::cluster::{unix_ms, AdminError, Cluster};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{header, Method, Request, StatusCode};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use torua_protocol::{ErrorCode, MAX_BODY_BYTES};

pub async fn handle(cluster: Arc<Cluster>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    match (segs.as_slice(), &method) {
        (["livez"], &Method::GET) => text(StatusCode::OK, "text/plain", "ok\n"),
        (["readyz"], &Method::GET) | (["health"], &Method::GET) => ok(&json!({
            "status": "ok",
            "version": crate::metrics::VERSION,
            "nodes": cluster.nodes.len(),
        })),
        (["metrics"], &Method::GET) => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            cluster.metrics.render(&cluster.nodes, Instant::now()),
        ),
        (["v1", "heartbeat"], &Method::POST) => heartbeat(&cluster, req).await,
        (["v1", "heartbeat"], _) => method_not_allowed("POST"),
        (["v1", "nodes"], &Method::GET) | (["nodes"], &Method::GET) => {
            let now = Instant::now();
            let nodes: Vec<_> = cluster.nodes.all().iter().map(|c| node_view(c, now)).collect();
            ok(&json!({ "nodes": nodes }))
        }
        (["v1", "nodes", id], &Method::GET) => match cluster.nodes.get(id) {
            Some(cell) => ok(&node_view(&cell, Instant::now())),
            None => error(ErrorCode::NotFound, format!("no node {id:?}")),
        },
        (["v1", "nodes", id], &Method::DELETE) => {
            admin(&cluster, &req, async { cluster.remove_node(id).await.map(|()| json!({"removed": id})) }).await
        }
        (["v1", "nodes", id, action @ ("drain" | "undrain")], &Method::POST) => {
            let drain = *action == "drain";
            admin(&cluster, &req, async {
                let state = cluster.set_drain(id, drain).await?;
                Ok(json!({ "node": id, "state": state }))
            })
            .await
        }
        (["v1", "cluster"], &Method::GET) => ok(&cluster_view(&cluster, Instant::now())),
        _ => error(ErrorCode::NotFound, format!("no route for {method} {path}")),
    }
}

async fn heartbeat(cluster: &Cluster, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match read_body(req, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(resp) => {
            cluster.metrics.heartbeat_rejected(ErrorCode::TooLarge);
            return resp;
        }
    };
    let resp = match cluster.handle_heartbeat(auth.as_deref(), &body, Instant::now(), unix_ms()) {
        Ok(ack) => ok(&ack),
        Err(r) => {
            tracing::debug!("heartbeat rejected: {}: {}", r.code.as_str(), r.message);
            error(r.code, r.message)
        }
    };
    cluster
        .metrics
        .heartbeat_handle_seconds
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// Reads at most `limit` bytes; a larger body is refused without buffering it.
async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Resp> {
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(error(
                ErrorCode::TooLarge,
                format!("body is {len} bytes, the limit is {limit}"),
            ));
        }
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            ErrorCode::TooLarge,
            format!("body exceeds the limit of {limit} bytes"),
        )),
        Err(e) => Err(error(ErrorCode::Malformed, format!("could not read the body: {e}"))),
    }
}

/// Runs a mutating admin action after checking the bearer token, if one is set.
async fn admin<F>(cluster: &Cluster, req: &Request<Incoming>, action: F) -> Resp
where
    F: std::future::Future<Output = Result<serde_json::Value, AdminError>>,
{
    if let Some(token) = &cluster.admin_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::secrets::constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return error(
                ErrorCode::Unauthorized,
                "this route needs `Authorization: Bearer <admin token>`",
            );
        }
    }
    match action.await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(AdminError::NotFound(id)) => error(ErrorCode::NotFound, format!("no node {id:?}")),
        Err(e @ AdminError::Store(_)) => error(ErrorCode::Internal, e.to_string()),
    }
}
