//! Workers: claim items under a lease, copy and verify them, heartbeat while working, and end each item
//! with an ack (batched with the acks of items ending at the same time, [`crate::ack_batch`]), a
//! retry later, or a dead-letter. A lease lost (expired, or the run stopped) cancels
//! nothing already verified: the store refuses acks from a worker that no longer holds the item.
//!
//! Multipart uploads: every upload a copy opens is recorded on its item before the first part is sent
//! ([`crate::upload_log`]); the next attempt at the item (after a crash, or a lost lease) aborts it
//! before starting over, and so does dead-lettering. No upload is left open, and nothing depends on
//! ListMultipartUploads.
//!
//! Giant objects: the worker that claims one opens its upload (recorded) and splits it into part
//! items in one store transaction; any worker copies parts; the ack of the last part hands the object
//! back, and the acking worker completes and verifies it. A part that dies kills its object and
//! aborts the upload.
//!
//! Images: one item per image, copied by the task's copier for that run ([`dth_oci::copy::Copier`]);
//! the item records the manifest digest.
//!
//! Limits: at most the process's `concurrency` items at once and, per task, at most its turns (the
//! engine's per-task limit: an object task's `options.transfers` over its objects, parts and
//! deletes; an image task's `concurrency` over its images). A part's turn also covers completing its
//! object when it is the last part.
//!
//! Claiming under limits: the store claims any task's items in queue order, so a worker asks for at
//! most its free slots and keeps only the items it can start at once. An item whose task has no free
//! turn here is given back straight away (queued, the attempt not counted) rather than held waiting
//! for one: no lease is held for work that cannot start, and other workers may take it. After giving
//! items back the worker claims again only once one of its items ends (or after `poll`), so a busy
//! task at the head of the queue costs one claim and one give-back per item that ends. The claim
//! cannot skip a task: items of other tasks queued behind a busy one reach this worker as its queue
//! thins out. One item does wait, under heartbeats: the first of a run this process sees, which
//! makes the task's engine (the run's other items in that claim are given back).
//!
//! Claims come in batches: with items in flight, the worker claims again only once an eighth of its
//! slots is free ([`claim_at`]), not at every item that ends. A claim is a write on the store's one
//! writer, like an ack batch; claiming per ended item made a run of small objects cost a claim
//! transaction for every few objects.
//!
//! Shutdown: no more claims; items in flight get `shutdown_grace` to finish, then are cancelled and
//! given back to the queue without counting the attempt.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dth_model::{ItemKind, ItemState, RunStatus, TaskSpec, TaskStatus};
use dth_oci::copy::ImageAction;
use dth_s3::{PartCopied, Transferred};
use dth_store::{Ack, Item, Retry};
use futures::FutureExt;
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ack_batch::AckBatcher;
use crate::alarm::Alarm;
use crate::engine::{ImageEngine, S3Engine, TaskEngine};
use crate::hub::Hub;
use crate::metrics::{self, timed};
use crate::payload::{self, PartPayload};
use crate::upload_log::ItemUploads;

/// Longest delay before an item is tried again.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);

/// Items this process holds: id → (run, task).
pub(crate) type Held = Arc<Mutex<HashMap<i64, (i64, String)>>>;

/// An item's place among those copied at once: the process's slot and its task's turn. Dropped
/// as soon as the copy has ended, before its ack, so the next item starts while the ack is batched.
struct Slot {
    _permit: OwnedSemaphorePermit,
    _turn: OwnedSemaphorePermit,
    /// The item's place among those claimed and not done copying.
    _place: OwnedSemaphorePermit,
}

/// How a claimed item gets its task's turn.
enum Turn {
    /// Free at the claim.
    Taken(OwnedSemaphorePermit),
    /// Taken by others: waited for here, holding no slot.
    Wait(Arc<TaskEngine>),
    /// The first item of a run here: it makes the task's engine.
    First,
}

/// How one attempt at an item ended.
enum Outcome {
    /// Ended: ack it.
    Ack(Ack),
    /// Already recorded in the store (a giant object split into parts, or a part acked).
    Recorded,
}

impl Hub {
    /// Works on items until `shutdown`.
    pub async fn run_workers(self: Arc<Self>, shutdown: CancellationToken) {
        let held = Arc::clone(&self.held);
        let beats = tokio::spawn(Arc::clone(&self).heartbeat(Arc::clone(&held), shutdown.clone()));
        let concurrency = self.config.concurrency.max(1);
        let slots = Arc::new(Semaphore::new(concurrency));
        // Items claimed and not done copying: those copied, and a few more that wait here for a
        // slot, so that a slot freed starts the next item without a claim's round trip.
        let claimed = Arc::new(Semaphore::new(concurrency + prefetch(concurrency)));
        // Items held (not acked) at once: those, and as many again whose acks are on their way.
        let outstanding = Arc::new(Semaphore::new(2 * concurrency + prefetch(concurrency)));
        // Those that wait here, for a slot or their task's turn.
        let waiting = Arc::new(Semaphore::new(prefetch(concurrency)));
        let mut running = JoinSet::new();
        while !shutdown.is_cancelled() {
            while running.try_join_next().is_some() {}
            let free = claimed
                .available_permits()
                .min(outstanding.available_permits());
            let batch = claim_at(concurrency);
            if free == 0 || (free < batch && !running.is_empty()) {
                // Until a batch can be claimed, or an item ends (its task may have been the busy one).
                let room = async {
                    let n = u32::try_from(batch).unwrap_or(u32::MAX);
                    let a = claimed.acquire_many(n).await;
                    let b = outstanding.acquire_many(n).await;
                    drop((a, b));
                };
                tokio::select! {
                    _ = room => {}
                    _ = running.join_next() => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            let items = match timed(
                "claim",
                self.store.claim(
                    &self.config.worker_id,
                    free.min(self.config.claim_batch),
                    self.config.lease,
                ),
            )
            .await
            {
                Ok(items) => items,
                Err(e) => {
                    tracing::warn!("claiming items: {e}");
                    Vec::new()
                }
            };
            if items.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.poll) => {}
                    _ = self.wake_workers.notified() => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            // Items that can start now, or wait here (for a slot or their task's turn) while a
            // waiting place is left; the others go back for other workers.
            let mut back = Vec::new();
            let mut first_sight = HashSet::new();
            for item in items {
                let turn = match self.engines.cached(&item.task_id, item.run_id) {
                    Some(engine) => match engine.try_turn() {
                        Some(turn) => Turn::Taken(turn),
                        // Waits for the turn first, holding no slot.
                        None => Turn::Wait(engine),
                    },
                    // No engine here yet: one item of the run makes it, the others stay queued.
                    None if first_sight.insert(item.run_id) => Turn::First,
                    None => {
                        back.push(item.id);
                        continue;
                    }
                };
                // A slot now (none is free while others wait for one), or a place to wait for it.
                let permit = match turn {
                    Turn::Wait(_) => None,
                    Turn::Taken(_) | Turn::First => Arc::clone(&slots).try_acquire_owned().ok(),
                };
                let wait = match permit {
                    Some(_) => None,
                    None => match Arc::clone(&waiting).try_acquire_owned() {
                        Ok(w) => Some(w),
                        Err(_) => {
                            back.push(item.id);
                            continue;
                        }
                    },
                };
                let (Ok(place), Ok(out)) = (
                    Arc::clone(&claimed).try_acquire_owned(),
                    Arc::clone(&outstanding).try_acquire_owned(),
                ) else {
                    back.push(item.id);
                    continue;
                };
                hold(&held, &item);
                let hub = Arc::clone(&self);
                let held = Arc::clone(&held);
                let slots = Arc::clone(&slots);
                // Boxed: the item's work is a large future, which tokio would move by value.
                running.spawn(Box::pin(async move {
                    let id = item.id;
                    let turn = match turn {
                        Turn::Taken(turn) => Some(turn),
                        Turn::Wait(engine) => match engine.turn().await {
                            Some(turn) => Some(turn),
                            None => {
                                hub.give_back(&item).await;
                                None
                            }
                        },
                        Turn::First => hub.first_turn(&item).await,
                    };
                    let permit = match (&turn, permit) {
                        (Some(_), Some(p)) => Some(p),
                        (Some(_), None) => slots.acquire_owned().await.ok(),
                        (None, _) => None,
                    };
                    drop(wait);
                    if let (Some(turn), Some(permit)) = (turn, permit) {
                        let slot = Slot {
                            _permit: permit,
                            _turn: turn,
                            _place: place,
                        };
                        hub.process(item, &held, slot).await;
                    }
                    release_hold(&held, id);
                    drop(out);
                }));
            }
            if !back.is_empty() {
                if let Err(e) =
                    timed("release", self.store.release(&self.config.worker_id, &back)).await
                {
                    tracing::warn!("giving back items of busy tasks: {e}");
                }
                // Their tasks are busy here: claim again when one of our items ends.
                tokio::select! {
                    _ = running.join_next(), if !running.is_empty() => {}
                    _ = tokio::time::sleep(self.config.poll) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
        // Shutdown: let items in flight finish for a while, then cancel and give back the rest.
        let drain = async { while running.join_next().await.is_some() {} };
        if tokio::time::timeout(self.config.shutdown_grace, drain)
            .await
            .is_err()
        {
            let tasks: HashSet<String> = lock(&held).values().map(|v| v.1.clone()).collect();
            for t in tasks {
                self.engines.cancel(&t);
            }
            running.shutdown().await;
        }
        let ids: Vec<i64> = lock(&held).keys().copied().collect();
        if !ids.is_empty() {
            match timed("release", self.store.release(&self.config.worker_id, &ids)).await {
                Ok(n) => tracing::info!("gave back {n} items at shutdown"),
                Err(e) => tracing::warn!("giving back items at shutdown: {e}"),
            }
        }
        beats.abort();
    }

    /// Extends the leases of held items; cancels the work of tasks whose runs were stopped elsewhere.
    async fn heartbeat(self: Arc<Self>, held: Held, shutdown: CancellationToken) {
        let every = self.config.lease / 3;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => {}
            }
            let snapshot: Vec<(i64, (i64, String))> =
                lock(&held).iter().map(|(k, v)| (*k, v.clone())).collect();
            if snapshot.is_empty() {
                if shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
            let ids: Vec<i64> = snapshot.iter().map(|s| s.0).collect();
            match timed(
                "heartbeat",
                self.store
                    .heartbeat(&self.config.worker_id, &ids, self.config.lease),
            )
            .await
            {
                Ok(kept) if kept.len() < ids.len() => {
                    // Items finished since the snapshot are not lost; the others are.
                    let kept: HashSet<i64> = kept.into_iter().collect();
                    let lost = {
                        let held = lock(&held);
                        ids.iter()
                            .filter(|id| !kept.contains(id) && held.contains_key(id))
                            .count()
                    };
                    if lost > 0 {
                        tracing::warn!(
                            "{lost} leases were lost; other workers may take those items"
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("heartbeat: {e}"),
            }
            let runs: HashSet<(i64, String)> = snapshot.into_iter().map(|s| s.1).collect();
            for (run, task) in runs {
                if let Ok(Some(r)) = timed("get_run", self.store.get_run(run)).await
                    && !r.status.is_active()
                {
                    tracing::info!(run, "run no longer active; cancelling its work here");
                    self.engines.cancel(&task);
                }
            }
        }
    }

    /// The turn of the first item of a run this process sees: makes the task's engine, then waits
    /// for a turn under heartbeats. `None` when the item was ended here instead (no engine: a failed
    /// attempt; the task stopped: given back).
    async fn first_turn(&self, item: &Item) -> Option<OwnedSemaphorePermit> {
        let engine = match self
            .engines
            .get(self.store.as_ref(), &item.task_id, item.run_id)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                self.failed(
                    item,
                    &e.to_string(),
                    !e.is_retryable(),
                    metrics::cause_of(&e),
                )
                .await;
                return None;
            }
        };
        let turn = engine.turn().await;
        if turn.is_none() {
            self.give_back(item).await;
        }
        turn
    }

    /// Works one item to its end (or gives it back when cancelled); `slot` is given up when its
    /// copy has ended.
    fn process<'a>(
        self: &'a Arc<Self>,
        item: Item,
        held: &'a Held,
        slot: Slot,
    ) -> futures::future::BoxFuture<'a, ()> {
        async move {
            // Claims count attempts; an item whose workers keep dying under it never reaches
            // `retry_later`, so it is dead-lettered here once it has used its attempts.
            if item.attempts > 1
                && let Ok(Some(run)) = timed("get_run", self.store.get_run(item.run_id)).await
                && item.attempts > run.max_attempts
            {
                let msg = format!(
                    "claimed {} times without an end (its workers died or lost their leases)",
                    item.attempts
                );
                self.failed(&item, &msg, true, "abandoned").await;
                self.check_run_end(item.run_id).await;
                return;
            }
            let engine = match self
                .engines
                .get(self.store.as_ref(), &item.task_id, item.run_id)
                .await
            {
                Ok(e) => e,
                Err(e) => {
                    let cause = metrics::cause_of(&e);
                    self.failed(&item, &e.to_string(), !e.is_retryable(), cause)
                        .await;
                    return;
                }
            };
            let engine = match engine.as_ref() {
                TaskEngine::S3(e) => e,
                TaskEngine::Image(e) => {
                    if self.copy_image(e, &item, slot).await {
                        self.check_run_end(item.run_id).await;
                    }
                    return;
                }
            };
            let res = if item.kind == ItemKind::Part {
                // A part's slot goes on to its object when it was the last one.
                self.copy_part(engine, &item, held, slot).await
            } else {
                let res = match item.kind {
                    ItemKind::Object => self.copy_object(engine, &item).await,
                    ItemKind::Delete => self.delete_object(engine, &item).await,
                    ItemKind::Part | ItemKind::Image => Err(dth_s3::Error::Verify {
                        key: item.key.clone(),
                        detail: format!("a {} item in an object task", item.kind),
                    }),
                };
                drop(slot);
                res
            };
            match res {
                Ok(Outcome::Ack(a)) => {
                    if !self.record(&item, a).await {
                        // Another ack of the same batch looks whether the run drained.
                        return;
                    }
                }
                Ok(Outcome::Recorded) => {}
                Err(dth_s3::Error::Cancelled) => {
                    self.give_back(&item).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(item = item.id, key = %item.key, "{e}");
                    let cause = metrics::cause_of_s3(&e);
                    self.failed(&item, &e.to_string(), !e.is_retryable(), cause)
                        .await;
                }
            }
            self.check_run_end(item.run_id).await;
        }
        .boxed()
    }

    /// Acks an item; a refused ack (the lease was lost) is only logged. Returns whether this caller
    /// checks the run's end ([`AckBatcher`] names one per run and batch).
    async fn record(&self, item: &Item, a: Ack) -> bool {
        let state = a.state;
        let acks = self.acks.get_or_init(|| {
            AckBatcher::start(
                Arc::clone(&self.store),
                self.config.worker_id.clone(),
                Arc::clone(&self.held),
            )
        });
        match acks.ack(item.run_id, a).await {
            Ok(r) if !r.acked.accepted => {
                metrics::acked(item, state, false);
                tracing::warn!(item = item.id, key = %item.key, "lease lost before the ack");
                false
            }
            Ok(r) => {
                metrics::acked(item, state, true);
                r.checks_run_end
            }
            Err(e) => {
                tracing::error!(item = item.id, "ack: {e}");
                false
            }
        }
    }

    /// Gives a cancelled item back without counting the attempt; finishes a stop if it was one.
    async fn give_back(&self, item: &Item) {
        let _ = timed(
            "release",
            self.store.release(&self.config.worker_id, &[item.id]),
        )
        .await;
        if let Ok(Some(run)) = timed("get_run", self.store.get_run(item.run_id)).await
            && run.status == RunStatus::Stopped
        {
            let _ = self.store.stop_run(run.id).await;
        }
    }

    /// Copies one image with the task's shared copier (under a turn: at most `concurrency` at
    /// once). Returns whether the caller checks the run's end (false: cancelled and given back, or
    /// another ack of the same batch checks it).
    async fn copy_image(&self, engine: &ImageEngine, item: &Item, slot: Slot) -> bool {
        let job = match payload::image_job(item) {
            Ok(j) => j,
            Err(msg) => {
                self.failed(item, &msg, true, "config").await;
                return true;
            }
        };
        let copied = tokio::select! {
            _ = engine.cancel.cancelled() => Err(dth_oci::Error::Cancelled),
            r = engine.copier.copy(&job) => r,
        };
        drop(slot);
        match copied {
            Ok((action, digest)) => {
                let (state, why) = match action {
                    ImageAction::Unchanged => (ItemState::Skipped, "unchanged"),
                    _ => (ItemState::Done, "digest"),
                };
                let a = ack(item, state, Some(digest.as_str().into()), Some(why.into()));
                return self.record(item, a).await;
            }
            Err(dth_oci::Error::Cancelled) => {
                self.give_back(item).await;
                return false;
            }
            Err(e) => {
                tracing::warn!(item = item.id, image = %item.key, "{e}");
                let cause = metrics::cause_of_image(&e);
                self.failed(item, &e.to_string(), !e.is_retryable(), cause)
                    .await;
            }
        }
        true
    }

    async fn copy_object(&self, engine: &S3Engine, item: &Item) -> Result<Outcome, dth_s3::Error> {
        let c = &engine.copier;
        let (obj, p) = payload::object(item);
        if let Some(upload) = &p.upload {
            // Every part is done: complete the giant object.
            let parts = timed("parts", self.store.parts(item.id))
                .await
                .map_err(|e| store_err(&item.key, e))?;
            let done: Vec<(u32, PartCopied)> = parts
                .iter()
                .filter(|p| p.state == ItemState::Done)
                .filter_map(|p| {
                    let pp: PartPayload = serde_json::from_value(p.payload.clone()).ok()?;
                    Some((p.part_number?, pp.done?))
                })
                .collect();
            let v = match c.finish_giant(&obj, upload, &done).await {
                Ok(v) => v,
                Err(e @ dth_s3::Error::UploadGone { .. }) => {
                    // Start the object over: its parts went with the upload.
                    c.abort_upload(&obj.key, &upload.upload_id).await;
                    self.store
                        .delete_parts(item.id)
                        .await
                        .map_err(|e| store_err(&item.key, e))?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            return Ok(Outcome::Ack(ack(
                item,
                ItemState::Done,
                None,
                Some(v.name().into()),
            )));
        }
        if let Some(left) = &p.open_upload {
            // An earlier attempt opened this upload and did not end it (its worker died).
            tracing::info!(key = %obj.key, upload_id = %left.upload_id, "aborting the upload an earlier attempt left");
            c.abort_upload(&obj.key, &left.upload_id).await;
        }
        if p.opening_upload {
            // An earlier attempt died while opening an upload: its id never came back.
            c.abort_unrecorded_uploads(&obj.key).await;
        }
        let log = ItemUploads {
            hub: self,
            item,
            payload: &p,
        };
        if obj.size >= engine.job.giant_threshold && !c.is_server_side() {
            if c.source()
                .profile()
                .is_archived(obj.storage_class.as_deref())
                && !c.is_restored(&obj.key).await?
            {
                return Ok(Outcome::Ack(skipped(item, "archived")));
            }
            let upload = match c.begin_giant(&obj, &log).await {
                Ok(u) => u,
                Err(e) if e.is_source_gone() => return Ok(Outcome::Ack(skipped(item, "vanished"))),
                Err(e) => return Err(e),
            };
            let parts = payload::parts(&obj.key, obj.size, &upload);
            let mut p = p.clone();
            p.upload = Some(upload.clone());
            p.open_upload = None;
            p.opening_upload = false;
            let value = serde_json::to_value(&p).unwrap_or_default();
            let split = timed(
                "split_item",
                self.store
                    .split_item(&self.config.worker_id, item.id, &value, &parts),
            )
            .await;
            if !matches!(split, Ok(true)) {
                c.abort_upload(&obj.key, &upload.upload_id).await;
                return match split {
                    Err(e) => Err(store_err(&obj.key, e)),
                    _ => Ok(Outcome::Recorded),
                };
            }
            tracing::info!(key = %obj.key, parts = parts.len(), "split into parts");
            return Ok(Outcome::Recorded);
        }
        Ok(Outcome::Ack(match c.transfer(&obj, &log).await? {
            Transferred::Copied(done) => ack(
                item,
                ItemState::Done,
                None,
                Some(done.verification.name().into()),
            ),
            Transferred::Archived => skipped(item, "archived"),
            Transferred::Vanished => skipped(item, "vanished"),
        }))
    }

    /// Deletes a destination object; for an event's delete only while the source object is gone,
    /// so a late delete event never undoes a later write.
    async fn delete_object(
        &self,
        engine: &S3Engine,
        item: &Item,
    ) -> Result<Outcome, dth_s3::Error> {
        let (_, p) = payload::object(item);
        if p.from_event && engine.copier.source_exists(&item.key).await? {
            return Ok(Outcome::Ack(skipped(item, "source exists")));
        }
        engine.copier.delete(&item.key).await?;
        Ok(Outcome::Ack(ack(
            item,
            ItemState::Done,
            None,
            Some("deleted".into()),
        )))
    }

    async fn copy_part(
        self: &Arc<Self>,
        engine: &S3Engine,
        item: &Item,
        held: &Held,
        slot: Slot,
    ) -> Result<Outcome, dth_s3::Error> {
        let mut pp: PartPayload =
            serde_json::from_value(item.payload.clone()).map_err(|e| dth_s3::Error::Verify {
                key: item.key.clone(),
                detail: format!("part item {} has no readable upload: {e}", item.id),
            })?;
        let number = item.part_number.unwrap_or(1);
        let done = engine
            .copier
            .copy_giant_part(
                &item.key,
                &pp.upload,
                number,
                (pp.start, pp.end),
                item.attempts > 1,
            )
            .await?;
        let etag = done.etag.clone();
        pp.done = Some(done);
        let mut a = ack(item, ItemState::Done, Some(etag), None);
        a.payload = serde_json::to_value(&pp).ok();
        let acked = timed("ack", self.store.ack(&self.config.worker_id, &[a]))
            .await
            .map_err(|e| store_err(&item.key, e))?;
        metrics::acked(
            item,
            ItemState::Done,
            acked.first().is_some_and(|a| a.accepted),
        );
        if let Some(parent) = acked.first().and_then(|a| a.parent_ready)
            && let Ok(Some(parent)) = timed(
                "claim_item",
                self.store
                    .claim_item(&self.config.worker_id, parent, self.config.lease),
            )
            .await
        {
            hold(held, &parent);
            let id = parent.id;
            self.process(parent, held, slot).await;
            release_hold(held, id);
        }
        Ok(Outcome::Recorded)
    }

    /// Records a failed attempt: queued again later, or dead-lettered (with its alarm). `cause` is
    /// its error class in the metrics ([`metrics::CAUSES`]).
    async fn failed(&self, item: &Item, error: &str, permanent: bool, cause: &'static str) {
        let retry = Retry {
            id: item.id,
            error: error.to_string(),
            delay: retry_delay(self.config.retry_base, item.attempts),
            permanent,
        };
        match timed(
            "retry_later",
            self.store.retry_later(&self.config.worker_id, &[retry]),
        )
        .await
        {
            Ok(r) if r.first().is_some_and(|r| r.dead) => {
                metrics::failed(item, cause, true);
                self.dead(item, error).await;
            }
            Ok(r) if r.first().is_some_and(|r| r.accepted) => metrics::failed(item, cause, false),
            Ok(_) => {}
            Err(e) => tracing::error!(item = item.id, "recording a failure: {e}"),
        }
    }

    /// An item was dead-lettered: clean up its upload, log, and raise the alarm.
    async fn dead(&self, item: &Item, error: &str) {
        tracing::error!(item = item.id, key = %item.key, "dead-lettered: {error}");
        let engine = self
            .engines
            .get(self.store.as_ref(), &item.task_id, item.run_id)
            .await
            .ok();
        let engine = match engine.as_deref() {
            Some(TaskEngine::S3(e)) => Some(e),
            _ => None,
        };
        match item.kind {
            ItemKind::Part => {
                if let Some(parent) = item.parent_id {
                    let _ = self.store.kill_parent(parent, error).await;
                }
                if let (Some(e), Ok(pp)) = (
                    &engine,
                    serde_json::from_value::<PartPayload>(item.payload.clone()),
                ) {
                    e.copier.abort_upload(&item.key, &pp.upload.upload_id).await;
                }
            }
            ItemKind::Object => {
                let (_, p) = payload::object(item);
                if let (Some(e), Some(upload)) = (&engine, p.upload) {
                    e.copier.abort_upload(&item.key, &upload.upload_id).await;
                    let _ = self.store.delete_parts(item.id).await;
                }
                if let (Some(e), Some(open)) = (&engine, p.open_upload) {
                    e.copier.abort_upload(&item.key, &open.upload_id).await;
                }
                if let (Some(e), true) = (&engine, p.opening_upload) {
                    e.copier.abort_unrecorded_uploads(&item.key).await;
                }
            }
            ItemKind::Delete | ItemKind::Image => {}
        }
        let msg = format!(
            "{} dead-lettered after {} attempts: {error}",
            item.key, item.attempts
        );
        self.event(
            &item.task_id,
            Some(item.run_id),
            "item.dead",
            "worker",
            &msg,
        )
        .await;
        if self.alarms.dead_alarm_due(item.run_id) {
            self.alarm(&item.task_id, Some(item.run_id), "items.dead", &msg)
                .await;
        }
    }

    /// Ends the run when nothing is left in it, and the task when it was a one-time task.
    pub(crate) async fn check_run_end(&self, run_id: i64) {
        let status = match timed(
            "finish_run_if_drained",
            self.store.finish_run_if_drained(run_id),
        )
        .await
        {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(run = run_id, "closing the run: {e}");
                return;
            }
        };
        let Ok(Some(run)) = timed("get_run", self.store.get_run(run_id)).await else {
            return;
        };
        metrics::run_ended(&run.task_id, run.started_at, run.ended_at, status);
        let counters = timed("run_counters", self.store.run_counters(run_id))
            .await
            .unwrap_or_default();
        let at = run.ended_at.unwrap_or_else(dth_store::now_ms);
        if let Err(e) = self
            .store
            .add_sample(run_id, crate::progress::sample_of(at, &counters))
            .await
        {
            tracing::warn!(run = run_id, "sampler: {e}");
        }
        let failed = status == RunStatus::Failed || run.error.is_some();
        let msg = format!(
            "run {} ended {}: {} found, {} copied ({} bytes), {} skipped, {} deleted, {} dead{}",
            run_id,
            if failed { "with errors" } else { "well" },
            counters.found,
            counters.copied,
            counters.copied_bytes,
            counters.skipped,
            counters.deleted,
            counters.dead,
            run.error
                .as_deref()
                .map(|e| format!("; {e}"))
                .unwrap_or_default(),
        );
        tracing::info!("{msg}");
        self.event(&run.task_id, Some(run_id), "run.ended", "runtime", &msg)
            .await;
        let Ok(task) = self.task(&run.task_id).await else {
            return;
        };
        if !matches!(task.status, TaskStatus::Starting | TaskStatus::InProgress) {
            return;
        }
        let once = serde_json::from_value::<TaskSpec>(task.spec.clone())
            .map(|s| !s.effective_schedule().is_recurring())
            .unwrap_or(false);
        if failed && once {
            self.task_error(&run.task_id, Some(run_id), "RUN_FAILED", &msg)
                .await;
        } else if once {
            let _ = self
                .store
                .set_task_status(&run.task_id, TaskStatus::Done, None)
                .await;
        }
    }

    /// Sends an alarm to the task's targets and logs how it went.
    pub(crate) async fn alarm(
        &self,
        task_id: &str,
        run_id: Option<i64>,
        kind: &'static str,
        msg: &str,
    ) {
        let Ok(task) = self.task(task_id).await else {
            return;
        };
        let Ok(spec) = serde_json::from_value::<TaskSpec>(task.spec.clone()) else {
            return;
        };
        if spec.alarms.is_empty() {
            return;
        }
        let counters = match run_id {
            Some(r) => self.store.run_counters(r).await.ok(),
            None => None,
        };
        let alarm = Alarm {
            kind,
            task_id: task_id.to_string(),
            task_name: task.name.clone(),
            run_id,
            message: msg.to_string(),
            counters,
        };
        for res in self.alarms.send(&spec.alarms, &alarm).await {
            let (kind, m) = match res {
                Ok(to) => ("alarm.sent", format!("{} sent to {to}", alarm.kind)),
                Err(e) => ("alarm.failed", e),
            };
            self.event(task_id, run_id, kind, "runtime", &m).await;
        }
    }
}

fn ack(
    item: &Item,
    state: ItemState,
    dst_etag: Option<String>,
    verification: Option<String>,
) -> Ack {
    Ack {
        id: item.id,
        state,
        dst_etag,
        verification,
        payload: None,
    }
}

fn skipped(item: &Item, why: &str) -> Ack {
    ack(item, ItemState::Skipped, None, Some(why.into()))
}

pub(crate) fn store_err(key: &str, e: dth_store::Error) -> dth_s3::Error {
    dth_s3::Error::Io {
        context: format!("recording {key} in the store"),
        source: std::io::Error::other(e.to_string()),
    }
}

/// `base × 2^(attempts-1)`, at most 15 minutes, with ±25 % jitter.
/// Free slots a worker with items in flight waits for before it claims again: an eighth of its
/// `concurrency` (at least 1).
fn claim_at(concurrency: usize) -> usize {
    (concurrency / 8).max(1)
}

/// Items claimed beyond `concurrency` to wait here for a slot: two claims' worth, so that the next
/// claim returns before they are used up.
fn prefetch(concurrency: usize) -> usize {
    2 * claim_at(concurrency)
}

fn retry_delay(base: Duration, attempts: u32) -> Duration {
    let d = base
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(MAX_RETRY_DELAY);
    d.mul_f64(rand::thread_rng().gen_range(0.75..=1.25))
}

pub(crate) fn lock(held: &Held) -> std::sync::MutexGuard<'_, HashMap<i64, (i64, String)>> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

fn hold(held: &Held, item: &Item) {
    lock(held).insert(item.id, (item.run_id, item.task_id.clone()));
}

fn release_hold(held: &Held, id: i64) {
    lock(held).remove(&id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_stop() {
        let b = Duration::from_secs(1);
        assert!(retry_delay(b, 1) <= Duration::from_millis(1250));
        assert!(retry_delay(b, 4) >= Duration::from_secs(6));
        assert!(retry_delay(b, 40) <= MAX_RETRY_DELAY.mul_f64(1.25));
    }
}
