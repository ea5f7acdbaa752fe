//! Secrets: access keys (object tasks) and registry logins (image tasks) stored encrypted under a
//! name that task specs refer to (`{"kind": "secret", "name": …}`). Write-only: no endpoint
//! returns a value.

use std::fmt;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiJson;
use crate::views::SecretView;
use crate::{ApiError, AppState, ErrorBody};

/// An access key to store. `Debug` shows only the key id.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretBody {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    #[serde(default)]
    pub session_token: Option<String>,
}

impl fmt::Debug for SecretBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBody")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[REDACTED]")
            .finish()
    }
}

/// A registry login to store. `Debug` shows only the user.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryLoginBody {
    /// User name (`AWS`, `_json_key`, a robot account…).
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl fmt::Debug for RegistryLoginBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryLoginBody")
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

/// The body of `PUT /api/v1/secrets/{name}`: an access key, or a registry login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum SecretValue {
    /// For object tasks.
    AccessKey(SecretBody),
    /// For image tasks.
    RegistryLogin(RegistryLoginBody),
}

/// Checks a secret name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "name: {name:?} is not a valid secret name; use 1 to 64 letters, digits, '.', '_' or '-'"
        )))
    }
}

/// Stores an access key or a registry login under a name (replacing one of the same name).
#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name: 1 to 64 of A-Z a-z 0-9 . _ -")),
    request_body = SecretValue,
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "Bad name or body", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    check_name(&name)?;
    let value = secret_value(body)?;
    state.hub.store().put_secret(&name, &value).await?;
    tracing::info!(secret = %name, "secret stored");
    Ok(StatusCode::NO_CONTENT)
}

/// Checks a secret's body, the shape chosen by its fields (`username` makes it a registry
/// login); the stored bytes are its JSON.
fn secret_value(body: serde_json::Value) -> Result<Vec<u8>, ApiError> {
    let bad =
        |what: &str, e: serde_json::Error| ApiError::bad_request(format!("invalid {what}: {e}"));
    if body.get("username").is_some() {
        let login: RegistryLoginBody =
            serde_json::from_value(body).map_err(|e| bad("registry login", e))?;
        if login.username.trim().is_empty() {
            return Err(ApiError::bad_request("username: must not be empty"));
        }
        if login.password.is_empty() {
            return Err(ApiError::bad_request("password: must not be empty"));
        }
        return serde_json::to_vec(&login).map_err(ApiError::internal);
    }
    let key: SecretBody = serde_json::from_value(body).map_err(|e| bad("access key", e))?;
    if key.access_key_id.trim().is_empty() {
        return Err(ApiError::bad_request("access_key_id: must not be empty"));
    }
    if key.secret_access_key.is_empty() {
        return Err(ApiError::bad_request(
            "secret_access_key: must not be empty",
        ));
    }
    serde_json::to_vec(&key).map_err(ApiError::internal)
}

/// Names and times of the stored secrets.
#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets",
    responses((status = 200, description = "The secrets (no values)", body = Vec<SecretView>)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<SecretView>>, ApiError> {
    let secrets = state.hub.store().list_secrets().await?;
    Ok(Json(secrets.into_iter().map(SecretView::from).collect()))
}

/// Deletes a secret no task refers to.
#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such secret", body = ErrorBody),
        (status = 409, description = "A task uses the secret", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_name(&name)?;
    if state.hub.delete_secret(&name).await? {
        tracing::info!(secret = %name, "secret deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("secret {name} not found")))
    }
}
