//! Users (admin): invite (a temporary password shown once), list, read, change name, role or
//! state, reset the password, unlock after failed sign-ins, delete. The last admin stays.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use dth_model::Role;
use dth_runtime::access::UserEdit;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiJson;
use crate::views::UserView;
use crate::{ApiError, AppState, ErrorBody};

/// The body of `POST /api/v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    /// Email (the sign-in name).
    #[schema(
        max_length = 254,
        pattern = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub email: String,
    /// Name for people (not only spaces).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// Role.
    pub role: Role,
}

/// A user with a temporary password, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserWithPassword {
    /// The user.
    pub user: UserView,
    /// Give it to the user; it must be changed at the first sign-in.
    pub temporary_password: String,
}

/// The body of `PATCH /api/v1/users/{id}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// New name (not only spaces).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    /// New role.
    pub role: Option<Role>,
    /// `active` or `disabled`.
    #[schema(pattern = "^(active|disabled)$")]
    pub state: Option<String>,
}

/// Every user.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, description = "The users", body = Vec<UserView>),
              (status = 403, description = "Not an admin", body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    let users = state.hub.list_users(&actor).await?;
    Ok(Json(users.into_iter().map(UserView::from).collect()))
}

/// Invites a user: the account gets a temporary password, answered once.
#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    request_body = NewUserRequest,
    responses((status = 201, description = "Created", body = UserWithPassword),
              (status = 400, description = "Bad email, name or role", body = ErrorBody),
              (status = 403, description = "Not an admin", body = ErrorBody),
              (status = 409, description = "The email is taken", body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<impl IntoResponse, ApiError> {
    state.hub.may_manage_users(&actor)?;
    let body: NewUserRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    let shown = state
        .hub
        .invite_user(&actor, &body.email, &body.name, body.role)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(UserWithPassword {
            user: shown.value.into(),
            temporary_password: shown.secret,
        }),
    ))
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The user", body = UserView),
              (status = 404, description = "No such user", body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(state.hub.get_user(&actor, &id).await?.into()))
}

/// Changes a user's name, role or state (`active`, `disabled`: disabling ends their sessions).
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    request_body = UserPatch,
    responses((status = 200, description = "Changed", body = UserView),
              (status = 409, description = "The last admin cannot be demoted or disabled", body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<UserView>, ApiError> {
    state.hub.may_manage_users(&actor)?;
    let patch: UserPatch = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    let disabled = match patch.state.as_deref() {
        None => None,
        Some("active") => Some(false),
        Some("disabled") => Some(true),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state: {other:?} is not active or disabled"
            )));
        }
    };
    let edit = UserEdit {
        name: patch.name,
        role: patch.role,
        disabled,
    };
    Ok(Json(state.hub.edit_user(&actor, &id, edit).await?.into()))
}

/// Gives a user a new temporary password (answered once); their sessions end.
#[utoipa::path(post, path = "/api/v1/users/{id}/reset-password", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "The new temporary password", body = UserWithPassword)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn reset_password(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<UserWithPassword>, ApiError> {
    let shown = state.hub.reset_password(&actor, &id).await?;
    Ok(Json(UserWithPassword {
        user: shown.value.into(),
        temporary_password: shown.secret,
    }))
}

/// Lifts the lock of an account after failed sign-ins.
#[utoipa::path(post, path = "/api/v1/users/{id}/unlock", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "Unlocked", body = UserView)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn unlock(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(state.hub.unlock_user(&actor, &id).await?.into()))
}

/// Deletes a user with their sessions and tokens (never the last admin).
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "Deleted"),
              (status = 409, description = "The last admin", body = ErrorBody)),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.hub.delete_user(&actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
