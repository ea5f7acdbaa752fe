//! Runs of a task: create (one finding run at a time), status, the finder's up-to-date counters, counters from item states, drain and stop.
//!
//! The trait, and its SQL written once as a macro expanded for each backend's pool type
//! (`sqlite.rs`, `postgres.rs`); `$N` placeholders bind by number on both.

use async_trait::async_trait;
use dth_model::{RunCounters, RunStatus, Trigger};
use serde::{Deserialize, Serialize};

use crate::{Millis, Result};

/// One run of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Id.
    pub id: i64,
    /// Its task.
    pub task_id: String,
    /// What started it.
    pub trigger: Trigger,
    /// Where it is.
    pub status: RunStatus,
    /// Attempts an item gets before it is dead-lettered.
    pub max_attempts: u32,
    /// Why it failed (finder error, stop).
    pub error: Option<String>,
    /// Start.
    pub started_at: Millis,
    /// When the finder finished.
    pub found_at: Option<Millis>,
    /// End.
    pub ended_at: Option<Millis>,
    /// Objects the finder saw that needed nothing (up to date), and their bytes.
    pub up_to_date: u64,
    /// Bytes of `up_to_date`.
    pub up_to_date_bytes: u64,
    /// Who started it (a user's label); `None` for the schedule and events.
    pub started_by: Option<String>,
}

/// A sample of a run's progress, for throughput charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSample {
    /// When it was taken.
    pub at: Millis,
    /// Bytes copied so far.
    pub bytes_done: u64,
    /// Items ended (done or skipped) so far.
    pub items_done: u64,
    /// Items dead so far.
    pub items_failed: u64,
}

/// Runs of tasks and their counters.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Starts a run in FINDING and takes the task's pending `run_requested_by` in the same
    /// transaction. Fails with [`Error::Conflict`] while another run of the task is FINDING (the
    /// request is taken then too: that start was refused).
    async fn create_run(
        &self,
        task_id: &str,
        trigger: Trigger,
        started_by: Option<&str>,
        max_attempts: u32,
    ) -> Result<Run>;
    /// One run.
    async fn get_run(&self, id: i64) -> Result<Option<Run>>;
    /// Runs of a task, newest first.
    async fn list_runs(&self, task_id: &str, limit: u32) -> Result<Vec<Run>>;
    /// Runs in FINDING or TRANSFERRING, oldest first.
    async fn active_runs(&self) -> Result<Vec<Run>>;
    /// The newest run of every task that has one, in one query.
    async fn latest_runs(&self) -> Result<Vec<Run>>;
    /// Sets a run's status (ended_at when final, found_at on TRANSFERRING).
    async fn set_run_status(&self, id: i64, status: RunStatus, error: Option<String>)
    -> Result<()>;
    /// Adds to the finder's up-to-date counters.
    async fn add_up_to_date(&self, run_id: i64, objects: u64, bytes: u64) -> Result<()>;
    /// Resets the up-to-date counters (a finder starting over after a restart).
    async fn reset_up_to_date(&self, run_id: i64) -> Result<()>;
    /// Counters from item states.
    async fn run_counters(&self, run_id: i64) -> Result<RunCounters>;
    /// If the run is TRANSFERRING and no item is queued, leased or waiting: ends it (DONE, or FAILED
    /// when some item is dead) and returns the new status.
    async fn finish_run_if_drained(&self, run_id: i64) -> Result<Option<RunStatus>>;
    /// Stops a run: queued and waiting items (parts too) become cancelled, the run STOPPED (if it was
    /// active). Leased items stay with their workers, whose acks are still taken. Returns the items
    /// cancelled.
    async fn stop_run(&self, run_id: i64) -> Result<u64>;
    /// Records a sample of a run's progress (a second sample at the same time replaces the first).
    async fn add_sample(&self, run_id: i64, sample: RunSample) -> Result<()>;
    /// A run's samples taken at or after `since`, oldest first.
    async fn samples(&self, run_id: i64, since: Millis) -> Result<Vec<RunSample>>;
    /// Bytes and items every run moved since `since`, by its samples: for each run sampled since
    /// then, its newest sample less its last one before `since` (none: 0).
    async fn moved_since(&self, since: Millis) -> Result<(u64, u64)>;
}

/// Implements [`RunStore`] for `$store` whose pool is a `sqlx::Pool<$db>`.
macro_rules! impl_run_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Counts a run's items by kind and state (the run's up-to-date counters given).
            async fn count_items(
                conn: &mut <$db as sqlx::Database>::Connection,
                run_id: i64,
                up_to_date: i64,
                up_to_date_bytes: i64,
            ) -> std::result::Result<dth_model::RunCounters, sqlx::Error> {
                let groups: Vec<$crate::rows::CounterRow> = sqlx::query_as(
                    "SELECT kind, state, CAST(COUNT(*) AS BIGINT) AS n, \
                     CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes, \
                     CAST(COALESCE(SUM(CASE WHEN last_error IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) \
                       AS failed_before, \
                     CAST(COALESCE(SUM(bytes_done), 0) AS BIGINT) AS bytes_done \
                     FROM items WHERE run_id = $1 GROUP BY kind, state",
                )
                .bind(run_id)
                .fetch_all(&mut *conn)
                .await?;
                // Parts done of giant objects that are not done yet.
                let (parts_done,): (i64,) = sqlx::query_as(
                    "SELECT CAST(COALESCE(SUM(p.bytes_done), 0) AS BIGINT) FROM items p \
                     JOIN items o ON o.id = p.parent_id \
                     WHERE p.run_id = $1 AND p.kind = 'part' AND p.state = 'done' \
                     AND o.state IN ('queued', 'leased', 'waiting')",
                )
                .bind(run_id)
                .fetch_one(&mut *conn)
                .await?;
                Ok($crate::rows::counters(
                    &groups,
                    $crate::rows::to_u64(up_to_date),
                    $crate::rows::to_u64(up_to_date_bytes),
                    $crate::rows::to_u64(parts_done),
                ))
            }
        }

        #[async_trait::async_trait]
        impl $crate::RunStore for $store {

            async fn create_run(
                &self,
                task_id: &str,
                trigger: dth_model::Trigger,
                started_by: Option<&str>,
                max_attempts: u32,
            ) -> $crate::Result<$crate::Run> {
                let what = || $crate::rows::db(format!("start a run of task {task_id}"));
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
                let finding: Option<(i64,)> = sqlx::query_as(
                    "SELECT id FROM runs WHERE task_id = $1 AND status = 'FINDING'",
                )
                .bind(task_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(what())?;
                sqlx::query("UPDATE tasks SET run_requested_by = NULL WHERE id = $1")
                    .bind(task_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(what())?;
                if let Some((run,)) = finding {
                    tx.commit().await.map_err(what())?;
                    return Err($crate::Error::Conflict(format!(
                        "task {task_id}: run {run} is still finding objects; a new run starts \
                         once it has finished"
                    )));
                }
                let sql = format!(
                    "INSERT INTO runs (task_id, trigger_kind, status, max_attempts, started_at, \
                     started_by) VALUES ($1, $2, 'FINDING', $3, $4, $5) RETURNING {}",
                    $crate::rows::RUN_COLS
                );
                let row: std::result::Result<$crate::rows::RunRow, sqlx::Error> =
                    sqlx::query_as(&sql)
                        .bind(task_id)
                        .bind(trigger.name())
                        .bind(i64::from(max_attempts.max(1)))
                        .bind($crate::now_ms())
                        .bind(started_by)
                        .fetch_one(&mut *tx)
                        .await;
                let row = match row {
                    Ok(row) => row,
                    Err(e)
                        if e.as_database_error().is_some_and(|d| d.is_unique_violation()) =>
                    {
                        return Err($crate::Error::Conflict(format!(
                            "task {task_id}: another run is still finding objects"
                        )));
                    }
                    Err(e) => return Err(what()(e)),
                };
                tx.commit().await.map_err(what())?;
                row.try_into()
            }

            async fn get_run(&self, id: i64) -> $crate::Result<Option<$crate::Run>> {
                let sql = format!("SELECT {} FROM runs WHERE id = $1", $crate::rows::RUN_COLS);
                let row: Option<$crate::rows::RunRow> = sqlx::query_as(&sql)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::rows::db(format!("read run {id}")))?;
                row.map(TryInto::try_into).transpose()
            }

            async fn list_runs(
                &self,
                task_id: &str,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::Run>> {
                let sql = format!(
                    "SELECT {} FROM runs WHERE task_id = $1 ORDER BY id DESC LIMIT $2",
                    $crate::rows::RUN_COLS
                );
                let rows: Vec<$crate::rows::RunRow> = sqlx::query_as(&sql)
                    .bind(task_id)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::rows::db(format!("list runs of task {task_id}")))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn latest_runs(&self) -> $crate::Result<Vec<$crate::Run>> {
                let sql = format!(
                    "SELECT {} FROM runs WHERE id IN (SELECT MAX(id) FROM runs GROUP BY task_id) \
                     ORDER BY id",
                    $crate::rows::RUN_COLS
                );
                let rows: Vec<$crate::rows::RunRow> = sqlx::query_as(&sql)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::rows::db("list the latest run of every task"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn active_runs(&self) -> $crate::Result<Vec<$crate::Run>> {
                let sql = format!(
                    "SELECT {} FROM runs WHERE status IN ('FINDING', 'TRANSFERRING') ORDER BY id",
                    $crate::rows::RUN_COLS
                );
                let rows: Vec<$crate::rows::RunRow> = sqlx::query_as(&sql)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::rows::db("list active runs"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn set_run_status(
                &self,
                id: i64,
                status: dth_model::RunStatus,
                error: Option<String>,
            ) -> $crate::Result<()> {
                let now = $crate::now_ms();
                let ended = (!status.is_active()).then_some(now);
                let found = (status == dth_model::RunStatus::Transferring).then_some(now);
                let done = sqlx::query(
                    "UPDATE runs SET status = $2, error = $3, ended_at = $4, \
                     found_at = COALESCE(found_at, $5) WHERE id = $1",
                )
                .bind(id)
                .bind(status.name())
                .bind(error)
                .bind(ended)
                .bind(found)
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("set status of run {id}")))?;
                if done.rows_affected() == 0 {
                    return Err($crate::Error::NotFound { what: "run", id: id.to_string() });
                }
                Ok(())
            }

            async fn add_up_to_date(
                &self,
                run_id: i64,
                objects: u64,
                bytes: u64,
            ) -> $crate::Result<()> {
                let done = sqlx::query(
                    "UPDATE runs SET up_to_date = up_to_date + $2, \
                     up_to_date_bytes = up_to_date_bytes + $3 WHERE id = $1",
                )
                .bind(run_id)
                .bind($crate::rows::to_i64(objects))
                .bind($crate::rows::to_i64(bytes))
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("count up-to-date objects of run {run_id}")))?;
                if done.rows_affected() == 0 {
                    return Err($crate::Error::NotFound { what: "run", id: run_id.to_string() });
                }
                Ok(())
            }

            async fn reset_up_to_date(&self, run_id: i64) -> $crate::Result<()> {
                let done = sqlx::query(
                    "UPDATE runs SET up_to_date = 0, up_to_date_bytes = 0 WHERE id = $1",
                )
                .bind(run_id)
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("reset up-to-date counts of run {run_id}")))?;
                if done.rows_affected() == 0 {
                    return Err($crate::Error::NotFound { what: "run", id: run_id.to_string() });
                }
                Ok(())
            }

            async fn run_counters(&self, run_id: i64) -> $crate::Result<dth_model::RunCounters> {
                let what = || $crate::rows::db(format!("count items of run {run_id}"));
                let run: Option<(i64, i64, Option<String>)> = sqlx::query_as(
                    "SELECT up_to_date, up_to_date_bytes, final_counters FROM runs WHERE id = $1",
                )
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(what())?;
                let Some((up_to_date, up_to_date_bytes, kept)) = run else {
                    return Err($crate::Error::NotFound { what: "run", id: run_id.to_string() });
                };
                if let Some(c) = kept.and_then(|k| serde_json::from_str(&k).ok()) {
                    return Ok(c);
                }
                let mut conn = self.pool.acquire().await.map_err(what())?;
                Self::count_items(&mut conn, run_id, up_to_date, up_to_date_bytes)
                    .await
                    .map_err(what())
            }

            async fn finish_run_if_drained(
                &self,
                run_id: i64,
            ) -> $crate::Result<Option<dth_model::RunStatus>> {
                let what = || $crate::rows::db(format!("finish run {run_id}"));
                // A read first, off the writer: an item ends many times a second and its run
                // drains once, so most calls end here without a write transaction.
                let look: Option<(String, i64)> = sqlx::query_as(
                    "SELECT status, CAST(CASE WHEN EXISTS (SELECT 1 FROM items WHERE run_id = $1 \
                     AND state IN ('queued', 'leased', 'waiting')) THEN 1 ELSE 0 END AS BIGINT) \
                     FROM runs WHERE id = $1",
                )
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(what())?;
                if look.is_some_and(|(status, open)| {
                    open == 1 || status != dth_model::RunStatus::Transferring.name()
                }) {
                    return Ok(None);
                }
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
                if status != dth_model::RunStatus::Transferring.name() {
                    return Ok(None);
                }
                let pending: Option<(i64,)> = sqlx::query_as(
                    "SELECT id FROM items WHERE run_id = $1 \
                     AND state IN ('queued', 'leased', 'waiting') LIMIT 1",
                )
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(what())?;
                if pending.is_some() {
                    return Ok(None);
                }
                let dead: Option<(i64,)> = sqlx::query_as(
                    "SELECT id FROM items WHERE run_id = $1 AND state = 'dead' LIMIT 1",
                )
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(what())?;
                let end = if dead.is_some() {
                    dth_model::RunStatus::Failed
                } else {
                    dth_model::RunStatus::Done
                };
                // Nothing changes the items of an ended run but a retry, which clears these.
                let (up_to_date, up_to_date_bytes): (i64, i64) = sqlx::query_as(
                    "SELECT up_to_date, up_to_date_bytes FROM runs WHERE id = $1",
                )
                .bind(run_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(what())?;
                let counters = Self::count_items(&mut tx, run_id, up_to_date, up_to_date_bytes)
                    .await
                    .map_err(what())?;
                sqlx::query(
                    "UPDATE runs SET status = $2, ended_at = $3, final_counters = $4 WHERE id = $1",
                )
                .bind(run_id)
                .bind(end.name())
                .bind($crate::now_ms())
                .bind(serde_json::to_string(&counters).ok())
                .execute(&mut *tx)
                .await
                .map_err(what())?;
                tx.commit().await.map_err(what())?;
                Ok(Some(end))
            }

            async fn stop_run(&self, run_id: i64) -> $crate::Result<u64> {
                let what = || $crate::rows::db(format!("stop run {run_id}"));
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
                if status.is_none() {
                    return Err($crate::Error::NotFound { what: "run", id: run_id.to_string() });
                }
                let cancelled = sqlx::query(
                    "UPDATE items SET state = 'cancelled', updated_at = $2 \
                     WHERE run_id = $1 AND state IN ('queued', 'waiting')",
                )
                .bind(run_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(what())?
                .rows_affected();
                sqlx::query(
                    "UPDATE runs SET status = 'STOPPED', ended_at = $2 \
                     WHERE id = $1 AND status IN ('FINDING', 'TRANSFERRING')",
                )
                .bind(run_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(what())?;
                tx.commit().await.map_err(what())?;
                Ok(cancelled)
            }

            async fn add_sample(
                &self,
                run_id: i64,
                sample: $crate::RunSample,
            ) -> $crate::Result<()> {
                use $crate::rows::to_i64;
                sqlx::query(
                    "INSERT INTO run_samples (run_id, at, bytes_done, items_done, items_failed) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id, at) DO UPDATE SET \
                     bytes_done = excluded.bytes_done, items_done = excluded.items_done, \
                     items_failed = excluded.items_failed",
                )
                .bind(run_id)
                .bind(sample.at)
                .bind(to_i64(sample.bytes_done))
                .bind(to_i64(sample.items_done))
                .bind(to_i64(sample.items_failed))
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("sample run {run_id}")))?;
                Ok(())
            }

            async fn samples(
                &self,
                run_id: i64,
                since: $crate::Millis,
            ) -> $crate::Result<Vec<$crate::RunSample>> {
                use $crate::rows::to_u64;
                let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
                    "SELECT at, bytes_done, items_done, items_failed FROM run_samples \
                     WHERE run_id = $1 AND at >= $2 ORDER BY at",
                )
                .bind(run_id)
                .bind(since)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::rows::db(format!("read samples of run {run_id}")))?;
                Ok(rows
                    .into_iter()
                    .map(|(at, b, d, f)| $crate::RunSample {
                        at,
                        bytes_done: to_u64(b),
                        items_done: to_u64(d),
                        items_failed: to_u64(f),
                    })
                    .collect())
            }

            async fn moved_since(&self, since: $crate::Millis) -> $crate::Result<(u64, u64)> {
                use $crate::rows::to_u64;
                // Samples only grow within a run, so MAX is the newest; the correlated subqueries
                // read the (run_id, at) primary key.
                let (bytes, items): (i64, i64) = sqlx::query_as(
                    "SELECT CAST(COALESCE(SUM(hi.b - COALESCE((SELECT MAX(s.bytes_done) FROM run_samples s \
                     WHERE s.run_id = hi.run_id AND s.at < $1), 0)), 0) AS BIGINT), \
                     CAST(COALESCE(SUM(hi.i - COALESCE((SELECT MAX(s.items_done) FROM run_samples s \
                     WHERE s.run_id = hi.run_id AND s.at < $1), 0)), 0) AS BIGINT) \
                     FROM (SELECT run_id, MAX(bytes_done) AS b, MAX(items_done) AS i FROM run_samples \
                     WHERE at >= $1 GROUP BY run_id) hi",
                )
                .bind(since)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::rows::db("sum what runs moved"))?;
                Ok((to_u64(bytes), to_u64(items)))
            }
        }
    };
}

pub(crate) use impl_run_store;
