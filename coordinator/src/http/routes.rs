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

/// Routes one request and counts every error answer by route class and code, so
/// each refusal of hostile input is visible in `/metrics`.
pub async fn handle(cluster: Arc<Cluster>, req: Request<Incoming>) -> Resp {
    let class = route_class(req.method(), req.uri().path());
    let resp = if req.uri().path() == "/v1/heartbeat" && req.method() == Method::POST {
        // The hot path: no routing allocations before it.
        heartbeat(&cluster, req).await
    } else if req.uri().path() == "/metrics" && req.method() == Method::GET {
        metrics(cluster.clone()).await
    } else {
        route(&cluster, req).await
    };
    if let Some(code) = resp.extensions().get::<ErrorCode>() {
        cluster
            .metrics
            .http_errors
            .with_label_values(&[class, code.as_str()])
            .inc();
    }
    resp
}

/// A bounded label for a request: never the raw path, which a client controls.
fn route_class(method: &Method, path: &str) -> &'static str {
    if path == "/v1/heartbeat" {
        "heartbeat"
    } else if path.starts_with("/v1/data") || path.starts_with("/data/") {
        "data"
    } else if method != Method::GET
        && (path.starts_with("/v1/nodes/")
            || path.starts_with("/v1/shards/")
            || path == "/v1/rebalance")
    {
        "admin"
    } else {
        "api"
    }
}

async fn route(cluster: &Cluster, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    if let Some(raw) = path
        .strip_prefix("/v1/data/")
        .or_else(|| path.strip_prefix("/data/"))
    {
        let raw = raw.to_string();
        return super::data::key_route(cluster, req, &raw).await;
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    match (segs.as_slice(), &method) {
        (["livez"], &Method::GET) => text(StatusCode::OK, "text/plain", "ok\n"),
        (["readyz"], &Method::GET) | (["health"], &Method::GET) => ok(&json!({
            "status": "ok",
            "version": crate::metrics::VERSION,
            "nodes": cluster.nodes.len(),
        })),
        // POST is served by `handle` before routing.
        (["v1", "heartbeat"], _) => method_not_allowed("POST"),
        (["v1", "nodes"], &Method::GET) | (["nodes"], &Method::GET) => {
            let now = Instant::now();
            let nodes: Vec<_> = cluster
                .nodes
                .all()
                .iter()
                .map(|c| node_view(c, now))
                .collect();
            ok(&json!({ "nodes": nodes }))
        }
        (["v1", "nodes", id], &Method::GET) => match cluster.nodes.get(id) {
            Some(cell) => ok(&node_view(&cell, Instant::now())),
            None => error(ErrorCode::NotFound, format!("no node {id:?}")),
        },
        (["v1", "nodes", id], &Method::DELETE) => {
            let force = query_flag(&req, "force");
            admin(cluster, &req, async {
                cluster
                    .remove_node(id, force)
                    .await
                    .map(|()| json!({"removed": id}))
            })
            .await
        }
        (["v1", "nodes", id, action @ ("drain" | "undrain")], &Method::POST) => {
            let drain = *action == "drain";
            admin(cluster, &req, async {
                let state = cluster.set_drain(id, drain).await?;
                Ok(json!({ "node": id, "state": state }))
            })
            .await
        }
        (["v1", "cluster"], &Method::GET) => ok(&cluster_view(cluster, Instant::now())),
        (["v1", "data"], &Method::GET) => super::data::list(cluster, &req).await,
        (["v1", "shards"], &Method::GET) => super::shards::list(cluster).await,
        (["shards"], &Method::GET) => super::shards::list_torua(cluster),
        (["v1", "shards", id], &Method::GET) => super::shards::get(cluster, id).await,
        (["v1", "shards", id], &Method::PUT) => {
            if let Some(denied) = check_admin(cluster, &req) {
                return denied;
            }
            let id = id.to_string();
            match read_body(req, 64 * 1024).await {
                Ok(body) => super::shards::assign(cluster, &id, &body).await,
                Err(resp) => resp,
            }
        }
        (["v1", "rebalance"], &Method::POST) => {
            if let Some(denied) = check_admin(cluster, &req) {
                return denied;
            }
            let unfreeze = query_flag(&req, "unfreeze");
            cluster.mover.request_rebalance(unfreeze);
            ok(&json!({ "rebalance": "requested", "unfreeze": unfreeze }))
        }
        (["v1", "moves"], &Method::GET) => {
            let (in_flight, recent) = cluster.mover.moves();
            ok(
                &json!({ "frozen": cluster.mover.frozen(), "in_flight": in_flight, "recent": recent }),
            )
        }
        _ => error(ErrorCode::NotFound, format!("no route for {method} {path}")),
    }
}

/// Renders on the blocking pool: at 10,000 nodes a scrape is ~100,000 series, which
/// must not hold up the heartbeats queued behind it on a runtime worker.
async fn metrics(cluster: Arc<Cluster>) -> Resp {
    let rendered = tokio::task::spawn_blocking(move || {
        cluster.metrics.render(
            &cluster.nodes,
            &cluster.shards.stats(|n| cluster.nodes.is_down(n)),
            Instant::now(),
        )
    })
    .await;
    match rendered {
        Ok(body) => text(StatusCode::OK, "text/plain; version=0.0.4", body),
        Err(e) => error(
            ErrorCode::Internal,
            format!("rendering metrics failed: {e}"),
        ),
    }
}

async fn heartbeat(cluster: &Cluster, req: Request<Incoming>) -> Resp {
    let span = tracing::debug_span!(
        "heartbeat.receive",
        node = tracing::field::Empty,
        state = tracing::field::Empty,
        result = tracing::field::Empty
    );
    crate::telemetry::set_parent_from(&span, req.headers());
    let handle = async {
        let started = Instant::now();
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match read_body(req, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(resp) => {
                // too_large, or malformed for a body cut short (truncated upload).
                let code = resp
                    .extensions()
                    .get::<ErrorCode>()
                    .copied()
                    .unwrap_or(ErrorCode::Malformed);
                cluster.metrics.heartbeat_rejected(code);
                tracing::Span::current().record("result", code.as_str());
                return resp;
            }
        };
        let result = cluster.handle_heartbeat(auth.as_deref(), &body, Instant::now(), unix_ms());
        let span = tracing::Span::current();
        let resp = match result {
            Ok(ack) => {
                span.record("node", ack.node_id.as_str());
                span.record("state", ack.state.as_str());
                span.record("result", "ok");
                ok(&ack)
            }
            Err(r) => {
                span.record("result", r.code.as_str());
                tracing::debug!("heartbeat rejected: {}: {}", r.code.as_str(), r.message);
                error(r.code, r.message)
            }
        };
        cluster
            .metrics
            .heartbeat_handle_seconds
            .observe(started.elapsed().as_secs_f64());
        resp
    };
    tracing::Instrument::instrument(handle, span).await
}

/// Reads at most `limit` bytes; a larger body is refused without buffering it.
pub(super) async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Resp> {
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            // Read (and drop) a modestly oversized body first: most clients only
            // read the answer once they have sent everything, and would otherwise see
            // a broken pipe instead of the 413.
            if len <= 2 * limit as u64 + (1 << 20) {
                let mut body = req.into_body();
                while let Some(Ok(_)) = body.frame().await {}
            }
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
        Err(e) => Err(error(
            ErrorCode::Malformed,
            format!("could not read the body: {e}"),
        )),
    }
}

/// The refusal to send when an admin token is configured and not presented.
pub(super) fn check_admin(cluster: &Cluster, req: &Request<Incoming>) -> Option<Resp> {
    let token = cluster.admin_token.as_ref()?;
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if crate::secrets::token_matches(given, token) {
        None
    } else {
        Some(error(
            ErrorCode::Unauthorized,
            "this route needs `Authorization: Bearer <admin token>`",
        ))
    }
}

/// Runs a mutating admin action after checking the bearer token, if one is set.
async fn admin<F>(cluster: &Cluster, req: &Request<Incoming>, action: F) -> Resp
where
    F: std::future::Future<Output = Result<serde_json::Value, AdminError>>,
{
    if let Some(denied) = check_admin(cluster, req) {
        return denied;
    }
    match action.await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(AdminError::NotFound(id)) => error(ErrorCode::NotFound, format!("no node {id:?}")),
        Err(e @ AdminError::Store(_)) => error(ErrorCode::Internal, e.to_string()),
        Err(e @ AdminError::StillHolds { .. }) => error(ErrorCode::Conflict, e.to_string()),
    }
}

/// Whether the query string says `name=true`.
fn query_flag<B>(req: &Request<B>, name: &str) -> bool {
    req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('=')) == Some("true"))
    })
}
