//! The [`Store`](crate::Store) methods whose SQL both backends share, written once as a macro and
//! expanded for each backend's pool type.
//!
//! Statements use `$N` placeholders, which sqlx's SQLite driver binds by number like PostgreSQL does.
//! A backend provides: `pool`, `key` fields; `BACKEND` and `FOR_UPDATE` (row lock suffix, empty on
//! SQLite, whose write transactions are `BEGIN IMMEDIATE` and so already exclusive); `write_tx()`;
//! `claim_impl()` (the claim statement differs); `try_lead_impl()`.

/// Implements [`Store`](crate::Store) for `$store` whose pool is a `sqlx::Pool<$db>`.
macro_rules! impl_store {
    ($store:ty, $db:ty) => {
        impl $store {
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
        impl $crate::Store for $store {
            fn backend(&self) -> &'static str {
                Self::BACKEND
            }

            // ---- tasks ----

            async fn create_task(&self, task: $crate::NewTask) -> $crate::Result<$crate::Task> {
                let now = $crate::now_ms();
                let id = uuid::Uuid::new_v4().to_string();
                let sql = format!(
                    "INSERT INTO tasks ({}) VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6, $7, $7) \
                     RETURNING {}",
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
                    .fetch_one(&self.writer)
                    .await
                    .map_err($crate::rows::db(format!("create task {}", task.name)))?;
                row.try_into()
            }

            async fn get_task(&self, id: &str) -> $crate::Result<Option<$crate::Task>> {
                let sql = format!("SELECT {} FROM tasks WHERE id = $1", $crate::rows::TASK_COLS);
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
                    return Err($crate::Error::NotFound { what: "task", id: id.to_string() });
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
                let done = sqlx::query(
                    "UPDATE tasks SET next_run_at = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(next)
                .bind($crate::now_ms())
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("set next run of task {id}")))?;
                if done.rows_affected() == 0 {
                    return Err($crate::Error::NotFound { what: "task", id: id.to_string() });
                }
                Ok(())
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

            // ---- runs ----

            async fn create_run(
                &self,
                task_id: &str,
                trigger: dth_model::Trigger,
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
                if let Some((run,)) = finding {
                    return Err($crate::Error::Conflict(format!(
                        "task {task_id}: run {run} is still finding objects; a new run starts \
                         once it has finished"
                    )));
                }
                let sql = format!(
                    "INSERT INTO runs (task_id, trigger_kind, status, max_attempts, started_at) \
                     VALUES ($1, $2, 'FINDING', $3, $4) RETURNING {}",
                    $crate::rows::RUN_COLS
                );
                let row: std::result::Result<$crate::rows::RunRow, sqlx::Error> =
                    sqlx::query_as(&sql)
                        .bind(task_id)
                        .bind(trigger.name())
                        .bind(i64::from(max_attempts.max(1)))
                        .bind($crate::now_ms())
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

            async fn run_counters(&self, run_id: i64) -> $crate::Result<$crate::RunCounters> {
                let what = || $crate::rows::db(format!("count items of run {run_id}"));
                let run: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT up_to_date, up_to_date_bytes FROM runs WHERE id = $1",
                )
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(what())?;
                let Some((up_to_date, up_to_date_bytes)) = run else {
                    return Err($crate::Error::NotFound { what: "run", id: run_id.to_string() });
                };
                let groups: Vec<$crate::rows::CounterRow> = sqlx::query_as(
                    "SELECT kind, state, CAST(COUNT(*) AS BIGINT) AS n, \
                     CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes, \
                     CAST(COALESCE(SUM(CASE WHEN last_error IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) \
                       AS failed_before, \
                     CAST(COALESCE(SUM(bytes_done), 0) AS BIGINT) AS bytes_done \
                     FROM items WHERE run_id = $1 GROUP BY kind, state",
                )
                .bind(run_id)
                .fetch_all(&self.pool)
                .await
                .map_err(what())?;
                // Parts done of giant objects that are not done yet.
                let (parts_done,): (i64,) = sqlx::query_as(
                    "SELECT CAST(COALESCE(SUM(p.bytes_done), 0) AS BIGINT) FROM items p \
                     JOIN items o ON o.id = p.parent_id \
                     WHERE p.run_id = $1 AND p.kind = 'part' AND p.state = 'done' \
                     AND o.state IN ('queued', 'leased', 'waiting')",
                )
                .bind(run_id)
                .fetch_one(&self.pool)
                .await
                .map_err(what())?;
                Ok($crate::rows::counters(
                    &groups,
                    $crate::rows::to_u64(up_to_date),
                    $crate::rows::to_u64(up_to_date_bytes),
                    $crate::rows::to_u64(parts_done),
                ))
            }

            async fn finish_run_if_drained(
                &self,
                run_id: i64,
            ) -> $crate::Result<Option<dth_model::RunStatus>> {
                let what = || $crate::rows::db(format!("finish run {run_id}"));
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
                sqlx::query("UPDATE runs SET status = $2, ended_at = $3 WHERE id = $1")
                    .bind(run_id)
                    .bind(end.name())
                    .bind($crate::now_ms())
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

            // ---- items ----

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
                let mut parents: Vec<(usize, i64)> = Vec::new();
                let mut tx = self.write_tx().await?;
                // One statement per chunk: the results joined in as a VALUES table.
                for chunk in unique.chunks($crate::rows::CHUNK) {
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
                    .push_bind(worker)
                    .push(" RETURNING items.id, items.parent_id, items.state");
                    let rows: Vec<(i64, Option<i64>, String)> = qb
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

            async fn list_items(
                &self,
                run_id: i64,
                state: Option<dth_model::ItemState>,
                after_id: i64,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::Item>> {
                let what = || $crate::rows::db(format!("list items of run {run_id}"));
                let rows: Vec<$crate::rows::ItemRow> = match state {
                    Some(state) => {
                        let sql = format!(
                            "SELECT {} FROM items WHERE run_id = $1 AND state = $2 AND id > $3 \
                             ORDER BY id LIMIT $4",
                            $crate::rows::ITEM_COLS
                        );
                        sqlx::query_as(&sql)
                            .bind(run_id)
                            .bind(state.name())
                            .bind(after_id)
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await
                            .map_err(what())?
                    }
                    None => {
                        let sql = format!(
                            "SELECT {} FROM items WHERE run_id = $1 AND id > $2 \
                             ORDER BY id LIMIT $3",
                            $crate::rows::ITEM_COLS
                        );
                        sqlx::query_as(&sql)
                            .bind(run_id)
                            .bind(after_id)
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await
                            .map_err(what())?
                    }
                };
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
                        "UPDATE runs SET status = 'TRANSFERRING', ended_at = NULL WHERE id = $1",
                    )
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(what())?;
                }
                tx.commit().await.map_err(what())?;
                Ok(retried)
            }

            // ---- secrets ----

            async fn put_secret(&self, name: &str, value: &[u8]) -> $crate::Result<()> {
                let sealed = self.key.seal(name, value)?;
                let now = $crate::now_ms();
                sqlx::query(
                    "INSERT INTO secrets (name, sealed, created_at, updated_at) \
                     VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO UPDATE \
                     SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                )
                .bind(name)
                .bind(sealed)
                .bind(now)
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("store secret {name}")))?;
                Ok(())
            }

            async fn secret(&self, name: &str) -> $crate::Result<Option<$crate::SecretValue>> {
                let row: Option<(Vec<u8>,)> =
                    sqlx::query_as("SELECT sealed FROM secrets WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::rows::db(format!("read secret {name}")))?;
                match row {
                    None => Ok(None),
                    Some((sealed,)) => {
                        Ok(Some($crate::SecretValue(self.key.open(name, &sealed)?)))
                    }
                }
            }

            async fn list_secrets(&self) -> $crate::Result<Vec<$crate::SecretInfo>> {
                let rows: Vec<$crate::rows::SecretRow> = sqlx::query_as(
                    "SELECT name, created_at, updated_at FROM secrets ORDER BY name",
                )
                .fetch_all(&self.pool)
                .await
                .map_err($crate::rows::db("list secrets"))?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn delete_secret(&self, name: &str) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM secrets WHERE name = $1")
                    .bind(name)
                    .execute(&self.writer)
                    .await
                    .map_err($crate::rows::db(format!("delete secret {name}")))?;
                Ok(done.rows_affected() == 1)
            }

            // ---- API tokens ----

            async fn add_token(&self, name: &str, token: &str) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO api_tokens (hash, name, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (hash) DO UPDATE SET name = excluded.name",
                )
                .bind($crate::crypto::token_hash(token))
                .bind(name)
                .bind($crate::now_ms())
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("store API token {name}")))?;
                Ok(())
            }

            async fn check_token(&self, token: &str) -> $crate::Result<Option<String>> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT name FROM api_tokens WHERE hash = $1")
                        .bind($crate::crypto::token_hash(token))
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::rows::db("check an API token"))?;
                Ok(row.map(|(n,)| n))
            }

            async fn count_tokens(&self) -> $crate::Result<u64> {
                let (n,): (i64,) =
                    sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM api_tokens")
                        .fetch_one(&self.pool)
                        .await
                        .map_err($crate::rows::db("count API tokens"))?;
                Ok($crate::rows::to_u64(n))
            }

            // ---- events ----

            async fn add_event(&self, event: $crate::NewEvent) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO events (at, task_id, run_id, kind, actor, message) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind($crate::now_ms())
                .bind(event.task_id.as_deref())
                .bind(event.run_id)
                .bind(&event.kind)
                .bind(&event.actor)
                .bind(&event.message)
                .execute(&self.writer)
                .await
                .map_err($crate::rows::db(format!("log event {}", event.kind)))?;
                Ok(())
            }

            async fn list_events(
                &self,
                task_id: Option<&str>,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::Event>> {
                let rows: Vec<$crate::rows::EventRow> = match task_id {
                    Some(task_id) => sqlx::query_as(&format!(
                        "SELECT {} FROM events WHERE task_id = $1 ORDER BY id DESC LIMIT $2",
                        $crate::rows::EVENT_COLS
                    ))
                    .bind(task_id)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await,
                    None => sqlx::query_as(&format!(
                        "SELECT {} FROM events ORDER BY id DESC LIMIT $1",
                        $crate::rows::EVENT_COLS
                    ))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await,
                }
                .map_err($crate::rows::db("list events"))?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            // ---- leadership ----

            async fn try_lead(
                &self,
                holder: &str,
            ) -> $crate::Result<Option<Box<dyn $crate::Leadership>>> {
                self.try_lead_impl(holder).await
            }
        }
    };
}

pub(crate) use impl_store;
