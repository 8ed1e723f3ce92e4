//! The replay rule of SPEC §2 as a pure function: per node, `incarnation` never goes
//! back, `seq` strictly increases within one incarnation, `sent_at_ms` lies within the
//! allowed clock skew, and nothing signed before the coordinator started is accepted.

use thiserror::Error;

/// The highest `(incarnation, seq)` accepted so far for a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayMark {
    pub incarnation: u64,
    pub seq: u64,
}

/// Coordinator-side parameters of the rule.
#[derive(Debug, Clone, Copy)]
pub struct ReplayPolicy {
    pub max_clock_skew_ms: u64,
    /// Coordinator start, unix ms: anything sent before it may be a recorded replay
    /// of a message whose `seq` this process never saw.
    pub started_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplayError {
    #[error("incarnation {got} is older than the current {current}")]
    OldIncarnation { got: u64, current: u64 },
    #[error("seq {got} is not above the last accepted {last} for incarnation {incarnation}")]
    SeqNotIncreasing {
        got: u64,
        last: u64,
        incarnation: u64,
    },
    #[error("sent_at_ms is {skew_ms} ms away from the coordinator clock (limit {limit_ms} ms)")]
    ClockSkew { skew_ms: i64, limit_ms: u64 },
    #[error("signed before this coordinator started ({ago_ms} ms earlier)")]
    BeforeStart { ago_ms: u64 },
}

impl ReplayError {
    /// `replay` for order violations, `stale` for time-window violations.
    pub fn is_stale(&self) -> bool {
        matches!(
            self,
            ReplayError::ClockSkew { .. } | ReplayError::BeforeStart { .. }
        )
    }
}

/// Decides whether a verified heartbeat may be accepted; returns the new mark.
///
/// `last_incarnation` is the durable floor (persisted); `mark` is what this process
/// has accepted since it started, if anything.
pub fn check_replay(
    policy: &ReplayPolicy,
    mark: Option<ReplayMark>,
    durable_incarnation: u64,
    incarnation: u64,
    seq: u64,
    sent_at_ms: u64,
    now_ms: u64,
) -> Result<ReplayMark, ReplayError> {
    let skew = sent_at_ms as i64 - now_ms as i64;
    if skew.unsigned_abs() > policy.max_clock_skew_ms {
        return Err(ReplayError::ClockSkew {
            skew_ms: skew,
            limit_ms: policy.max_clock_skew_ms,
        });
    }
    if sent_at_ms < policy.started_at_ms {
        return Err(ReplayError::BeforeStart {
            ago_ms: policy.started_at_ms - sent_at_ms,
        });
    }
    let current = mark.map_or(durable_incarnation, |m| {
        m.incarnation.max(durable_incarnation)
    });
    if incarnation < current {
        return Err(ReplayError::OldIncarnation {
            got: incarnation,
            current,
        });
    }
    if let Some(m) = mark {
        if incarnation == m.incarnation && seq <= m.seq {
            return Err(ReplayError::SeqNotIncreasing {
                got: seq,
                last: m.seq,
                incarnation,
            });
        }
    }
    Ok(ReplayMark { incarnation, seq })
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 1_000_000;
    const NOW: u64 = 2_000_000;
    const POLICY: ReplayPolicy = ReplayPolicy {
        max_clock_skew_ms: 30_000,
        started_at_ms: START,
    };

    fn mark(incarnation: u64, seq: u64) -> Option<ReplayMark> {
        Some(ReplayMark { incarnation, seq })
    }

    #[test]
    fn table() {
        type Case = (
            &'static str,
            Option<ReplayMark>,
            u64,
            u64,
            u64,
            u64,
            Result<(), &'static str>,
        );
        let cases: &[Case] = &[
            ("first ever", None, 0, 5, 1, NOW, Ok(())),
            ("next seq", mark(5, 1), 5, 5, 2, NOW, Ok(())),
            ("seq gap is fine", mark(5, 1), 5, 5, 9, NOW, Ok(())),
            ("replayed seq", mark(5, 2), 5, 5, 2, NOW, Err("seq")),
            ("older seq", mark(5, 2), 5, 5, 1, NOW, Err("seq")),
            (
                "new incarnation restarts seq",
                mark(5, 9),
                5,
                6,
                1,
                NOW,
                Ok(()),
            ),
            (
                "old incarnation",
                mark(6, 1),
                6,
                5,
                100,
                NOW,
                Err("incarnation"),
            ),
            (
                "old incarnation vs durable floor",
                None,
                6,
                5,
                1,
                NOW,
                Err("incarnation"),
            ),
            ("same incarnation after restart", None, 6, 6, 3, NOW, Ok(())),
            ("clock ahead", None, 0, 5, 1, NOW + 30_001, Err("away")),
            ("clock behind", None, 0, 5, 1, NOW - 30_001, Err("away")),
            ("skew at the limit", None, 0, 5, 1, NOW - 30_000, Ok(())),
        ];
        for (name, m, durable, inc, seq, sent, want) in cases {
            let got = check_replay(&POLICY, *m, *durable, *inc, *seq, *sent, NOW);
            match (want, got) {
                (Ok(()), Ok(mk)) => assert_eq!(
                    mk,
                    ReplayMark {
                        incarnation: *inc,
                        seq: *seq
                    },
                    "{name}"
                ),
                (Err(w), Err(e)) => assert!(e.to_string().contains(w), "{name}: {e}"),
                (w, g) => panic!("{name}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn signed_before_restart_is_stale() {
        let p = ReplayPolicy {
            max_clock_skew_ms: 30_000,
            started_at_ms: NOW - 10,
        };
        let e = check_replay(&p, None, 0, 5, 1, NOW - 20, NOW).unwrap_err();
        assert!(e.is_stale());
        assert!(check_replay(&p, None, 0, 5, 1, NOW - 5, NOW).is_ok());
    }
}
