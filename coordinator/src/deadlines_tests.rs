//! The deadline task on tokio's paused clock: time moves only when the test says so
//! (or, while every task waits, jumps to the next timer), so deadlines are exact.

use super::*;
use crate::cluster::unix_ms;
use crate::config::Config;
use crate::detector::PhiDetector;
use crate::health::Health;
use crate::store::NodeRecord;
use torua_protocol::{
    authorization_header, sign, Capacity, Heartbeat, NodeKey, NodeState, RunState, Status,
    PROTOCOL_VERSION,
};
use NodeState::{Degraded, Healthy, Unhealthy};

const SECOND: Duration = Duration::from_secs(1);

/// The real deadline task over a test cluster. Timers armed by heartbeats reach it
/// through a forwarder, so a test can also send it entries of its own.
struct Harness {
    cluster: Arc<Cluster>,
    inject: mpsc::UnboundedSender<(Arc<NodeCell>, u32)>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

fn start(cfg: Config) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cluster, mut armed) = Cluster::for_tests(cfg, dir.path());
    let (inject, rx) = mpsc::unbounded_channel();
    let forward = inject.clone();
    tokio::spawn(async move {
        while let Some(timer) = armed.recv().await {
            if forward.send(timer).is_err() {
                return;
            }
        }
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run(cluster.clone(), rx, async {
        let _ = stopped.await;
    }));
    Harness {
        cluster,
        inject,
        _stop: stop,
        _dir: dir,
    }
}

/// Lets every runnable task run (the deadline task included) without moving time.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn ms(x: f64) -> Duration {
    Duration::from_secs_f64(x / 1000.0)
}

/// An agent that signs its heartbeats with its node key; arrival is "now" on
/// tokio's clock, `sent_at_ms` the wall clock (the replay rule checks it).
struct Agent {
    id: String,
    key: NodeKey,
    seq: u64,
    interval_ms: u64,
}

impl Agent {
    fn new(cluster: &Cluster, id: &str, interval_ms: u64) -> Agent {
        Agent {
            id: id.into(),
            key: cluster.keys.node_keys(id).current,
            seq: 0,
            interval_ms,
        }
    }

    fn beat(&mut self, cluster: &Cluster) -> NodeState {
        self.seq += 1;
        let hb = Heartbeat {
            v: PROTOCOL_VERSION,
            node_id: self.id.clone(),
            incarnation: 1,
            seq: self.seq,
            sent_at_ms: unix_ms(),
            interval_ms: self.interval_ms,
            // One address per node: two live nodes may not share one.
            node_addr: format!("http://{}:7501", self.id),
            state: RunState::Running,
            liveness: Status::Pass,
            readiness: Status::Pass,
            checks: Vec::new(),
            metrics: Default::default(),
            capacity: Capacity::default(),
            coordinator_nonce: Some(cluster.nonce.clone()),
        };
        let body = serde_json::to_vec(&hb).expect("encode");
        let auth = authorization_header(&self.id, &sign(&self.key, &body));
        cluster
            .handle_heartbeat(Some(&auth), &body, Instant::now().into_std(), unix_ms())
            .expect("heartbeat accepted")
            .state
    }

    /// Heartbeats every interval from `from`, `count` of them; returns the last
    /// one's arrival.
    async fn run_for(&mut self, cluster: &Cluster, from: Instant, count: u32) -> Instant {
        let every = Duration::from_millis(self.interval_ms);
        let mut at = from;
        for i in 0..count {
            at = from + every * i;
            tokio::time::sleep_until(at).await;
            self.beat(cluster);
        }
        at
    }
}

/// (shown state, base health) of a node.
fn state_of(cell: &NodeCell) -> (NodeState, NodeState) {
    let n = cell.lock();
    (n.state, n.health.base)
}

/// When the node's armed timer fires.
fn armed(cell: &NodeCell) -> Instant {
    Instant::from_std(cell.lock().timer.expect("an armed timer"))
}

/// Where phi crosses the suspect and convict thresholds, ms after a heartbeat.
fn phi_deadlines(cluster: &Cluster, cell: &NodeCell) -> (Duration, Duration) {
    let n = cell.lock();
    let det = n.detector.as_ref().expect("a detector");
    (
        ms(det.elapsed_at(cluster.y_suspect)),
        ms(det.elapsed_at(cluster.y_convict)),
    )
}

const MARGIN: Duration = Duration::from_millis(10);

#[tokio::test(start_paused = true)]
async fn silent_node_turns_degraded_then_unhealthy_at_its_deadlines() {
    let h = start(Config::for_tests());
    let c = &h.cluster;
    let mut agent = Agent::new(c, "n1", 1000);
    let last = agent.run_for(c, Instant::now(), 5).await;
    let cell = c.nodes.get("n1").expect("auto-joined");
    assert_eq!(state_of(&cell), (Healthy, Healthy));
    let (suspect, convict) = phi_deadlines(c, &cell);
    assert_eq!(cell.lock().detector.as_ref().unwrap().mean_ms(), 1000.0);
    assert!(suspect > SECOND && convict > suspect + 4 * MARGIN);
    assert!(convict < ms(c.policy.heartbeat_timeout_ms));

    let checkpoints = [
        (suspect - MARGIN, Healthy),
        (suspect + MARGIN, Degraded),
        (convict - MARGIN, Degraded),
        (convict + MARGIN, Unhealthy),
    ];
    for (after, want) in checkpoints {
        tokio::time::sleep_until(last + after).await;
        assert_eq!(
            state_of(&cell).0,
            want,
            "{after:?} after the last heartbeat"
        );
    }
    let reason = cell.lock().reason();
    assert!(reason.starts_with("no heartbeat for 2."), "{reason}");

    // Past the hard timeout nothing more can change: the node is disarmed until
    // it sends again.
    tokio::time::sleep_until(last + ms(c.policy.heartbeat_timeout_ms) + MARGIN).await;
    assert_eq!(cell.lock().timer, None);
    assert_eq!(state_of(&cell).0, Unhealthy);
}

#[tokio::test(start_paused = true)]
async fn hard_timeout_convicts_before_phi_would() {
    let mut cfg = Config::for_tests();
    cfg.heartbeat_timeout = Duration::from_millis(1500);
    let h = start(cfg);
    let c = &h.cluster;
    let mut agent = Agent::new(c, "n1", 1000);
    let last = agent.run_for(c, Instant::now(), 5).await;
    let cell = c.nodes.get("n1").unwrap();
    let (suspect, _) = phi_deadlines(c, &cell);
    let timeout = Duration::from_millis(1500);
    assert!(suspect > timeout + MARGIN, "suspect at {suspect:?}");

    tokio::time::sleep_until(last + timeout - MARGIN).await;
    assert_eq!(state_of(&cell).0, Healthy);
    tokio::time::sleep_until(last + timeout + MARGIN).await;
    assert_eq!(state_of(&cell).0, Unhealthy, "straight from healthy");
    let reason = cell.lock().reason();
    assert!(reason.starts_with("no heartbeat for 1.5s"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn timer_firing_late_after_a_stall_rearms_instead_of_convicting() {
    let h = start(Config::for_tests());
    let c = &h.cluster;
    let mut agent = Agent::new(c, "n1", 1000);
    let last = agent.run_for(c, Instant::now(), 5).await;
    let cell = c.nodes.get("n1").unwrap();
    let (suspect, _) = phi_deadlines(c, &cell);
    // The timer armed from the previous heartbeat fires and re-arms at the last
    // one's suspect point.
    tokio::time::sleep_until(last + Duration::from_millis(700)).await;
    let due = armed(&cell);
    assert!(due >= last + suspect && due <= last + suspect + MARGIN);

    // The coordinator stalls for 10 s: far past the convict point and the hard
    // timeout; the node's timer fires that late.
    tokio::time::advance(10 * SECOND).await;
    settle().await;
    let now = Instant::now();
    assert_eq!(now, last + Duration::from_millis(700) + 10 * SECOND);
    assert_eq!(
        state_of(&cell),
        (Healthy, Healthy),
        "judged on a stalled coordinator's silence"
    );
    // Re-armed for as long as it was late (heartbeats may sit in socket buffers).
    let lag = now - due;
    let grace = armed(&cell) - now;
    assert_eq!(grace, lag);

    // Nothing came in during the grace: now it is judged.
    tokio::time::sleep_until(now + grace - MARGIN).await;
    assert_eq!(state_of(&cell).0, Healthy);
    tokio::time::sleep_until(now + grace + MARGIN).await;
    assert_eq!(state_of(&cell).0, Unhealthy);
}

#[tokio::test(start_paused = true)]
async fn timer_firing_a_little_late_still_judges() {
    let h = start(Config::for_tests());
    let c = &h.cluster;
    let mut agent = Agent::new(c, "n1", 1000);
    let last = agent.run_for(c, Instant::now(), 5).await;
    let cell = c.nodes.get("n1").unwrap();
    let (suspect, _) = phi_deadlines(c, &cell);
    tokio::time::sleep_until(last + Duration::from_millis(700)).await;
    let due = armed(&cell);
    assert!(due >= last + suspect && due <= last + suspect + MARGIN);

    // 200 ms late is scheduling noise, not a stall (STALL is 250 ms).
    let late = Duration::from_millis(200);
    assert!(late < STALL);
    tokio::time::advance(due + late - Instant::now()).await;
    settle().await;
    assert_eq!(Instant::now(), due + late);
    assert_eq!(state_of(&cell).0, Degraded);
    assert!(
        armed(&cell) < due + late + SECOND,
        "re-armed for convict, no grace"
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeat_read_after_a_stall_keeps_the_node_healthy() {
    let h = start(Config::for_tests());
    let c = &h.cluster;
    let mut agent = Agent::new(c, "n1", 1000);
    let last = agent.run_for(c, Instant::now(), 5).await;
    let cell = c.nodes.get("n1").unwrap();
    let (suspect, convict) = phi_deadlines(c, &cell);

    let stall = 10 * SECOND;
    tokio::time::advance(stall).await;
    settle().await;
    assert_eq!(state_of(&cell), (Healthy, Healthy));
    let (grace_timer, grace_gen) = {
        let n = cell.lock();
        (n.timer.expect("grace timer"), n.timer_gen)
    };
    // The heartbeat that waited in the socket buffer is read, and the agent goes on.
    let resumed = last + stall;
    assert_eq!(agent.beat(c), Healthy);
    {
        let n = cell.lock();
        // The stall's gap is not learned, and the node is re-armed at its own,
        // earlier deadline under a new generation.
        assert_eq!(n.detector.as_ref().unwrap().mean_ms(), 1000.0);
        assert_eq!(n.timer, Some(resumed.into_std() + suspect));
        assert!(n.timer.unwrap() < grace_timer);
        assert_eq!(n.timer_gen, grace_gen.wrapping_add(1));
    }
    // Beating on past the moment the (now superseded) grace timer fires.
    let until = Instant::from_std(grace_timer) + 3 * SECOND;
    let mut at = resumed;
    while at < until {
        at += SECOND;
        tokio::time::sleep_until(at).await;
        assert_eq!(state_of(&cell), (Healthy, Healthy), "at {:?}", at - resumed);
        agent.beat(c);
    }
    // And once it stops, it is judged on its usual deadlines.
    tokio::time::sleep_until(at + suspect + MARGIN).await;
    assert_eq!(state_of(&cell).0, Degraded);
    tokio::time::sleep_until(at + convict + MARGIN).await;
    assert_eq!(state_of(&cell).0, Unhealthy);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_rearms_a_node_whose_timer_is_too_far_out() {
    let mut cfg = Config::for_tests();
    // One good heartbeat recovers, so the recovered node can turn suspect again.
    cfg.recover_after = 1;
    let h = start(cfg);
    let c = &h.cluster;
    let mut agent = Agent::new(c, "n1", 1000);
    let last = agent.run_for(c, Instant::now(), 5).await;
    let cell = c.nodes.get("n1").unwrap();
    let (suspect, convict) = phi_deadlines(c, &cell);
    let timeout = ms(c.policy.heartbeat_timeout_ms);

    tokio::time::sleep_until(last + convict + MARGIN).await;
    assert_eq!(state_of(&cell).0, Unhealthy);
    // After the conviction the armed timer is the hard timeout, seconds away.
    let (far, gen) = {
        let n = cell.lock();
        (n.timer.expect("armed"), n.timer_gen)
    };
    assert!(far > (last + timeout).into_std(), "{far:?}");

    // The node comes back for one heartbeat (past the convict point, so the detector
    // keeps its view), then stops again.
    tokio::time::sleep_until(last + convict + 20 * MARGIN).await;
    let back = Instant::now();
    assert_eq!(agent.beat(c), Healthy);
    {
        let n = cell.lock();
        assert_eq!(n.timer, Some(back.into_std() + suspect));
        assert_eq!(n.timer_gen, gen.wrapping_add(1));
    }
    assert_eq!(phi_deadlines(c, &cell), (suspect, convict));
    assert!(
        (back + convict).into_std() < far,
        "the test needs this order"
    );

    // Judged at its new, earlier deadlines, not when the old timer fires.
    tokio::time::sleep_until(back + suspect + MARGIN).await;
    assert_eq!(state_of(&cell).0, Degraded);
    tokio::time::sleep_until(back + convict + MARGIN).await;
    assert_eq!(state_of(&cell).0, Unhealthy);
}

/// A node inserted by hand: healthy, silent for `silent`, its timer at generation
/// `gen` (and nothing in the deadline task's heap).
fn silent_node(c: &Cluster, id: &str, silent: Duration, gen: u32) -> Arc<NodeCell> {
    let now = Instant::now().into_std();
    let record = NodeRecord {
        addr: "http://127.0.0.1:7501".into(),
        incarnation: 1,
        admin_drain: false,
        leaving: false,
        capacity: Capacity::default(),
        first_seen_ms: unix_ms(),
    };
    let cell = c.nodes.insert(Arc::new(NodeCell::new(
        id.into(),
        c.keys.node_keys(id),
        record,
        now,
    )));
    {
        let mut n = cell.lock();
        let mut health = Health::default();
        health.on_heartbeat(&c.policy, Status::Pass, Status::Pass, &[]);
        n.health = health;
        n.detector = Some(PhiDetector::new(1000));
        // Paused time starts at the real clock, so going back 10 s is safe.
        n.last_heartbeat = Some(now - silent);
        n.timer_gen = gen;
        n.timer = Some(now);
        let _ = n.refresh_state(now);
    }
    cell
}

#[tokio::test(start_paused = true)]
async fn superseded_timer_generation_is_ignored() {
    let h = start(Config::for_tests());
    let c = &h.cluster;
    let cell = silent_node(c, "n1", 10 * SECOND, 7);
    assert_eq!(state_of(&cell), (Healthy, Healthy));
    let armed = cell.lock().timer;

    // Entries of older (and newer) generations than the node's: nothing happens.
    for stale in [6, 0, 8] {
        h.inject.send((cell.clone(), stale)).unwrap();
        settle().await;
        assert_eq!(state_of(&cell), (Healthy, Healthy), "generation {stale}");
        assert_eq!(cell.lock().timer, armed, "generation {stale}");
    }
    // The current generation judges the 10 s silence.
    h.inject.send((cell.clone(), 7)).unwrap();
    settle().await;
    assert_eq!(state_of(&cell), (Unhealthy, Unhealthy));
}

#[tokio::test(start_paused = true)]
async fn removed_node_is_disarmed_not_judged() {
    let h = start(Config::for_tests());
    let c = &h.cluster;
    let cell = silent_node(c, "n1", 10 * SECOND, 3);
    assert!(c.nodes.remove("n1").is_some());
    h.inject.send((cell.clone(), 3)).unwrap();
    settle().await;
    let n = cell.lock();
    assert_eq!(n.timer, None);
    assert_eq!(n.state, Healthy);
}
