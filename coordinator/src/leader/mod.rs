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
        }
    }

    /// One of several coordinators sharing etcd: a candidate until elected.
    pub fn shared(me: Peer) -> Leadership {
        Leadership {
            leader: Mutex::new(None),
            me,
            fence: Arc::new(Fence::unheld()),
            shared: true,
            role: watch::channel(Role::Candidate).0,
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

    /// Wakes on every change of role.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    pub(crate) fn set_role(&self, role: Role, leader: Option<Peer>) {
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = leader;
        self.role.send_replace(role);
    }
}
