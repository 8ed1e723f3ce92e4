//! The agent's own HTTP server: `/livez` (always 200), `/readyz` (200 once the first
//! check round ran and the coordinator acked a heartbeat), `/metrics`, `/status`.

use crate::health::Health;
use crate::metrics::Metrics;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// What the handlers read.
#[derive(Clone)]
pub struct Probes {
    pub health: Arc<Health>,
    pub metrics: Metrics,
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, probes: Probes) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let probes = probes.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = route(&probes, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(body.into()))
        .expect("a valid response")
}

/// Routes one request.
pub fn route<B>(probes: &Probes, req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return match path {
            "/livez" | "/readyz" | "/metrics" | "/status" => {
                text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        };
    }
    match path {
        "/livez" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let snap = probes.health.snapshot();
            if !snap.first_round_done {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "waiting for the first check round\n",
                )
            } else if !snap.acked {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "waiting for the coordinator to accept a heartbeat\n",
                )
            } else {
                text(StatusCode::OK, "ok\n")
            }
        }
        "/metrics" => Response::builder()
            .header(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
            .body(Full::new(Bytes::from(probes.metrics.encode())))
            .expect("a valid response"),
        "/status" => {
            let body =
                serde_json::to_vec(&probes.health.snapshot()).expect("a snapshot serialises");
            Response::builder()
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("a valid response")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CheckConfig;
    use torua_protocol::{CheckKind, CheckResult, Status};

    fn get(probes: &Probes, path: &str) -> (StatusCode, String) {
        let req = Request::get(path).body(()).unwrap();
        let resp = route(probes, &req);
        let status = resp.status();
        let body = futures_body(resp);
        (status, body)
    }

    fn futures_body(resp: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt.block_on(resp.into_body().collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn readyz_latches() {
        let probes = Probes {
            health: Arc::new(Health::new(&[CheckConfig::http("c", "http://x")])),
            metrics: Metrics::new(),
        };
        assert_eq!(get(&probes, "/livez"), (StatusCode::OK, "ok\n".into()));
        let (status, body) = get(&probes, "/readyz");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("first check round"), "{body}");
        probes.health.record(
            0,
            CheckResult {
                name: "c".into(),
                kind: CheckKind::Http,
                status: Status::Fail,
                duration_ms: 1.0,
                message: "connection refused".into(),
            },
        );
        let (status, body) = get(&probes, "/readyz");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("coordinator"), "{body}");
        probes.health.set_acked();
        assert_eq!(get(&probes, "/readyz").0, StatusCode::OK);
        let (status, body) = get(&probes, "/status");
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["liveness"], "fail", "{body}");
        assert_eq!(json["readiness"], "fail", "{body}");
        assert_eq!(json["first_round_done"], true, "{body}");
        assert_eq!(json["acked"], true, "{body}");
        assert_eq!(json["checks"][0]["message"], "connection refused", "{body}");
        assert!(get(&probes, "/metrics")
            .1
            .contains("torua_agent_liveness 0"));
        assert_eq!(get(&probes, "/nope").0, StatusCode::NOT_FOUND);
    }
}
