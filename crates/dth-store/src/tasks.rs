//! Tasks: create, read, list, status, schedule (`next_run_at` compare-and-set), delete.
//!
//! The trait, and its SQL written once as a macro expanded for each backend's pool type
//! (`sqlite.rs`, `postgres.rs`); `$N` placeholders bind by number on both.

use async_trait::async_trait;
use dth_model::TaskStatus;
use serde::{Deserialize, Serialize};

use crate::{Millis, Result};

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Id (UUID v4 text).
    pub id: String,
    /// Name for people.
    pub name: String,
    /// Kind (`s3`, later `image`).
    pub kind: String,
    /// The `dth_model::TaskSpec` as JSON.
    pub spec: serde_json::Value,
    /// Lifecycle state.
    pub status: TaskStatus,
    /// Machine-readable error code when `status` is ERROR.
    pub error_code: Option<String>,
    /// Error message when `status` is ERROR.
    pub error: Option<String>,
    /// When the next scheduled run is due; `None`: no more scheduled runs.
    pub next_run_at: Option<Millis>,
    /// Creation time.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
    /// Who asked for the next run (a user's start, the task's creation); the scheduler takes it
    /// when it starts the run. `None`: the next run is the schedule's.
    pub run_requested_by: Option<String>,
}

/// A task to create.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Name for people.
    pub name: String,
    /// Kind (`s3`).
    pub kind: String,
    /// The spec as JSON.
    pub spec: serde_json::Value,
    /// When the first run is due (`None`: not scheduled).
    pub next_run_at: Option<Millis>,
    /// Who asked for that first run (its creator), if anyone.
    pub run_requested_by: Option<String>,
}

/// The stored task definitions and their schedule.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Creates a task in STARTING.
    async fn create_task(&self, task: NewTask) -> Result<Task>;
    /// One task.
    async fn get_task(&self, id: &str) -> Result<Option<Task>>;
    /// Every task, newest first.
    async fn list_tasks(&self) -> Result<Vec<Task>>;
    /// Sets a task's status; an error code and message with ERROR (cleared otherwise).
    async fn set_task_status(
        &self,
        id: &str,
        status: TaskStatus,
        error: Option<(String, String)>,
    ) -> Result<()>;
    /// Moves `next_run_at` from `expected` to `next` only if it still is `expected`; true when
    /// this caller won (so a schedule fires once even with several schedulers). A pending
    /// `run_requested_by` stays until [`crate::RunStore::create_run`] takes it, so a watcher
    /// never sees a start neither pending nor running.
    async fn advance_schedule(
        &self,
        id: &str,
        expected: Millis,
        next: Option<Millis>,
    ) -> Result<bool>;
    /// Sets `next_run_at` unconditionally (stop, a schedule changed).
    async fn set_next_run(&self, id: &str, next: Option<Millis>) -> Result<()>;
    /// Asks for a run now on behalf of `by` (a user's start): `next_run_at` becomes now.
    async fn request_run(&self, id: &str, by: &str) -> Result<()>;
    /// Replaces a task's name and spec (an edit); the next run reads them.
    async fn update_task(&self, id: &str, name: &str, spec: &serde_json::Value) -> Result<Task>;
    /// Tasks in STARTING or IN_PROGRESS whose `next_run_at` ≤ `now`.
    async fn due_tasks(&self, now: Millis) -> Result<Vec<Task>>;
    /// Deletes a task with its runs, items and events; false when there was none.
    async fn delete_task(&self, id: &str) -> Result<bool>;
}

/// Implements [`TaskStore`] for `$store` whose pool is a `sqlx::Pool<$db>`.
macro_rules! impl_task_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::TaskStore for $store {
            async fn create_task(&self, task: $crate::NewTask) -> $crate::Result<$crate::Task> {
                let now = $crate::now_ms();
                let id = uuid::Uuid::new_v4().to_string();
                let sql = format!(
                    "INSERT INTO tasks ({}) VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6, $7, $7, \
                     $8) RETURNING {}",
                    $crate::rows::TASK_COLS,
                    $crate::rows::TASK_COLS
                );
                let row: $crate::rows::TaskRow = sqlx::query_as(&sql)
                    .bind(&id)
                    .bind(&task.name)
                    .bind(&task.kind)
                    .bind($crate::rows::to_json(&task.spec))
                    .bind(dth_model::TaskStatus::Starting.name())
                    .bind(task.next_run_at)
                    .bind(now)
                    .bind(&task.run_requested_by)
                    .fetch_one(&self.writer)
                    .await
                    .map_err($crate::rows::db(format!("create task {}", task.name)))?;
                row.try_into()
            }

            async fn get_task(&self, id: &str) -> $crate::Result<Option<$crate::Task>> {
                let sql = format!(
                    "SELECT {} FROM tasks WHERE id = $1",
                    $crate::rows::TASK_COLS
                );
                let row: Option<$crate::rows::TaskRow> = sqlx::query_as(&sql)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::rows::db(format!("read task {id}")))?;
                row.map(TryInto::try_into).transpose()
            }

            async fn list_tasks(&self) -> $crate::Result<Vec<$crate::Task>> {
                let sql = format!(
                    "SELECT {} FROM tasks ORDER BY created_at DESC, id DESC",
                    $crate::rows::TASK_COLS
                );
                let rows: Vec<$crate::rows::TaskRow> = sqlx::query_as(&sql)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::rows::db("list tasks"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn set_task_status(
                &self,
                id: &str,
                status: dth_model::TaskStatus,
                error: Option<(String, String)>,
            ) -> $crate::Result<()> {
                let (code, message) = match error {
                    Some((c, m)) if status == dth_model::TaskStatus::Error => (Some(c), Some(m)),
                    _ => (None, None),
                };
                let done = sqlx::query(
                    "UPDATE tasks SET status = $2, error_code = $3, error = $4, updated_at = $5 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(status.name())
                .bind(code)
                .bind(message)
                .bind($crate::now_ms())
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("set status of task {id}")))?;
                if done.rows_affected() == 0 {
                    return Err($crate::Error::NotFound {
                        what: "task",
                        id: id.to_string(),
                    });
                }
                Ok(())
            }

            async fn advance_schedule(
                &self,
                id: &str,
                expected: $crate::Millis,
                next: Option<$crate::Millis>,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE tasks SET next_run_at = $3, updated_at = $4 \
                     WHERE id = $1 AND next_run_at = $2",
                )
                .bind(id)
                .bind(expected)
                .bind(next)
                .bind($crate::now_ms())
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("advance schedule of task {id}")))?;
                Ok(done.rows_affected() == 1)
            }

            async fn set_next_run(
                &self,
                id: &str,
                next: Option<$crate::Millis>,
            ) -> $crate::Result<()> {
                let done =
                    sqlx::query("UPDATE tasks SET next_run_at = $2, updated_at = $3 WHERE id = $1")
                        .bind(id)
                        .bind(next)
                        .bind($crate::now_ms())
                        .execute(&self.writer)
                        .await
                        .map_err($crate::rows::db(format!("set next run of task {id}")))?;
                if done.rows_affected() == 0 {
                    return Err($crate::Error::NotFound {
                        what: "task",
                        id: id.to_string(),
                    });
                }
                Ok(())
            }

            async fn request_run(&self, id: &str, by: &str) -> $crate::Result<()> {
                let now = $crate::now_ms();
                let done = sqlx::query(
                    "UPDATE tasks SET next_run_at = $2, run_requested_by = $3, updated_at = $2 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .bind(by)
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("request a run of task {id}")))?;
                if done.rows_affected() == 0 {
                    return Err($crate::Error::NotFound {
                        what: "task",
                        id: id.to_string(),
                    });
                }
                Ok(())
            }

            async fn update_task(
                &self,
                id: &str,
                name: &str,
                spec: &serde_json::Value,
            ) -> $crate::Result<$crate::Task> {
                let sql = format!(
                    "UPDATE tasks SET name = $2, spec = $3, updated_at = $4 WHERE id = $1 \
                     RETURNING {}",
                    $crate::rows::TASK_COLS
                );
                let row: Option<$crate::rows::TaskRow> = sqlx::query_as(&sql)
                    .bind(id)
                    .bind(name)
                    .bind($crate::rows::to_json(spec))
                    .bind($crate::now_ms())
                    .fetch_optional(&self.writer)
                    .await
                    .map_err($crate::rows::db(format!("update task {id}")))?;
                row.ok_or_else(|| $crate::Error::NotFound {
                    what: "task",
                    id: id.to_string(),
                })?
                .try_into()
            }

            async fn due_tasks(&self, now: $crate::Millis) -> $crate::Result<Vec<$crate::Task>> {
                let sql = format!(
                    "SELECT {} FROM tasks WHERE next_run_at IS NOT NULL AND next_run_at <= $1 \
                     AND status IN ('STARTING', 'IN_PROGRESS') ORDER BY next_run_at, id",
                    $crate::rows::TASK_COLS
                );
                let rows: Vec<$crate::rows::TaskRow> = sqlx::query_as(&sql)
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::rows::db("list due tasks"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn delete_task(&self, id: &str) -> $crate::Result<bool> {
                let what = || $crate::rows::db(format!("delete task {id}"));
                let mut tx = self.write_tx().await?;
                sqlx::query("DELETE FROM events WHERE task_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(what())?;
                // Runs and their items go by ON DELETE CASCADE.
                let done = sqlx::query("DELETE FROM tasks WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(what())?;
                tx.commit().await.map_err(what())?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use impl_task_store;
