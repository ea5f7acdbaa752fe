//! Runs: a task's runs, one run with its counters, its items by state (paginated by id), and retrying
//! its dead items.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use dth_model::{ItemKind, ItemState};
use dth_store::ItemQuery;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::tasks::LimitQuery;
use crate::auth::Caller;
use crate::error::{ApiQuery, limit};
use crate::views::{ItemView, ReportLine, RunDetail, RunView, SampleView};
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
    #[param(pattern = "^(queued|leased|waiting|done|skipped|dead|cancelled)?$")]
    pub state: Option<String>,
    /// Only keys starting with this (exact, case-sensitive; at most 1024 bytes).
    #[param(max_length = 1024)]
    pub prefix: Option<String>,
    /// Only items with an id above this one (the `next_after` of the previous page); default 0.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
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
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request("after: must be 0 or an item id"));
    }
    let query = ItemQuery {
        state: item_state(q.state.as_deref())?,
        key_prefix: key_prefix(q.prefix)?,
        after_id: after,
        limit,
    };
    let items = state.hub.items(&actor, run_id(&id)?, &query).await?;
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
    #[serde(default, deserialize_with = "crate::error::whole_numbers")]
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
    let req: RetryRequest = crate::error::optional_json(&body)?;
    let run_id = run_id(&id)?;
    let queued = state
        .hub
        .retry_dead(&actor, run_id, req.ids.as_deref())
        .await?;
    Ok(Json(Retried { queued }))
}

/// `?since=` of `GET /api/v1/runs/{id}/samples`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SamplesQuery {
    /// Only samples taken at or after this time (Unix ms); default: all.
    #[param(minimum = 0)]
    pub since: Option<i64>,
}

/// A run's progress samples (bytes and items done over time, every 10 s and at the start and
/// end), oldest first: the data of throughput charts.
#[utoipa::path(get, path = "/api/v1/runs/{id}/samples", tag = "runs",
    params(("id" = i64, Path, description = "Run id"), SamplesQuery),
    responses(
        (status = 200, description = "The samples", body = Vec<SampleView>),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn samples(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<SamplesQuery>,
) -> Result<Json<Vec<SampleView>>, ApiError> {
    let since = q.since.unwrap_or(0);
    if since < 0 {
        return Err(ApiError::bad_request("since: must be a time in Unix ms"));
    }
    let samples = state.hub.samples(&actor, run_id(&id)?, since).await?;
    Ok(Json(samples.into_iter().map(SampleView::from).collect()))
}

/// `?format=&state=&prefix=` of `GET /api/v1/runs/{id}/report`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// `csv` (default) or `jsonl` (one JSON object per line).
    pub format: Option<ReportFormat>,
    /// Only items in this state (as in `items`).
    #[param(pattern = "^(queued|leased|waiting|done|skipped|dead|cancelled)?$")]
    pub state: Option<String>,
    /// Only keys starting with this.
    #[param(max_length = 1024)]
    pub prefix: Option<String>,
}

/// The format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// JSON lines.
    Jsonl,
}

/// Items read per page while a report streams.
const REPORT_PAGE: u32 = 1000;

/// A run's report: one line per item (parts left out) with key, kind, action, size,
/// verification, attempts, error and destination ETag; streamed, in item order.
#[utoipa::path(get, path = "/api/v1/runs/{id}/report", tag = "runs",
    params(("id" = i64, Path, description = "Run id"), ReportQuery),
    responses(
        (status = 200, description = "The report (`text/csv` or `application/x-ndjson`), lines as ReportLine",
            content_type = "text/csv", body = ReportLine),
        (status = 400, description = "Bad format or filter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn report(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let run = run_id(&id)?;
    let format = q.format.unwrap_or(ReportFormat::Csv);
    let first = ItemQuery {
        state: item_state(q.state.as_deref())?,
        key_prefix: key_prefix(q.prefix)?,
        after_id: 0,
        limit: REPORT_PAGE,
    };
    // The role and the run are checked before the answer starts.
    state
        .hub
        .items(
            &actor,
            run,
            &ItemQuery {
                limit: 1,
                ..first.clone()
            },
        )
        .await?;
    let pages = futures::stream::try_unfold(Some(first), move |query| {
        let (hub, actor) = (state.hub.clone(), actor.clone());
        async move {
            let Some(mut query) = query else {
                return Ok(None);
            };
            let items = hub.items(&actor, run, &query).await?;
            let next = match items.last() {
                Some(last) if items.len() as u32 == query.limit => {
                    query.after_id = last.id;
                    Some(query)
                }
                _ => None,
            };
            let lines = items
                .into_iter()
                .filter(|i| i.kind != ItemKind::Part)
                .map(ReportLine::from);
            let chunk = render(format, lines)
                .map_err(|e| dth_runtime::Error::Conflict(format!("report: {e}")))?;
            Ok::<_, dth_runtime::Error>(Some((chunk, next)))
        }
    });
    let (content_type, ext) = match format {
        ReportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ReportFormat::Jsonl => ("application/x-ndjson", "jsonl"),
    };
    let header_line = match format {
        ReportFormat::Csv => Some(csv_header()),
        ReportFormat::Jsonl => None,
    };
    let body = futures::stream::iter(header_line.map(Ok)).chain(pages).map(
        |r: Result<axum::body::Bytes, dth_runtime::Error>| {
            r.map_err(|e| std::io::Error::other(e.to_string()))
        },
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"run-{run}.{ext}\""),
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// The CSV header line.
fn csv_header() -> axum::body::Bytes {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "key",
        "kind",
        "action",
        "size",
        "verification",
        "attempts",
        "error",
        "dst_etag",
    ]);
    axum::body::Bytes::from(w.into_inner().unwrap_or_default())
}

/// Report lines in a format.
fn render(
    format: ReportFormat,
    lines: impl Iterator<Item = ReportLine>,
) -> Result<axum::body::Bytes, String> {
    let mut out = Vec::new();
    match format {
        ReportFormat::Csv => {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(&mut out);
            for line in lines {
                w.serialize(line).map_err(|e| e.to_string())?;
            }
            w.flush().map_err(|e| e.to_string())?;
        }
        ReportFormat::Jsonl => {
            for line in lines {
                serde_json::to_writer(&mut out, &line).map_err(|e| e.to_string())?;
                out.push(b'\n');
            }
        }
    }
    Ok(axum::body::Bytes::from(out))
}

/// An item state from a query, with the known states named when it is unknown.
fn item_state(s: Option<&str>) -> Result<Option<ItemState>, ApiError> {
    match s {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<ItemState>().map(Some).map_err(|_| {
            let names: Vec<_> = ItemState::ALL.iter().map(|s| s.name()).collect();
            ApiError::bad_request(format!(
                "state: unknown item state {s:?}; expected one of {}",
                names.join(", ")
            ))
        }),
    }
}

/// A key prefix from a query: at most 1024 bytes; empty is none.
fn key_prefix(p: Option<String>) -> Result<Option<String>, ApiError> {
    match p {
        Some(p) if p.len() > 1024 => Err(ApiError::bad_request(
            "prefix: longer than 1024 bytes (the longest S3 key)",
        )),
        Some(p) if p.is_empty() => Ok(None),
        p => Ok(p),
    }
}

/// A run id from the path.
fn run_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("run {id} not found")))
}
