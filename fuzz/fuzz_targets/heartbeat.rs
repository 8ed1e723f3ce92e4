//! The coordinator's heartbeat path on untrusted bytes: everything before the first
//! `\n` is the `Authorization` header, the rest is the body. Parse the header, derive
//! the node's key, verify, decode: none of it may panic, whatever the input.
//!
//! The body is decoded even when the signature fails (the coordinator would stop
//! there): a fuzzer cannot forge an HMAC, and the decoder must hold on its own.

#![no_main]

use libfuzzer_sys::fuzz_target;
use torua_protocol::validate::validate;
use torua_protocol::{decode_heartbeat, derive_node_key, parse_authorization, sign, verify};

const SECRET: &[u8] = b"fuzz-cluster-secret-0123456789ab";

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (header, body) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    // hyper's `HeaderValue::to_str` yields only valid UTF-8 (visible ASCII, in fact).
    if let Ok(header) = std::str::from_utf8(header) {
        if let Ok((node_id, sig)) = parse_authorization(header) {
            let key = derive_node_key(SECRET, node_id);
            let _ = verify(&key, body, &sig);
            // The honest signature always verifies.
            assert!(verify(&key, body, &sign(&key, body)));
        }
    }
    if let Ok(hb) = decode_heartbeat(body) {
        assert!(validate(&hb).is_ok());
        let again = serde_json::to_vec(&hb).expect("a decoded heartbeat serialises");
        assert!(
            decode_heartbeat(&again).is_ok(),
            "re-encoded heartbeat refused"
        );
    }
});
