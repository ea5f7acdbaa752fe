//! The audit log (admin): every change with who, what, target, client address and time, newest
//! first, filtered and paged by id.

use axum::Json;
use axum::extract::State;
use dth_store::AuditFilter;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiQuery, limit};
use crate::views::EventView;
use crate::{ApiError, AppState, ErrorBody};

/// `?kind=&actor=&target=&since=&until=&before=&limit=` of `GET /api/v1/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Kinds starting with this (`user.`, `session.failed`, `task.`).
    pub kind: Option<String>,
    /// Actors containing this (`alice@`, `token:ci`).
    pub actor: Option<String>,
    /// This target (a user's email, `token <id> (<name>)`, a secret's name) or task id.
    pub target: Option<String>,
    /// Only events at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Only events before this time (Unix ms).
    pub until: Option<i64>,
    /// Only events older than this id (the previous page's `next_before`).
    pub before: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A page of the audit log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<EventView>,
    /// Pass as `before` for the next page; null on the last.
    pub next_before: Option<i64>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(AuditQuery),
    responses((status = 200, description = "A page of events", body = AuditPage),
              (status = 403, description = "Not an admin", body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = limit(q.limit, 100, 1000)?;
    let blank = |s: Option<String>| s.filter(|s| !s.is_empty());
    let filter = AuditFilter {
        kind_prefix: blank(q.kind),
        actor: blank(q.actor),
        target: blank(q.target),
        before_id: q.before,
        since: q.since,
        until: q.until,
        limit,
    };
    let events = state.hub.audit_log(&actor, &filter).await?;
    let next_before = (events.len() as u32 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage {
        events: events.into_iter().map(EventView::from).collect(),
        next_before,
    }))
}
