//! The session cookie: `dth_session`, `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` when the hub's
//! public URL is https; it holds the opaque session id and nothing else.

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, HeaderValue};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "dth_session";

/// The `Set-Cookie` value that starts a session lasting until `expires_at` (Unix ms).
pub fn session_cookie(session_id: &str, expires_at: i64, secure: bool) -> HeaderValue {
    let max_age = ((expires_at - dth_store::now_ms()) / 1000).max(0);
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("a hex session id makes a valid header")
}

/// The `Set-Cookie` value that ends the session cookie.
pub fn cleared_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"
    ))
    .expect("a constant header")
}

/// The session id of a request's `Cookie` headers, if any.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_the_session_cookie() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; dth_session=abc; b=2"),
        );
        assert_eq!(session_id(&h).as_deref(), Some("abc"));
        let c = session_cookie("abc", dth_store::now_ms() + 60_000, true);
        let c = c.to_str().unwrap();
        assert!(c.starts_with("dth_session=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age="));
        assert!(c.ends_with("; Secure"));
        assert!(!cleared_cookie(false).to_str().unwrap().contains("Secure"));
    }
}
