//! Who makes a request. One middleware ([`authenticate`]) runs on every route: it turns an
//! `Authorization: Bearer` token (a user's API token, or the process's `DTH_API_TOKEN`) or the
//! session cookie into a [`dth_model::Actor`] through the hub, checks CSRF for cookie-authenticated
//! state changes ([`csrf`]), and leaves the result in the request. Handlers take [`Caller`] (401
//! when nobody is signed in) and pass its actor to the hub, which checks the role; no handler
//! checks a role itself.
//!
//! - [`cookies`]: the session cookie.
//! - [`csrf`]: origin and token checks.
//! - [`oidc`]: sign-in through an OpenID Connect provider (`/auth/oidc/login`, `/callback`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use dth_model::Actor;

use crate::{ApiError, AppState};

pub mod cookies;
pub mod csrf;
pub mod oidc;

/// The caller of a request that must be authenticated.
#[derive(Debug, Clone)]
pub struct Caller(pub Actor);

/// What [`authenticate`] found: the actor and, for a cookie, the session's id and CSRF token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Who.
    pub actor: Actor,
    /// The session behind the cookie (`None` for a bearer token).
    pub session: Option<SessionInfo>,
}

/// A cookie session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The cookie value.
    pub id: String,
    /// Its CSRF token.
    pub csrf_token: String,
    /// Absolute expiry (Unix ms).
    pub expires_at: i64,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Authenticated>()
            .map(|a| Caller(a.actor.clone()))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "sign in first (POST /api/v1/session) or send `Authorization: Bearer <token>`",
                )
            })
    }
}

/// The client address of a request (the TCP peer), put in every request by [`authenticate`].
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

/// The client address of a request (the TCP peer).
fn client_addr(req_extensions: &axum::http::Extensions) -> String {
    req_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Finds the caller of every request (bearer token first, then the session cookie) and refuses
/// a wrong token (401) or a cookie-authenticated state change without CSRF proof (403). Requests
/// without credentials pass on anonymous: routes that need a caller refuse them ([`Caller`]).
pub async fn authenticate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = client_addr(req.extensions());
    req.extensions_mut().insert(ClientAddr(client.clone()));
    if is_events_webhook(&req) {
        return Ok(next.run(req).await);
    }
    if let Some(token) = bearer(&req)? {
        let actor = state
            .hub
            .token_actor(token, &client)
            .await?
            .ok_or_else(|| {
                ApiError::unauthorized("the API token is not known to this hub, expired or revoked")
            })?;
        req.extensions_mut().insert(Authenticated {
            actor,
            session: None,
        });
        return Ok(next.run(req).await);
    }
    if let Some(id) = cookies::session_id(req.headers())
        && let Some(s) = state.hub.session_actor(&id, &client).await?
    {
        if csrf::is_unsafe(req.method()) && !is_sign_in(&req) {
            csrf::check_origin(req.headers(), &state.web.public_origin)
                .and_then(|()| csrf::check_token(req.headers(), &s.csrf_token))
                .map_err(|why| ApiError::new(axum::http::StatusCode::FORBIDDEN, why))?;
        }
        req.extensions_mut().insert(Authenticated {
            actor: s.actor,
            session: Some(SessionInfo {
                id,
                csrf_token: s.csrf_token,
                expires_at: s.expires_at,
            }),
        });
    }
    Ok(next.run(req).await)
}

/// A sign-in (the API's or the portal's form) replaces whatever session the browser had; it needs
/// no CSRF token of the old one. Both check the request's origin themselves.
fn is_sign_in(req: &Request) -> bool {
    req.method() == axum::http::Method::POST
        && matches!(req.uri().path(), "/api/v1/session" | "/signin")
}

/// A task's events webhook authenticates with the task's own token, never a session or an API
/// token: it passes here untouched, and its handler checks the token.
fn is_events_webhook(req: &Request) -> bool {
    req.method() == axum::http::Method::POST
        && req
            .uri()
            .path()
            .strip_prefix("/api/v1/tasks/")
            .and_then(|rest| rest.strip_suffix("/events"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
fn bearer(req: &Request) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII text"))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::unauthorized(
            "the Authorization header has an empty token",
        ));
    }
    Ok(Some(token))
}
