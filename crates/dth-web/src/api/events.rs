//! S3 event notifications posted to a task (`POST /api/v1/tasks/{id}/events`) by MinIO, Ceph RGW
//! or any client, authenticated by the task's webhook token rather than a session or API token;
//! and the operator's call that makes that token.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use dth_runtime::{EventsTaken, WebhookAuth};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::{ApiError, AppState, ErrorBody};

/// What a webhook call queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsAccepted {
    /// The task's event run the changes went to (0 when none was needed).
    pub run_id: i64,
    /// New items.
    pub added: u64,
    /// Items of keys already in the run, updated or queued again.
    pub updated: u64,
    /// Events dropped as not newer than the key's item (duplicates, late deliveries).
    pub stale: u64,
    /// Events for another bucket, outside the prefix or the filters, or deletes the task does not
    /// propagate.
    pub ignored: u64,
}

impl From<EventsTaken> for EventsAccepted {
    fn from(t: EventsTaken) -> Self {
        EventsAccepted {
            run_id: t.ingested.run_id,
            added: t.ingested.added,
            updated: t.ingested.updated,
            stale: t.ingested.stale,
            ignored: t.ignored,
        }
    }
}

/// A new webhook token, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookToken {
    /// The token: send it as `Authorization: Bearer TOKEN`, as the basic-auth password, or as
    /// the key of `X-Dth-Signature: sha256=HEX(HMAC-SHA256(TOKEN, body))`.
    pub token: String,
    /// Where to post events.
    pub url: String,
}

/// Takes S3 event notifications for a task whose `source.events` is `{"kind": "webhook"}`:
/// AWS-style `Records`, MinIO's webhook body (`EventName`, `Key`, `Records`), Ceph RGW's push
/// (sizes as strings), or an SNS envelope. Needs the task's webhook token, not an API token.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/events", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    request_body(content = Object, description = "An S3 event notification"),
    responses(
        (status = 202, description = "Queued", body = EventsAccepted),
        (status = 400, description = "Not an S3 event notification", body = ErrorBody),
        (status = 401, description = "No or wrong webhook token", body = ErrorBody),
        (status = 409, description = "The task is stopped, or takes no webhook events", body = ErrorBody),
    ),
    security(("webhook" = [])))]
pub async fn take(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let auth = webhook_auth(&headers)?;
    let taken = state.hub.take_webhook(&id, &auth, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(EventsAccepted::from(taken))))
}

/// Makes a new webhook token for a task whose events come by webhook, replacing the old one.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/events/token", tag = "tasks",
    params(("id" = String, Path, description = "Task id")),
    responses(
        (status = 201, description = "The token, shown once", body = WebhookToken),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the operator role", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task takes no webhook events", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn new_token(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let token = state.hub.new_webhook_token(&actor, &id).await?;
    let url = format!("{}/api/v1/tasks/{id}/events", state.web.public_origin);
    Ok((StatusCode::CREATED, Json(WebhookToken { token, url })))
}

/// The token or signature of a webhook call: `Authorization: Bearer TOKEN`, `Authorization:
/// Basic` with the token as password, `Authorization: TOKEN` (MinIO's `auth_token` as given), or
/// `X-Dth-Signature: sha256=HEX`.
fn webhook_auth(headers: &HeaderMap) -> Result<WebhookAuth, ApiError> {
    let signature = headers
        .get("x-dth-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(WebhookAuth {
            token: None,
            signature,
        });
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII text"))?
        .trim();
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim().to_string(),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::unauthorized("the basic credentials are not base64"))?;
            decoded
                .split_once(':')
                .map(|(_, password)| password.to_string())
                .unwrap_or(decoded)
        }
        _ => value.to_string(),
    };
    Ok(WebhookAuth {
        token: Some(token),
        signature,
    })
}
