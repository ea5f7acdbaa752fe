//! Bearer tokens: every protected route needs `Authorization: Bearer <token>`, checked against the
//! store's hashed tokens. The token's name becomes the [`Actor`] of the request.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::{ApiError, AppState};

/// Who makes a request: `api:<token name>`. Put in the request's extensions by [`require_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

/// Refuses a request without a known bearer token (401), or passes it on with its [`Actor`].
pub async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = bearer(&req)?;
    let name = state
        .hub
        .store()
        .check_token(token)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::unauthorized("the API token is not known to this hub"))?;
    req.extensions_mut().insert(Actor(format!("api:{name}")));
    Ok(next.run(req).await)
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(req: &Request) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized("missing `Authorization: Bearer <token>` header; create a token with `dth` on the hub")
        })?
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
    Ok(token)
}
