//! Tasks: create, list, get (with the latest run and its counters), start, stop, delete, events.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiJson, ApiQuery, limit};
use crate::views::{EventView, ProgressView, TaskDetail, TaskView};
use crate::{ApiError, AppState, ErrorBody};

/// The body of `POST /api/v1/tasks`, for the OpenAPI document (the handler reads a
/// `dth_model::TaskSpec`; see `docs/` for every option).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TaskSpecDoc {
    /// A name for people (not only spaces).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: String,
    /// `s3` (objects) or `image` (container images).
    #[schema(example = "s3")]
    kind: String,
    /// `s3`: where objects are read: `{provider, region, endpoint_url, bucket, prefix, credentials,
    /// requester_pays}`; `credentials` is `{"kind": "default-chain"}`, `{"kind": "secret", "name": …}`,
    /// `{"kind": "static", …}` (moved into a secret at once), `{"kind": "profile", "name": …}` or
    /// `{"kind": "anonymous"}`.
    /// `image`: `{location, credentials, tls_verify, endpoint, ecr_endpoint}`; `location` is
    /// `docker://HOST[/REPO[:TAG]]`, `ecr://ACCOUNT.REGION[/REPO]`, `artifactory://HOST[/KEY]`,
    /// `oci:DIR[:TAG]` or `docker-archive:FILE`; `credentials` is `{"kind": "anonymous"}`,
    /// `{"kind": "basic", "username": …, "password": …}` (moved into a secret at once) or
    /// `{"kind": "secret", "name": …}`.
    #[schema(value_type = Object)]
    source: Value,
    /// Where objects or images are written (same shape as `source`).
    #[schema(value_type = Object)]
    destination: Value,
    /// `s3`: compare and copy options.
    #[schema(value_type = Object)]
    options: Option<Value>,
    /// `s3`: objects at least this large become one queue item per part (default 1 GiB).
    giant_threshold: Option<u64>,
    /// `image`: `name[:tag]` entries to copy (default: what the source location names).
    images: Option<Vec<String>>,
    /// `image`: tag patterns to keep (globs, `regex:RE`, `semver:RANGE`).
    tag_filter: Option<Vec<String>>,
    /// `image`: tag patterns to skip.
    exclude_tags: Option<Vec<String>>,
    /// `image`: keep the N newest tags left.
    keep_latest: Option<usize>,
    /// `image`: platforms of multi-arch images to keep (default: the whole index).
    platforms: Option<Vec<String>>,
    /// `image`: images copied at once per worker process (default 10).
    concurrency: Option<usize>,
    /// `{"cron": "0 * * * *"}` (UTC, default hourly), `{"every-seconds": N}` or `"once"`.
    #[schema(value_type = Object)]
    schedule: Option<Value>,
    /// `[{"kind": "webhook", "url": …}, {"kind": "email", "to": …}]`.
    #[schema(value_type = Vec<Object>)]
    alarms: Option<Vec<Value>>,
    /// Attempts of an item before it is dead-lettered (default 5 for objects, 3 for images).
    max_attempts: Option<u32>,
}

/// Creates a task; its first run is due at once. Nothing is created on bad input.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks",
    request_body = TaskSpecDoc,
    responses(
        (status = 201, description = "Created", body = TaskView),
        (status = 400, description = "Malformed or invalid spec; nothing created", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let task = state.hub.create_task(&actor, &body).await?;
    let location = format!("/api/v1/tasks/{}", task.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(TaskView::from(task)),
    ))
}

/// Every task, newest first.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks",
    responses(
        (status = 200, description = "The tasks", body = Vec<TaskView>),
        (status = 401, description = "No or unknown token", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<Vec<TaskView>>, ApiError> {
    let tasks = state.hub.tasks(&actor).await?;
    Ok(Json(tasks.into_iter().map(TaskView::from).collect()))
}

/// One task with its latest run and that run's counters.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = TaskDetail),
        (status = 404, description = "No such task", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<TaskDetail>, ApiError> {
    let task = state.hub.get_task(&actor, &id).await?;
    Ok(Json(TaskDetail::of(&state.hub, &actor, task).await?))
}

/// Starts a stopped, done or failed task, or runs an active one again now.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/start", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "Started", body = TaskView),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task is still stopping", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(state.hub.start_task(&actor, &id).await?.into()))
}

/// Stops a task: no new runs, work in flight cancelled.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/stop", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "Stopped", body = TaskView),
        (status = 404, description = "No such task", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn stop(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(state.hub.stop_task(&actor, &id).await?.into()))
}

/// Stops and deletes a task with its runs, items and events.
#[utoipa::path(delete, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such task", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.hub.delete_task(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?limit=` of lists.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A task's events, newest first.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/events", tag = "tasks",
    params(("id" = String, Path, description = "Task id"), LimitQuery),
    responses(
        (status = 200, description = "The events", body = Vec<EventView>),
        (status = 400, description = "Bad limit", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> Result<Json<Vec<EventView>>, ApiError> {
    let limit = limit(q.limit, 100, 1000)?;
    let events = state.hub.task_events(&actor, &id, limit).await?;
    Ok(Json(events.into_iter().map(EventView::from).collect()))
}

/// The body of `PATCH /api/v1/tasks/{id}`: only the fields to change; `null` resets a field to
/// its default. Source and destination cannot change (clone the task instead).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct TaskPatchDoc {
    /// A name for people.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: Option<String>,
    /// What the task is for.
    #[schema(max_length = 2000)]
    description: Option<String>,
    /// `{"cron": "0 * * * *"}`, `{"every-seconds": N}` or `"once"`; an active task's next run is
    /// due by the new schedule at once.
    #[schema(value_type = Object)]
    schedule: Option<Value>,
    /// `[{"kind": "webhook", "url": …}, {"kind": "email", "to": …}]`.
    #[schema(value_type = Vec<Object>)]
    alarms: Option<Vec<Value>>,
    /// Attempts of an item before it is dead-lettered.
    #[schema(minimum = 1)]
    max_attempts: Option<u32>,
    /// `s3`: copy options, merged key by key (`null` resets one).
    #[schema(value_type = Object)]
    options: Option<Value>,
    /// `s3`: the giant-object threshold.
    giant_threshold: Option<u64>,
    /// `image`: tag patterns to keep.
    tag_filter: Option<Vec<String>>,
    /// `image`: tag patterns to skip.
    exclude_tags: Option<Vec<String>>,
    /// `image`: keep the N newest tags left.
    keep_latest: Option<usize>,
    /// `image`: platforms of multi-arch images to keep.
    platforms: Option<Vec<String>>,
    /// `image`: images copied at once per worker process.
    concurrency: Option<usize>,
}

/// Edits a task; the next run uses the new settings.
#[utoipa::path(patch, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    request_body = TaskPatchDoc,
    responses(
        (status = 200, description = "Edited", body = TaskView),
        (status = 400, description = "Malformed or invalid change; nothing changed", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the operator role", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn edit(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(state.hub.edit_task(&actor, &id, &body).await?.into()))
}

/// The body of `POST /api/v1/tasks/{id}/clone`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneRequest {
    /// The new task's name (default: the original's with " (copy)").
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
}

/// Copies a task into a new one, due at once.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/clone", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    request_body(content = Option<CloneRequest>, description = "Optional: `{\"name\": …}`"),
    responses(
        (status = 201, description = "Created", body = TaskView),
        (status = 400, description = "Malformed body or bad name", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the operator role", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn clone(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let req: CloneRequest = crate::error::optional_json(&body)?;
    let task = state
        .hub
        .clone_task(&actor, &id, req.name.as_deref())
        .await?;
    let location = format!("/api/v1/tasks/{}", task.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(TaskView::from(task)),
    ))
}

/// The live progress of a task's run as Server-Sent Events: a `progress` event (a
/// `ProgressView`) at once and then at most once a second while the run is active, and an `end`
/// event (`{"status": …}`, the run's last status) after the run ended. The run followed is the one in progress, or the next one when a
/// start is pending, else the last one.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/progress", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "`text/event-stream` of `progress` events (data: ProgressView) and a final `end`",
            content_type = "text/event-stream", body = ProgressView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn progress(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    let every = state.web.progress_every;
    let updates = state.hub.watch(&actor, &id, every).await?;
    // The `end` event repeats the run's last status, so a client needs no other call.
    let last = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let seen = last.clone();
    let events = updates
        .map(move |p| match p {
            Ok(p) => {
                *seen.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(p.run.status.name().to_string());
                Event::default()
                    .event("progress")
                    .json_data(ProgressView::from(p))
                    .map_err(|e| e.to_string())
            }
            Err(e) => Ok(Event::default().event("error").data(e.to_string())),
        })
        .chain(futures::stream::once(async move {
            let status = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Event::default()
                .event("end")
                .json_data(serde_json::json!({ "status": status }))
                .map_err(|e| e.to_string())
        }));
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
