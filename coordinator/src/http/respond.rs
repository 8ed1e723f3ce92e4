//! Response builders: JSON bodies, SPEC §2 error bodies, plain text.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response, StatusCode};
use serde::Serialize;
use torua_protocol::{ErrorBody, ErrorCode};

pub type Resp = Response<Full<Bytes>>;

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    let body = serde_json::to_vec(value).expect("API types serialise");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

pub fn ok<T: Serialize>(value: &T) -> Resp {
    json(StatusCode::OK, value)
}

pub fn error(code: ErrorCode, message: impl Into<String>) -> Resp {
    let status = StatusCode::from_u16(code.http_status()).expect("codes map to valid statuses");
    let mut r = json(status, &ErrorBody::new(code, message));
    // The code rides along so the router can count the refusal without re-parsing.
    r.extensions_mut().insert(code);
    r
}

pub fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("static headers are valid")
}

pub fn method_not_allowed(allowed: &'static str) -> Resp {
    // `malformed`, as the node answers: the request is wrong, not the resource.
    let mut r = error(
        ErrorCode::Malformed,
        format!("method not allowed; use {allowed}"),
    );
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allowed));
    r
}
