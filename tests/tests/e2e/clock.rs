//! A coordinator restarted with its wall clock stepped back (an NTP step, a restored
//! VM snapshot, a replacement host) must not lose acknowledged writes: write
//! versions come from a persisted term, not from the clock. The same scenario with
//! the old wall-clock versions switched back on (a test-only fault) must lose them,
//! which proves the test can fail.

use std::time::Duration;
use torua_tests::cluster::{Options, TestCluster};
use torua_tests::http;
use torua_tests::tools::{faketime_env, require_faketime};

const KEYS: usize = 16;
const FAULT_ENV: &str = "TORUA_UNSAFE_TEST_FAULT";

/// Writes v1 to every key, restarts the coordinator `offset` away in wall-clock time
/// with `env`, overwrites every key with v2 and deletes every fourth. Returns the keys
/// whose read disagrees with the last acknowledged write, with what was read.
fn step_and_overwrite(offset: &str, fault: bool) -> Option<Vec<(String, Option<Vec<u8>>)>> {
    let lib = require_faketime()?;
    let fault_env: Vec<(String, String)> = if fault {
        vec![(FAULT_ENV.into(), "wall-clock-versions".into())]
    } else {
        Vec::new()
    };
    let env_for_start = fault_env.clone();
    let mut c = TestCluster::start_with_env(
        Options {
            nodes: 2,
            ..Default::default()
        },
        std::sync::Arc::new(move |name| {
            if name == "coordinator" {
                env_for_start.clone()
            } else {
                Vec::new()
            }
        }),
    );
    c.wait_all("healthy", Duration::from_secs(20));
    c.wait_green(Duration::from_secs(20));
    let keys: Vec<String> = (0..KEYS).map(|i| format!("clock/{i}")).collect();
    for k in &keys {
        c.put(k, b"v1").unwrap();
    }

    c.coord.kill();
    let mut env = faketime_env(&lib, offset);
    env.extend(fault_env);
    c.coord.restart_with_env(&env);
    c.wait_ready();
    // Writes go to the map's holders whatever their health: no need to wait for the
    // nodes to report to this coordinator.
    let mut expect = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if i % 4 == 0 {
            let r = http::send("DELETE", &c.key_url(k), &[], b"").unwrap();
            assert_eq!(r.status, 204, "DELETE {k}: {}", r.text());
            expect.push((k.clone(), None));
        } else {
            c.put(k, b"v2").unwrap();
            expect.push((k.clone(), Some(b"v2".to_vec())));
        }
    }
    let wrong: Vec<_> = expect
        .into_iter()
        .filter_map(|(k, want)| {
            let got = c.get(&k).unwrap();
            (got != want).then_some((k, got))
        })
        .collect();
    Some(wrong)
}

#[test]
fn a_coordinator_restarted_20s_behind_loses_no_acknowledged_write() {
    let Some(wrong) = step_and_overwrite("-20", false) else {
        return;
    };
    assert!(
        wrong.is_empty(),
        "acknowledged writes lost after a clock step back: {wrong:?}"
    );
}

#[test]
fn a_coordinator_restarted_an_hour_ahead_loses_nothing() {
    let Some(wrong) = step_and_overwrite("+1h", false) else {
        return;
    };
    assert!(wrong.is_empty(), "lost after a clock step ahead: {wrong:?}");
}

#[test]
fn with_wall_clock_versions_the_same_step_loses_writes() {
    let Some(wrong) = step_and_overwrite("-20", true) else {
        return;
    };
    assert!(
        !wrong.is_empty(),
        "the test fault (wall-clock versions) should lose the overwrites; \
         if it does not, this test cannot tell a broken coordinator from a good one"
    );
    // Every overwrite and delete of the step is silently dropped: v1 is still there.
    assert!(
        wrong.iter().all(|(_, got)| got.as_deref() == Some(b"v1")),
        "{wrong:?}"
    );
}
