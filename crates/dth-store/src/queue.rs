//! The queue protocol over items: insert, claim with a lease, heartbeat, ack, retry later or dead-letter, release, giant objects split into parts, and reads of a run's items.
//!
//! The trait, and its SQL written once as a macro expanded for each backend's pool type
//! (`sqlite.rs`, `postgres.rs`); `$N` placeholders bind by number on both.

use async_trait::async_trait;
use std::collections::HashSet;
use std::time::Duration;

use dth_model::{ItemKind, ItemState};
use serde::{Deserialize, Serialize};

use crate::{Millis, Result};

/// A queue item as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Id.
    pub id: i64,
    /// Its run.
    pub run_id: i64,
    /// Its task.
    pub task_id: String,
    /// Object, part or delete.
    pub kind: ItemKind,
    /// Object key, relative to the task's prefixes.
    pub key: String,
    /// Object size (a part: the part's length).
    pub size: u64,
    /// Source ETag seen by the finder.
    pub etag: Option<String>,
    /// For a part: the giant object's item.
    pub parent_id: Option<i64>,
    /// For a part: its number (1-based).
    pub part_number: Option<u32>,
    /// Where it is.
    pub state: ItemState,
    /// Claims so far.
    pub attempts: u32,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease ends.
    pub lease_expires_at: Option<Millis>,
    /// Not claimable before.
    pub not_before: Millis,
    /// The last failure.
    pub last_error: Option<String>,
    /// Bytes written (done items: the size).
    pub bytes_done: u64,
    /// Destination ETag after the copy (a part: its ETag).
    pub dst_etag: Option<String>,
    /// How the copy was verified (`dth_model::Verification` name), or why it was skipped.
    pub verification: Option<String>,
    /// Engine data: source metadata for an object, the upload id of a giant object, a part's range and
    /// MD5. Opaque here.
    pub payload: serde_json::Value,
    /// Creation.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

/// Which items of a run to list: optionally one state and a key prefix, by id after `after_id`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemQuery {
    /// Only items in this state.
    pub state: Option<ItemState>,
    /// Only keys starting with this (compared exactly, case-sensitive).
    pub key_prefix: Option<String>,
    /// Only ids above this (0: from the first); pages on with the last id seen.
    pub after_id: i64,
    /// At most this many.
    pub limit: u32,
}

/// An item to queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewItem {
    /// Object, part or delete.
    pub kind: ItemKind,
    /// Object key.
    pub key: String,
    /// Size.
    pub size: u64,
    /// Source ETag.
    pub etag: Option<String>,
    /// For a part: its number.
    pub part_number: Option<u32>,
    /// Engine data.
    pub payload: serde_json::Value,
}

/// A worker's result for an item it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// The item.
    pub id: i64,
    /// [`ItemState::Done`] or [`ItemState::Skipped`].
    pub state: ItemState,
    /// Destination ETag.
    pub dst_etag: Option<String>,
    /// Verification name, or the skip reason (`archived`, `vanished`).
    pub verification: Option<String>,
    /// Replaces the payload when given (a part records its MD5 here).
    pub payload: Option<serde_json::Value>,
}

/// What an ack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// The item.
    pub id: i64,
    /// False when the caller no longer held the lease (nothing was changed).
    pub accepted: bool,
    /// For the last part of a giant object: the parent item, now queued again so the caller can
    /// [`QueueStore::claim_item`] it and complete the upload.
    pub parent_ready: Option<i64>,
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// The item.
    pub id: i64,
    /// What went wrong (shown to users).
    pub error: String,
    /// When it may be claimed again.
    pub delay: Duration,
    /// Never retry: dead-letter now (403, 404 on the destination bucket…).
    pub permanent: bool,
}

/// What a retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retried {
    /// The item.
    pub id: i64,
    /// False when the caller no longer held the lease.
    pub accepted: bool,
    /// The item is now dead-lettered (attempts used up, or permanent).
    pub dead: bool,
}

/// How many items of a task's active runs are in one state ([`QueueStore::item_counts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemCount {
    /// The task.
    pub task_id: String,
    /// The state.
    pub state: ItemState,
    /// Items of the task's active runs in this state.
    pub items: u64,
    /// Of those, the items a claim would take now: queued with `not_before` passed, or leased with
    /// an expired lease. Zero for the other states.
    pub claimable: u64,
}

/// The queue: one item per object, part, delete or image of a run.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Queues items in one transaction; an item whose (run, kind, key, part number) exists is left
    /// alone. Returns how many were added.
    async fn insert_items(&self, run_id: i64, items: &[NewItem]) -> Result<u64>;
    /// Which of these keys already have an item (object or delete; parts are not looked at) in the run.
    async fn existing_keys(&self, run_id: i64, keys: &[String]) -> Result<HashSet<String>>;
    /// Claims up to `max` claimable items (queued with `not_before` ≤ now, or leased with an expired
    /// lease) of active runs, oldest first, parts before objects. Each gets `attempts + 1`, the lease,
    /// and `lease_owner = worker`. Items of runs that are not FINDING or TRANSFERRING are never
    /// claimed. A claim never dead-letters: only [`QueueStore::retry_later`] does.
    async fn claim(&self, worker: &str, max: usize, lease: Duration) -> Result<Vec<Item>>;
    /// Claims one given item if it is claimable.
    async fn claim_item(&self, worker: &str, id: i64, lease: Duration) -> Result<Option<Item>>;
    /// Extends the leases of these items held by `worker`; returns the ids still held.
    async fn heartbeat(&self, worker: &str, ids: &[i64], lease: Duration) -> Result<Vec<i64>>;
    /// Ends items held by `worker` as done or skipped (`bytes_done` = size for done), in one transaction.
    /// Any other state is refused with [`Error::Conflict`]. The results are in the order of `acks`.
    async fn ack(&self, worker: &str, acks: &[Ack]) -> Result<Vec<Acked>>;
    /// Failed attempts: dead when permanent or attempts ≥ the run's max, queued again after `delay`
    /// otherwise. In one transaction.
    async fn retry_later(&self, worker: &str, retries: &[Retry]) -> Result<Vec<Retried>>;
    /// Gives items back unfinished (shutdown): queued at once, the attempt not counted.
    async fn release(&self, worker: &str, ids: &[i64]) -> Result<u64>;
    /// Records engine data on an item the worker holds (the upload id before the first part is sent);
    /// false when the lease is lost.
    async fn set_payload(&self, worker: &str, id: i64, payload: &serde_json::Value)
    -> Result<bool>;
    /// Adds to an item's `bytes_done` (progress of a running copy).
    async fn add_progress(&self, id: i64, bytes: u64) -> Result<()>;
    /// Splits a held giant object into part items (`kind` part, `parent_id` = `id`): the parent becomes
    /// WAITING with `payload`, its lease released. False when the lease is lost (nothing changed).
    async fn split_item(
        &self,
        worker: &str,
        id: i64,
        payload: &serde_json::Value,
        parts: &[NewItem],
    ) -> Result<bool>;
    /// The parts of a giant object, by part number.
    async fn parts(&self, parent_id: i64) -> Result<Vec<Item>>;
    /// Removes a giant object's parts (after its upload was aborted) and clears its payload.
    async fn delete_parts(&self, parent_id: i64) -> Result<()>;
    /// Dead-letters a giant object (waiting, or queued / leased after its last part) and cancels its
    /// unfinished parts (queued or leased: their workers' acks are then refused). For when a part died.
    async fn kill_parent(&self, parent_id: i64, error: &str) -> Result<()>;
    /// Items of a run that match a query, by id.
    async fn search_items(&self, run_id: i64, query: &ItemQuery) -> Result<Vec<Item>>;
    /// Items of a run, optionally in one state, by id after `after_id`, at most `limit`.
    async fn list_items(
        &self,
        run_id: i64,
        state: Option<ItemState>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Item>> {
        let query = ItemQuery {
            state,
            key_prefix: None,
            after_id,
            limit,
        };
        self.search_items(run_id, &query).await
    }
    /// One item.
    async fn get_item(&self, id: i64) -> Result<Option<Item>>;
    /// Dead items of a run (all, or these ids) queued again with attempts reset; a FAILED or DONE run
    /// goes back to TRANSFERRING. Parts are never retried on their own: retry their object, whose
    /// worker starts it over. Returns how many.
    async fn retry_dead(&self, run_id: i64, ids: Option<&[i64]>) -> Result<u64>;
    /// Items of active runs (FINDING or TRANSFERRING) counted by task and state, parts included,
    /// with how many of them are claimable now; states without items are left out. Ordered by task,
    /// then state. Walks `runs_status` and the `items_run_state` index (reading rows only for queued
    /// and leased items), so its cost follows the items of active runs, never the history.
    async fn item_counts(&self) -> Result<Vec<ItemCount>>;
}

/// Implements [`QueueStore`] for `$store` whose pool is a `sqlx::Pool<$db>`.
macro_rules! impl_queue_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// The ack of `chunk` (indexes into `acks`) by `worker`: the results joined in as a
            /// VALUES table, updating only items it leases (and only those without a parent when
            /// `top_level_only`). Returns each updated item's id, parent and state.
            fn ack_query<'a>(
                acks: &'a [$crate::Ack],
                chunk: &[usize],
                now: $crate::Millis,
                worker: &'a str,
                top_level_only: bool,
            ) -> sqlx::QueryBuilder<'a, $db> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "WITH v (id, state, done, dst_etag, verification, payload) AS (",
                );
                qb.push_values(chunk, |mut b, &i| {
                    let a = &acks[i];
                    b.push_bind(a.id)
                        .push_bind(a.state.name())
                        .push_bind(i64::from(a.state == dth_model::ItemState::Done))
                        .push_bind(a.dst_etag.as_deref())
                        .push_bind(a.verification.as_deref())
                        .push_bind(a.payload.as_ref().map($crate::rows::to_json));
                });
                qb.push(
                    ") UPDATE items SET state = v.state, \
                     bytes_done = CASE WHEN v.done = 1 THEN items.size ELSE items.bytes_done END, \
                     dst_etag = v.dst_etag, verification = v.verification, \
                     payload = COALESCE(v.payload, items.payload), lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = ",
                )
                .push_bind(now)
                .push(" FROM v WHERE items.id = v.id AND items.state = 'leased' AND items.lease_owner = ")
                .push_bind(worker);
                if top_level_only {
                    qb.push(" AND items.parent_id IS NULL");
                }
                qb.push(" RETURNING items.id, items.parent_id, items.state");
                qb
            }

            /// Inserts items (parts of `parent` when given), skipping those that exist.
            async fn insert_item_rows(
                tx: &mut sqlx::Transaction<'static, $db>,
                run_id: i64,
                task_id: &str,
                parent: Option<i64>,
                items: &[$crate::NewItem],
                now: $crate::Millis,
            ) -> std::result::Result<u64, sqlx::Error> {
                let mut added = 0;
                for chunk in items.chunks($crate::rows::CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO items (run_id, task_id, kind, key, size, etag, parent_id, \
                         part_number, prio, state, attempts, not_before, payload, created_at, \
                         updated_at) ",
                    );
                    qb.push_values(chunk, |mut b, item| {
                        b.push_bind(run_id)
                            .push_bind(task_id)
                            .push_bind(item.kind.name())
                            .push_bind(item.key.as_str())
                            .push_bind($crate::rows::to_i64(item.size))
                            .push_bind(item.etag.as_deref())
                            .push_bind(parent)
                            .push_bind(i64::from(item.part_number.unwrap_or(0)))
                            .push_bind($crate::rows::prio(item.kind))
                            .push("'queued'")
                            .push("0")
                            .push_bind(now)
                            .push_bind($crate::rows::to_json(&item.payload))
                            .push_bind(now)
                            .push_bind(now);
                    });
                    qb.push(" ON CONFLICT DO NOTHING");
                    added += qb.build().execute(&mut **tx).await?.rows_affected();
                }
                Ok(added)
            }
        }

        #[async_trait::async_trait]
        impl $crate::QueueStore for $store {

            async fn insert_items(
                &self,
                run_id: i64,
                items: &[$crate::NewItem],
            ) -> $crate::Result<u64> {
                let what = || $crate::rows::db(format!("queue items of run {run_id}"));
                if items.is_empty() {
                    return Ok(0);
                }
                let mut tx = self.write_tx().await?;
                let run: Option<(String,)> =
                    sqlx::query_as("SELECT task_id FROM runs WHERE id = $1")
                        .bind(run_id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(what())?;
                let Some((task_id,)) = run else {
                    return Err($crate::Error::NotFound { what: "run", id: run_id.to_string() });
                };
                let added = Self::insert_item_rows(
                    &mut tx,
                    run_id,
                    &task_id,
                    None,
                    items,
                    $crate::now_ms(),
                )
                .await
                .map_err(what())?;
                tx.commit().await.map_err(what())?;
                self.after_insert(added);
                Ok(added)
            }

            async fn existing_keys(
                &self,
                run_id: i64,
                keys: &[String],
            ) -> $crate::Result<std::collections::HashSet<String>> {
                let mut found = std::collections::HashSet::new();
                for chunk in keys.chunks($crate::rows::CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "SELECT key FROM items WHERE kind <> 'part' AND run_id = ",
                    );
                    qb.push_bind(run_id).push(" AND key IN (");
                    let mut sep = qb.separated(", ");
                    for key in chunk {
                        sep.push_bind(key);
                    }
                    qb.push(")");
                    let rows: Vec<(String,)> = qb
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::rows::db(format!("look up keys of run {run_id}")))?;
                    found.extend(rows.into_iter().map(|(k,)| k));
                }
                Ok(found)
            }

            async fn claim(
                &self,
                worker: &str,
                max: usize,
                lease: std::time::Duration,
            ) -> $crate::Result<Vec<$crate::Item>> {
                if max == 0 {
                    return Ok(Vec::new());
                }
                self.claim_impl(worker, max, lease).await
            }

            async fn claim_item(
                &self,
                worker: &str,
                id: i64,
                lease: std::time::Duration,
            ) -> $crate::Result<Option<$crate::Item>> {
                let now = $crate::now_ms();
                let sql = format!(
                    "UPDATE items SET state = 'leased', attempts = attempts + 1, lease_owner = $1, \
                     lease_expires_at = $2, updated_at = $3 \
                     WHERE id = $4 AND ((state = 'queued' AND not_before <= $3) \
                       OR (state = 'leased' AND lease_expires_at < $3)) \
                     AND run_id IN (SELECT id FROM runs WHERE status IN ('FINDING', 'TRANSFERRING')) \
                     RETURNING {}",
                    $crate::rows::ITEM_COLS
                );
                let row: Option<$crate::rows::ItemRow> = sqlx::query_as(&sql)
                    .bind(worker)
                    .bind(now.saturating_add($crate::rows::millis(lease)))
                    .bind(now)
                    .bind(id)
                    .fetch_optional(&self.writer)
                    .await
                    .map_err($crate::rows::db(format!("claim item {id}")))?;
                row.map(TryInto::try_into).transpose()
            }

            async fn heartbeat(
                &self,
                worker: &str,
                ids: &[i64],
                lease: std::time::Duration,
            ) -> $crate::Result<Vec<i64>> {
                let now = $crate::now_ms();
                let mut held = Vec::with_capacity(ids.len());
                for chunk in ids.chunks($crate::rows::CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE items SET lease_expires_at = ",
                    );
                    qb.push_bind(now.saturating_add($crate::rows::millis(lease)))
                        .push(", updated_at = ")
                        .push_bind(now)
                        .push(" WHERE state = 'leased' AND lease_owner = ")
                        .push_bind(worker)
                        .push(" AND id IN (");
                    let mut sep = qb.separated(", ");
                    for id in chunk {
                        sep.push_bind(*id);
                    }
                    qb.push(") RETURNING id");
                    let rows: Vec<(i64,)> = qb
                        .build_query_as()
                        .fetch_all(&self.writer)
                        .await
                        .map_err($crate::rows::db(format!("extend leases of {worker}")))?;
                    held.extend(rows.into_iter().map(|(id,)| id));
                }
                held.sort_unstable();
                Ok(held)
            }

            async fn ack(
                &self,
                worker: &str,
                acks: &[$crate::Ack],
            ) -> $crate::Result<Vec<$crate::Acked>> {
                let what = || $crate::rows::db(format!("record results of {worker}"));
                for a in acks {
                    if !matches!(a.state, dth_model::ItemState::Done | dth_model::ItemState::Skipped)
                    {
                        return Err($crate::Error::Conflict(format!(
                            "ack of item {}: the state must be done or skipped, not {}",
                            a.id, a.state
                        )));
                    }
                }
                if acks.is_empty() {
                    return Ok(Vec::new());
                }
                let now = $crate::now_ms();
                let mut out: Vec<$crate::Acked> = acks
                    .iter()
                    .map(|a| $crate::Acked { id: a.id, accepted: false, parent_ready: None })
                    .collect();
                // The first ack of each id counts; a repeated id in one call is refused.
                let mut first: std::collections::HashMap<i64, usize> =
                    std::collections::HashMap::with_capacity(acks.len());
                for (i, a) in acks.iter().enumerate() {
                    first.entry(a.id).or_insert(i);
                }
                let mut unique: Vec<usize> = first.values().copied().collect();
                unique.sort_unstable_by_key(|&i| acks[i].id);
                // Items without a parent (objects and deletes: nearly all), one statement per
                // chunk and no transaction around it: a round trip, not three.
                for chunk in unique.chunks($crate::rows::CHUNK) {
                    let rows: Vec<(i64, Option<i64>, String)> =
                        Self::ack_query(acks, chunk, now, worker, true)
                            .build_query_as()
                            .fetch_all(&self.writer)
                            .await
                            .map_err(what())?;
                    for (id, _, _) in rows {
                        if let Some(&i) = first.get(&id) {
                            out[i].accepted = true;
                        }
                    }
                }
                // Parts (and acks refused above, refused again), with their objects made ready in
                // the same transaction once their last part is done.
                let rest: Vec<usize> = unique.into_iter().filter(|&i| !out[i].accepted).collect();
                if rest.is_empty() {
                    return Ok(out);
                }
                let mut parents: Vec<(usize, i64)> = Vec::new();
                let mut tx = self.write_tx().await?;
                for chunk in rest.chunks($crate::rows::CHUNK) {
                    let rows: Vec<(i64, Option<i64>, String)> =
                        Self::ack_query(acks, chunk, now, worker, false)
                            .build_query_as()
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(what())?;
                    for (id, parent, state) in rows {
                        let Some(&i) = first.get(&id) else { continue };
                        out[i].accepted = true;
                        if let Some(parent) = parent
                            && state == dth_model::ItemState::Done.name()
                        {
                            parents.push((i, parent));
                        }
                    }
                }
                parents.sort_by_key(|&(_, p)| p);
                let mut readied = std::collections::HashSet::new();
                for (i, parent) in parents {
                    if readied.contains(&parent) {
                        continue;
                    }
                    // Lock the parent first so that two workers acking its last two parts at once
                    // see each other's part (the second waits for the first to commit).
                    let waiting: Option<(String,)> = sqlx::query_as(&format!(
                        "SELECT state FROM items WHERE id = $1{}",
                        Self::FOR_UPDATE
                    ))
                    .bind(parent)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(what())?;
                    if waiting.is_none_or(|(s,)| s != "waiting") {
                        continue;
                    }
                    let open: Option<(i64,)> = sqlx::query_as(
                        "SELECT id FROM items WHERE parent_id = $1 AND state <> 'done' LIMIT 1",
                    )
                    .bind(parent)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(what())?;
                    if open.is_some() {
                        continue;
                    }
                    let ready = sqlx::query(
                        "UPDATE items SET state = 'queued', not_before = $2, updated_at = $2 \
                         WHERE id = $1 AND state = 'waiting'",
                    )
                    .bind(parent)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(what())?;
                    if ready.rows_affected() == 1 {
                        out[i].parent_ready = Some(parent);
                        readied.insert(parent);
                    }
                }
                tx.commit().await.map_err(what())?;
                Ok(out)
            }

            async fn retry_later(
                &self,
                worker: &str,
                retries: &[$crate::Retry],
            ) -> $crate::Result<Vec<$crate::Retried>> {
                let what = || $crate::rows::db(format!("record failures of {worker}"));
                if retries.is_empty() {
                    return Ok(Vec::new());
                }
                let now = $crate::now_ms();
                let mut order: Vec<usize> = (0..retries.len()).collect();
                order.sort_by_key(|&i| retries[i].id);
                let mut out: Vec<$crate::Retried> = retries
                    .iter()
                    .map(|r| $crate::Retried { id: r.id, accepted: false, dead: false })
                    .collect();
                let mut tx = self.write_tx().await?;
                for i in order {
                    let r = &retries[i];
                    let row: Option<(String,)> = sqlx::query_as(
                        "UPDATE items SET \
                         state = CASE WHEN $3 = 1 OR attempts >= \
                           (SELECT max_attempts FROM runs WHERE runs.id = items.run_id) \
                           THEN 'dead' ELSE 'queued' END, \
                         not_before = $4, last_error = $5, lease_owner = NULL, \
                         lease_expires_at = NULL, updated_at = $6 \
                         WHERE id = $1 AND lease_owner = $2 AND state = 'leased' \
                         RETURNING state",
                    )
                    .bind(r.id)
                    .bind(worker)
                    .bind(i64::from(r.permanent))
                    .bind(now.saturating_add($crate::rows::millis(r.delay)))
                    .bind(&r.error)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(what())?;
                    if let Some((state,)) = row {
                        out[i].accepted = true;
                        out[i].dead = state == "dead";
                    }
                }
                tx.commit().await.map_err(what())?;
                Ok(out)
            }

            async fn release(&self, worker: &str, ids: &[i64]) -> $crate::Result<u64> {
                let now = $crate::now_ms();
                let mut released = 0;
                for chunk in ids.chunks($crate::rows::CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE items SET state = 'queued', \
                         attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
                         lease_owner = NULL, lease_expires_at = NULL, not_before = ",
                    );
                    qb.push_bind(now)
                        .push(", updated_at = ")
                        .push_bind(now)
                        .push(" WHERE state = 'leased' AND lease_owner = ")
                        .push_bind(worker)
                        .push(" AND id IN (");
                    let mut sep = qb.separated(", ");
                    for id in chunk {
                        sep.push_bind(*id);
                    }
                    qb.push(")");
                    released += qb
                        .build()
                        .execute(&self.writer)
                        .await
                        .map_err($crate::rows::db(format!("release items of {worker}")))?
                        .rows_affected();
                }
                Ok(released)
            }

            async fn set_payload(
                &self,
                worker: &str,
                id: i64,
                payload: &serde_json::Value,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE items SET payload = $3, updated_at = $4 \
                     WHERE id = $1 AND lease_owner = $2 AND state = 'leased'",
                )
                .bind(id)
                .bind(worker)
                .bind($crate::rows::to_json(payload))
                .bind($crate::now_ms())
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("record engine data of item {id}")))?;
                Ok(done.rows_affected() == 1)
            }

            async fn add_progress(&self, id: i64, bytes: u64) -> $crate::Result<()> {
                sqlx::query("UPDATE items SET bytes_done = bytes_done + $2 WHERE id = $1")
                    .bind(id)
                    .bind($crate::rows::to_i64(bytes))
                    .execute(&self.writer)
                    .await
                    .map_err($crate::rows::db(format!("record progress of item {id}")))?;
                Ok(())
            }

            async fn split_item(
                &self,
                worker: &str,
                id: i64,
                payload: &serde_json::Value,
                parts: &[$crate::NewItem],
            ) -> $crate::Result<bool> {
                let what = || $crate::rows::db(format!("split item {id} into parts"));
                let now = $crate::now_ms();
                let mut tx = self.write_tx().await?;
                let row: Option<(i64, String)> = sqlx::query_as(
                    "UPDATE items SET state = 'waiting', payload = $3, lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = $4 \
                     WHERE id = $1 AND lease_owner = $2 AND state = 'leased' \
                     RETURNING run_id, task_id",
                )
                .bind(id)
                .bind(worker)
                .bind($crate::rows::to_json(payload))
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(what())?;
                let Some((run_id, task_id)) = row else {
                    return Ok(false);
                };
                let parts: Vec<$crate::NewItem> = parts
                    .iter()
                    .map(|p| $crate::NewItem { kind: dth_model::ItemKind::Part, ..p.clone() })
                    .collect();
                Self::insert_item_rows(&mut tx, run_id, &task_id, Some(id), &parts, now)
                    .await
                    .map_err(what())?;
                tx.commit().await.map_err(what())?;
                Ok(true)
            }

            async fn parts(&self, parent_id: i64) -> $crate::Result<Vec<$crate::Item>> {
                let sql = format!(
                    "SELECT {} FROM items WHERE parent_id = $1 ORDER BY part_number, id",
                    $crate::rows::ITEM_COLS
                );
                let rows: Vec<$crate::rows::ItemRow> = sqlx::query_as(&sql)
                    .bind(parent_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::rows::db(format!("list parts of item {parent_id}")))?;
                $crate::rows::items(rows)
            }

            async fn delete_parts(&self, parent_id: i64) -> $crate::Result<()> {
                let what = || $crate::rows::db(format!("delete parts of item {parent_id}"));
                let mut tx = self.write_tx().await?;
                sqlx::query("DELETE FROM items WHERE parent_id = $1")
                    .bind(parent_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(what())?;
                sqlx::query("UPDATE items SET payload = 'null', updated_at = $2 WHERE id = $1")
                    .bind(parent_id)
                    .bind($crate::now_ms())
                    .execute(&mut *tx)
                    .await
                    .map_err(what())?;
                tx.commit().await.map_err(what())?;
                Ok(())
            }

            async fn kill_parent(&self, parent_id: i64, error: &str) -> $crate::Result<()> {
                let what = || $crate::rows::db(format!("dead-letter item {parent_id}"));
                let now = $crate::now_ms();
                let mut tx = self.write_tx().await?;
                // Parts first, then the parent: the order acks lock them in (no deadlock).
                // Leased parts too: their workers' acks are then refused.
                sqlx::query(
                    "UPDATE items SET state = 'cancelled', lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = $2 \
                     WHERE parent_id = $1 AND state IN ('queued', 'leased', 'waiting')",
                )
                .bind(parent_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(what())?;
                sqlx::query(
                    "UPDATE items SET state = 'dead', last_error = $2, lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = $3 \
                     WHERE id = $1 AND state IN ('waiting', 'queued', 'leased')",
                )
                .bind(parent_id)
                .bind(error)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(what())?;
                tx.commit().await.map_err(what())?;
                Ok(())
            }

            async fn search_items(
                &self,
                run_id: i64,
                query: &$crate::ItemQuery,
            ) -> $crate::Result<Vec<$crate::Item>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {} FROM items WHERE run_id = ",
                    $crate::rows::ITEM_COLS
                ));
                qb.push_bind(run_id);
                if let Some(state) = query.state {
                    qb.push(" AND state = ").push_bind(state.name());
                }
                if let Some(prefix) = query.key_prefix.as_deref().filter(|p| !p.is_empty()) {
                    // substr/length count characters on both backends; no LIKE escaping needed.
                    qb.push(" AND substr(key, 1, length(")
                        .push_bind(prefix.to_string())
                        .push(")) = ")
                        .push_bind(prefix.to_string());
                }
                qb.push(" AND id > ")
                    .push_bind(query.after_id)
                    .push(" ORDER BY id LIMIT ")
                    .push_bind(i64::from(query.limit));
                let rows: Vec<$crate::rows::ItemRow> = qb
                    .build_query_as()
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::rows::db(format!("list items of run {run_id}")))?;
                $crate::rows::items(rows)
            }

            async fn get_item(&self, id: i64) -> $crate::Result<Option<$crate::Item>> {
                let sql = format!("SELECT {} FROM items WHERE id = $1", $crate::rows::ITEM_COLS);
                let row: Option<$crate::rows::ItemRow> = sqlx::query_as(&sql)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::rows::db(format!("read item {id}")))?;
                row.map(TryInto::try_into).transpose()
            }

            async fn retry_dead(&self, run_id: i64, ids: Option<&[i64]>) -> $crate::Result<u64> {
                let what = || $crate::rows::db(format!("retry dead items of run {run_id}"));
                let now = $crate::now_ms();
                let mut tx = self.write_tx().await?;
                let status: Option<(String,)> = sqlx::query_as(&format!(
                    "SELECT status FROM runs WHERE id = $1{}",
                    Self::FOR_UPDATE
                ))
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(what())?;
                let Some((status,)) = status else {
                    return Err($crate::Error::NotFound { what: "run", id: run_id.to_string() });
                };
                let base = "UPDATE items SET state = 'queued', attempts = 0, lease_owner = NULL, \
                     lease_expires_at = NULL, not_before = ";
                let mut retried = 0;
                let chunks: Vec<Option<&[i64]>> = match ids {
                    None => vec![None],
                    Some(ids) => ids.chunks($crate::rows::CHUNK).map(Some).collect(),
                };
                for chunk in chunks {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(base);
                    qb.push_bind(now)
                        .push(", updated_at = ")
                        .push_bind(now)
                        .push(" WHERE state = 'dead' AND kind <> 'part' AND run_id = ")
                        .push_bind(run_id);
                    if let Some(chunk) = chunk {
                        qb.push(" AND id IN (");
                        let mut sep = qb.separated(", ");
                        for id in chunk {
                            sep.push_bind(*id);
                        }
                        qb.push(")");
                    }
                    retried += qb.build().execute(&mut *tx).await.map_err(what())?.rows_affected();
                }
                if retried > 0 && (status == "FAILED" || status == "DONE") {
                    sqlx::query(
                        "UPDATE runs SET status = 'TRANSFERRING', ended_at = NULL, final_counters = NULL \
                         WHERE id = $1",
                    )
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(what())?;
                }
                tx.commit().await.map_err(what())?;
                Ok(retried)
            }

            async fn item_counts(&self) -> $crate::Result<Vec<$crate::ItemCount>> {
                let what = || $crate::rows::db("count the items of active runs");
                let by_state: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT r.task_id, i.state, CAST(COUNT(*) AS BIGINT) FROM runs r \
                     JOIN items i ON i.run_id = r.id \
                     WHERE r.status IN ('FINDING', 'TRANSFERRING') \
                     GROUP BY r.task_id, i.state ORDER BY r.task_id, i.state",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(what())?;
                let claimable: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT r.task_id, i.state, CAST(COUNT(*) AS BIGINT) FROM runs r \
                     JOIN items i ON i.run_id = r.id \
                     WHERE r.status IN ('FINDING', 'TRANSFERRING') \
                     AND ((i.state = 'queued' AND i.not_before <= $1) \
                       OR (i.state = 'leased' AND i.lease_expires_at < $1)) \
                     GROUP BY r.task_id, i.state",
                )
                .bind($crate::now_ms())
                .fetch_all(&self.pool)
                .await
                .map_err(what())?;
                let claimable: std::collections::HashMap<(String, String), i64> = claimable
                    .into_iter()
                    .map(|(t, s, n)| ((t, s), n))
                    .collect();
                by_state
                    .into_iter()
                    .map(|(task_id, state, n)| {
                        let c = claimable
                            .get(&(task_id.clone(), state.clone()))
                            .copied()
                            .unwrap_or(0);
                        Ok($crate::ItemCount {
                            state: $crate::rows::parse::<dth_model::ItemState>(
                                "state",
                                format!("items of task {task_id}"),
                                &state,
                            )?,
                            task_id,
                            items: $crate::rows::to_u64(n),
                            // Counted after the first query: never more than its items.
                            claimable: $crate::rows::to_u64(c.min(n)),
                        })
                    })
                    .collect()
            }
        }
    };
}

pub(crate) use impl_queue_store;
