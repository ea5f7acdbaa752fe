//! Acks of items that end at about the same time reach the store in one transaction. A store has one
//! writer (SQLite's single connection, PostgreSQL's row locks), so one transaction per ended item
//! would queue every worker behind it: a 16 KiB object then waits longer for its ack than for its
//! copy. One task per process takes the acks as they come and sends whatever queued up while the
//! previous batch was written; nothing waits for a batch to fill.
//!
//! After a batch, one caller per run (the last one whose ack was accepted) is told to check
//! whether the run has drained: one look covers every item of that run in the batch, so a run of
//! small objects costs one run-end read per batch instead of one per object. None looks while this
//! process still holds an item of the run that is not acked: the run cannot have drained, and that
//! item's own end (its ack's batch, or its failure) looks again. Acked items leave the held set here,
//! before that decision, so the last batch of a run always looks.

use std::collections::HashSet;
use std::sync::Arc;

use dth_store::{Ack, Acked, Store};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::timed;
use crate::worker::{Held, lock};

/// Most acks in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<BatchAck, String>>;

/// The store's answer for one ack, and whether its caller checks the run's end.
pub(crate) struct BatchAck {
    /// What the store did with the ack.
    pub acked: Acked,
    /// True for one accepted ack per run and batch: its caller looks whether the run drained.
    pub checks_run_end: bool,
}

/// Sends acks of one worker id to the store in batches.
pub(crate) struct AckBatcher {
    tx: mpsc::UnboundedSender<(i64, Ack, Reply)>,
}

impl AckBatcher {
    /// Starts the batching task of `worker`, whose workers hold `held` (within a Tokio runtime).
    pub(crate) fn start(store: Arc<dyn Store>, worker: String, held: Held) -> AckBatcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, worker, held, rx));
        AckBatcher { tx }
    }

    /// Acks one item of run `run_id`, in the next batch; the store's answer for it.
    pub(crate) async fn ack(&self, run_id: i64, ack: Ack) -> Result<BatchAck, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((run_id, ack, reply))
            .map_err(|_| "the ack batcher has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the ack batcher has stopped".to_string())?
    }
}

async fn run(
    store: Arc<dyn Store>,
    worker: String,
    held: Held,
    mut rx: mpsc::UnboundedReceiver<(i64, Ack, Reply)>,
) {
    while let Some((run_id, ack, reply)) = rx.recv().await {
        let mut acks = vec![ack];
        let mut callers = vec![(run_id, reply)];
        while acks.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((run_id, ack, reply)) => {
                    acks.push(ack);
                    callers.push((run_id, reply));
                }
                Err(_) => break,
            }
        }
        match timed("ack", store.ack(&worker, &acks)).await {
            Ok(answers) => {
                let busy: HashSet<i64> = {
                    let mut held = lock(&held);
                    for (a, acked) in acks.iter().zip(&answers) {
                        if acked.accepted {
                            held.remove(&a.id);
                        }
                    }
                    held.values().map(|(run, _)| *run).collect()
                };
                // The last accepted ack of each run not busy here checks its end (found from the
                // back).
                let mut checked = HashSet::new();
                let mut replies: Vec<_> = callers
                    .into_iter()
                    .zip(answers)
                    .rev()
                    .map(|((run_id, reply), acked)| {
                        let checks_run_end =
                            acked.accepted && !busy.contains(&run_id) && checked.insert(run_id);
                        (
                            reply,
                            BatchAck {
                                acked,
                                checks_run_end,
                            },
                        )
                    })
                    .collect();
                replies.reverse();
                for (reply, answer) in replies {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                let e = e.to_string();
                for (_, reply) in callers {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
