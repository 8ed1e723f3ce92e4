//! The planner from tables: a record, the nodes, placement's wish → one step.

use super::*;
use crate::shards::record::holders;

/// Nodes by one-letter state: `h` healthy, `g` degraded, `u` unhealthy, `k` unknown,
/// `d` draining (still serving), `D` draining and down, `f` healthy but full.
fn snap(nodes: &str) -> Snapshot {
    let views = nodes
        .split_whitespace()
        .map(|spec| {
            let (id, code) = spec.split_once('=').expect("id=code");
            let mut v = NodeView::serving();
            match code {
                "h" => {}
                "g" => v.state = NodeState::Degraded,
                "u" | "k" => {
                    v.state = if code == "u" {
                        NodeState::Unhealthy
                    } else {
                        NodeState::Unknown
                    };
                    v.eligible = false;
                }
                "d" | "D" => {
                    v.draining = true;
                    v.eligible = false;
                    if code == "D" {
                        v.state = NodeState::Unhealthy;
                    }
                }
                "f" => v.has_room = false,
                other => panic!("unknown node code {other}"),
            }
            (Arc::from(id), v)
        })
        .collect();
    let mut s = Snapshot::new(views, 2);
    s.move_delay = Duration::from_secs(30);
    s.rebalance_allowed = true;
    s.free_slots = 4;
    s
}

fn rec(spec: &str) -> ShardRecord {
    let mut r = holders(7, 3, spec);
    r.assigned = true;
    r
}

fn wish(ids: &str) -> Vec<String> {
    ids.split_whitespace().map(str::to_owned).collect()
}

fn idle() -> ShardState {
    ShardState::default()
}

fn check(r: &ShardRecord, w: &str, s: &Snapshot, st: ShardState, want: Step) {
    assert_eq!(
        plan(r, &wish(w), s, st),
        want,
        "record {r:?}, wish {w:?}, state {st:?}"
    );
}

fn copy(to: &str, reason: MoveReason) -> Step {
    Step::Copy {
        to: to.into(),
        reason,
    }
}

fn failover(lost: &str, prefer: &str) -> Step {
    Step::Failover {
        lost: wish(lost),
        prefer: wish(prefer),
    }
}

// --- steady state -----------------------------------------------------------------

#[test]
fn a_shard_where_placement_wants_it_needs_nothing() {
    check(
        &rec("a b"),
        "a b",
        &snap("a=h b=h c=h"),
        idle(),
        Step::Nothing,
    );
    check(&rec("a b"), "a b", &snap("a=g b=g"), idle(), Step::Nothing);
}

#[test]
fn a_never_assigned_shard_is_bootstrapped_onto_its_placement() {
    let mut r = rec("-");
    r.assigned = false;
    let s = snap("a=h b=h");
    check(
        &r,
        "b a",
        &s,
        idle(),
        Step::Bootstrap {
            holders: wish("b a"),
        },
    );
    // No placement yet (no eligible node): nothing to bootstrap onto, nothing to copy.
    check(&r, "", &s, idle(), Step::Wait(Wait::NoPrimary));
}

#[test]
fn a_copy_without_a_task_is_dropped_but_a_running_one_is_not() {
    let s = snap("a=h b=h c=h");
    check(&rec("a b c*"), "a b", &s, idle(), Step::DropAbandonedCopy);
    let moving = ShardState {
        moving: true,
        ..idle()
    };
    check(
        &rec("a b c*"),
        "a c",
        &s,
        moving,
        Step::Wait(Wait::CopyRunning),
    );
}

// --- failover -----------------------------------------------------------------

#[test]
fn a_dead_primary_fails_over_to_an_in_sync_replica() {
    check(
        &rec("a b"),
        "b c",
        &snap("a=u b=h c=h"),
        idle(),
        failover("a", "b c"),
    );
}

#[test]
fn failover_also_drops_dead_replicas_and_unknown_nodes() {
    check(
        &rec("a b c"),
        "a d",
        &snap("a=h b=u c=k d=h"),
        idle(),
        failover("b c", "a d"),
    );
    // A holder the registry no longer knows (removed by an operator) is lost too.
    check(
        &rec("a b"),
        "a c",
        &snap("a=h c=h"),
        idle(),
        failover("b", "a c"),
    );
}

#[test]
fn failover_never_waits_behind_a_running_copy() {
    let moving = ShardState {
        moving: true,
        ..idle()
    };
    check(
        &rec("a b c*"),
        "b c",
        &snap("a=u b=h c=h"),
        moving,
        failover("a", "b c"),
    );
}

#[test]
fn a_dead_copy_in_progress_is_dropped_even_when_no_in_sync_copy_is_up() {
    // The copy holds no acknowledged write that is not elsewhere.
    let moving = ShardState {
        moving: true,
        ..idle()
    };
    check(
        &rec("a c*"),
        "b",
        &snap("a=u b=h c=u"),
        moving,
        failover("c", "b"),
    );
}

#[test]
fn the_last_in_sync_copy_is_never_dropped_while_its_node_may_return() {
    let s = snap("a=u b=u c=h");
    check(&rec("a b"), "c", &s, idle(), Step::Wait(Wait::Stranded));
    check(
        &rec("a"),
        "c",
        &snap("a=u c=h"),
        idle(),
        Step::Wait(Wait::Stranded),
    );
    // Nor when the shard has a copy elsewhere that is up but not in sync.
    let moving = ShardState {
        moving: true,
        ..idle()
    };
    check(
        &rec("a c*"),
        "c",
        &snap("a=u c=h"),
        moving,
        Step::Wait(Wait::Stranded),
    );
}

#[test]
fn a_removed_nodes_last_copy_is_let_go() {
    // `a` was force-removed (unknown to the registry); `b` is merely down.
    check(
        &rec("a b"),
        "c",
        &snap("b=u c=h"),
        idle(),
        failover("a", "c"),
    );
}

#[test]
fn a_shard_stranded_on_an_unknown_node_waits_too() {
    check(
        &rec("a"),
        "b",
        &snap("a=k b=h"),
        idle(),
        Step::Wait(Wait::Stranded),
    );
}

// --- drains -------------------------------------------------------------------

#[test]
fn a_draining_primary_is_handed_off_before_its_copy_moves() {
    let s = snap("a=d b=h c=h");
    check(
        &rec("a b"),
        "b c",
        &s,
        idle(),
        Step::HandOff { to: "b".into() },
    );
}

#[test]
fn hand_off_prefers_placement_then_any_eligible_in_sync_replica() {
    let s = snap("a=d b=h c=h");
    check(
        &rec("a b c"),
        "c b",
        &s,
        idle(),
        Step::HandOff { to: "c".into() },
    );
    // Placement offers neither replica: the first eligible in-sync one.
    check(
        &rec("a b c"),
        "d e",
        &s,
        idle(),
        Step::HandOff { to: "b".into() },
    );
    // A replica still copying is never made primary.
    check(
        &rec("a b*"),
        "b c",
        &s,
        ShardState {
            moving: true,
            ..idle()
        },
        Step::Wait(Wait::CopyRunning),
    );
}

#[test]
fn a_draining_primary_without_an_eligible_replica_gets_a_copy_first() {
    let s = snap("a=d b=d c=h");
    // b is draining too: not a hand-off target; the shard is copied onto c first.
    check(&rec("a b"), "c", &s, idle(), copy("c", MoveReason::Drain));
}

#[test]
fn a_draining_replica_is_copied_away_at_once_even_before_membership_settles() {
    let mut s = snap("a=h b=d c=h");
    s.rebalance_allowed = false;
    check(&rec("a b"), "a c", &s, idle(), copy("c", MoveReason::Drain));
}

#[test]
fn once_copied_the_draining_holder_is_trimmed_first() {
    let s = snap("a=h b=d c=h");
    check(
        &rec("a b c"),
        "a c",
        &s,
        idle(),
        Step::Trim {
            victim: "b".into(),
            prefer: wish("a c"),
        },
    );
}

#[test]
fn a_draining_node_that_dies_is_failed_over_not_handed_off() {
    check(
        &rec("a b"),
        "b c",
        &snap("a=D b=h c=h"),
        idle(),
        failover("a", "b c"),
    );
}

// --- re-replication -------------------------------------------------------------

#[test]
fn a_shard_short_of_copies_is_re_replicated_onto_placement() {
    check(
        &rec("a"),
        "a b",
        &snap("a=h b=h c=h"),
        idle(),
        copy("b", MoveReason::Rereplicate),
    );
}

#[test]
fn re_replication_waits_move_delay_while_a_node_is_unhealthy() {
    let s = snap("a=h b=h c=u");
    let early = ShardState {
        moving: false,
        under_for: Duration::from_secs(5),
    };
    check(&rec("a"), "a b", &s, early, Step::Wait(Wait::MoveDelay));
    let late = ShardState {
        moving: false,
        under_for: Duration::from_secs(30),
    };
    check(
        &rec("a"),
        "a b",
        &s,
        late,
        copy("b", MoveReason::Rereplicate),
    );
    // With every node healthy there is nothing to wait for.
    check(
        &rec("a"),
        "a b",
        &snap("a=h b=h"),
        early,
        copy("b", MoveReason::Rereplicate),
    );
}

#[test]
fn without_a_placement_target_any_eligible_node_with_room_is_used_in_id_order() {
    let s = snap("a=h z=h m=h y=d");
    check(
        &rec("a"),
        "a",
        &s,
        idle(),
        copy("m", MoveReason::Rereplicate),
    );
}

#[test]
fn capacity_caps_hold_full_nodes_are_never_spare_targets() {
    check(
        &rec("a"),
        "a",
        &snap("a=h b=f c=h"),
        idle(),
        copy("c", MoveReason::Rereplicate),
    );
    check(
        &rec("a"),
        "a",
        &snap("a=h b=f"),
        idle(),
        Step::Wait(Wait::NoTarget),
    );
}

#[test]
fn draining_and_down_nodes_are_never_copy_targets() {
    check(
        &rec("a"),
        "a",
        &snap("a=h b=d c=u d=k"),
        idle(),
        Step::Wait(Wait::NoTarget),
    );
}

#[test]
fn copies_wait_for_a_free_slot() {
    let mut s = snap("a=h b=h c=h");
    s.free_slots = 0;
    check(&rec("a"), "a b", &s, idle(), Step::Wait(Wait::NoSlot));
    check(&rec("a b"), "a c", &s, idle(), Step::Wait(Wait::NoSlot));
    // Failover needs no slot.
    check(
        &rec("a b"),
        "b c",
        &snap("a=u b=h c=h"),
        idle(),
        failover("a", "b c"),
    );
}

#[test]
fn a_shard_with_no_primary_is_not_copied() {
    let mut r = rec("-");
    r.assigned = true;
    check(
        &r,
        "a b",
        &snap("a=h b=h"),
        idle(),
        Step::Wait(Wait::NoPrimary),
    );
}

// --- rebalancing, trimming, primaries --------------------------------------------

#[test]
fn a_rebalance_copy_waits_for_membership_to_settle() {
    let mut s = snap("a=h b=h c=h");
    s.rebalance_allowed = false;
    check(&rec("a b"), "a c", &s, idle(), Step::Wait(Wait::Settling));
    s.rebalance_allowed = true;
    check(
        &rec("a b"),
        "a c",
        &s,
        idle(),
        copy("c", MoveReason::Rebalance),
    );
}

#[test]
fn a_surplus_copy_is_trimmed_never_below_rf() {
    let s = snap("a=h b=h c=h");
    check(
        &rec("a b c"),
        "a c",
        &s,
        idle(),
        Step::Trim {
            victim: "b".into(),
            prefer: wish("a c"),
        },
    );
    // Two copies, both unwanted: move one first, trim later.
    check(
        &rec("a b"),
        "c d",
        &snap("a=h b=h c=h d=h"),
        idle(),
        copy("c", MoveReason::Rebalance),
    );
}

#[test]
fn trimming_the_primary_names_the_successor_preference() {
    check(
        &rec("a b c"),
        "b c",
        &snap("a=h b=h c=h"),
        idle(),
        Step::Trim {
            victim: "a".into(),
            prefer: wish("b c"),
        },
    );
}

#[test]
fn the_primary_moves_to_placements_first_choice_once_the_holders_match() {
    let s = snap("a=h b=h");
    check(
        &rec("a b"),
        "b a",
        &s,
        idle(),
        Step::BalancePrimary { to: "b".into() },
    );
    let mut unsettled = snap("a=h b=h");
    unsettled.rebalance_allowed = false;
    check(&rec("a b"), "b a", &unsettled, idle(), Step::Nothing);
}

// --- pins -----------------------------------------------------------------------

#[test]
fn pins_override_placement() {
    let mut r = rec("a b");
    r.pinned = Some(wish("a c"));
    check(
        &r,
        "a b",
        &snap("a=h b=h c=h"),
        idle(),
        copy("c", MoveReason::Manual),
    );
}

#[test]
fn a_pinned_primary_takes_over_once_in_sync() {
    let mut r = rec("a b");
    r.pinned = Some(wish("b a"));
    check(
        &r,
        "a b",
        &snap("a=h b=h"),
        idle(),
        Step::Pin { to: "b".into() },
    );
    // Pins bypass the rebalance delay.
    let mut s = snap("a=h b=h");
    s.rebalance_allowed = false;
    check(&r, "a b", &s, idle(), Step::Pin { to: "b".into() });
}

#[test]
fn pinned_nodes_that_are_not_eligible_are_left_out() {
    let mut r = rec("a b");
    r.pinned = Some(wish("a c"));
    let s = snap("a=h b=h c=u");
    assert_eq!(wanted(&r, &wish("a b"), &s), wish("a"));
    // Only `a` is wanted and eligible: `b` is surplus beyond what the pin names, but
    // trimming never goes below rf.
    check(&r, "a b", &s, idle(), Step::Nothing);
}

// --- the pass-level questions -------------------------------------------------------

#[test]
fn the_storm_guard_freezes_at_the_configured_fraction() {
    for (nodes, unhealthy, fraction, frozen) in [
        (1, 1, 0.5, false), // one node: its loss is no storm
        (2, 1, 0.5, true),
        (3, 1, 0.5, false),
        (4, 2, 0.5, true),
        (10, 4, 0.5, false),
        (10, 3, 0.3, true),
        (10, 0, 0.0, true), // a fraction of 0 freezes everything
    ] {
        assert_eq!(
            storm(nodes, unhealthy, fraction),
            frozen,
            "{unhealthy} of {nodes} at {fraction}"
        );
    }
}

#[test]
fn snapshot_counts_unhealthy_and_unknown_but_not_draining_nodes() {
    let s = snap("a=h b=u c=k d=d e=D");
    assert_eq!((s.unhealthy, s.unknown, s.len()), (2, 1, 5));
    assert!(s.dead("b") && s.dead("c") && s.dead("e") && s.dead("zz"));
    assert!(!s.dead("a") && !s.dead("d"));
}

#[test]
fn urgent_shards_have_a_dead_or_draining_primary() {
    let s = snap("a=h b=u c=d");
    assert!(!s.urgent(&rec("a b")));
    assert!(s.urgent(&rec("b a")));
    assert!(s.urgent(&rec("c a")));
    assert!(!s.urgent(&rec("-")));
}

#[test]
fn a_copy_is_doomed_when_its_source_or_target_goes() {
    let s = snap("a=h b=h c=u d=d");
    assert!(!s.copy_doomed(&rec("a"), "b"));
    assert!(s.copy_doomed(&rec("c"), "b"), "source died");
    assert!(s.copy_doomed(&rec("a"), "c"), "target died");
    assert!(s.copy_doomed(&rec("a"), "d"), "target draining");
    assert!(s.copy_doomed(&rec("a"), "gone"), "target removed");
}

#[test]
fn a_load_placement_is_followed_at_once_while_all_of_it_is_eligible() {
    let mut s = snap("a=h b=h c=h");
    // Membership is settling: a rebalance would wait, a load placement does not.
    s.rebalance_allowed = false;
    let mut swap = rec("a b");
    swap.load_placed = Some(wish("b a"));
    check(
        &swap,
        "a b",
        &s,
        idle(),
        Step::BalancePrimary { to: "b".into() },
    );
    // A moved primary: the target takes its place (and, once in sync, its role).
    let mut mv = rec("a b");
    mv.load_placed = Some(wish("c b"));
    check(&mv, "a b", &s, idle(), copy("c", MoveReason::Load));
    let mut done = rec("a b c");
    done.load_placed = Some(wish("c b"));
    check(
        &done,
        "a b",
        &s,
        idle(),
        Step::Trim {
            victim: "a".into(),
            prefer: wish("c b"),
        },
    );
    let mut trimmed = done.clone();
    assert!(trimmed.remove("a", &wish("c b")));
    assert_eq!(
        trimmed.primary.as_deref(),
        Some("c"),
        "the reads followed: {trimmed:?}"
    );
    // A node of the choice no longer eligible: placement's wish again.
    let down = snap("a=h b=h c=u");
    check(&mv, "a b", &down, idle(), Step::Nothing);
    // An operator's pin wins over it.
    let mut pinned = mv.clone();
    pinned.pinned = Some(wish("a b"));
    check(&pinned, "a b", &s, idle(), Step::Nothing);
}
