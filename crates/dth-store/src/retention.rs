//! Retention of finished runs' items: the items of runs that ended (DONE, FAILED or STOPPED) before
//! a time are deleted in bounded batches, so a store of hourly runs stops growing; the run rows stay,
//! with their counters.
//!
//! Each batch is one transaction that first locks the run's row and checks it is still ended and
//! old enough (a retry of its dead items in between makes it active again, and the rest of its items
//! stay), then deletes at most `batch` of its items, newest id first: a giant object's parts come
//! after it, so they go in the same batch or an earlier one and no row is deleted by cascade behind
//! the count's back. A run that kept no counters (STOPPED, or ended before migration 0004) gets them
//! from its items, in the transaction of its first batch, so its summary survives. When its last item
//! is gone, `runs.items_purged_at` is set and no later purge looks at it again.
//!
//! The trait, and its SQL written once as a macro expanded for each backend's pool type
//! (`sqlite.rs`, `postgres.rs`); `$N` placeholders bind by number on both.

use async_trait::async_trait;

use crate::{Millis, Result};

/// What a purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Runs whose items are now all gone.
    pub runs: u64,
    /// Items deleted (objects, parts, deletes and images).
    pub items: u64,
}

/// Deleting the items of long-finished runs.
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Deletes the items of every run that ended (DONE, FAILED or STOPPED) before `ended_before`,
    /// at most `batch` rows per statement, each in a transaction of its own; the runs stay, with
    /// their counters. Never touches a run in FINDING or TRANSFERRING.
    async fn purge_finished_items(&self, ended_before: Millis, batch: u32) -> Result<Purged>;
}

/// Implements [`RetentionStore`] for `$store` whose pool is a `sqlx::Pool<$db>`.
macro_rules! impl_retention_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// One batch of a run's purge: `None` when the run is (no longer) to be purged, else
            /// the items deleted; fewer than `batch` means the run has none left.
            async fn purge_batch_of_run(
                &self,
                run_id: i64,
                ended_before: $crate::Millis,
                batch: i64,
            ) -> $crate::Result<Option<u64>> {
                let what = || $crate::rows::db(format!("purge the items of run {run_id}"));
                let mut tx = self.write_tx().await?;
                let run: Option<(i64, i64, Option<String>)> = sqlx::query_as(&format!(
                    "SELECT up_to_date, up_to_date_bytes, final_counters FROM runs \
                     WHERE id = $1 AND items_purged_at IS NULL \
                     AND status IN ('DONE', 'FAILED', 'STOPPED') AND ended_at < $2{}",
                    Self::FOR_UPDATE
                ))
                .bind(run_id)
                .bind(ended_before)
                .fetch_optional(&mut *tx)
                .await
                .map_err(what())?;
                let Some((up_to_date, up_to_date_bytes, kept)) = run else {
                    return Ok(None);
                };
                let readable = kept
                    .as_deref()
                    .and_then(|k| serde_json::from_str::<dth_model::RunCounters>(k).ok());
                if readable.is_none() {
                    let counters =
                        Self::count_items(&mut tx, run_id, up_to_date, up_to_date_bytes)
                            .await
                            .map_err(what())?;
                    sqlx::query("UPDATE runs SET final_counters = $2 WHERE id = $1")
                        .bind(run_id)
                        .bind(serde_json::to_string(&counters).ok())
                        .execute(&mut *tx)
                        .await
                        .map_err(what())?;
                }
                let deleted = sqlx::query(
                    "DELETE FROM items WHERE id IN \
                     (SELECT id FROM items WHERE run_id = $1 ORDER BY id DESC LIMIT $2)",
                )
                .bind(run_id)
                .bind(batch)
                .execute(&mut *tx)
                .await
                .map_err(what())?
                .rows_affected();
                if i64::try_from(deleted).unwrap_or(i64::MAX) < batch {
                    sqlx::query("UPDATE runs SET items_purged_at = $2 WHERE id = $1")
                        .bind(run_id)
                        .bind($crate::now_ms())
                        .execute(&mut *tx)
                        .await
                        .map_err(what())?;
                }
                tx.commit().await.map_err(what())?;
                Ok(Some(deleted))
            }
        }

        #[async_trait::async_trait]
        impl $crate::RetentionStore for $store {
            async fn purge_finished_items(
                &self,
                ended_before: $crate::Millis,
                batch: u32,
            ) -> $crate::Result<$crate::Purged> {
                let runs: Vec<(i64,)> = sqlx::query_as(
                    "SELECT id FROM runs WHERE items_purged_at IS NULL \
                     AND status IN ('DONE', 'FAILED', 'STOPPED') AND ended_at < $1 ORDER BY id",
                )
                .bind(ended_before)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::rows::db("list the finished runs whose items are due for purging"))?;
                let batch = i64::from(batch.max(1));
                let mut purged = $crate::Purged::default();
                for (run_id,) in runs {
                    while let Some(deleted) =
                        self.purge_batch_of_run(run_id, ended_before, batch).await?
                    {
                        purged.items += deleted;
                        if i64::try_from(deleted).unwrap_or(i64::MAX) < batch {
                            purged.runs += 1;
                            break;
                        }
                        // Let the writers waiting for the lock go first.
                        tokio::task::yield_now().await;
                    }
                }
                Ok(purged)
            }
        }
    };
}

pub(crate) use impl_retention_store;
