//! Canonical string, sign/verify with every signed field tampered, the header, skew,
//! the replay guard (replays, window, capacity) and tickets.

use super::*;
use crate::sign::derive_node_key;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn key(node: &str) -> NodeKey {
    derive_node_key(SECRET, node)
}

fn call<'a>() -> Call<'a> {
    Call {
        method: "PUT",
        path_and_query: "/v1/data/a%2Fb?x=1",
        node: "n1",
        boot: "1f2e3d4c5b6a7988",
        ts_ms: 1_732_350_000_123,
        nonce: [0xab; NONCE_BYTES],
        headers: [b"3", b"7", b"1001", b""],
    }
}

#[test]
fn canonical_string_is_the_documented_one() {
    let want = concat!(
        "torua/node-call/v1\n",
        "PUT\n",
        "/v1/data/a%2Fb?x=1\n",
        "n1\n",
        "1f2e3d4c5b6a7988\n",
        "1732350000123\n",
        "abababababababababababababababab\n",
        "3\n7\n1001\n\n",
        "value bytes"
    );
    assert_eq!(
        String::from_utf8(canonical(&call(), b"value bytes")).unwrap(),
        want
    );
    let mut c = call();
    c.ts_ms = 0;
    assert!(String::from_utf8(canonical(&c, b""))
        .unwrap()
        .contains("\nn1\n1f2e3d4c5b6a7988\n0\n"));
    assert_eq!(
        SIGNED_HEADERS,
        [
            "torua-shard",
            "torua-epoch",
            "torua-version",
            "torua-ticket"
        ]
    );
}

#[test]
fn the_signature_is_the_hmac_of_the_canonical_string() {
    // Independent of the streaming code: HMAC(key, canonical) by the book.
    let raw = hex::decode(key("n1").to_hex()).unwrap();
    let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(&raw).unwrap();
    mac.update(&canonical(&call(), b"body"));
    let want: [u8; 32] = mac.finalize().into_bytes().into();
    assert_eq!(sign_call(&key("n1"), &call(), b"body"), want);
}

#[test]
fn sign_verify_and_every_signed_field_tampered() {
    let k = [key("n1")];
    let body = b"the value".to_vec();
    let sig = sign_call(&k[0], &call(), &body);
    assert!(verify_call(&k, &call(), &body, &sig));

    let mut tampered: Vec<(&str, Call, Vec<u8>)> = Vec::new();
    let mut t = |what, f: fn(&mut Call)| {
        let mut c = call();
        f(&mut c);
        tampered.push((what, c, body.clone()));
    };
    t("method", |c| c.method = "DELETE");
    t("path", |c| c.path_and_query = "/v1/data/a%2Fc?x=1");
    t("query", |c| c.path_and_query = "/v1/data/a%2Fb?x=2");
    t("node", |c| c.node = "n2");
    t("boot", |c| c.boot = "1f2e3d4c5b6a7989");
    t("ts", |c| c.ts_ms += 1);
    t("nonce", |c| c.nonce[15] ^= 1);
    t("shard", |c| c.headers[0] = b"4");
    t("epoch", |c| c.headers[1] = b"999999");
    t("version", |c| c.headers[2] = b"1002");
    t("ticket", |c| c.headers[3] = b"x");
    // Moving a value between adjacent fields must not keep the signature.
    t("shard/epoch shift", |c| {
        c.headers[..2].copy_from_slice(&[b"37", b""])
    });
    for i in 0..body.len() {
        let mut b = body.clone();
        b[i] ^= 0x20;
        tampered.push(("body byte", call(), b));
    }
    tampered.push(("body appended", call(), [&body[..], b"!"].concat()));
    tampered.push(("body cut", call(), body[..body.len() - 1].to_vec()));
    for (what, c, b) in &tampered {
        assert!(
            !verify_call(&k, c, b, &sig),
            "{what} changed, still verifies"
        );
    }
    // Another node's key, or the right key over a different secret, does not verify.
    assert!(!verify_call(&[key("n2")], &call(), &body, &sig));
    assert!(!verify_call(
        &[derive_node_key(b"another secret, 32 bytes or more", "n1")],
        &call(),
        &body,
        &sig
    ));
    for i in 0..32 {
        let mut s = sig;
        s[i] ^= 1;
        assert!(!verify_call(&k, &call(), &body, &s), "sig byte {i}");
    }
}

#[test]
fn any_of_the_nodes_keys_verifies_for_rotation() {
    let old = derive_node_key(b"old-secret-old-secret-old-secret", "n1");
    let new = derive_node_key(b"new-secret-new-secret-new-secret", "n1");
    let by_old = sign_call(&old, &call(), b"");
    let by_new = sign_call(&new, &call(), b"");
    let both = [new.clone(), old.clone()];
    assert!(verify_call(&both, &call(), b"", &by_old));
    assert!(verify_call(&both, &call(), b"", &by_new));
    assert!(!verify_call(&[new], &call(), b"", &by_old));
    assert!(
        !verify_call(&[], &call(), b"", &by_new),
        "no key verifies nothing"
    );
}

#[test]
fn a_newline_in_a_field_never_verifies() {
    let k = key("n1");
    let mut c = call();
    c.headers = [b"3\n7", b"", b"1001", b""];
    let sig = sign_call(&k, &c, b"");
    assert!(!verify_call(&[k], &c, b"", &sig));
}

#[test]
fn header_round_trip_and_rejections() {
    let sig = [7u8; 32];
    let mut c = call();
    c.ts_ms = 42;
    c.nonce = [9u8; NONCE_BYTES];
    let h = call_authorization(&c, &sig);
    assert_eq!(
        h,
        format!(
            "Torua-Call-HMAC-SHA256 node=n1, boot=1f2e3d4c5b6a7988, ts=42, nonce={}, sig={}",
            "09".repeat(16),
            "07".repeat(32)
        )
    );
    assert_eq!(
        parse_call_authorization(&h),
        Ok(CallAuth {
            node: "n1",
            boot: "1f2e3d4c5b6a7988",
            ts_ms: 42,
            nonce: c.nonce,
            sig
        })
    );
    assert_eq!(
        sign_call_header(&key("n1"), &c, b""),
        call_authorization(&c, &sign_call(&key("n1"), &c, b""))
    );
    let n = "09".repeat(16);
    let s = "07".repeat(32);
    let with = |fields: &str| format!("Torua-Call-HMAC-SHA256 {fields}");
    let cases = [
        (String::new(), Refusal::Missing),
        ("Bearer abc".into(), Refusal::Missing),
        (
            format!("Torua-HMAC-SHA256 node=n1, sig={s}"),
            Refusal::Missing,
        ),
        ("Torua-Call-HMAC-SHA256".into(), Refusal::Malformed),
        (
            with(&format!("node=n1, boot=0, ts=1, nonce={n}")),
            Refusal::Malformed,
        ),
        (
            with(&format!("node=n1, ts=1, nonce={n}, sig={s}")),
            Refusal::Malformed,
        ),
        (
            with(&format!("node=n1, boot=XYZ, ts=1, nonce={n}, sig={s}")),
            Refusal::Malformed,
        ),
        (
            with(&format!("node=n1, boot=, ts=1, nonce={n}, sig={s}")),
            Refusal::Malformed,
        ),
        (
            with(&format!(
                "node=n1, boot={}, ts=1, nonce={n}, sig={s}",
                "a".repeat(33)
            )),
            Refusal::Malformed,
        ),
        (
            with(&format!("node=n1, boot=0, ts=x, nonce={n}, sig={s}")),
            Refusal::Malformed,
        ),
        (
            with(&format!("node=n1, boot=0, ts=-1, nonce={n}, sig={s}")),
            Refusal::Malformed,
        ),
        (
            with(&format!(
                "node=n1, boot=0, ts=99999999999999999999999, nonce={n}, sig={s}"
            )),
            Refusal::Malformed,
        ),
        (
            with(&format!("node=n1, boot=0, ts=1, nonce=0909, sig={s}")),
            Refusal::Malformed,
        ),
        (
            with(&format!("node=n1, boot=0, ts=1, nonce={n}, sig=zz")),
            Refusal::Malformed,
        ),
        (
            with(&format!("node=n 1, boot=0, ts=1, nonce={n}, sig={s}")),
            Refusal::Malformed,
        ),
        (
            with(&format!(
                "node=n1, node=n2, boot=0, ts=1, nonce={n}, sig={s}"
            )),
            Refusal::Malformed,
        ),
        (
            with(&format!(
                "node=n1, boot=0, boot=1, ts=1, nonce={n}, sig={s}"
            )),
            Refusal::Malformed,
        ),
        (
            with(&format!("node=n1, boot=0, ts=1, ts=2, nonce={n}, sig={s}")),
            Refusal::Malformed,
        ),
        (
            with(&format!("node=n1, boot=0, ts=1, nonce={n}, sig={s}, x=1")),
            Refusal::Malformed,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(parse_call_authorization(&input), Err(want), "{input:?}");
    }
    assert!(parse_call_authorization(&with(&format!(
        "node=n1, boot={UNKNOWN_BOOT}, ts=1, nonce={n}, sig={s}"
    )))
    .is_ok());
    assert_eq!(boot_id([0xab; 8]), "abababababababab");
    assert!(is_boot_id(&boot_id([0; 8])) && is_boot_id(UNKNOWN_BOOT));
}

#[test]
fn refusals_have_reasons_and_answer_401() {
    let all = [
        Refusal::Missing,
        Refusal::Malformed,
        Refusal::WrongNode {
            got: "n2".into(),
            want: "n1".into(),
        },
        Refusal::Challenge,
        Refusal::WrongBoot {
            got: "1".into(),
            want: "2".into(),
        },
        Refusal::ClockSkew {
            skew_ms: 1,
            limit_ms: 0,
        },
        Refusal::BadSignature,
        Refusal::Replay,
        Refusal::TooOld {
            ts_ms: 1,
            floor_ms: 1,
        },
        Refusal::BadTicket(String::new()),
        Refusal::ExpiredTicket { ago_ms: 1 },
        Refusal::WrongTicket(String::new()),
    ];
    let reasons: Vec<&str> = all.iter().map(Refusal::reason).collect();
    assert_eq!(reasons, Refusal::REASONS);
    assert_eq!(Refusal::BadSignature.code(), ErrorCode::BadSignature);
    assert_eq!(Refusal::Replay.code(), ErrorCode::Replay);
    assert_eq!(Refusal::Missing.code(), ErrorCode::Unauthorized);
}

#[test]
fn skew_table() {
    let limit = 30_000;
    let now = 1_000_000;
    for (ts, ok) in [
        (now, true),
        (now - limit, true),
        (now + limit, true),
        (now - limit - 1, false),
        (now + limit + 1, false),
        (0, false),
        (u64::MAX, false),
    ] {
        assert_eq!(check_skew(ts, now, limit).is_ok(), ok, "ts {ts}");
    }
    assert_eq!(
        check_skew(now - 40_000, now, limit),
        Err(Refusal::ClockSkew {
            skew_ms: 40_000,
            limit_ms: limit
        })
    );
    assert_eq!(
        check_skew(now + 40_000, now, limit),
        Err(Refusal::ClockSkew {
            skew_ms: -40_000,
            limit_ms: limit
        })
    );
}

fn nonce(i: u64) -> Nonce {
    let mut n = [0u8; NONCE_BYTES];
    n[..8].copy_from_slice(&i.to_be_bytes());
    n
}

#[test]
fn a_nonce_is_admitted_once_within_the_window() {
    let mut g = ReplayGuard::new(30_000, 1000);
    let now = 10_000_000;
    assert_eq!(g.admit(now, nonce(1), now), Ok(()));
    assert_eq!(g.admit(now, nonce(1), now), Err(Refusal::Replay));
    assert_eq!(g.admit(now, nonce(1), now + 29_000), Err(Refusal::Replay));
    // Same nonce at another ts, or another nonce at the same ts: different calls.
    assert_eq!(g.admit(now + 1, nonce(1), now), Ok(()));
    assert_eq!(g.admit(now, nonce(2), now), Ok(()));
    // Once ts has left the window, the skew rule refuses it (the pair may be gone).
    assert!(matches!(
        g.admit(now, nonce(1), now + 30_001),
        Err(Refusal::ClockSkew { .. })
    ));
    assert_eq!(g.len(), 1, "pairs out of the window pruned, (now + 1) kept");
    // Calls from the future (a coordinator clock ahead) are kept until they leave it.
    assert_eq!(g.admit(now + 60_000, nonce(3), now + 31_000), Ok(()));
    assert_eq!(
        g.admit(now + 60_000, nonce(3), now + 89_000),
        Err(Refusal::Replay)
    );
}

#[test]
fn a_full_guard_stays_bounded_and_never_admits_a_replay() {
    let cap = 100;
    let mut g = ReplayGuard::new(30_000, cap);
    let now = 10_000_000;
    // A burst of 10 × capacity calls signed within 1 s of each other.
    let calls: Vec<(u64, Nonce)> = (0..10 * cap as u64)
        .map(|i| (now - 1_000 + i, nonce(i)))
        .collect();
    for (ts, n) in &calls {
        assert_eq!(g.admit(*ts, *n, now), Ok(()));
        assert!(g.len() <= cap);
    }
    // Every one of them replayed: all refused, kept pairs and dropped ones alike.
    for (ts, n) in &calls {
        let r = g.admit(*ts, *n, now);
        assert!(
            matches!(r, Err(Refusal::Replay | Refusal::TooOld { .. })),
            "ts {ts}: {r:?}"
        );
    }
    assert_eq!(g.len(), cap);
    // New calls newer than the floor still pass.
    assert_eq!(g.admit(now + 1_000, nonce(u64::MAX), now), Ok(()));
    // An honest but late call below the floor is refused (the coordinator retries it).
    assert!(matches!(
        g.admit(now - 1_000, nonce(u64::MAX - 1), now),
        Err(Refusal::TooOld { .. })
    ));
}

fn ticket() -> Ticket {
    Ticket {
        shard: 3,
        epoch: 7,
        source: "n1".into(),
        dest: "n2".into(),
        expires_ms: 1_000_060_000,
    }
}

#[test]
fn ticket_round_trip() {
    let value = ticket().sign(&key("n1"));
    assert!(value.starts_with("shard=3, epoch=7, from=n1, to=n2, exp=1000060000, sig="));
    let (parsed, _) = Ticket::parse(&value).unwrap();
    assert_eq!(parsed, ticket());
    let now = 1_000_000_000;
    assert_eq!(
        Ticket::verify(&value, &[key("n1")], "n1", 3, now, 30_000),
        Ok(ticket())
    );
    // Up to and including its expiry.
    assert!(Ticket::verify(&value, &[key("n1")], "n1", 3, ticket().expires_ms, 30_000).is_ok());
}

#[test]
fn ticket_refusals() {
    let now = 1_000_000_000;
    let good = ticket().sign(&key("n1"));
    let forged = |f: fn(&mut Ticket)| {
        let mut t = ticket();
        f(&mut t);
        // Signed, but not by the coordinator: under another node's key.
        t.sign(&key("n9"))
    };
    let resigned = |f: fn(&mut Ticket)| {
        let mut t = ticket();
        f(&mut t);
        t.sign(&key("n1"))
    };
    let tamper = |from: &str, to: &str| good.replacen(from, to, 1);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            resigned(|t| t.expires_ms = 999_999_999),
            "expired_ticket",
        ),
        (
            "for another source",
            resigned(|t| t.source = "n2".into()),
            "wrong_ticket",
        ),
        (
            "for another shard",
            resigned(|t| t.shard = 4),
            "wrong_ticket",
        ),
        // Good for 60 s + 30 s of skew at most: a clock far ahead makes no long ticket.
        (
            "expiring an hour ahead",
            resigned(|t| t.expires_ms += 3_600_000),
            "wrong_ticket",
        ),
        ("forged", forged(|_| {}), "bad_ticket"),
        (
            "forged to extend",
            forged(|t| t.expires_ms = u64::MAX),
            "bad_ticket",
        ),
        ("epoch edited", tamper("epoch=7", "epoch=8"), "bad_ticket"),
        (
            "expiry edited",
            tamper("exp=1000060000", "exp=1000060001"),
            "bad_ticket",
        ),
        ("destination edited", tamper("to=n2", "to=n3"), "bad_ticket"),
        (
            "no signature",
            good[..good.find(", sig=").unwrap()].to_string(),
            "bad_ticket",
        ),
        ("empty", String::new(), "bad_ticket"),
        ("garbage", "shard=3".into(), "bad_ticket"),
        ("duplicate field", format!("{good}, shard=3"), "bad_ticket"),
        ("bad name", tamper("to=n2", "to=n 2"), "bad_ticket"),
        (
            "shard out of range",
            tamper("shard=3", "shard=4294967299"),
            "bad_ticket",
        ),
    ];
    for (what, value, reason) in cases {
        let got = Ticket::verify(&value, &[key("n1")], "n1", 3, now, 30_000);
        assert_eq!(
            got.as_ref().map_err(Refusal::reason),
            Err(reason),
            "{what}: {value}"
        );
        assert_eq!(got.unwrap_err().code().http_status(), 401);
    }
    // The right ticket shown to another node (the wrong source) or for another shard.
    assert_eq!(
        Ticket::verify(&good, &[key("n2")], "n2", 3, now, 30_000).map_err(|e| e.reason()),
        Err("wrong_ticket")
    );
    assert_eq!(
        Ticket::verify(&good, &[key("n1")], "n1", 4, now, 30_000).map_err(|e| e.reason()),
        Err("wrong_ticket")
    );
}
