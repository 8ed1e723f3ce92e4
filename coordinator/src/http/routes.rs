//! Request routing and the handlers of SPEC §5.

use super::body::read_body;
use super::respond::{error, json, method_not_allowed, ok, text, Resp};
use super::views::node_view_with_load;
use crate::auth::Scope;
use crate::cluster::{unix_ms, AdminError, Cluster};
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
        if cluster.leadership.shared && !cluster.leadership.is_leader() {
            super::leader::not_leader(&cluster, "heartbeats go to the leader")
        } else {
            heartbeat(&cluster, req).await
        }
    } else if req.uri().path() == "/metrics" && req.method() == Method::GET {
        metrics(cluster.clone()).await
    } else if let Some(denied) = unauthorized(&cluster, &req) {
        // Before routing, so a follower refuses what it would forward to the leader.
        denied
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
            || path == "/v1/rebalance"
            || path.starts_with("/v1/internal/"))
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
    if cluster.leadership.shared && !cluster.leadership.is_leader() {
        if super::leader::leader_only(&method, &segs) {
            return super::leader::forward(cluster, req).await;
        }
        if super::leader::leaders_view(&method, &segs) {
            if let Some(resp) = super::leader::view_from_leader(cluster, &req).await {
                return resp;
            }
        }
    }
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
            let loads = cluster.load.snapshot();
            let nodes: Vec<_> = cluster
                .nodes
                .all()
                .iter()
                .map(|c| node_view_with_load(c, &loads, now))
                .collect();
            ok(&json!({ "nodes": nodes }))
        }
        (["v1", "nodes", id], &Method::GET) => match cluster.nodes.get(id) {
            Some(cell) => ok(&node_view_with_load(
                &cell,
                &cluster.load.snapshot(),
                Instant::now(),
            )),
            None => error(ErrorCode::NotFound, format!("no node {id:?}")),
        },
        (["v1", "nodes", id], &Method::DELETE) => {
            let force = query_flag(&req, "force");
            let allow_data_loss = query_flag(&req, "allow_data_loss");
            admin(async {
                cluster
                    .remove_node(id, force, allow_data_loss)
                    .await
                    .map(|()| json!({"removed": id}))
            })
            .await
        }
        (["v1", "nodes", id, action @ ("drain" | "undrain")], &Method::POST) => {
            let drain = *action == "drain";
            admin(async {
                let state = cluster.set_drain(id, drain).await?;
                Ok(json!({ "node": id, "state": state }))
            })
            .await
        }
        (["v1", "cluster"], &Method::GET) => super::leader::cluster(cluster).await,
        (["v1", "leader"], &Method::GET) => super::leader::leader(cluster),
        (["v1", "internal", "shards", id, "evict"], &Method::POST) => {
            let id = id.to_string();
            match read_body(req, 64 * 1024).await {
                Ok(body) => super::leader::evict(cluster, &id, &body).await,
                Err(resp) => resp,
            }
        }
        (["v1", "data"], &Method::GET) => super::data::list(cluster, &req).await,
        (["v1", "shards"], &Method::GET) => super::shards::list(cluster).await,
        (["shards"], &Method::GET) => super::shards::list_torua(cluster),
        (["v1", "shards", id], &Method::GET) => super::shards::get(cluster, id).await,
        (["v1", "shards", id], &Method::PUT) => {
            let id = id.to_string();
            match read_body(req, 64 * 1024).await {
                Ok(body) => super::shards::assign(cluster, &id, &body).await,
                Err(resp) => resp,
            }
        }
        (["v1", "rebalance"], &Method::POST) => {
            let unfreeze = query_flag(&req, "unfreeze");
            cluster.moves.request_rebalance(unfreeze);
            ok(&json!({ "rebalance": "requested", "unfreeze": unfreeze }))
        }
        (["ui", rest @ ..], m) => super::ui::serve(m, rest),
        (["v1", "moves"], &Method::GET) => {
            let (in_flight, recent) = cluster.moves.moves();
            ok(
                &json!({ "frozen": cluster.moves.frozen(), "in_flight": in_flight, "recent": recent }),
            )
        }
        _ => match allowed_methods(segs.as_slice()) {
            Some(allowed) => method_not_allowed(allowed),
            None => error(ErrorCode::NotFound, format!("no route for {method} {path}")),
        },
    }
}

/// The methods a known path takes, for the 405 answer to any other one.
fn allowed_methods(segs: &[&str]) -> Option<&'static str> {
    Some(match segs {
        ["livez"] | ["readyz"] | ["health"] | ["metrics"] => "GET",
        ["v1", "nodes"] | ["nodes"] | ["v1", "cluster"] | ["v1", "leader"] => "GET",
        ["v1", "data"] | ["v1", "shards"] | ["shards"] | ["v1", "moves"] => "GET",
        ["v1", "nodes", _] => "GET, DELETE",
        ["v1", "nodes", _, "drain" | "undrain"] => "POST",
        ["v1", "shards", _] => "GET, PUT",
        ["v1", "rebalance"] => "POST",
        ["v1", "internal", "shards", _, "evict"] => "POST",
        _ => return None,
    })
}

/// Renders on the blocking pool: at 10,000 nodes a scrape is ~100,000 series, which
/// must not hold up the heartbeats queued behind it on a runtime worker.
async fn metrics(cluster: Arc<Cluster>) -> Resp {
    let rendered = tokio::task::spawn_blocking(move || {
        cluster.metrics.render(
            &cluster.nodes,
            &cluster.shards.client.reach,
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
        with_nonce(cluster, resp)
    };
    tracing::Instrument::instrument(handle, span).await
}

/// `401 unauthorized` (with `WWW-Authenticate`, RFC 6750) when the route needs a
/// scope whose token is configured and the request does not carry it (`auth.rs`).
fn unauthorized(cluster: &Cluster, req: &Request<Incoming>) -> Option<Resp> {
    let scope = crate::auth::scope_of(req.method(), req.uri().path())?;
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if crate::auth::authorize(&cluster.tokens, scope, given) {
        return None;
    }
    let mut resp = error(ErrorCode::Unauthorized, crate::auth::refusal(scope));
    let challenge = match scope {
        Scope::Admin => r#"Bearer realm="torua", scope="admin""#,
        Scope::Client => r#"Bearer realm="torua", scope="client""#,
    };
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(challenge),
    );
    Some(resp)
}

/// Runs a mutating admin action (its token was checked before routing).
async fn admin<F>(action: F) -> Resp
where
    F: std::future::Future<Output = Result<serde_json::Value, AdminError>>,
{
    match action.await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(AdminError::NotFound(id)) => error(ErrorCode::NotFound, format!("no node {id:?}")),
        Err(e @ AdminError::Store(_)) => error(ErrorCode::Internal, e.to_string()),
        Err(e @ (AdminError::StillHolds { .. } | AdminError::WouldLoseData { .. })) => {
            error(ErrorCode::Conflict, e.to_string())
        }
    }
}

/// Whether the query string says `name=true`.
fn query_flag<B>(req: &Request<B>, name: &str) -> bool {
    req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('=')) == Some("true"))
    })
}

/// Every heartbeat answer names this process's nonce, for the next heartbeat to
/// echo (a first contact is refused until it does: `ingest.rs`).
fn with_nonce(cluster: &Cluster, mut resp: Resp) -> Resp {
    if let Ok(v) = hyper::header::HeaderValue::from_str(&cluster.nonce) {
        resp.headers_mut()
            .insert(torua_protocol::heartbeat::COORDINATOR_NONCE_HEADER, v);
    }
    resp
}
