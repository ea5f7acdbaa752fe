/*!
Persistence of the hub: tasks, runs, queue items, encrypted secrets, API tokens, the event log and
scheduler leadership, behind one trait ([`Store`]) with two backends: SQLite (embedded default, one file,
WAL) and PostgreSQL (scale-out). Both apply their sqlx migrations when opened ([`open`]).

The queue protocol lives here. An item is one object, part or delete of a run; the queue entry *is* the
per-object record. Workers [`Store::claim`] batches of items under a lease (`UPDATE … RETURNING` on SQLite,
`FOR UPDATE SKIP LOCKED` on PostgreSQL), extend it with [`Store::heartbeat`], and end each item with
[`Store::ack`] (done or skipped) or [`Store::retry_later`] (queued again after a delay, or dead-lettered
once its attempts are used up). An expired lease makes the item claimable again. Every call that changes
an item checks that the caller still holds its lease, so a worker that lost its lease cannot overwrite
another's result. Run counters are computed from item states ([`Store::run_counters`]), so "copied" can
never exceed "found".

Secrets are sealed with XChaCha20-Poly1305 under a [`MasterKey`] (from `DTH_MASTER_KEY` or a 0600
`master.key` file, [`MasterKey::from_env_or_file`]) before they reach the database, the secret's name
bound in as associated data, and can be read back only by the runtime through [`Store::secret`];
nothing here logs or prints them. API tokens are stored as SHA-256 hashes.

Both backends share their SQL (`$N` placeholders, which sqlx's SQLite driver binds by number): the
methods are written once (`common.rs`) and expanded per backend; only claims, transactions and
leadership differ (`sqlite.rs`, `postgres.rs`). Integer columns are `BIGINT`, JSON is text.

This crate knows nothing of S3 or OCI: specs and item payloads are opaque JSON to it.
*/

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dth_model::{ItemKind, ItemState, RunStatus, TaskStatus, Trigger};
use serde::{Deserialize, Serialize};

mod common;
mod crypto;
mod postgres;
mod rows;
mod sqlite;

pub use crypto::{MASTER_KEY_ENV, MASTER_KEY_FILE, MasterKey};

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
}

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
}

/// Counters of a run, computed from item states (parts are not counted; their object is).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounters {
    /// Objects or images found at the source that are in scope: items of kind object or image + up
    /// to date.
    pub found: u64,
    /// Their bytes.
    pub found_bytes: u64,
    /// Up to date (finder) + skipped items (archived, vanished).
    pub skipped: u64,
    /// Object and image items done (copied and verified).
    pub copied: u64,
    /// Bytes of `copied`.
    pub copied_bytes: u64,
    /// Delete items done.
    pub deleted: u64,
    /// Items queued, leased or waiting for parts.
    pub pending: u64,
    /// Pending items that already failed at least once.
    pub retrying: u64,
    /// Items dead-lettered.
    pub dead: u64,
    /// Items cancelled by a stop.
    pub cancelled: u64,
    /// Bytes written so far by unfinished items (objects and parts being copied, see
    /// [`Store::add_progress`]) and by the done parts of giant objects that are not complete yet.
    pub bytes_in_flight: u64,
}

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
    /// [`Store::claim_item`] it and complete the upload.
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

/// Metadata of a stored secret (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Name.
    pub name: String,
    /// Creation.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

/// A secret's clear value, for the runtime only. `Debug` prints `[REDACTED]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub Vec<u8>);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// An entry of the event (audit) log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Id.
    pub id: i64,
    /// When.
    pub at: Millis,
    /// Task concerned.
    pub task_id: Option<String>,
    /// Run concerned.
    pub run_id: Option<i64>,
    /// `task.created`, `task.stopped`, `run.started`, `item.dead`, `alarm.sent`, `alarm.failed`…
    pub kind: String,
    /// Who or what did it (`api:<token name>`, `scheduler`, `worker:<id>`).
    pub actor: String,
    /// Details for people.
    pub message: String,
}

/// An event to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Task concerned.
    pub task_id: Option<String>,
    /// Run concerned.
    pub run_id: Option<i64>,
    /// Kind.
    pub kind: String,
    /// Actor.
    pub actor: String,
    /// Message.
    pub message: String,
}

/// Scheduler leadership held by one process; dropping it gives it up.
pub trait Leadership: Send + Sync {
    /// Whether it is still held (the connection holding it is alive, the lease was renewed).
    fn is_held(&self) -> bool;
}

/// Everything the hub persists. Held as `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    // ---- tasks ----
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
    /// Moves `next_run_at` from `expected` to `next` only if it still is `expected`; true when this
    /// caller won (so a schedule fires once even with several schedulers).
    async fn advance_schedule(
        &self,
        id: &str,
        expected: Millis,
        next: Option<Millis>,
    ) -> Result<bool>;
    /// Sets `next_run_at` unconditionally (start, stop).
    async fn set_next_run(&self, id: &str, next: Option<Millis>) -> Result<()>;
    /// Tasks in STARTING or IN_PROGRESS whose `next_run_at` ≤ `now`.
    async fn due_tasks(&self, now: Millis) -> Result<Vec<Task>>;
    /// Deletes a task with its runs, items and events; false when there was none.
    async fn delete_task(&self, id: &str) -> Result<bool>;

    // ---- runs ----
    /// Starts a run in FINDING. Fails with [`Error::Conflict`] while another run of the task is FINDING.
    async fn create_run(&self, task_id: &str, trigger: Trigger, max_attempts: u32) -> Result<Run>;
    /// One run.
    async fn get_run(&self, id: i64) -> Result<Option<Run>>;
    /// Runs of a task, newest first.
    async fn list_runs(&self, task_id: &str, limit: u32) -> Result<Vec<Run>>;
    /// Runs in FINDING or TRANSFERRING, oldest first.
    async fn active_runs(&self) -> Result<Vec<Run>>;
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

    // ---- items ----
    /// Queues items in one transaction; an item whose (run, kind, key, part number) exists is left
    /// alone. Returns how many were added.
    async fn insert_items(&self, run_id: i64, items: &[NewItem]) -> Result<u64>;
    /// Which of these keys already have an item (object or delete; parts are not looked at) in the run.
    async fn existing_keys(&self, run_id: i64, keys: &[String]) -> Result<HashSet<String>>;
    /// Claims up to `max` claimable items (queued with `not_before` ≤ now, or leased with an expired
    /// lease) of active runs, oldest first, parts before objects. Each gets `attempts + 1`, the lease,
    /// and `lease_owner = worker`. Items of runs that are not FINDING or TRANSFERRING are never
    /// claimed. A claim never dead-letters: only [`Store::retry_later`] does.
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
    /// Items of a run, optionally in one state, by id after `after_id`, at most `limit`.
    async fn list_items(
        &self,
        run_id: i64,
        state: Option<ItemState>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Item>>;
    /// One item.
    async fn get_item(&self, id: i64) -> Result<Option<Item>>;
    /// Dead items of a run (all, or these ids) queued again with attempts reset; a FAILED or DONE run
    /// goes back to TRANSFERRING. Parts are never retried on their own: retry their object, whose
    /// worker starts it over. Returns how many.
    async fn retry_dead(&self, run_id: i64, ids: Option<&[i64]>) -> Result<u64>;

    // ---- secrets ----
    /// Seals and stores a secret (replacing one of the same name).
    async fn put_secret(&self, name: &str, value: &[u8]) -> Result<()>;
    /// Opens a secret; for the runtime only, never for an API response.
    async fn secret(&self, name: &str) -> Result<Option<SecretValue>>;
    /// Names and times of the secrets.
    async fn list_secrets(&self) -> Result<Vec<SecretInfo>>;
    /// Deletes a secret; false when there was none.
    async fn delete_secret(&self, name: &str) -> Result<bool>;

    // ---- API tokens (stored as SHA-256 hashes) ----
    /// Stores a token's hash under a name.
    async fn add_token(&self, name: &str, token: &str) -> Result<()>;
    /// The name of the token, if it is known.
    async fn check_token(&self, token: &str) -> Result<Option<String>>;
    /// How many tokens exist.
    async fn count_tokens(&self) -> Result<u64>;

    // ---- events ----
    /// Appends to the event log.
    async fn add_event(&self, event: NewEvent) -> Result<()>;
    /// Events of a task (or all), newest first.
    async fn list_events(&self, task_id: Option<&str>, limit: u32) -> Result<Vec<Event>>;

    // ---- leadership ----
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
