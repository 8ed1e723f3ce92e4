//! Node events, published by the health side for whoever acts on them. Health never
//! imports the shard wing: the reconciler subscribes here instead.

use tokio::sync::watch;

/// A counter bumped whenever a node starts or stops serving, or an operator changes
/// a node (drain, removal). Subscribers wake on a change and re-read what they need;
/// bursts coalesce into one wake-up.
pub struct NodeEvents {
    tx: watch::Sender<u64>,
}

impl Default for NodeEvents {
    fn default() -> Self {
        NodeEvents {
            tx: watch::Sender::new(0),
        }
    }
}

impl NodeEvents {
    pub fn publish(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_wake_once_for_a_burst() {
        let events = NodeEvents::default();
        let mut rx = events.subscribe();
        assert!(!rx.has_changed().unwrap());
        events.publish();
        events.publish();
        rx.changed().await.unwrap();
        assert!(!rx.has_changed().unwrap(), "two publishes, one wake-up");
        events.publish();
        assert!(rx.has_changed().unwrap());
    }
}
