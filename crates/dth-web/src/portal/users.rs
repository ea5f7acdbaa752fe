//! The users pages (admin): the list (`GET /users`: email, name, role, state, last sign-in) with
//! the invite form (`POST /users`: the temporary password is shown once), and one user
//! (`GET /users/{id}`) with its actions: change the role, disable or enable, unlock, reset the
//! password (shown once), delete. The hub checks the role and refuses to remove the last admin;
//! its message is shown on the page.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use dth_model::Role;
use dth_runtime::access::UserEdit;
use minijinja::{Value, context};
use serde::Deserialize;

use super::render::Page;
use crate::views::UserView;
use crate::{ApiError, AppState};

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(invite))
        .route("/users/{id}", get(one))
        .route("/users/{id}/role", post(set_role))
        .route("/users/{id}/state", post(set_state))
        .route("/users/{id}/unlock", post(unlock))
        .route("/users/{id}/reset-password", post(reset_password))
        .route("/users/{id}/delete", post(delete))
}

/// The invite form.
#[derive(Debug, Default, Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

/// The role form.
#[derive(Debug, Deserialize)]
pub struct RoleForm {
    role: String,
}

/// The state form: `active` or `disabled`.
#[derive(Debug, Deserialize)]
pub struct StateForm {
    state: String,
}

/// The roles, lowest first, for the selects.
fn roles() -> Vec<&'static str> {
    Role::ALL.iter().map(|r| r.name()).collect()
}

/// A re-rendered page after a post: its status, and the address bar set to `url` (the form's
/// action is not a page).
fn answered(mut r: Response, status: StatusCode, url: &str) -> Response {
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(url) {
        r.headers_mut().insert("hx-replace-url", v);
    }
    r
}

/// Renders the list with the invite form (its values kept, an error by its field).
async fn list_view(
    page: &Page,
    form: &InviteForm,
    error: Option<(&str, String)>,
    status: StatusCode,
) -> Response {
    let users: Vec<UserView> = match page.state.hub.list_users(&page.actor).await {
        Ok(u) => u.into_iter().map(UserView::from).collect(),
        Err(e) => return page.fail(e),
    };
    let (error_field, error) = error.map_or((None, None), |(f, m)| (Some(f.to_string()), Some(m)));
    let role = if form.role.is_empty() {
        "viewer"
    } else {
        &form.role
    };
    let r = page.render(
        "admin/users.html",
        "users",
        context! {
            users,
            roles => roles(),
            form => context! { email => form.email, name => form.name, role },
            error_field,
            error,
        },
    );
    answered(r, status, "/users")
}

/// `GET /users`.
async fn list(page: Page) -> Response {
    list_view(&page, &InviteForm::default(), None, StatusCode::OK).await
}

/// `POST /users`: an invitation; the new user's page shows the temporary password once.
async fn invite(page: Page, Form(form): Form<InviteForm>) -> Response {
    if let Err(e) = page.state.hub.may_manage_users(&page.actor) {
        return page.fail(e);
    }
    let role = match form.role.parse::<Role>() {
        Ok(r) => r,
        Err(m) => {
            let error = Some(("role", format!("role: {m}")));
            return list_view(&page, &form, error, StatusCode::BAD_REQUEST).await;
        }
    };
    match page
        .state
        .hub
        .invite_user(&page.actor, &form.email, &form.name, role)
        .await
    {
        Ok(shown) => {
            let user = UserView::from(shown.value);
            let once = context! { kind => "invited", secret => shown.secret };
            user_view(&page, user, Some(once), None, StatusCode::CREATED)
        }
        Err(e) => {
            let e = ApiError::from(e);
            let field = if e.message().starts_with("name:") {
                "name"
            } else {
                "email"
            };
            match e.status() {
                StatusCode::BAD_REQUEST | StatusCode::CONFLICT => {
                    let error = Some((field, e.message().to_string()));
                    list_view(&page, &form, error, e.status()).await
                }
                _ => page.fail(e),
            }
        }
    }
}

/// Renders one user: facts, actions, and a temporary password shown once (`once`) or the
/// hub's refusal (`error`).
fn user_view(
    page: &Page,
    user: UserView,
    once: Option<Value>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let url = format!("/users/{}", user.id);
    let is_me = page.actor.user_id.as_deref() == Some(user.id.as_str());
    let r = page.render(
        "admin/user.html",
        "users",
        context! { user, roles => roles(), once, error, is_me },
    );
    answered(r, status, &url)
}

/// One user as the API shows it.
async fn user(page: &Page, id: &str) -> Result<UserView, Response> {
    page.state
        .hub
        .get_user(&page.actor, id)
        .await
        .map(UserView::from)
        .map_err(|e| page.fail(e))
}

/// After an action on a user: their page again, or the page with the hub's refusal (409, the
/// last admin) next to the actions.
async fn after(
    page: &Page,
    id: &str,
    result: Result<dth_store::User, dth_runtime::Error>,
) -> Response {
    match result {
        Ok(_) => page.redirect(&format!("/users/{id}")),
        Err(e) => {
            let e = ApiError::from(e);
            if e.status() != StatusCode::CONFLICT {
                return page.fail(e);
            }
            match user(page, id).await {
                Ok(u) => user_view(page, u, None, Some(e.message().to_string()), e.status()),
                Err(r) => r,
            }
        }
    }
}

/// `GET /users/{id}`.
async fn one(page: Page, Path(id): Path<String>) -> Response {
    match user(&page, &id).await {
        Ok(u) => user_view(&page, u, None, None, StatusCode::OK),
        Err(r) => r,
    }
}

/// `POST /users/{id}/role`.
async fn set_role(page: Page, Path(id): Path<String>, Form(form): Form<RoleForm>) -> Response {
    if let Err(e) = page.state.hub.may_manage_users(&page.actor) {
        return page.fail(e);
    }
    let role = match form.role.parse::<Role>() {
        Ok(r) => r,
        Err(m) => return page.fail(ApiError::bad_request(format!("role: {m}"))),
    };
    let edit = UserEdit {
        role: Some(role),
        ..UserEdit::default()
    };
    let result = page.state.hub.edit_user(&page.actor, &id, edit).await;
    after(&page, &id, result).await
}

/// `POST /users/{id}/state`: `active` or `disabled` (disabling ends their sessions).
async fn set_state(page: Page, Path(id): Path<String>, Form(form): Form<StateForm>) -> Response {
    if let Err(e) = page.state.hub.may_manage_users(&page.actor) {
        return page.fail(e);
    }
    let disabled = match form.state.as_str() {
        "active" => false,
        "disabled" => true,
        other => {
            return page.fail(ApiError::bad_request(format!(
                "state: {other:?} is not active or disabled"
            )));
        }
    };
    let edit = UserEdit {
        disabled: Some(disabled),
        ..UserEdit::default()
    };
    let result = page.state.hub.edit_user(&page.actor, &id, edit).await;
    after(&page, &id, result).await
}

/// `POST /users/{id}/unlock`.
async fn unlock(page: Page, Path(id): Path<String>) -> Response {
    let result = page.state.hub.unlock_user(&page.actor, &id).await;
    after(&page, &id, result).await
}

/// `POST /users/{id}/reset-password`: a new temporary password, shown once.
async fn reset_password(page: Page, Path(id): Path<String>) -> Response {
    match page.state.hub.reset_password(&page.actor, &id).await {
        Ok(shown) => {
            let once = context! { kind => "reset", secret => shown.secret };
            user_view(&page, shown.value.into(), Some(once), None, StatusCode::OK)
        }
        Err(e) => page.fail(e),
    }
}

/// `POST /users/{id}/delete`: the user with their sessions and tokens; then the list.
async fn delete(page: Page, Path(id): Path<String>) -> Response {
    match page.state.hub.delete_user(&page.actor, &id).await {
        Ok(()) => page.redirect("/users"),
        Err(e) => after(&page, &id, Err(e)).await,
    }
}
