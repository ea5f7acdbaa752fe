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

/// The event log.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends to the event log.
    async fn add_event(&self, event: NewEvent) -> Result<()>;
    /// Events of a task (or all), newest first.
    async fn list_events(&self, task_id: Option<&str>, limit: u32) -> Result<Vec<Event>>;
}

/// Implements [`EventStore`] for `$store` whose pool is a `sqlx::Pool<$db>`.
macro_rules! impl_event_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::EventStore for $store {
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
        }
    };
}

pub(crate) use impl_event_store;
