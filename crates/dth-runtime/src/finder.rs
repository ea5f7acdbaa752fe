//! A run's finder: lists and diffs both sides with [`dth_s3::Finder`] (objects) or plans and checks
//! images with [`dth_oci`], and streams what must be copied into the store as items, in batches (by
//! count or every 200 ms). Objects already up to date are only
//! counted. A finder restarted after a crash finds again from the start; items already queued are kept
//! (the store ignores duplicates), and an object that now looks up to date because this run already
//! copied it is not counted twice.

use std::sync::Arc;

use futures::StreamExt;
use std::time::Duration;

use dth_model::{ItemKind, RunStatus, TaskStatus};
use dth_s3::{Finder, Found, ObjectMeta};
use dth_store::{NewItem, Run};
use tokio::sync::mpsc;

use crate::Error;
use crate::engine::{ImageEngine, S3Engine, TaskEngine};
use crate::hub::Hub;
use crate::metrics::{self, timed};
use crate::payload::{self, new_item};

/// Items written to the store at once.
const BATCH: usize = 500;
/// Longest time an item waits in a batch.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

impl Hub {
    /// Finds the work of a run, then hands it to the workers (TRANSFERRING), or fails the run.
    pub(crate) async fn find(self: Arc<Self>, run: Run, resumed: bool) {
        let res = self.find_items(&run, resumed).await;
        match self.store.get_run(run.id).await {
            Ok(Some(r)) if r.status == RunStatus::Finding => {}
            _ => return, // stopped or deleted meanwhile
        }
        let outcome = match res {
            Ok(errors) if errors.is_empty() => {
                self.store
                    .set_run_status(run.id, RunStatus::Transferring, None)
                    .await
            }
            Ok(errors) => {
                let msg = format!("listing failed in part: {}", errors.join("; "));
                tracing::error!(run = run.id, "{msg}");
                self.store
                    .set_run_status(run.id, RunStatus::Transferring, Some(msg))
                    .await
            }
            Err(e) => {
                let msg = format!("finding failed: {e}");
                tracing::error!(run = run.id, "{msg}");
                let _ = self
                    .store
                    .set_run_status(run.id, RunStatus::Failed, Some(msg.clone()))
                    .await;
                metrics::run_ended(&run.task_id, run.started_at, None, RunStatus::Failed);
                self.task_error(&run.task_id, Some(run.id), "FINDER", &msg)
                    .await;
                return;
            }
        };
        if let Err(e) = outcome {
            tracing::error!(run = run.id, "cannot record the end of finding: {e}");
        }
        self.check_run_end(run.id).await;
    }

    /// Lists, diffs and queues; returns the partitions that failed to list.
    async fn find_items(&self, run: &Run, resumed: bool) -> Result<Vec<String>, Error> {
        let engine = self
            .engines
            .get(self.store.as_ref(), &run.task_id, run.id)
            .await?;
        if resumed {
            self.store.reset_up_to_date(run.id).await?;
        }
        match engine.as_ref() {
            TaskEngine::S3(e) => self.find_objects(e, run, resumed).await,
            TaskEngine::Image(e) => self.find_images(e, run, resumed).await.map(|()| Vec::new()),
        }
    }

    async fn find_objects(
        &self,
        engine: &S3Engine,
        run: &Run,
        resumed: bool,
    ) -> Result<Vec<String>, Error> {
        let (src, dst) = (engine.copier.source(), engine.copier.destination());
        let finder = Finder::new(src.clone(), dst.clone(), engine.job.options.clone())?
            .with_cancel(engine.cancel.clone());
        let (tx, mut rx) = mpsc::channel(4 * BATCH);
        // Nothing is queued before both endpoints passed their checks.
        let walk = finder.start_checked(tx).await?;
        let mut items: Vec<NewItem> = Vec::with_capacity(BATCH);
        let mut same: Vec<ObjectMeta> = Vec::with_capacity(BATCH);
        loop {
            let found = tokio::time::timeout(FLUSH_EVERY, rx.recv()).await;
            let end = matches!(found, Ok(None));
            let idle = found.is_err();
            match found {
                Ok(Some(Found::Copy(o))) => items.push(new_item(ItemKind::Object, o)),
                Ok(Some(Found::Delete(o))) => items.push(new_item(ItemKind::Delete, o)),
                Ok(Some(Found::UpToDate(o))) => same.push(o),
                Ok(None) | Err(_) => {}
            }
            let flush = end || idle;
            if !items.is_empty() && (flush || items.len() >= BATCH) {
                timed("insert_items", self.store.insert_items(run.id, &items)).await?;
                items.clear();
            }
            if !same.is_empty() && (flush || same.len() >= BATCH) {
                self.count_up_to_date(run.id, &mut same, resumed).await?;
            }
            if end {
                break;
            }
        }
        if engine.cancel.is_cancelled() {
            return Err(Error::Conflict("the task was stopped".into()));
        }
        walk.await
            .map_err(|e| Error::Conflict(format!("the finder crashed: {e}")))
    }

    /// Plans the task's images and checks each by HEADs: tags whose destination digest matches are
    /// counted up to date, the others queued (one item per image, its job as payload). An image
    /// whose check fails is queued too, so its worker records the error against it.
    async fn find_images(
        &self,
        engine: &ImageEngine,
        run: &Run,
        resumed: bool,
    ) -> Result<(), Error> {
        let jobs = engine.sync.plan().await?;
        let copier = &engine.copier;
        let mut checks = futures::stream::iter(jobs.into_iter().map(|job| async move {
            let checked = copier.check(&job).await;
            (job, checked)
        }))
        .buffer_unordered(engine.concurrency);
        let mut items: Vec<NewItem> = Vec::with_capacity(BATCH);
        let mut same: Vec<String> = Vec::new();
        loop {
            let next = tokio::select! {
                n = checks.next() => n,
                _ = engine.cancel.cancelled() => {
                    return Err(Error::Conflict("the task was stopped".into()));
                }
            };
            let end = next.is_none();
            if let Some((job, checked)) = next {
                let key = payload::image_key(&job);
                match checked {
                    Ok((_, true)) => same.push(key),
                    Ok((digest, false)) => items.push(payload::image_item(&job, Some(digest))),
                    Err(e) => {
                        tracing::debug!(image = %key, "check failed, queued: {e}");
                        items.push(payload::image_item(&job, None));
                    }
                }
            }
            if !items.is_empty() && (end || items.len() >= BATCH) {
                timed("insert_items", self.store.insert_items(run.id, &items)).await?;
                items.clear();
            }
            if !same.is_empty() && (end || same.len() >= BATCH) {
                if resumed {
                    let ours =
                        timed("existing_keys", self.store.existing_keys(run.id, &same)).await?;
                    same.retain(|k| !ours.contains(k));
                }
                timed(
                    "add_up_to_date",
                    self.store.add_up_to_date(run.id, same.len() as u64, 0),
                )
                .await?;
                same.clear();
            }
            if end {
                return Ok(());
            }
        }
    }

    async fn count_up_to_date(
        &self,
        run_id: i64,
        same: &mut Vec<ObjectMeta>,
        resumed: bool,
    ) -> Result<(), Error> {
        if resumed {
            let keys: Vec<String> = same.iter().map(|o| o.key.clone()).collect();
            let ours = timed("existing_keys", self.store.existing_keys(run_id, &keys)).await?;
            same.retain(|o| !ours.contains(&o.key));
        }
        let bytes = same.iter().map(|o| o.size).sum();
        timed(
            "add_up_to_date",
            self.store.add_up_to_date(run_id, same.len() as u64, bytes),
        )
        .await?;
        same.clear();
        Ok(())
    }

    /// Puts a task in ERROR and tells its alarm targets.
    pub(crate) async fn task_error(
        &self,
        task_id: &str,
        run_id: Option<i64>,
        code: &str,
        msg: &str,
    ) {
        if let Err(e) = self
            .store
            .set_task_status(
                task_id,
                TaskStatus::Error,
                Some((code.to_string(), msg.to_string())),
            )
            .await
        {
            tracing::error!(task = task_id, "cannot record the task error: {e}");
        }
        self.event(task_id, run_id, "task.error", "runtime", msg)
            .await;
        self.alarm(task_id, run_id, "task.error", msg).await;
    }
}
