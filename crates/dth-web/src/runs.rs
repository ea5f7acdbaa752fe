//! Runs: a task's runs, one run with its counters, its items by state (paginated by id), and retrying
//! its dead items.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use dth_model::{ItemKind, ItemState, RunStatus, Trigger};
use dth_store::{Item, Millis, Run, RunCounters, Store};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Actor;
use crate::error::{ApiQuery, limit};
use crate::tasks::{LimitQuery, task};
use crate::{ApiError, AppState, ErrorBody};

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    /// Id.
    pub id: i64,
    /// Its task.
    pub task_id: String,
    /// What started it: `schedule`, `user` or `event`.
    #[schema(value_type = String, example = "schedule")]
    pub trigger: Trigger,
    /// `FINDING`, `TRANSFERRING`, `DONE`, `FAILED` or `STOPPED`.
    #[schema(value_type = String, example = "TRANSFERRING")]
    pub status: RunStatus,
    /// Attempts an item gets before it is dead-lettered.
    pub max_attempts: u32,
    /// Why it failed.
    pub error: Option<String>,
    /// Start (Unix ms).
    pub started_at: Millis,
    /// When the finder finished (Unix ms).
    pub found_at: Option<Millis>,
    /// End (Unix ms).
    pub ended_at: Option<Millis>,
}

impl From<Run> for RunView {
    fn from(r: Run) -> Self {
        RunView {
            id: r.id,
            task_id: r.task_id,
            trigger: r.trigger,
            status: r.status,
            max_attempts: r.max_attempts,
            error: r.error,
            started_at: r.started_at,
            found_at: r.found_at,
            ended_at: r.ended_at,
        }
    }
}

/// A run's counters, computed from its items' states (parts count with their object).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Counters {
    /// Objects in scope at the source (items + up to date).
    pub found: u64,
    /// Their bytes.
    pub found_bytes: u64,
    /// Up to date, archived or vanished.
    pub skipped: u64,
    /// Objects copied and verified.
    pub copied: u64,
    /// Their bytes.
    pub copied_bytes: u64,
    /// Destination objects deleted.
    pub deleted: u64,
    /// Items queued, leased or waiting.
    pub pending: u64,
    /// Pending items that already failed at least once.
    pub retrying: u64,
    /// Items dead-lettered.
    pub dead: u64,
    /// Items cancelled by a stop.
    pub cancelled: u64,
    /// Bytes done by items not yet done (parts of giant objects).
    pub bytes_in_flight: u64,
}

impl From<RunCounters> for Counters {
    fn from(c: RunCounters) -> Self {
        Counters {
            found: c.found,
            found_bytes: c.found_bytes,
            skipped: c.skipped,
            copied: c.copied,
            copied_bytes: c.copied_bytes,
            deleted: c.deleted,
            pending: c.pending,
            retrying: c.retrying,
            dead: c.dead,
            cancelled: c.cancelled,
            bytes_in_flight: c.bytes_in_flight,
        }
    }
}

/// A run with its counters.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: RunView,
    /// Its counters.
    pub counters: Counters,
}

impl RunDetail {
    /// A run with the counters of its items.
    pub async fn load(store: &dyn Store, run: Run) -> Result<Self, ApiError> {
        let counters = store.run_counters(run.id).await?.into();
        Ok(RunDetail {
            run: run.into(),
            counters,
        })
    }
}

/// A queue item as the API shows it (its engine payload is left out).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ItemView {
    /// Id.
    pub id: i64,
    /// Its run.
    pub run_id: i64,
    /// `object`, `part` or `delete`.
    #[schema(value_type = String, example = "object")]
    pub kind: ItemKind,
    /// Object key, relative to the task's prefixes.
    pub key: String,
    /// Size (a part: its length).
    pub size: u64,
    /// Source ETag seen by the finder.
    pub etag: Option<String>,
    /// For a part: its giant object's item.
    pub parent_id: Option<i64>,
    /// For a part: its number.
    pub part_number: Option<u32>,
    /// `queued`, `leased`, `waiting`, `done`, `skipped`, `dead` or `cancelled`.
    #[schema(value_type = String, example = "dead")]
    pub state: ItemState,
    /// Claims so far.
    pub attempts: u32,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease ends (Unix ms).
    pub lease_expires_at: Option<Millis>,
    /// Not claimable before (Unix ms).
    pub not_before: Millis,
    /// The last failure.
    pub last_error: Option<String>,
    /// Bytes written.
    pub bytes_done: u64,
    /// Destination ETag after the copy.
    pub dst_etag: Option<String>,
    /// How the copy was verified, or why it was skipped.
    pub verification: Option<String>,
    /// Creation (Unix ms).
    pub created_at: Millis,
    /// Last change (Unix ms).
    pub updated_at: Millis,
}

impl From<Item> for ItemView {
    fn from(i: Item) -> Self {
        ItemView {
            id: i.id,
            run_id: i.run_id,
            kind: i.kind,
            key: i.key,
            size: i.size,
            etag: i.etag,
            parent_id: i.parent_id,
            part_number: i.part_number,
            state: i.state,
            attempts: i.attempts,
            lease_owner: i.lease_owner,
            lease_expires_at: i.lease_expires_at,
            not_before: i.not_before,
            last_error: i.last_error,
            bytes_done: i.bytes_done,
            dst_etag: i.dst_etag,
            verification: i.verification,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

/// A task's runs, newest first.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/runs", tag = "runs",
    params(("id" = String, Path, description = "Task id"), LimitQuery),
    responses(
        (status = 200, description = "The runs", body = Vec<RunView>),
        (status = 400, description = "Bad limit", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    let limit = limit(q.limit, 100, 1000)?;
    task(&state, &id).await?;
    let runs = state.hub.store().list_runs(&id, limit).await?;
    Ok(Json(runs.into_iter().map(RunView::from).collect()))
}

/// One run with its counters.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = RunDetail),
        (status = 404, description = "No such run", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunDetail>, ApiError> {
    let run = run(&state, &id).await?;
    Ok(Json(
        RunDetail::load(state.hub.store().as_ref(), run).await?,
    ))
}

/// `?state=&after=&limit=` of `GET /api/v1/runs/{id}/items`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemsQuery {
    /// Only items in this state: `queued`, `leased`, `waiting`, `done`, `skipped`, `dead`,
    /// `cancelled`.
    pub state: Option<String>,
    /// Only items with an id above this one (the `next_after` of the previous page); default 0.
    pub after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// A page of items.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ItemsPage {
    /// Items by id.
    pub items: Vec<ItemView>,
    /// Pass as `after` for the next page; null when this page is the last.
    pub next_after: Option<i64>,
}

/// A run's items, optionally in one state, by id.
#[utoipa::path(get, path = "/api/v1/runs/{id}/items", tag = "runs",
    params(("id" = i64, Path, description = "Run id"), ItemsQuery),
    responses(
        (status = 200, description = "A page of items", body = ItemsPage),
        (status = 400, description = "Unknown state or bad limit", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn items(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ItemsQuery>,
) -> Result<Json<ItemsPage>, ApiError> {
    let limit = limit(q.limit, 100, 1000)?;
    let item_state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<ItemState>().map_err(|_| {
            let names: Vec<_> = ItemState::ALL.iter().map(|s| s.name()).collect();
            ApiError::bad_request(format!(
                "state: unknown item state {s:?}; expected one of {}",
                names.join(", ")
            ))
        })?),
    };
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("after: must be 0 or an item id"));
    }
    let run = run(&state, &id).await?;
    let items = state
        .hub
        .store()
        .list_items(run.id, item_state, after, limit)
        .await?;
    let next_after = if items.len() as u32 == limit {
        items.last().map(|i| i.id)
    } else {
        None
    };
    Ok(Json(ItemsPage {
        items: items.into_iter().map(ItemView::from).collect(),
        next_after,
    }))
}

/// The body of `POST /api/v1/runs/{id}/retry`; absent or without `ids`: every dead item.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Only these dead items.
    pub ids: Option<Vec<i64>>,
}

/// What a retry did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Retried {
    /// Dead items queued again.
    pub queued: u64,
}

/// Queues a run's dead items again (all, or the ids given), attempts reset.
#[utoipa::path(post, path = "/api/v1/runs/{id}/retry", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    request_body(content = Option<RetryRequest>, description = "Optional: `{\"ids\": [...]}`"),
    responses(
        (status = 200, description = "Items queued again", body = Retried),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Retried>, ApiError> {
    let req: RetryRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RetryRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?
    };
    let run_id = run_id(&id)?;
    let queued = state
        .hub
        .retry_dead(run_id, req.ids.as_deref(), &actor)
        .await?;
    Ok(Json(Retried { queued }))
}

/// A run id from the path.
fn run_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("run {id} not found")))
}

/// The run `id`, or 404.
async fn run(state: &AppState, id: &str) -> Result<Run, ApiError> {
    let run_id = run_id(id)?;
    state
        .hub
        .store()
        .get_run(run_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("run {id} not found")))
}
