//! Who may change the cluster: with one coordinator (redb) it always may; with
//! several sharing etcd, only the elected leader, while its lease holds
//! (`election`). Followers keep a copy of the committed state (`follow`) and send
//! what only the leader may do to it (`forward`).
//!
//! **Architecture Invariant:** one committer per leader revision. Every commit is
//! fenced by [`fence::Fence`]: a follower, a candidate or a leader past its local
//! deadline never commits, and etcd refuses a commit under a revision that is no
//! longer the leader key's.

pub mod election;
pub mod fence;
pub mod follow;
pub mod forward;

use fence::Fence;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
}

/// A coordinator as its peers see it: the leader key's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub id: String,
    pub url: String,
}

pub struct Leadership {
    pub me: Peer,
    pub fence: Arc<Fence>,
    /// Set when coordinators share etcd; false for the sole (redb) coordinator.
    pub shared: bool,
    leader: Mutex<Option<Peer>>,
    /// Bumped at every change of role, so tasks can wake on it.
    role: watch::Sender<Role>,
    /// How long an election may take (a lease TTL plus a campaign): how long a
    /// call that needs the leader waits for one before answering `not_leader`.
    pub election_window: Duration,
}

impl Leadership {
    /// The only coordinator (redb): leader for good.
    pub fn sole(me: Peer) -> Leadership {
        Leadership {
            leader: Mutex::new(Some(me.clone())),
            me,
            fence: Arc::new(Fence::sole()),
            shared: false,
            role: watch::channel(Role::Leader).0,
            election_window: Duration::ZERO,
        }
    }

    /// One of several coordinators sharing etcd (leases of `ttl`): a candidate
    /// until elected.
    pub fn shared(me: Peer, ttl: Duration) -> Leadership {
        Leadership {
            leader: Mutex::new(None),
            me,
            fence: Arc::new(Fence::unheld()),
            shared: true,
            role: watch::channel(Role::Candidate).0,
            election_window: ttl + Duration::from_secs(1),
        }
    }

    /// Whether this coordinator may commit and act now (its fence holds).
    pub fn is_leader(&self) -> bool {
        self.fence.current().is_some()
    }

    pub fn role(&self) -> Role {
        match *self.role.borrow() {
            // Past its own deadline a leader no longer acts, whatever the election
            // task has noticed yet.
            Role::Leader if !self.is_leader() => Role::Candidate,
            r => r,
        }
    }

    /// The current leader as far as this coordinator knows.
    pub fn leader(&self) -> Option<Peer> {
        if self.is_leader() {
            return Some(self.me.clone());
        }
        let known = self
            .leader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        known.filter(|p| p.id != self.me.id)
    }

    /// The leader, waiting up to [`Self::election_window`] for one to be elected
    /// when none is known: a call made during an election is served once it is
    /// over, as etcd holds a proposal while its raft elects, instead of failing.
    pub async fn leader_within_election(&self) -> Option<Peer> {
        let mut changes = self.subscribe();
        let deadline = tokio::time::Instant::now() + self.election_window;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.leader(),
            }
        }
    }

    /// Wakes on every change of role.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    pub(crate) fn set_role(&self, role: Role, leader: Option<Peer>) {
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = leader;
        self.role.send_replace(role);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str) -> Peer {
        Peer {
            id: id.into(),
            url: format!("http://{id}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_during_an_election_waits_for_its_end_and_no_longer() {
        let lead = Arc::new(Leadership::shared(peer("c1"), Duration::from_secs(3)));
        let started = tokio::time::Instant::now();
        assert_eq!(lead.leader_within_election().await, None);
        assert_eq!(
            started.elapsed(),
            lead.election_window,
            "no leader: gives up after the election window"
        );

        let elect = lead.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            elect.set_role(Role::Candidate, None);
            tokio::time::sleep(Duration::from_millis(500)).await;
            elect.set_role(Role::Follower, Some(peer("c2")));
        });
        let started = tokio::time::Instant::now();
        assert_eq!(lead.leader_within_election().await, Some(peer("c2")));
        assert_eq!(started.elapsed(), Duration::from_millis(2500));

        let started = tokio::time::Instant::now();
        assert_eq!(lead.leader_within_election().await, Some(peer("c2")));
        assert_eq!(started.elapsed(), Duration::ZERO, "a known leader: at once");
    }
}
