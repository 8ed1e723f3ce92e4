//! Data keys as `http/data.rs` receives them: percent-decode the raw path tail, then
//! `check_key`; plus the `?prefix=` decoding and the key → shard mapping.

#![no_main]

use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use torua_coordinator::datapath::check_key;
use torua_protocol::node_api::MAX_KEY_BYTES;
use torua_protocol::shard::shard_for_key;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    if let Ok(key) = percent_decode_str(&raw).decode_utf8() {
        if check_key(&key).is_ok() {
            assert!(!key.is_empty() && key.len() <= MAX_KEY_BYTES);
            assert!(!key.chars().any(char::is_control));
            for shards in [1, 7, 64, 65_536] {
                assert!(shard_for_key(key.as_bytes(), shards) < shards);
            }
        }
    }
    // `GET /v1/data?prefix=`: `+` is a space, invalid UTF-8 is replaced.
    let _ = percent_decode_str(&raw.replace('+', " ")).decode_utf8_lossy();
});
