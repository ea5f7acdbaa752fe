//! The secrets pages: the list (`GET /secrets`: every secret by name and kind, its times and the
//! tasks that use it; viewers read), one secret (`GET /secrets/{name}`), and for operators the
//! changes: create (`POST /secrets`), replace the value (`POST /secrets/{name}`) and delete
//! (`POST /secrets/{name}/delete`; the hub refuses a secret a task uses and says which).
//!
//! A value goes one way only: from the form to the hub. No page shows one or puts one back into
//! a field, not even after a failed submit (only the name and the kind are kept).

use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::context;
use serde::Deserialize;
use serde_json::{Value, json};

use super::i18n::text;
use super::render::Page;
use crate::views::SecretView;
use crate::{ApiError, AppState};

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/secrets", get(list).post(create))
        .route("/secrets/{name}", get(one).post(replace))
        .route("/secrets/{name}/delete", post(delete))
}

/// The create and replace form. `Debug` is not derived: it holds key material.
#[derive(Deserialize)]
pub struct SecretForm {
    /// The name (create only; a replace takes it from the path).
    #[serde(default)]
    name: String,
    /// `access_key` or `registry_login`.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    secret_access_key: String,
    #[serde(default)]
    session_token: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

impl SecretForm {
    /// The JSON the hub reads (`PUT /api/v1/secrets/{name}`'s body), of the chosen kind.
    fn value(&self) -> Value {
        if self.kind == "registry_login" {
            json!({ "username": self.username.trim(), "password": self.password })
        } else {
            let mut v = json!({
                "access_key_id": self.access_key_id.trim(),
                "secret_access_key": self.secret_access_key,
            });
            if !self.session_token.is_empty() {
                v["session_token"] = json!(self.session_token);
            }
            v
        }
    }

    /// The kind to show the form in again.
    fn kind(&self) -> &str {
        if self.kind == "registry_login" {
            "registry_login"
        } else {
            "access_key"
        }
    }
}

/// A failed submit: the message and the field it is about (`name`, `access_key_id`…, or
/// `form` when none). Never holds a value.
struct FormError {
    field: &'static str,
    message: String,
}

impl FormError {
    /// The hub's message, placed by the field it starts with.
    fn of(message: &str) -> FormError {
        const FIELDS: [&str; 6] = [
            "name",
            "access_key_id",
            "secret_access_key",
            "session_token",
            "username",
            "password",
        ];
        let field = FIELDS
            .into_iter()
            .find(|f| message.starts_with(&format!("{f}:")))
            .unwrap_or("form");
        FormError {
            field,
            message: message.to_string(),
        }
    }
}

/// The secrets, as the API lists them.
async fn secrets(page: &Page) -> Result<Vec<SecretView>, Response> {
    page.state
        .hub
        .list_secrets(&page.actor)
        .await
        .map(|s| s.into_iter().map(SecretView::from).collect())
        .map_err(|e| page.fail(e))
}

/// Renders the list with the create form (its name and kind kept, an error by its field).
async fn list_view(
    page: &Page,
    name: &str,
    kind: &str,
    error: Option<FormError>,
    status: StatusCode,
) -> Response {
    let secrets = match secrets(page).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (error_field, error) = error.map_or((None, None), |e| (Some(e.field), Some(e.message)));
    let mut r = page.render(
        "admin/secrets.html",
        "secrets",
        context! { secrets, name, kind, error_field, error },
    );
    *r.status_mut() = status;
    if status != StatusCode::OK {
        r.headers_mut()
            .insert("hx-replace-url", HeaderValue::from_static("/secrets"));
    }
    r
}

/// `GET /secrets`.
async fn list(page: Page) -> Response {
    list_view(&page, "", "access_key", None, StatusCode::OK).await
}

/// `POST /secrets`: a new secret. A name already taken is refused (replacing is its own action).
async fn create(page: Page, Form(form): Form<SecretForm>) -> Response {
    let name = form.name.trim().to_string();
    let taken = match secrets(&page).await {
        Ok(s) => s.iter().any(|s| s.name == name),
        Err(r) => return r,
    };
    if taken {
        let e = FormError {
            field: "name",
            message: text(page.lang, "secrets.taken", &[("name", name.clone())]),
        };
        return list_view(&page, &name, form.kind(), Some(e), StatusCode::CONFLICT).await;
    }
    match page
        .state
        .hub
        .put_secret(&page.actor, &name, &form.value())
        .await
    {
        Ok(()) => page.redirect(&format!("/secrets/{}", super::render::urlencode(&name))),
        Err(e) => {
            let e = ApiError::from(e);
            if e.status() == StatusCode::BAD_REQUEST {
                let error = FormError::of(e.message());
                list_view(&page, &name, form.kind(), Some(error), e.status()).await
            } else {
                page.fail(e)
            }
        }
    }
}

/// Renders one secret: its facts, the tasks using it, and for operators the replace form and
/// the delete button.
async fn one_view(
    page: &Page,
    name: &str,
    kind: Option<&str>,
    replaced: bool,
    error: Option<FormError>,
    status: StatusCode,
) -> Response {
    let secrets = match secrets(page).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(secret) = secrets.into_iter().find(|s| s.name == name) else {
        return page.fail(ApiError::not_found(format!("secret {name} not found")));
    };
    let kind = kind
        .map(str::to_string)
        .or_else(|| secret.kind.clone())
        .unwrap_or_else(|| "access_key".into());
    let (error_field, error) = error.map_or((None, None), |e| (Some(e.field), Some(e.message)));
    let mut r = page.render(
        "admin/secret.html",
        "secrets",
        context! { secret, kind, replaced, error_field, error },
    );
    *r.status_mut() = status;
    if status != StatusCode::OK
        && let Ok(url) =
            HeaderValue::from_str(&format!("/secrets/{}", super::render::urlencode(name)))
    {
        r.headers_mut().insert("hx-replace-url", url);
    }
    r
}

/// `?replaced=1` of a secret's page, after a new value was stored.
#[derive(Debug, Default, Deserialize)]
pub struct OneQuery {
    #[serde(default)]
    replaced: Option<String>,
}

/// `GET /secrets/{name}`.
async fn one(page: Page, Path(name): Path<String>, Query(q): Query<OneQuery>) -> Response {
    let replaced = q.replaced.is_some();
    one_view(&page, &name, None, replaced, None, StatusCode::OK).await
}

/// `POST /secrets/{name}`: a new value for the secret (of either kind).
async fn replace(page: Page, Path(name): Path<String>, Form(form): Form<SecretForm>) -> Response {
    let exists = match secrets(&page).await {
        Ok(s) => s.iter().any(|s| s.name == name),
        Err(r) => return r,
    };
    if !exists {
        return page.fail(ApiError::not_found(format!("secret {name} not found")));
    }
    match page
        .state
        .hub
        .put_secret(&page.actor, &name, &form.value())
        .await
    {
        Ok(()) => page.redirect(&format!(
            "/secrets/{}?replaced=1",
            super::render::urlencode(&name)
        )),
        Err(e) => {
            let e = ApiError::from(e);
            if e.status() == StatusCode::BAD_REQUEST {
                let error = FormError::of(e.message());
                one_view(
                    &page,
                    &name,
                    Some(form.kind()),
                    false,
                    Some(error),
                    e.status(),
                )
                .await
            } else {
                page.fail(e)
            }
        }
    }
}

/// `POST /secrets/{name}/delete`: gone, back to the list; a secret in use stays, and its page
/// says which tasks use it.
async fn delete(page: Page, Path(name): Path<String>) -> Response {
    match page.state.hub.delete_secret(&page.actor, &name).await {
        Ok(true) => page.redirect("/secrets"),
        Ok(false) => page.fail(ApiError::not_found(format!("secret {name} not found"))),
        Err(e) => {
            let e = ApiError::from(e);
            if e.status() == StatusCode::CONFLICT {
                let error = FormError {
                    field: "delete",
                    message: e.message().to_string(),
                };
                one_view(&page, &name, None, false, Some(error), e.status()).await
            } else {
                page.fail(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portal::i18n::CATALOG;

    #[test]
    fn errors_go_by_their_field_and_strings_are_in_the_catalog() {
        assert_eq!(
            FormError::of("access_key_id: must not be empty").field,
            "access_key_id"
        );
        assert_eq!(
            FormError::of("name: \"a b\" is not a valid secret name").field,
            "name"
        );
        assert_eq!(
            FormError::of("invalid access key: missing field").field,
            "form"
        );
        assert!(CATALOG.contains_key("secrets.taken"));
        let form = SecretForm {
            name: "k".into(),
            kind: "access_key".into(),
            access_key_id: " AKIA ".into(),
            secret_access_key: "s".into(),
            session_token: String::new(),
            username: "ignored".into(),
            password: String::new(),
        };
        assert_eq!(
            form.value(),
            json!({"access_key_id": "AKIA", "secret_access_key": "s"})
        );
    }
}
