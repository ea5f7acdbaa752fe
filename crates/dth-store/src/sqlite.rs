//! SQLite backend: one file in WAL mode. Reads go through a small pool; every write goes through one
//! writer connection (SQLite takes one writer at a time anyway, and queueing in the pool is fairer
//! and faster than SQLite's busy-wait sleeps), multi-statement writes in `BEGIN IMMEDIATE`.
//! Scheduler leadership is a lease row in `leader`, renewed in the background.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio_util::sync::CancellationToken;

use crate::rows::{self, ITEM_COLS, ItemRow, db};
use crate::{Error, Item, Leadership, MasterKey, Result, now_ms};

/// How long a leader row is valid without renewal.
pub(crate) const LEADER_TTL: Duration = Duration::from_secs(30);
/// How often the holder renews it.
pub(crate) const LEADER_RENEW: Duration = Duration::from_secs(10);

pub(crate) struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
    key: MasterKey,
}

/// An exclusive `flock` on the store's directory, held while migrating: migrations of one store
/// by several processes then run one after the other. The directory, not the database file: closing
/// another descriptor of the database file would drop SQLite's own (POSIX) locks on it.
async fn lock_for_migration(path: &Path) -> Result<std::fs::File> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&dir)?;
        f.lock()?;
        Ok::<_, std::io::Error>(f)
    })
    .await
    .map_err(|e| Error::Db(format!("lock for migration: {e}")))?
    .map_err(|e| {
        Error::Db(format!(
            "cannot lock directory {} to migrate the SQLite store: {e}",
            path.parent().unwrap_or(Path::new(".")).display()
        ))
    })
}

impl SqliteStore {
    const BACKEND: &'static str = "sqlite";
    /// `BEGIN IMMEDIATE` already holds the database's write lock.
    const FOR_UPDATE: &'static str = "";

    /// Opens (creating the file and its directory) and migrates the database at `path`.
    pub(crate) async fn open(path: &Path, key: MasterKey) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Db(format!(
                    "cannot create directory {} for the SQLite store: {e}",
                    dir.display()
                ))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            .pragma("temp_store", "memory");
        let what = || db(format!("open SQLite store {}", path.display()));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.clone())
            .await
            .map_err(what())?;
        // sqlx takes no lock to migrate SQLite, so two processes opening a new store at once (a
        // hub and a worker, or a `--state` sync and its reader) could both apply migration 1.
        let migrating = lock_for_migration(path).await?;
        sqlx::migrate!("migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| {
                Error::Db(format!(
                    "cannot migrate SQLite store {}: {e} (was it written by a newer dth?)",
                    path.display()
                ))
            })?;
        drop(migrating);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await
            .map_err(what())?;
        Ok(SqliteStore { pool, writer, key })
    }

    /// Nothing to do: SQLite's claim plan does not depend on statistics.
    fn after_insert(&self, _added: u64) {}

    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("begin a write transaction"))
    }

    async fn claim_impl(&self, worker: &str, max: usize, lease: Duration) -> Result<Vec<Item>> {
        let now = now_ms();
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        // Expired leases and due queued items, each walked in (prio, id) order through its partial
        // index, merged, and the first `max` leased in one statement. `+run_id` keeps the planner
        // off the (run_id, state) index, which would sort every queued item of the run per claim.
        let sql = format!(
            "UPDATE items SET state = 'leased', attempts = attempts + 1, lease_owner = $1, \
             lease_expires_at = $2, updated_at = $3 \
             WHERE id IN (SELECT id FROM ( \
               SELECT id, prio FROM (SELECT id, prio FROM items \
                 WHERE state = 'leased' AND lease_expires_at < $3 \
                 AND +run_id IN (SELECT id FROM runs WHERE status IN ('FINDING', 'TRANSFERRING')) \
                 ORDER BY prio, id LIMIT $4) \
               UNION ALL \
               SELECT id, prio FROM (SELECT id, prio FROM items \
                 WHERE state = 'queued' AND not_before <= $3 \
                 AND +run_id IN (SELECT id FROM runs WHERE status IN ('FINDING', 'TRANSFERRING')) \
                 ORDER BY prio, id LIMIT $4) \
             ) ORDER BY prio, id LIMIT $4) \
             RETURNING {ITEM_COLS}"
        );
        // One statement, so no transaction around it: a write statement takes the write lock
        // when it starts (as `BEGIN IMMEDIATE` would), and it is one round trip to the writer
        // instead of three (begin, statement, commit).
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
        let token = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let taken = sqlx::query(
            "INSERT INTO leader (name, holder, token, expires_at) VALUES ('scheduler', $1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = excluded.token, \
             expires_at = excluded.expires_at WHERE leader.expires_at < $4",
        )
        .bind(holder)
        .bind(&token)
        .bind(now.saturating_add(rows::millis(LEADER_TTL)))
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(db("take scheduler leadership"))?;
        if taken.rows_affected() == 0 {
            return Ok(None);
        }
        let held = Arc::new(AtomicBool::new(true));
        let cancel = CancellationToken::new();
        tokio::spawn(renew_lease(
            self.writer.clone(),
            token,
            held.clone(),
            cancel.clone(),
        ));
        Ok(Some(Box::new(LeaseGuard {
            held,
            _cancel: cancel.drop_guard(),
        })))
    }
}

/// Renews the leader row every [`LEADER_RENEW`] until cancelled (then deletes it) or until the row is
/// lost or cannot be renewed before it would expire.
async fn renew_lease(
    writer: SqlitePool,
    token: String,
    held: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let mut valid_until = now_ms().saturating_add(rows::millis(LEADER_TTL));
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                let gone = sqlx::query("DELETE FROM leader WHERE name = 'scheduler' AND token = $1")
                    .bind(&token)
                    .execute(&writer)
                    .await;
                if let Err(e) = gone {
                    tracing::warn!("could not give up scheduler leadership (it expires by itself): {e}");
                }
                held.store(false, Ordering::SeqCst);
                return;
            }
            () = tokio::time::sleep(LEADER_RENEW) => {}
        }
        let now = now_ms();
        let renewed = sqlx::query(
            "UPDATE leader SET expires_at = $2 WHERE name = 'scheduler' AND token = $1",
        )
        .bind(&token)
        .bind(now.saturating_add(rows::millis(LEADER_TTL)))
        .execute(&writer)
        .await;
        match renewed {
            Ok(r) if r.rows_affected() == 1 => {
                valid_until = now.saturating_add(rows::millis(LEADER_TTL));
            }
            Ok(_) => {
                tracing::warn!("scheduler leadership lost: another process took the lease");
                held.store(false, Ordering::SeqCst);
                return;
            }
            Err(e) if now_ms() < valid_until => {
                tracing::warn!("could not renew scheduler leadership (will retry): {e}");
            }
            Err(e) => {
                tracing::warn!("scheduler leadership lost: could not renew the lease: {e}");
                held.store(false, Ordering::SeqCst);
                return;
            }
        }
    }
}

struct LeaseGuard {
    held: Arc<AtomicBool>,
    _cancel: tokio_util::sync::DropGuard,
}

impl Leadership for LeaseGuard {
    fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }
}

crate::tasks::impl_task_store!(SqliteStore, sqlx::Sqlite);
crate::runs::impl_run_store!(SqliteStore, sqlx::Sqlite);
crate::queue::impl_queue_store!(SqliteStore, sqlx::Sqlite);
crate::secrets::impl_secret_store!(SqliteStore, sqlx::Sqlite);
crate::accounts::impl_account_store!(SqliteStore, sqlx::Sqlite);
crate::events::impl_event_store!(SqliteStore, sqlx::Sqlite);
crate::event_items::impl_event_item_store!(SqliteStore, sqlx::Sqlite);
crate::settings::impl_setting_store!(SqliteStore, sqlx::Sqlite);
crate::retention::impl_retention_store!(SqliteStore, sqlx::Sqlite);

#[async_trait::async_trait]
impl crate::Store for SqliteStore {
    fn backend(&self) -> &'static str {
        Self::BACKEND
    }

    async fn try_lead(&self, holder: &str) -> Result<Option<Box<dyn Leadership>>> {
        self.try_lead_impl(holder).await
    }
}
