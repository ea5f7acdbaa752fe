//! PostgreSQL backend, for several processes (hubs and `dth worker`s) sharing one store. Claims lock
//! rows with `FOR UPDATE SKIP LOCKED` so concurrent claimers never wait on or receive the same item;
//! scheduler leadership is a session advisory lock on a connection of its own.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use crate::rows::{self, ITEM_COLS, ItemRow, db};
use crate::{Error, Item, Leadership, MasterKey, Result, now_ms};

/// Advisory lock key of the scheduler leader ("dthsched").
const LEADER_LOCK: i64 = 0x6474_6873_6368_6564;
/// Items inserted after which this process refreshes the planner's statistics of `items`.
const ANALYZE_EVERY: u64 = 20_000;
/// How often the leader checks that its connection (and so its lock) is alive.
const LEADER_CHECK: Duration = Duration::from_secs(5);
/// Connections per process unless the URL says otherwise (`?max_connections=N` is not a PostgreSQL
/// parameter, so it is read here and removed).
const DEFAULT_MAX_CONNECTIONS: u32 = 16;

pub(crate) struct PgStore {
    pool: PgPool,
    writer: PgPool,
    options: PgConnectOptions,
    key: MasterKey,
    /// Items inserted since the last `ANALYZE items` this process started.
    unanalyzed: Arc<AtomicU64>,
}

impl PgStore {
    const BACKEND: &'static str = "postgres";
    const FOR_UPDATE: &'static str = " FOR UPDATE";

    /// Connects to `url` and applies the migrations.
    pub(crate) async fn open(url: &str, key: MasterKey) -> Result<PgStore> {
        let (url, max_connections) = split_max_connections(url);
        let shown = redact_url(&url);
        let options = PgConnectOptions::from_str(&url)
            .map_err(|e| Error::Db(format!("invalid PostgreSQL URL {shown}: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(|e| {
                Error::Db(format!(
                    "cannot connect to PostgreSQL at {shown}: {e} (is the server running and the \
                     URL right?)"
                ))
            })?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| {
                Error::Db(format!(
                    "cannot migrate PostgreSQL store {shown}: {e} (was it written by a newer dth?)"
                ))
            })?;
        Ok(PgStore {
            writer: pool.clone(),
            pool,
            options,
            key,
            unanalyzed: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A queue filled faster than autovacuum analyzes it gets planned as if it were nearly empty:
    /// claims then sort every queued item instead of walking the partial index (170 ms instead of
    /// 4 ms per claim at 100,000 items). So every [`ANALYZE_EVERY`] inserted items, refresh the
    /// statistics in the background.
    fn after_insert(&self, added: u64) {
        let before = self.unanalyzed.fetch_add(added, Ordering::Relaxed);
        if before + added < ANALYZE_EVERY {
            return;
        }
        self.unanalyzed.store(0, Ordering::Relaxed);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("ANALYZE items").execute(&pool).await {
                tracing::warn!("could not refresh the statistics of the items table: {e}");
            }
        });
    }

    async fn write_tx(&self) -> Result<Transaction<'static, Postgres>> {
        self.writer.begin().await.map_err(db("begin a transaction"))
    }

    async fn claim_impl(&self, worker: &str, max: usize, lease: Duration) -> Result<Vec<Item>> {
        let now = now_ms();
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let cols = ITEM_COLS
            .split(", ")
            .map(|c| format!("items.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        // `+run_id`: walk the partial indexes in (prio, id) order rather than sort a run's items.
        let sql = format!(
            "WITH expired AS ( \
               SELECT id, prio FROM items WHERE state = 'leased' AND lease_expires_at < $3 \
               AND +run_id IN (SELECT id FROM runs WHERE status IN ('FINDING', 'TRANSFERRING')) \
               ORDER BY prio, id LIMIT $4 FOR UPDATE SKIP LOCKED), \
             due AS ( \
               SELECT id, prio FROM items WHERE state = 'queued' AND not_before <= $3 \
               AND +run_id IN (SELECT id FROM runs WHERE status IN ('FINDING', 'TRANSFERRING')) \
               ORDER BY prio, id LIMIT $4 FOR UPDATE SKIP LOCKED), \
             pick AS ( \
               SELECT id FROM (SELECT id, prio FROM expired UNION ALL SELECT id, prio FROM due) u \
               ORDER BY prio, id LIMIT $4) \
             UPDATE items SET state = 'leased', attempts = items.attempts + 1, lease_owner = $1, \
               lease_expires_at = $2, updated_at = $3 \
             FROM pick WHERE items.id = pick.id \
             RETURNING {cols}"
        );
        let rows: Vec<ItemRow> = sqlx::query_as(&sql)
            .bind(worker)
            .bind(now.saturating_add(rows::millis(lease)))
            .bind(now)
            .bind(limit)
            .fetch_all(&self.writer)
            .await
            .map_err(db(format!("claim items for {worker}")))?;
        let mut items = rows::items(rows)?;
        items.sort_by_key(|i| (rows::prio(i.kind), i.id));
        Ok(items)
    }

    async fn try_lead_impl(&self, holder: &str) -> Result<Option<Box<dyn Leadership>>> {
        let options = self.options.clone().application_name(holder);
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(db("connect for scheduler leadership"))?;
        let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut conn)
            .await
            .map_err(db("take scheduler leadership"))?;
        if !got {
            let _ = conn.close().await;
            return Ok(None);
        }
        let held = Arc::new(AtomicBool::new(true));
        let cancel = CancellationToken::new();
        tokio::spawn(watch_lock(conn, held.clone(), cancel.clone()));
        Ok(Some(Box::new(LockGuard {
            held,
            _cancel: cancel.drop_guard(),
        })))
    }
}

/// Keeps the connection holding the advisory lock alive and checks it every [`LEADER_CHECK`]; gives
/// the lock up when cancelled.
async fn watch_lock(mut conn: PgConnection, held: Arc<AtomicBool>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(LEADER_LOCK)
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
                held.store(false, Ordering::SeqCst);
                return;
            }
            () = tokio::time::sleep(LEADER_CHECK) => {}
        }
        let alive =
            tokio::time::timeout(LEADER_CHECK, sqlx::query("SELECT 1").execute(&mut conn)).await;
        if !matches!(alive, Ok(Ok(_))) {
            tracing::warn!("scheduler leadership lost: its PostgreSQL connection is gone");
            held.store(false, Ordering::SeqCst);
            return;
        }
    }
}

struct LockGuard {
    held: Arc<AtomicBool>,
    _cancel: tokio_util::sync::DropGuard,
}

impl Leadership for LockGuard {
    fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }
}

/// Removes a `max_connections=N` query parameter from the URL and returns it (or the default).
fn split_max_connections(url: &str) -> (String, u32) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), DEFAULT_MAX_CONNECTIONS);
    };
    let mut max = DEFAULT_MAX_CONNECTIONS;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("max_connections=") {
            Some(n) => {
                max = n.parse().unwrap_or(DEFAULT_MAX_CONNECTIONS).max(1);
                false
            }
            None => true,
        })
        .collect();
    if rest.is_empty() {
        (base.to_string(), max)
    } else {
        (format!("{base}?{}", rest.join("&")), max)
    }
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable URL)".to_string(),
    }
}

crate::tasks::impl_task_store!(PgStore, sqlx::Postgres);
crate::runs::impl_run_store!(PgStore, sqlx::Postgres);
crate::queue::impl_queue_store!(PgStore, sqlx::Postgres);
crate::secrets::impl_secret_store!(PgStore, sqlx::Postgres);
crate::accounts::impl_account_store!(PgStore, sqlx::Postgres);
crate::events::impl_event_store!(PgStore, sqlx::Postgres);
crate::event_items::impl_event_item_store!(PgStore, sqlx::Postgres);
crate::settings::impl_setting_store!(PgStore, sqlx::Postgres);
crate::retention::impl_retention_store!(PgStore, sqlx::Postgres);

#[async_trait::async_trait]
impl crate::Store for PgStore {
    fn backend(&self) -> &'static str {
        Self::BACKEND
    }

    async fn try_lead(&self, holder: &str) -> Result<Option<Box<dyn Leadership>>> {
        self.try_lead_impl(holder).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_options() {
        assert_eq!(
            split_max_connections("postgres://h/db?max_connections=50&sslmode=disable"),
            ("postgres://h/db?sslmode=disable".to_string(), 50)
        );
        assert_eq!(
            split_max_connections("postgres://h/db"),
            ("postgres://h/db".to_string(), DEFAULT_MAX_CONNECTIONS)
        );
        let shown = redact_url("postgres://u:hunter2@h:5432/db");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
