//! Bounded request bodies in, JSON and streamed snapshot bodies out.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, CONTENT_LENGTH};
use torua_protocol::ErrorCode;

use super::ApiError;
use crate::wire::{self, Record};

pub type RespBody = BoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> RespBody {
    Full::new(bytes.into()).boxed()
}

/// Reads a body of at most `limit` bytes. A declared `Content-Length` over the limit
/// is refused before reading anything; otherwise reading stops at the first frame
/// that crosses the limit, so an endless body costs at most one frame past it.
pub async fn read_bounded(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    what: &str,
) -> Result<Bytes, ApiError> {
    let too_large = |n: String| {
        ApiError::new(
            ErrorCode::TooLarge,
            format!("{what} is {n} bytes; the limit is {limit} bytes"),
        )
    };
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large(len.to_string()));
        }
    }
    let mut body = body;
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::new(ErrorCode::Malformed, format!("reading {what}: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large(format!("more than {limit}")));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Frames smaller records together up to this size; larger values go out as their
/// own frame, sharing the stored `Bytes` instead of copying them.
const CHUNK: usize = 64 * 1024;

/// The streamed `GET /v1/shards/{id}/snapshot` body over a point-in-time copy.
pub struct SnapshotBody {
    records: std::vec::IntoIter<Record>,
    pending: Option<Bytes>,
    remaining: u64,
}

impl SnapshotBody {
    pub fn new(records: Vec<Record>) -> Self {
        let remaining = records
            .iter()
            .map(|r| 17 + r.key.len() as u64 + r.value.as_ref().map_or(0, |v| v.len() as u64))
            .sum();
        SnapshotBody {
            records: records.into_iter(),
            pending: None,
            remaining,
        }
    }
}

impl Body for SnapshotBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let chunk = match this.pending.take() {
            Some(value) => value,
            None => {
                let mut buf = BytesMut::with_capacity(CHUNK);
                while buf.len() < CHUNK {
                    let Some(r) = this.records.next() else { break };
                    wire::encode_header(&r.key, r.version, r.value.as_ref(), &mut buf);
                    match r.value {
                        Some(v) if v.len() >= CHUNK / 4 => {
                            this.pending = Some(v);
                            break;
                        }
                        Some(v) => buf.extend_from_slice(&v),
                        None => {}
                    }
                }
                if buf.is_empty() {
                    return Poll::Ready(None);
                }
                buf.freeze()
            }
        };
        this.remaining -= chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
