//! Signing in and out: the sign-in page (`GET /signin`: the email and password form, and "Sign in
//! with …" when an OpenID Connect provider is configured), its form post (`POST /signin`), the
//! forced password change after a temporary password (`GET`/`POST /password`), and sign-out
//! (`POST /signout`). The same hub calls as the JSON API's session routes.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use minijinja::context;
use serde::Deserialize;

use super::i18n::Lang;
use super::render::{Page, redirect, render_html, visitor_lang};
use crate::auth::{Authenticated, ClientAddr, cookies, csrf};
use crate::{ApiError, AppState};

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin", get(page).post(sign_in))
        .route("/password", get(password_page).post(change_password))
        .route("/signout", post(sign_out))
}

/// The query of the sign-in page.
#[derive(Debug, Default, Deserialize)]
pub struct SignInQuery {
    /// Where to go once signed in (a path of this hub).
    #[serde(default)]
    next: Option<String>,
    /// The page's language, when the visitor picked one.
    #[serde(default)]
    lang: Option<String>,
}

/// The sign-in form. `Debug` is not derived: it holds a password.
#[derive(Deserialize)]
pub struct SignInForm {
    email: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    lang: Option<String>,
}

/// A path of this hub to go to after signing in; anything else (another site, `//host`) is `/`.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.starts_with("/\\") => {
            p.to_string()
        }
        _ => "/".into(),
    }
}

/// Renders the sign-in page.
fn sign_in_view(
    state: &AppState,
    lang: Lang,
    next: &str,
    email: &str,
    error: Option<String>,
) -> Response {
    let oidc = state.web.oidc.as_ref().map(|o| o.name().to_string());
    render_html(
        "signin.html",
        context! {
            lang => lang.tag(),
            other_lang => Lang::ALL.iter().find(|l| **l != lang).map(|l| context!{ tag => l.tag(), name => l.native_name() }),
            next => next,
            email => email,
            error => error,
            oidc_name => oidc,
            version => env!("CARGO_PKG_VERSION"),
        },
    )
}

/// `GET /signin`: the sign-in page; someone already signed in goes on to `next`.
async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    auth: Option<Extension<Authenticated>>,
    Query(q): Query<SignInQuery>,
) -> Response {
    let next = local_path(q.next.as_deref());
    if auth.is_some_and(|a| a.session.is_some()) {
        return redirect(&headers, &next);
    }
    let lang = visitor_lang(&headers, q.lang.as_deref());
    sign_in_view(&state, lang, &next, "", None)
}

/// `POST /signin`: signs in with the form's email and password, sets the session cookie and goes
/// on to `next` (or to the password change first, for a temporary password).
async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Extension(client): Extension<ClientAddr>,
    Form(form): Form<SignInForm>,
) -> Response {
    let lang = visitor_lang(&headers, form.lang.as_deref());
    let next = local_path(form.next.as_deref());
    let fail = |status: StatusCode, message: String| {
        let mut r = sign_in_view(&state, lang, &next, &form.email, Some(message));
        *r.status_mut() = status;
        r
    };
    if let Err(why) = csrf::check_origin(&headers, &state.web.public_origin) {
        return fail(StatusCode::FORBIDDEN, why.to_string());
    }
    match state
        .hub
        .sign_in(&form.email, &form.password, &client.0)
        .await
    {
        Ok(s) => {
            let cookie =
                cookies::session_cookie(&s.session_id, s.expires_at, state.web.secure_cookies);
            let to = if s.user.must_change_password {
                format!("/password?next={}", super::render::urlencode(&next))
            } else {
                next.clone()
            };
            let mut r = redirect(&headers, &to);
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
        Err(e) => {
            let e = ApiError::from(e);
            let message = match e.status() {
                StatusCode::UNAUTHORIZED => t(lang, "signin.wrong"),
                _ => e.message().to_string(),
            };
            fail(e.status(), message)
        }
    }
}

/// A catalog string outside a template.
fn t(lang: Lang, key: &str) -> String {
    super::i18n::text(lang, key, &[])
}

/// The password change form. `Debug` is not derived: it holds passwords.
#[derive(Deserialize)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
    confirm_password: String,
    #[serde(default)]
    next: Option<String>,
}

/// `GET /password`: the password change page (the only page a temporary password opens).
async fn password_page(page: Page, Query(q): Query<SignInQuery>) -> Response {
    password_view(&page, &local_path(q.next.as_deref()), None, StatusCode::OK)
}

fn password_view(page: &Page, next: &str, error: Option<String>, status: StatusCode) -> Response {
    let p = &page.state.hub.config().access.policy;
    let policy = context! {
        min_length => p.min_length, upper => p.upper, lower => p.lower, digit => p.digit, symbol => p.symbol,
    };
    let mut r = page.render(
        "password.html",
        "profile",
        context! {
            forced => page.actor.must_change_password,
            next => next,
            error => error,
            policy => policy,
        },
    );
    *r.status_mut() = status;
    r
}

/// `POST /password`: sets the new password; the session goes on under a new id.
async fn change_password(page: Page, Form(form): Form<PasswordForm>) -> Response {
    let next = local_path(form.next.as_deref());
    if form.new_password != form.confirm_password {
        let message = t(page.lang, "password.mismatch");
        return password_view(&page, &next, Some(message), StatusCode::BAD_REQUEST);
    }
    match page
        .state
        .hub
        .change_password(&page.actor, &form.current_password, &form.new_password)
        .await
    {
        Ok(s) => {
            let cookie =
                cookies::session_cookie(&s.session_id, s.expires_at, page.state.web.secure_cookies);
            let mut r = page.redirect(&next);
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
        Err(e) => {
            let e = ApiError::from(e);
            let message = password_message(page.lang, e.message());
            password_view(&page, &next, Some(message), e.status())
        }
    }
}

/// The hub's answer to a password change (`field: reason`, in English) in the page's language:
/// the known reasons from the catalog; what a weak password misses stays as the hub says it
/// (the page lists the policy in the reader's language beside it).
fn password_message(lang: Lang, hub: &str) -> String {
    match hub.split_once(": ") {
        Some(("current_password", _)) => t(lang, "password.wrong_current"),
        Some(("new_password", reason)) if reason.starts_with("must differ") => {
            t(lang, "password.same")
        }
        Some(("new_password", reason)) => match lang {
            Lang::En => format!("{} {reason}", t(lang, "password.weak")),
            Lang::ZhCn => t(lang, "password.weak"),
        },
        _ => hub.to_string(),
    }
}

/// `POST /signout`: ends the session and clears the cookie.
async fn sign_out(page: Page, Extension(auth): Extension<Authenticated>) -> Response {
    if let Some(session) = &auth.session
        && let Err(e) = page.state.hub.sign_out(&page.actor, &session.id).await
    {
        return page.fail(e);
    }
    let mut r = page.redirect("/signin");
    r.headers_mut().insert(
        header::SET_COOKIE,
        cookies::cleared_cookie(page.state.web.secure_cookies),
    );
    r.into_response()
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn password_answers_are_said_in_the_pages_language() {
        use super::{Lang, password_message};
        let weak = "new_password: the password needs a digit";
        assert_eq!(
            password_message(Lang::En, weak),
            "The new password does not meet the policy: the password needs a digit"
        );
        assert!(!password_message(Lang::ZhCn, weak).contains("new_password"));
        assert!(
            password_message(Lang::ZhCn, "current_password: does not match").contains("当前密码")
        );
        assert_eq!(
            password_message(Lang::En, "something else"),
            "something else"
        );
    }

    #[test]
    fn goes_on_only_to_paths_of_this_hub() {
        assert_eq!(local_path(Some("/tasks/1?x=2")), "/tasks/1?x=2");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(None), "/");
    }
}
