//! Acks of items that end at about the same time reach the store in one transaction. A store has one
//! writer (SQLite's single connection, PostgreSQL's row locks), so one transaction per ended item
//! would queue every worker behind it: a 16 KiB object then waits longer for its ack than for its
//! copy. One task per process takes the acks as they come and sends whatever queued up while the
//! previous batch was written; nothing waits for a batch to fill.

use std::sync::Arc;

use dth_store::{Ack, Acked, Store};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::timed;

/// Most acks in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Acked, String>>;

/// Sends acks of one worker id to the store in batches.
pub(crate) struct AckBatcher {
    tx: mpsc::UnboundedSender<(Ack, Reply)>,
}

impl AckBatcher {
    /// Starts the batching task of `worker` (within a Tokio runtime).
    pub(crate) fn start(store: Arc<dyn Store>, worker: String) -> AckBatcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, worker, rx));
        AckBatcher { tx }
    }

    /// Acks one item, in the next batch; the store's answer for it.
    pub(crate) async fn ack(&self, ack: Ack) -> Result<Acked, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((ack, reply))
            .map_err(|_| "the ack batcher has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the ack batcher has stopped".to_string())?
    }
}

async fn run(store: Arc<dyn Store>, worker: String, mut rx: mpsc::UnboundedReceiver<(Ack, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut acks = vec![first.0];
        let mut replies = vec![first.1];
        while acks.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((a, r)) => {
                    acks.push(a);
                    replies.push(r);
                }
                Err(_) => break,
            }
        }
        match timed("ack", store.ack(&worker, &acks)).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                let e = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
