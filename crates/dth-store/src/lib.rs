/*!
Persistence of the hub: tasks, runs, queue items, encrypted secrets, API tokens, the event log and
scheduler leadership, behind one trait ([`Store`]) with two backends: SQLite (embedded default, one file,
WAL) and PostgreSQL (scale-out). Both apply their sqlx migrations when opened ([`open`]).

The queue protocol lives here. An item is one object, part or delete of a run; the queue entry *is* the
per-object record. Workers [`QueueStore::claim`] batches of items under a lease (`UPDATE … RETURNING` on SQLite,
`FOR UPDATE SKIP LOCKED` on PostgreSQL), extend it with [`QueueStore::heartbeat`], and end each item with
[`QueueStore::ack`] (done or skipped) or [`QueueStore::retry_later`] (queued again after a delay, or dead-lettered
once its attempts are used up). An expired lease makes the item claimable again. Every call that changes
an item checks that the caller still holds its lease, so a worker that lost its lease cannot overwrite
another's result. Run counters are computed from item states ([`RunStore::run_counters`]), so "copied" can
never exceed "found".

Secrets are sealed with XChaCha20-Poly1305 under a [`MasterKey`] (from `DTH_MASTER_KEY` or a 0600
`master.key` file, [`MasterKey::from_env_or_file`]) before they reach the database, the secret's name
bound in as associated data, and can be read back only by the runtime through [`SecretStore::secret`];
nothing here logs or prints them. API tokens are stored as SHA-256 hashes.

[`Store`] is the union of one trait per concern, each in its own module with its own SQL:
[`TaskStore`] (`tasks.rs`), [`RunStore`] (`runs.rs`), [`QueueStore`] (`queue.rs`), [`SecretStore`]
(`secrets.rs`), [`AccountStore`] (`accounts.rs`), [`EventStore`] (`events.rs`),
[`SettingStore`] (`settings.rs`) and [`RetentionStore`] (`retention.rs`: the items of long-finished
runs deleted in bounded batches). Both backends share their SQL
(`$N` placeholders, which sqlx's SQLite driver binds by number): each module writes its methods once as
a macro expanded per backend; only claims, transactions and leadership differ (`sqlite.rs`,
`postgres.rs`). Integer columns are `BIGINT`, JSON is text.

This crate knows nothing of S3 or OCI: specs and item payloads are opaque JSON to it.
*/

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

mod accounts;
mod crypto;
mod event_items;
mod events;
mod postgres;
mod queue;
mod retention;
mod rows;
mod runs;
mod secrets;
mod settings;
mod sqlite;
mod tasks;

pub use accounts::{
    AccountStore, NewToken, NewUser, OidcPending, Session, TokenInfo, User, UserChange,
};
pub use crypto::{MASTER_KEY_ENV, MASTER_KEY_FILE, MasterKey};
pub use event_items::{EventItem, EventItemStore, Ingested};
pub use events::{AuditFilter, Event, EventStore, NewEvent};
pub use queue::{Ack, Acked, Item, ItemCount, ItemQuery, NewItem, QueueStore, Retried, Retry};
pub use retention::{Purged, RetentionStore};
pub use runs::{Run, RunSample, RunStore};
pub use secrets::{SecretInfo, SecretStore, SecretValue};
pub use settings::{Setting, SettingStore};
pub use tasks::{NewTask, Task, TaskStore};

/// Opens the store at `url` and applies its migrations: `postgres://…` or `postgresql://…` for
/// PostgreSQL (add `?max_connections=N` to size the pool, default 16), `sqlite://PATH`,
/// `sqlite:PATH` or a plain file path for SQLite (the file and its directory are created). Secrets
/// are sealed with `key`.
pub async fn open(url: &str, key: MasterKey) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PgStore::open(url, key).await?));
    }
    let path = sqlite_path(url)?;
    Ok(Arc::new(sqlite::SqliteStore::open(&path, key).await?))
}

/// The file of a SQLite store URL or path.
fn sqlite_path(url: &str) -> Result<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(Error::Db(format!(
            "store {url:?} is neither a postgres:// URL nor a SQLite file (sqlite://PATH or a path)"
        )));
    }
    Ok(Path::new(path).to_path_buf())
}

/// Unix time in milliseconds.
pub type Millis = i64;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused or failed a statement.
    #[error("store: {0}")]
    Db(String),
    /// A row that must exist does not.
    #[error("{what} {id} not found")]
    NotFound {
        /// `task`, `run`, `item`, `secret`.
        what: &'static str,
        /// Its id or name.
        id: String,
    },
    /// The operation conflicts with the current state (e.g. a run of the task is still finding).
    #[error("{0}")]
    Conflict(String),
    /// The master key is missing, malformed, or does not open a secret.
    #[error("secrets: {0}")]
    Crypto(String),
}

/// Store results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Scheduler leadership held by one process; dropping it gives it up.
pub trait Leadership: Send + Sync {
    /// Whether it is still held (the connection holding it is alive, the lease was renewed).
    fn is_held(&self) -> bool;
}

/// Everything the hub persists, the union of one trait per concern. Held as `Arc<dyn Store>`, whose
/// methods include every concern's.
#[async_trait]
pub trait Store:
    TaskStore
    + RunStore
    + QueueStore
    + SecretStore
    + AccountStore
    + EventStore
    + EventItemStore
    + SettingStore
    + RetentionStore
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Tries to become the scheduler leader: a PostgreSQL advisory lock on a connection of its own; on
    /// SQLite a lease row renewed in the background. `None` when another process leads.
    async fn try_lead(&self, holder: &str) -> Result<Option<Box<dyn Leadership>>>;
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
