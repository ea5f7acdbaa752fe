//! The profile page (`GET /profile`, everyone): one's own account (email, name, role, how one
//! signed in) with a link to the password change, the language the portal speaks
//! (`POST /profile/language`: stored with the account; the page reloads in it at once), and one's
//! API tokens: the list, a new one (`POST /profile/tokens`: shown once) and revoking
//! (`POST /profile/tokens/{id}/revoke`). The same hub calls as `GET /api/v1/me`,
//! `PUT /api/v1/me/language` and `/api/v1/tokens`.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use dth_model::{AuthMethod, Role};
use minijinja::{Value, context};
use serde::Deserialize;

use super::i18n::Lang;
use super::render::{Page, is_htmx};
use crate::views::{TokenView, UserView};
use crate::{ApiError, AppState};

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/profile", get(show))
        .route("/profile/language", post(set_language))
        .route("/profile/tokens", post(create_token))
        .route("/profile/tokens/{id}/revoke", post(revoke_token))
}

/// The lifetimes a new token may be given, in days (`None`: never expires).
const EXPIRIES: [Option<u32>; 5] = [Some(7), Some(30), Some(90), Some(365), None];

/// The language form: a tag of [`Lang::ALL`], or empty to follow the browser.
#[derive(Debug, Deserialize)]
pub struct LanguageForm {
    #[serde(default)]
    language: String,
}

/// The new token form.
#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    /// Days, or `never`.
    #[serde(default)]
    expires: String,
}

/// What the page shows besides the account: a new token once, or the form's error.
#[derive(Default)]
struct Notes {
    token: Option<Value>,
    form: TokenForm,
    error: Option<(&'static str, String)>,
    language_error: Option<String>,
}

/// Renders the page.
async fn view(page: &Page, notes: Notes, status: StatusCode) -> Response {
    let hub = &page.state.hub;
    let user = match hub.me(&page.actor).await {
        Ok(u) => u.map(UserView::from),
        Err(e) => return page.fail(e),
    };
    let tokens: Vec<TokenView> = match hub.list_tokens(&page.actor, false).await {
        Ok(t) => t.into_iter().map(TokenView::from).collect(),
        Err(e) => return page.fail(e),
    };
    let method = match page.actor.method {
        AuthMethod::Oidc { .. } => "oidc",
        _ => "password",
    };
    let roles: Vec<&str> = Role::ALL
        .iter()
        .filter(|r| **r <= page.actor.role)
        .map(|r| r.name())
        .collect();
    let role = if notes.form.role.is_empty() {
        page.actor.role.name()
    } else {
        &notes.form.role
    };
    let expires = if notes.form.expires.is_empty() {
        "90"
    } else {
        &notes.form.expires
    };
    let (error_field, error) = notes
        .error
        .map_or((None, None), |(f, m)| (Some(f), Some(m)));
    let language = user
        .as_ref()
        .and_then(|u| u.language.as_deref())
        .and_then(Lang::from_tag);
    let mut r = page.render(
        "profile.html",
        "profile",
        context! {
            user,
            method,
            language => language.map(|l| l.tag()),
            browser_language => super::render::browser_lang(&page.headers).native_name(),
            tokens,
            now => dth_store::now_ms(),
            roles,
            expiries => EXPIRIES.iter().map(|d| d.map_or_else(|| "never".to_string(), |d| d.to_string())).collect::<Vec<_>>(),
            form => context! { name => notes.form.name, role, expires },
            token => notes.token,
            error_field,
            error,
            language_error => notes.language_error,
        },
    );
    *r.status_mut() = status;
    // After a post the address bar shows the page, not the form's action.
    r.headers_mut()
        .insert("hx-replace-url", HeaderValue::from_static("/profile"));
    r
}

/// `GET /profile`.
async fn show(page: Page) -> Response {
    view(&page, Notes::default(), StatusCode::OK).await
}

/// `POST /profile/language`: stores the choice; the page reloads in the new language.
async fn set_language(page: Page, Form(form): Form<LanguageForm>) -> Response {
    let tag = match form.language.trim() {
        "" => None,
        t => match Lang::from_tag(t) {
            Some(l) => Some(l.tag()),
            None => {
                let notes = Notes {
                    language_error: Some(format!(
                        "language: {t:?} is not one the portal speaks (en, zh-CN)"
                    )),
                    ..Notes::default()
                };
                return view(&page, notes, StatusCode::BAD_REQUEST).await;
            }
        },
    };
    match page.state.hub.set_language(&page.actor, tag).await {
        Ok(_) if is_htmx(&page.headers) => {
            let mut r = ().into_response();
            r.headers_mut()
                .insert("hx-refresh", HeaderValue::from_static("true"));
            r
        }
        Ok(_) => page.redirect("/profile"),
        Err(e) => page.fail(e),
    }
}

/// `POST /profile/tokens`: a new token of one's own, shown this once.
async fn create_token(page: Page, Form(form): Form<TokenForm>) -> Response {
    let role = match form.role.parse::<Role>() {
        Ok(r) => r,
        Err(m) => {
            let notes = Notes {
                error: Some(("token-role", format!("role: {m}"))),
                form,
                ..Notes::default()
            };
            return view(&page, notes, StatusCode::BAD_REQUEST).await;
        }
    };
    let days = match form.expires.as_str() {
        "never" => None,
        d => match d.parse::<u32>() {
            Ok(d) => Some(d),
            Err(_) => {
                let notes = Notes {
                    error: Some((
                        "token-expires",
                        format!("expires_in_days: {d:?} is not a number of days"),
                    )),
                    form,
                    ..Notes::default()
                };
                return view(&page, notes, StatusCode::BAD_REQUEST).await;
            }
        },
    };
    match page
        .state
        .hub
        .create_token(&page.actor, &form.name, Some(role), days)
        .await
    {
        Ok(shown) => {
            let info = TokenView::from(shown.value);
            let notes = Notes {
                token: Some(context! { name => info.name, secret => shown.secret }),
                ..Notes::default()
            };
            view(&page, notes, StatusCode::CREATED).await
        }
        Err(e) => {
            let e = ApiError::from(e);
            let field = if e.message().starts_with("name:") {
                "token-name"
            } else if e.message().starts_with("expires_in_days:") {
                "token-expires"
            } else {
                "token-role"
            };
            // Bad input, or a role above one's own: the form's error; anything else, the
            // error page.
            let about_the_form = e.status() == StatusCode::BAD_REQUEST
                || (e.status() == StatusCode::FORBIDDEN && e.message().starts_with("role:"));
            if !about_the_form {
                return page.fail(e);
            }
            let notes = Notes {
                error: Some((field, e.message().to_string())),
                form,
                ..Notes::default()
            };
            view(&page, notes, e.status()).await
        }
    }
}

/// `POST /profile/tokens/{id}/revoke`: the token stops working at once.
async fn revoke_token(page: Page, Path(id): Path<String>) -> Response {
    match page.state.hub.revoke_token(&page.actor, &id).await {
        Ok(()) => page.redirect("/profile#tokens"),
        Err(e) => page.fail(e),
    }
}
