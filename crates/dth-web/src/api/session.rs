//! Sign-in for people: the ways to sign in (`GET /api/v1/auth/providers`), a session cookie from an
//! email and password (`POST /api/v1/session`), the current session (`GET`), sign-out (`DELETE`), the caller's own account (`GET /api/v1/me`) and
//! password change (`PUT /api/v1/me/password`) and the language the portal speaks to them
//! (`PUT /api/v1/me/language`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dth_runtime::access::SignedIn;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Authenticated, Caller, ClientAddr, cookies, csrf};
use crate::error::ApiJson;
use crate::views::UserView;
use crate::{ApiError, AppState, ErrorBody};

/// The body of `POST /api/v1/session`. `Debug` hides the password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    /// Email of the account.
    pub email: String,
    /// Its password.
    pub password: String,
}

/// A session: who, the CSRF token its state-changing requests must send as `X-CSRF-Token`, and
/// when it ends at the latest.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// The signed-in user.
    pub user: UserView,
    /// Send as `X-CSRF-Token` with every POST, PUT, PATCH and DELETE made with the cookie.
    pub csrf_token: String,
    /// Absolute expiry (Unix ms); an idle session ends sooner.
    pub expires_at: i64,
}

/// The body of `PUT /api/v1/me/password`. `Debug` hides both.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password in use (the temporary one after an invitation or reset).
    pub current_password: String,
    /// The new password; it must meet the hub's policy.
    pub new_password: String,
}

/// The body of `PUT /api/v1/me/language`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LanguageChange {
    /// A language the portal speaks (`en`, `zh-CN`); null or absent: follow the browser.
    #[schema(example = "zh-CN", pattern = "^(en|zh-CN)$")]
    #[serde(default)]
    pub language: Option<String>,
}

/// The ways to sign in to this hub, for a sign-in page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SignInProviders {
    /// Email and password (`POST /api/v1/session`): always offered.
    pub password: bool,
    /// The OpenID Connect provider, when one is configured.
    pub oidc: Option<OidcProviderView>,
}

/// An OpenID Connect provider as a sign-in page shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OidcProviderView {
    /// The label of the sign-in button.
    pub name: String,
    /// Where the button goes (`/auth/oidc/login`); the browser comes back signed in to `/`.
    pub login_url: String,
}

/// The ways to sign in (no authentication needed).
#[utoipa::path(get, path = "/api/v1/auth/providers", tag = "session",
    responses(
        (status = 200, description = "The ways to sign in", body = SignInProviders),
    ))]
pub async fn providers(State(state): State<AppState>) -> Json<SignInProviders> {
    Json(SignInProviders {
        password: true,
        oidc: state.web.oidc.as_ref().map(|o| OidcProviderView {
            name: o.name().to_string(),
            login_url: crate::auth::oidc::LOGIN_PATH.to_string(),
        }),
    })
}

/// A session answer that also sets the cookie.
fn signed_in(state: &AppState, s: SignedIn) -> Response {
    let cookie = cookies::session_cookie(&s.session_id, s.expires_at, state.web.secure_cookies);
    let body = SessionView {
        user: s.user.into(),
        csrf_token: s.csrf_token,
        expires_at: s.expires_at,
    };
    ([(header::SET_COOKIE, cookie)], Json(body)).into_response()
}

/// Signs in with an email and password; sets the `dth_session` cookie (a new id every time).
/// Throttled after failed attempts (429 with `Retry-After`).
#[utoipa::path(post, path = "/api/v1/session", tag = "session",
    request_body = SignInRequest,
    responses(
        (status = 200, description = "Signed in; the cookie is set", body = SessionView),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 403, description = "Account disabled or locked, or a cross-site request", body = ErrorBody),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = ErrorBody),
    ))]
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Extension(client): Extension<ClientAddr>,
    ApiJson(body): ApiJson<SignInRequest>,
) -> Result<Response, ApiError> {
    // A browser always sends Origin with a POST; another site's must not sign anyone in.
    if headers.contains_key("origin") {
        csrf::check_origin(&headers, &state.web.public_origin)
            .map_err(|why| ApiError::new(StatusCode::FORBIDDEN, why))?;
    }
    let s = state
        .hub
        .sign_in(&body.email, &body.password, &client.0)
        .await?;
    Ok(signed_in(&state, s))
}

/// The current session (cookie only): its user, CSRF token and expiry.
#[utoipa::path(get, path = "/api/v1/session", tag = "session",
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 401, description = "Not signed in with a cookie", body = ErrorBody),
    ))]
pub async fn current(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Extension(auth): Extension<Authenticated>,
) -> Result<Json<SessionView>, ApiError> {
    let session = auth
        .session
        .ok_or_else(|| ApiError::unauthorized("this request has no session cookie"))?;
    let user = state
        .hub
        .me(&actor)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the session's user is gone"))?;
    Ok(Json(SessionView {
        user: user.into(),
        csrf_token: session.csrf_token,
        expires_at: session.expires_at,
    }))
}

/// Signs out: the session ends and the cookie is cleared.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session",
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in with a cookie", body = ErrorBody),
    ))]
pub async fn sign_out(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Extension(auth): Extension<Authenticated>,
) -> Result<Response, ApiError> {
    let session = auth
        .session
        .ok_or_else(|| ApiError::unauthorized("this request has no session cookie"))?;
    state.hub.sign_out(&actor, &session.id).await?;
    let cookie = cookies::cleared_cookie(state.web.secure_cookies);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

/// The caller's own account.
#[utoipa::path(get, path = "/api/v1/me", tag = "session",
    responses(
        (status = 200, description = "The caller's account", body = UserView),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 404, description = "The caller is not a user (the DTH_API_TOKEN)", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn me(
    State(state): State<AppState>,
    Caller(actor): Caller,
) -> Result<Json<UserView>, ApiError> {
    let user =
        state.hub.me(&actor).await?.ok_or_else(|| {
            ApiError::not_found(format!("{} is not a user account", actor.label()))
        })?;
    Ok(Json(user.into()))
}

/// Sets a new password (the way a temporary one ends). Other sessions end; this one goes on
/// under a new id (the cookie is set again).
#[utoipa::path(put, path = "/api/v1/me/password", tag = "session",
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed; the new session", body = SessionView),
        (status = 400, description = "Current password wrong, or the new one too weak", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("cookie" = [])))]
pub async fn change_password(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<Response, ApiError> {
    let s = state
        .hub
        .change_password(&actor, &body.current_password, &body.new_password)
        .await?;
    Ok(signed_in(&state, s))
}

/// Sets the language the portal speaks to the caller (or `null`: the browser's). Stored with the
/// account, so it follows the user to every browser.
#[utoipa::path(put, path = "/api/v1/me/language", tag = "session",
    request_body = LanguageChange,
    responses(
        (status = 200, description = "Stored", body = UserView),
        (status = 400, description = "A language the portal does not speak", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The caller is not a user (the DTH_API_TOKEN)", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn set_language(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<LanguageChange>,
) -> Result<Json<UserView>, ApiError> {
    let tag = match body.language.as_deref() {
        None => None,
        Some(tag) => Some(
            crate::portal::i18n::Lang::from_tag(tag)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "language: {tag:?} is not one the portal speaks (en, zh-CN)"
                    ))
                })?
                .tag(),
        ),
    };
    Ok(Json(state.hub.set_language(&actor, tag).await?.into()))
}
