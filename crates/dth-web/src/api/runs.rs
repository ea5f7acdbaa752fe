//! Runs: a task's runs, one run with its counters, its items by state (paginated by id), and retrying
//! its dead items.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use dth_model::ItemState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::tasks::LimitQuery;
use crate::auth::Caller;
use crate::error::{ApiQuery, limit};
use crate::views::{ItemView, RunDetail, RunView};
use crate::{ApiError, AppState, ErrorBody};

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
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    let limit = limit(q.limit, 100, 1000)?;
    let runs = state.hub.runs(&actor, &id, limit).await?;
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
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<RunDetail>, ApiError> {
    let run = state.hub.run(&actor, run_id(&id)?).await?;
    Ok(Json(RunDetail::from(run)))
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
    Caller(actor): Caller,
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
    let items = state
        .hub
        .items(&actor, run_id(&id)?, item_state, after, limit)
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
    Caller(actor): Caller,
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
        .retry_dead(&actor, run_id, req.ids.as_deref())
        .await?;
    Ok(Json(Retried { queued }))
}

/// A run id from the path.
fn run_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("run {id} not found")))
}
