//! Group commit for node records: writers queue changes, one task commits whatever
//! has queued up in a single transaction, so a burst of joins costs one fsync.

use crate::store::{NodeRecord, SharedStore};
use tokio::sync::{mpsc, oneshot};

type Ack = oneshot::Sender<Result<(), String>>;

struct Write {
    /// None: a flush marker, no record.
    id: Option<String>,
    record: Option<NodeRecord>,
    ack: Option<Ack>,
}

#[derive(Clone)]
pub struct PersistHandle {
    tx: mpsc::UnboundedSender<Write>,
}

impl PersistHandle {
    /// Queues a change without waiting (heartbeat path: losing it in a crash only
    /// costs a re-registration on the next heartbeat).
    pub fn queue(&self, id: String, record: Option<NodeRecord>) {
        let _ = self.tx.send(Write {
            id: Some(id),
            record,
            ack: None,
        });
    }

    /// Waits until every change queued before it is committed (or failed): a
    /// leader flushes before it resigns, while its commits still count.
    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Write {
                id: None,
                record: None,
                ack: Some(tx),
            })
            .map_err(|_| "the store writer has stopped".to_string())?;
        rx.await
            .map_err(|_| "the store writer has stopped".to_string())?
    }

    /// Queues a change and waits until it is committed (admin path).
    pub async fn write(&self, id: String, record: Option<NodeRecord>) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Write {
                id: Some(id),
                record,
                ack: Some(tx),
            })
            .map_err(|_| "the store writer has stopped".to_string())?;
        rx.await
            .map_err(|_| "the store writer has stopped".to_string())?
    }
}

/// Starts the writer; it ends when every handle is dropped, after a final commit.
pub fn spawn(store: SharedStore) -> (PersistHandle, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Write>();
    let task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while let Ok(w) = rx.try_recv() {
                batch.push(w);
            }
            let rows: Vec<_> = batch
                .iter()
                .filter_map(|w| Some((w.id.clone()?, w.record.clone())))
                .collect();
            let result = if rows.is_empty() {
                Ok(())
            } else {
                store.put_nodes(rows).await.map_err(|e| e.to_string())
            };
            if let Err(e) = &result {
                tracing::error!("committing {} node records failed: {e}", batch.len());
            }
            for w in batch {
                if let Some(ack) = w.ack {
                    let _ = ack.send(result.clone());
                }
            }
        }
    });
    (PersistHandle { tx }, task)
}
