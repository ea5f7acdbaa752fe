//! The pages people open in a browser. For now one: the sign-in page at `/` (sign in with a
//! password or the OpenID Connect provider, set a new password when the current one is temporary,
//! see who is signed in, sign out). It is a static page over the JSON API's session calls, so it
//! computes nothing itself; the task pages come with the portal.

use axum::http::header;
use axum::response::IntoResponse;

/// The sign-in page, compiled in.
const SIGN_IN: &str = include_str!("signin.html");

/// `GET /`: the sign-in page.
pub async fn sign_in_page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        SIGN_IN,
    )
}
