//! API tokens of the caller: create (shown once), list with their last use, revoke. Admins list
//! everyone's with `?all=true` and may revoke any.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use dth_model::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiJson, ApiQuery};
use crate::views::TokenView;
use crate::{ApiError, AppState, ErrorBody};

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// A name saying what uses it (`ci`, `backup-cron`; not only spaces).
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub name: String,
    /// Its role, at most yours (default: yours).
    pub role: Option<Role>,
    /// Days until it expires (1 to 3650); absent: never.
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(default, deserialize_with = "crate::error::whole_numbers")]
    pub expires_in_days: Option<u32>,
}

/// A new token, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// Send as `Authorization: Bearer <token>`; it is stored hashed and cannot be shown again.
    pub token: String,
    /// Its metadata.
    pub info: TokenView,
}

/// `?all=` of `GET /api/v1/tokens`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokensQuery {
    /// Every user's tokens (admin).
    pub all: Option<bool>,
}

/// Creates a token for your account.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens",
    request_body = NewTokenRequest,
    responses((status = 201, description = "Created; the token is shown this once", body = CreatedToken),
              (status = 400, description = "Bad name or expiry", body = ErrorBody),
              (status = 403, description = "A role above yours", body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<NewTokenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let shown = state
        .hub
        .create_token(&actor, &body.name, body.role, body.expires_in_days)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: shown.secret,
            info: shown.value.into(),
        }),
    ))
}

/// Your tokens (or everyone's with `?all=true`, admin), newest first.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    params(TokensQuery),
    responses((status = 200, description = "The tokens", body = Vec<TokenView>)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(q): ApiQuery<TokensQuery>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let tokens = state
        .hub
        .list_tokens(&actor, q.all.unwrap_or(false))
        .await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

/// Revokes a token (yours, or any for an admin); it stops working at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"),
              (status = 404, description = "No such token of yours", body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.hub.revoke_token(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
