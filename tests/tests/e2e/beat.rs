//! Hand-made heartbeats sent as an agent sends them: signed, and answering the
//! coordinator's first-contact challenge by echoing its nonce.

use serde_json::Value;
use torua_protocol::heartbeat::COORDINATOR_NONCE_HEADER;
use torua_protocol::{authorization_header, derive_node_key, sign};
use torua_tests::http::{self, Reply};

/// POSTs `body` to `{url}/v1/heartbeat` with an `Authorization` for `auth_node`
/// signed with `key_node`'s key under `secret`. A challenge (409 asking for the
/// coordinator's nonce) is answered once, as an agent does: the body gets the
/// nonce, is signed again and sent again; the second answer is returned.
pub fn post(url: &str, secret: &str, auth_node: &str, key_node: &str, body: &[u8]) -> Reply {
    let key = derive_node_key(secret.as_bytes(), key_node);
    let send = |body: &[u8]| {
        let auth = authorization_header(auth_node, &sign(&key, body));
        http::send(
            "POST",
            &format!("{url}/v1/heartbeat"),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body,
        )
        .unwrap()
    };
    let r = send(body);
    let challenged = r.status == 409
        && r.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("coordinator_nonce"));
    let Some(nonce) = r.header(COORDINATOR_NONCE_HEADER).filter(|_| challenged) else {
        return r;
    };
    let Ok(Value::Object(mut hb)) = serde_json::from_slice::<Value>(body) else {
        return r;
    };
    if hb.get("coordinator_nonce").and_then(Value::as_str) == Some(nonce.as_str()) {
        return r;
    }
    hb.insert("coordinator_nonce".into(), nonce.into());
    send(&serde_json::to_vec(&hb).unwrap())
}
