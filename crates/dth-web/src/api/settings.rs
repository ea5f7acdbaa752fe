//! Hub settings (admin): the price table of cost estimates, how long finished runs' items are
//! kept, and a test mail through the SMTP server alarms use.

use axum::Json;
use axum::extract::State;
use dth_model::PriceTable;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiJson;
use crate::{ApiError, AppState, ErrorBody};

/// The price table cost estimates use: the stored one, or the defaults the hub ships with.
#[utoipa::path(get, path = "/api/v1/settings/prices", tag = "settings",
    responses(
        (status = 200, description = "The price table", body = PriceTable),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn prices(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<PriceTable>, ApiError> {
    Ok(Json(state.hub.prices(&actor).await?))
}

/// Replaces the price table (admin).
#[utoipa::path(put, path = "/api/v1/settings/prices", tag = "settings",
    request_body = PriceTable,
    responses(
        (status = 200, description = "Stored", body = PriceTable),
        (status = 400, description = "Malformed or invalid table; nothing changed", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn put_prices(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<PriceTable>, ApiError> {
    Ok(Json(state.hub.put_prices(&actor, &body).await?))
}

/// How long the items of finished runs are kept: the body of `PUT /api/v1/settings/retention`
/// and the answer of both retention routes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionView {
    /// Days after a run ended (DONE, FAILED or STOPPED) that its items are deleted; the run and
    /// its counters stay. 0 keeps them forever.
    #[schema(minimum = 0, maximum = 36500, example = 30)]
    pub purge_items_after_days: u32,
}

impl From<dth_runtime::Retention> for RetentionView {
    fn from(r: dth_runtime::Retention) -> Self {
        RetentionView {
            purge_items_after_days: r.purge_items_after_days,
        }
    }
}

/// How long the items of finished runs are kept (default 30 days).
#[utoipa::path(get, path = "/api/v1/settings/retention", tag = "settings",
    responses(
        (status = 200, description = "The retention", body = RetentionView),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn retention(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<RetentionView>, ApiError> {
    Ok(Json(state.hub.retention(&actor).await?.into()))
}

/// Changes how long the items of finished runs are kept (admin). The hub's leader purges every
/// hour the items of runs that ended more than that many days ago.
#[utoipa::path(put, path = "/api/v1/settings/retention", tag = "settings",
    request_body = RetentionView,
    responses(
        (status = 200, description = "Stored", body = RetentionView),
        (status = 400, description = "Malformed body, or more than 36500 days; nothing changed", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn put_retention(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<RetentionView>, ApiError> {
    Ok(Json(state.hub.put_retention(&actor, &body).await?.into()))
}

/// The body of `POST /api/v1/settings/smtp/test` (for the OpenAPI document; the hub reads it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct TestMailRequest {
    /// Where to send it.
    #[schema(
        min_length = 3,
        max_length = 254,
        example = "ops@example.com",
        pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+$"
    )]
    to: String,
}

/// How a test mail went.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TestMailResult {
    /// Whether the SMTP server took it.
    pub sent: bool,
    /// What happened (the server's refusal, or that none is configured).
    pub message: String,
}

/// Sends a test mail through the SMTP server alarms use (admin). A refusal is answered with
/// `sent: false` and the reason.
#[utoipa::path(post, path = "/api/v1/settings/smtp/test", tag = "settings",
    request_body = TestMailRequest,
    responses(
        (status = 200, description = "Tried", body = TestMailResult),
        (status = 400, description = "Malformed body or address", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn test_mail(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<TestMailResult>, ApiError> {
    let (to, sent) = state.hub.test_mail(&actor, &body).await?;
    Ok(Json(match sent {
        Ok(()) => TestMailResult {
            sent: true,
            message: format!("sent to {to}"),
        },
        Err(message) => TestMailResult {
            sent: false,
            message,
        },
    }))
}
