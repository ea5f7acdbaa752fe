//! Secrets: access keys (object tasks) and registry logins (image tasks) stored encrypted under a
//! name that task specs refer to (`{"kind": "secret", "name": …}`). Write-only: no endpoint
//! returns a value.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::auth::Caller;
use crate::error::ApiJson;
use crate::views::SecretView;
use crate::{ApiError, AppState, ErrorBody};

/// Stores an access key or a registry login under a name (replacing one of the same name).
#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name: 1 to 64 of A-Z a-z 0-9 . _ -",
        pattern = "^[A-Za-z0-9._-]{1,64}$")),
    request_body = dth_model::SecretValue,
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "Bad name or body", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn put(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    state.hub.put_secret(&actor, &name, &body).await?;
    tracing::info!(secret = %name, "secret stored");
    Ok(StatusCode::NO_CONTENT)
}

/// The stored secrets: names, kinds, times and the tasks that use each (viewer).
#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets",
    responses((status = 200, description = "The secrets (no values)", body = Vec<SecretView>)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<Vec<SecretView>>, ApiError> {
    let secrets = state.hub.list_secrets(&actor).await?;
    Ok(Json(secrets.into_iter().map(SecretView::from).collect()))
}

/// Deletes a secret no task refers to.
#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name", pattern = "^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad name", body = ErrorBody),
        (status = 404, description = "No such secret", body = ErrorBody),
        (status = 409, description = "A task uses the secret", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.hub.delete_secret(&actor, &name).await? {
        tracing::info!(secret = %name, "secret deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("secret {name} not found")))
    }
}
