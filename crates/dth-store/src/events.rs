//! The event (audit) log: append and read, newest first.
//!
//! The trait, and its SQL written once as a macro expanded for each backend's pool type
//! (`sqlite.rs`, `postgres.rs`); `$N` placeholders bind by number on both.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Millis, Result};

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
    /// Who or what did it (`user:<email>`, `token:<name> of <email>`, `scheduler`, `worker:<id>`).
    pub actor: String,
    /// Details for people.
    pub message: String,
    /// What it was done to when that is not the task (a user's email, a token, a secret's name).
    pub target: Option<String>,
    /// The client address of the request that did it.
    pub client: Option<String>,
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
    /// Target other than the task.
    pub target: Option<String>,
    /// Client address.
    pub client: Option<String>,
}

/// Which events an audit query wants, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Kinds starting with this (`user.`, `session.failed`).
    pub kind_prefix: Option<String>,
    /// Actors containing this.
    pub actor: Option<String>,
    /// Events whose target or task id is this.
    pub target: Option<String>,
    /// Only events with an id below this (the previous page's last).
    pub before_id: Option<i64>,
    /// Only events at or after this time.
    pub since: Option<Millis>,
    /// Only events before this time.
    pub until: Option<Millis>,
    /// At most this many.
    pub limit: u32,
}

/// The event log.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends to the event log.
    async fn add_event(&self, event: NewEvent) -> Result<()>;
    /// Events of a task (or all), newest first.
    async fn list_events(&self, task_id: Option<&str>, limit: u32) -> Result<Vec<Event>>;
    /// Events matching an audit filter, newest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<Event>>;
}

/// `s` for a `LIKE` pattern, `%`, `_` and `\` escaped (with `ESCAPE '\'`).
pub(crate) fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Implements [`EventStore`] for `$store` whose pool is a `sqlx::Pool<$db>`.
macro_rules! impl_event_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::EventStore for $store {
            async fn add_event(&self, event: $crate::NewEvent) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO events (at, task_id, run_id, kind, actor, message, target, client) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind($crate::now_ms())
                .bind(event.task_id.as_deref())
                .bind(event.run_id)
                .bind(&event.kind)
                .bind(&event.actor)
                .bind(&event.message)
                .bind(event.target.as_deref())
                .bind(event.client.as_deref())
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
                let rows: Vec<$crate::rows::EventRow> =
                    match task_id {
                        Some(task_id) => sqlx::query_as(&format!(
                            "SELECT {} FROM events WHERE task_id = $1 ORDER BY id DESC LIMIT $2",
                            $crate::rows::EVENT_COLS
                        ))
                        .bind(task_id)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await,
                        None => {
                            sqlx::query_as(&format!(
                                "SELECT {} FROM events ORDER BY id DESC LIMIT $1",
                                $crate::rows::EVENT_COLS
                            ))
                            .bind(i64::from(limit))
                            .fetch_all(&self.pool)
                            .await
                        }
                    }
                    .map_err($crate::rows::db("list events"))?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn audit(
                &self,
                filter: &$crate::AuditFilter,
            ) -> $crate::Result<Vec<$crate::Event>> {
                let sql = format!(
                    "SELECT {} FROM events WHERE ($1 IS NULL OR kind LIKE $1 ESCAPE '\\') \
                     AND ($2 IS NULL OR actor LIKE $2 ESCAPE '\\') \
                     AND ($3 IS NULL OR target = $3 OR task_id = $3) \
                     AND ($4 IS NULL OR id < $4) AND ($5 IS NULL OR at >= $5) \
                     AND ($6 IS NULL OR at < $6) ORDER BY id DESC LIMIT $7",
                    $crate::rows::EVENT_COLS
                );
                let esc = $crate::events::like_escape;
                let rows: Vec<$crate::rows::EventRow> = sqlx::query_as(&sql)
                    .bind(filter.kind_prefix.as_deref().map(|k| format!("{}%", esc(k))))
                    .bind(filter.actor.as_deref().map(|a| format!("%{}%", esc(a))))
                    .bind(filter.target.as_deref())
                    .bind(filter.before_id)
                    .bind(filter.since)
                    .bind(filter.until)
                    .bind(i64::from(filter.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::rows::db("read the audit log"))?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }
    };
}

pub(crate) use impl_event_store;
