//! Changes reported by S3 event notifications, queued as items of a task's open **event run**
//! (trigger `event`, created TRANSFERRING: there is nothing to find), one item per key at a time.
//!
//! For each key the newest event wins: an event whose `sequencer` is not above the one stored for
//! the key (in this run or the task's last five event runs) is dropped (a duplicate or late
//! delivery); a newer one updates the key's item, queues it
//! again if it had ended, and cancels a queued item of the other kind (a copy superseded by a
//! delete, or the reverse). An item a worker holds is not touched under it: the newer item waits
//! until that lease has ended. Where there is no sequencer the item is queued again, and the worker
//! checks the source before it deletes. In one write transaction holding the run's row, so a run
//! that drains at the same moment either takes the new items or is closed before they come.
//!
//! The trait, and its SQL written once as a macro expanded for each backend's pool type
//! (`sqlite.rs`, `postgres.rs`); `$N` placeholders bind by number on both.

use async_trait::async_trait;

use crate::{NewItem, Result};

/// One change to queue: a copy (kind object) or a delete, with the event's sequencer.
#[derive(Debug, Clone, PartialEq)]
pub struct EventItem {
    /// The item; its payload must be a JSON object (the sequencer is added to it).
    pub item: NewItem,
    /// The event's `sequencer`, when the server sends one.
    pub sequencer: Option<String>,
}

/// What an ingest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ingested {
    /// The event run the items are in.
    pub run_id: i64,
    /// New items.
    pub added: u64,
    /// Items of keys already in the run, updated or queued again.
    pub updated: u64,
    /// Events dropped as not newer than the key's item (duplicates, late deliveries).
    pub stale: u64,
}

/// Queues event changes.
#[async_trait]
pub trait EventItemStore: Send + Sync {
    /// Queues changes into the task's open event run, creating one (TRANSFERRING, with
    /// `max_attempts`) when there is none. Fails with [`crate::Error::NotFound`] for an unknown task.
    async fn ingest_events(
        &self,
        task_id: &str,
        max_attempts: u32,
        items: &[EventItem],
    ) -> Result<Ingested>;
}

/// The stored sequencer of an item's payload.
pub(crate) fn stored_sequencer(payload: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()?
        .get("sequencer")?
        .as_str()
        .map(str::to_string)
}

/// The payload to store: the item's, with the sequencer.
pub(crate) fn payload_with_sequencer(item: &EventItem) -> String {
    let mut payload = item.item.payload.clone();
    if let (Some(seq), Some(obj)) = (&item.sequencer, payload.as_object_mut()) {
        obj.insert("sequencer".into(), serde_json::Value::String(seq.clone()));
    }
    crate::rows::to_json(&payload)
}

/// Whether an event with `new` is newer than the key's item with `stored`: always, unless both
/// have a sequencer and the new one is not greater.
pub(crate) fn is_newer(new: Option<&str>, stored: Option<&str>) -> bool {
    match (new, stored) {
        (Some(n), Some(s)) => dth_model::sequencer_cmp(n, s) == std::cmp::Ordering::Greater,
        _ => true,
    }
}

/// Implements [`EventItemStore`] for `$store` whose pool is a `sqlx::Pool<$db>`.
macro_rules! impl_event_item_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::EventItemStore for $store {
            async fn ingest_events(
                &self,
                task_id: &str,
                max_attempts: u32,
                items: &[$crate::EventItem],
            ) -> $crate::Result<$crate::Ingested> {
                let what = || $crate::rows::db(format!("queue events of task {task_id}"));
                let now = $crate::now_ms();
                let mut tx = self.write_tx().await?;
                let task: Option<(String,)> = sqlx::query_as(&format!(
                    "SELECT id FROM tasks WHERE id = $1{}",
                    Self::FOR_UPDATE
                ))
                .bind(task_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(what())?;
                if task.is_none() {
                    return Err($crate::Error::NotFound { what: "task", id: task_id.to_string() });
                }
                let open: Option<(i64,)> = sqlx::query_as(&format!(
                    "SELECT id FROM runs WHERE task_id = $1 AND trigger_kind = 'event' \
                     AND status = 'TRANSFERRING' ORDER BY id DESC LIMIT 1{}",
                    Self::FOR_UPDATE
                ))
                .bind(task_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(what())?;
                let run_id = match open {
                    Some((id,)) => id,
                    None => {
                        let (id,): (i64,) = sqlx::query_as(
                            "INSERT INTO runs (task_id, trigger_kind, status, max_attempts, \
                             started_at, found_at) VALUES ($1, 'event', 'TRANSFERRING', $2, $3, $3) \
                             RETURNING id",
                        )
                        .bind(task_id)
                        .bind(i64::from(max_attempts.max(1)))
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(what())?;
                        id
                    }
                };
                let mut done = $crate::Ingested { run_id, ..Default::default() };
                for ev in items {
                    let kind = ev.item.kind.name();
                    // The key's items in the run: at most one copy and one delete.
                    // The key's items in this run (at most one copy and one delete) and in the
                    // task's five event runs before it (for events delivered again after their
                    // run ended): one lookup.
                    let found: Vec<(i64, i64, String, String, Option<i64>, String)> =
                        sqlx::query_as(
                            "SELECT run_id, id, kind, state, lease_expires_at, payload FROM items \
                             WHERE key = $2 AND part_number = 0 AND kind IN ('object', 'delete') \
                             AND (run_id = $3 OR run_id IN (SELECT id FROM runs \
                             WHERE task_id = $1 AND trigger_kind = 'event' ORDER BY id DESC \
                             LIMIT 6))",
                        )
                        .bind(task_id)
                        .bind(ev.item.key.as_str())
                        .bind(run_id)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(what())?;
                    let newest = found
                        .iter()
                        .filter_map(|r| $crate::event_items::stored_sequencer(&r.5))
                        .max_by(|a, b| dth_model::sequencer_cmp(a, b));
                    let rows: Vec<_> = found
                        .into_iter()
                        .filter(|r| r.0 == run_id)
                        .map(|(_, id, k, state, lease_end, _)| (id, k, state, lease_end))
                        .collect();
                    if !$crate::event_items::is_newer(ev.sequencer.as_deref(), newest.as_deref()) {
                        done.stale += 1;
                        continue;
                    }
                    // Not before the end of a lease a worker holds on this key.
                    let mut not_before = now;
                    for (id, k, state, lease_end) in &rows {
                        if state == "leased" {
                            not_before = not_before.max(lease_end.unwrap_or(now));
                        } else if k != kind && state == "queued" {
                            sqlx::query(
                                "UPDATE items SET state = 'cancelled', \
                                 last_error = 'superseded by a newer event', updated_at = $2 \
                                 WHERE id = $1",
                            )
                            .bind(id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err(what())?;
                        }
                    }
                    let payload = $crate::event_items::payload_with_sequencer(ev);
                    let same = rows.iter().find(|r| r.1 == kind).map(|r| r.0);
                    match same {
                        Some(id) => {
                            sqlx::query(
                                "UPDATE items SET state = 'queued', attempts = 0, size = $2, \
                                 etag = $3, payload = $4, not_before = $5, lease_owner = NULL, \
                                 lease_expires_at = NULL, last_error = NULL, bytes_done = 0, \
                                 dst_etag = NULL, verification = NULL, updated_at = $6 \
                                 WHERE id = $1",
                            )
                            .bind(id)
                            .bind($crate::rows::to_i64(ev.item.size))
                            .bind(ev.item.etag.as_deref())
                            .bind(payload)
                            .bind(not_before)
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err(what())?;
                            done.updated += 1;
                        }
                        None => {
                            sqlx::query(
                                "INSERT INTO items (run_id, task_id, kind, key, size, etag, \
                                 parent_id, part_number, prio, state, attempts, not_before, payload, \
                                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, NULL, 0, \
                                 $7, 'queued', 0, $8, $9, $10, $10)",
                            )
                            .bind(run_id)
                            .bind(task_id)
                            .bind(kind)
                            .bind(ev.item.key.as_str())
                            .bind($crate::rows::to_i64(ev.item.size))
                            .bind(ev.item.etag.as_deref())
                            .bind($crate::rows::prio(ev.item.kind))
                            .bind(not_before)
                            .bind(payload)
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err(what())?;
                            done.added += 1;
                        }
                    }
                }
                sqlx::query("UPDATE runs SET final_counters = NULL WHERE id = $1")
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(what())?;
                tx.commit().await.map_err(what())?;
                Ok(done)
            }
        }
    };
}
pub(crate) use impl_event_item_store;
