//! Snapshot record framing, shared by the snapshot stream and the durability log.
//!
//! Every record is, big-endian:
//!
//! ```text
//! u8 kind (1 = value, 2 = tombstone) | u32 key_len | key bytes (UTF-8)
//! | u64 version | u32 value_len | value bytes
//! ```
//!
//! `value_len` is 0 for tombstones. There is no stream header or trailer: a stream
//! ends after its last complete record, so a stream that stops inside a record is
//! truncated and [`Decoder::finish`] says so.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use torua_protocol::node_api::{MAX_KEY_BYTES, MAX_VALUE_BYTES};

const KIND_VALUE: u8 = 1;
const KIND_TOMBSTONE: u8 = 2;
/// kind + key_len + version + value_len.
const FIXED_BYTES: usize = 1 + 4 + 8 + 4;

/// One key's state as it travels between nodes or into the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub version: u64,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
}

/// Test shorthand: a record with a string value, or a tombstone for `None`.
#[cfg(test)]
pub(crate) fn rec(key: &str, version: u64, value: Option<&str>) -> Record {
    Record {
        key: key.into(),
        version,
        value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("unknown record kind {kind} at byte {offset}")]
    BadKind { kind: u8, offset: u64 },
    #[error("record at byte {offset}: key length {len} exceeds {MAX_KEY_BYTES} bytes")]
    KeyTooLong { len: u32, offset: u64 },
    #[error("record at byte {offset}: key is not valid UTF-8")]
    KeyNotUtf8 { offset: u64 },
    #[error("record at byte {offset}: value length {len} exceeds {MAX_VALUE_BYTES} bytes")]
    ValueTooLong { len: u32, offset: u64 },
    #[error("record at byte {offset}: tombstone carries a {len}-byte value")]
    TombstoneWithValue { len: u32, offset: u64 },
    #[error("stream truncated: {pending} bytes of an incomplete record at byte {offset}")]
    Truncated { pending: usize, offset: u64 },
}

/// The record's header (everything up to the value bytes). The value is kept apart so
/// a 16 MiB value is sent as its own refcounted chunk instead of being copied.
pub fn encode_header(key: &str, version: u64, value: Option<&Bytes>, out: &mut BytesMut) {
    out.reserve(FIXED_BYTES + key.len());
    out.put_u8(if value.is_some() {
        KIND_VALUE
    } else {
        KIND_TOMBSTONE
    });
    out.put_u32(key.len() as u32);
    out.put_slice(key.as_bytes());
    out.put_u64(version);
    out.put_u32(value.map_or(0, |v| v.len() as u32));
}

/// Encodes a whole record into one buffer (log appends, tests).
pub fn encode(record: &Record, out: &mut BytesMut) {
    encode_header(&record.key, record.version, record.value.as_ref(), out);
    if let Some(v) = &record.value {
        out.put_slice(v);
    }
}

/// Incremental decoder: feed it chunks as they arrive, take complete records out.
/// It holds at most one incomplete record plus the chunk that completed it.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    /// Stream offset of `buf[0]`, for error messages and torn-tail truncation.
    offset: u64,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Stream offset just past the last record returned.
    pub fn consumed(&self) -> u64 {
        self.offset
    }

    /// The next complete record, or `None` if more bytes are needed. Length fields are
    /// checked before any allocation so a hostile peer cannot make us reserve 4 GiB.
    pub fn next_record(&mut self) -> Result<Option<Record>, WireError> {
        let offset = self.offset;
        let b = &self.buf[..];
        if b.is_empty() {
            return Ok(None);
        }
        let kind = b[0];
        if kind != KIND_VALUE && kind != KIND_TOMBSTONE {
            return Err(WireError::BadKind { kind, offset });
        }
        if b.len() < 5 {
            return Ok(None);
        }
        let key_len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
        if key_len as usize > MAX_KEY_BYTES {
            return Err(WireError::KeyTooLong {
                len: key_len,
                offset,
            });
        }
        let key_end = 5 + key_len as usize;
        if b.len() < key_end + 12 {
            return Ok(None);
        }
        let value_len = u32::from_be_bytes(b[key_end + 8..key_end + 12].try_into().unwrap());
        if value_len as usize > MAX_VALUE_BYTES {
            return Err(WireError::ValueTooLong {
                len: value_len,
                offset,
            });
        }
        if kind == KIND_TOMBSTONE && value_len != 0 {
            return Err(WireError::TombstoneWithValue {
                len: value_len,
                offset,
            });
        }
        let total = key_end + 12 + value_len as usize;
        if b.len() < total {
            let missing = total - b.len();
            self.buf.reserve(missing);
            return Ok(None);
        }
        let key = std::str::from_utf8(&b[5..key_end])
            .map_err(|_| WireError::KeyNotUtf8 { offset })?
            .to_owned();
        let version = u64::from_be_bytes(b[key_end..key_end + 8].try_into().unwrap());
        let mut rec = self.buf.split_to(total);
        rec.advance(key_end + 12);
        self.offset += total as u64;
        Ok(Some(Record {
            key,
            version,
            value: (kind == KIND_VALUE).then(|| rec.freeze()),
        }))
    }

    /// Call at end of stream: bytes left over mean the stream stopped mid-record.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Truncated {
                pending: self.buf.len(),
                offset: self.offset,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, version: u64, value: Option<&[u8]>) -> Record {
        Record {
            key: key.into(),
            version,
            value: value.map(Bytes::copy_from_slice),
        }
    }

    fn sample() -> Vec<Record> {
        vec![
            rec("a", 1, Some(b"hello")),
            rec("dir/b c@d:é", u64::MAX, Some(b"")),
            rec("gone", 7, None),
            rec("big", 2, Some(&vec![0xab; 300_000])),
        ]
    }

    fn encode_all(records: &[Record]) -> BytesMut {
        let mut out = BytesMut::new();
        for r in records {
            encode(r, &mut out);
        }
        out
    }

    #[test]
    fn round_trip_for_every_chunk_size() {
        let records = sample();
        let bytes = encode_all(&records);
        for chunk in [1, 2, 3, 7, 17, 4096, bytes.len()] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for c in bytes.chunks(chunk) {
                d.push(c);
                while let Some(r) = d.next_record().unwrap() {
                    got.push(r);
                }
            }
            d.finish().unwrap();
            assert_eq!(got, records, "chunk size {chunk}");
            assert_eq!(d.consumed(), bytes.len() as u64);
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = encode_all(&sample());
        // Cut points strictly inside the stream: some land between records (clean),
        // the rest must be reported as truncated.
        let boundaries: Vec<usize> = {
            let mut v = vec![0];
            for r in sample() {
                let mut b = BytesMut::new();
                encode(&r, &mut b);
                v.push(v.last().unwrap() + b.len());
            }
            v
        };
        for cut in (0..bytes.len()).step_by(997).chain([1, 5, 10, 22, 23]) {
            let mut d = Decoder::new();
            d.push(&bytes[..cut]);
            while d.next_record().unwrap().is_some() {}
            let res = d.finish();
            if boundaries.contains(&cut) {
                assert_eq!(res, Ok(()), "cut {cut}");
            } else {
                assert!(
                    matches!(res, Err(WireError::Truncated { .. })),
                    "cut {cut}: {res:?}"
                );
            }
        }
    }

    #[test]
    fn malformed_records_are_rejected() {
        let check = |bytes: &[u8], want: fn(&WireError) -> bool| {
            let mut d = Decoder::new();
            d.push(bytes);
            let err = d.next_record().unwrap_err();
            assert!(want(&err), "{bytes:?}: {err}");
        };
        check(&[9], |e| matches!(e, WireError::BadKind { kind: 9, .. }));
        check(&[1, 0, 0, 4, 1], |e| {
            matches!(e, WireError::KeyTooLong { .. })
        });
        check(
            &[1, 0, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
            |e| matches!(e, WireError::KeyNotUtf8 { .. }),
        );
        check(
            &[1, 0, 0, 0, 1, b'k', 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0],
            |e| matches!(e, WireError::ValueTooLong { .. }),
        );
        check(
            &[2, 0, 0, 0, 1, b'k', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3],
            |e| matches!(e, WireError::TombstoneWithValue { len: 3, .. }),
        );
    }
}
