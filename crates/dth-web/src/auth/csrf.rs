//! Cross-site request forgery: a state-changing request (anything but GET, HEAD, OPTIONS)
//! authenticated by the session cookie must carry the session's CSRF token (header `X-CSRF-Token`,
//! or the form field `csrf_token` of a portal form) and an `Origin` (or, without one, a `Referer`)
//! of the hub's public URL. Bearer-token requests carry no cookie and are not checked.

use axum::http::{HeaderMap, Method};

/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Whether a method changes state.
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Checks the origin of a cookie-authenticated unsafe request against the hub's public origin
/// (`scheme://host[:port]`).
pub fn check_origin(headers: &HeaderMap, public_origin: &str) -> Result<(), &'static str> {
    let origin = headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            let referer = headers.get("referer")?.to_str().ok()?;
            let url = url::Url::parse(referer).ok()?;
            Some(url.origin().ascii_serialization())
        });
    match origin {
        Some(o) if o.trim_end_matches('/') == public_origin => Ok(()),
        Some(_) => Err("the request comes from another site (Origin does not match the hub)"),
        None => Err("the request has no Origin or Referer header"),
    }
}

/// Checks the CSRF token of the header against the session's, in constant time.
pub fn check_token(headers: &HeaderMap, expected: &str) -> Result<(), &'static str> {
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or("missing X-CSRF-Token header (the csrf_token of the session)")?;
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err("the X-CSRF-Token header does not match the session")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn origin_and_token_checks() {
        let mut h = HeaderMap::new();
        assert!(check_origin(&h, "http://127.0.0.1:8080").is_err());
        h.insert(
            "referer",
            HeaderValue::from_static("http://127.0.0.1:8080/tasks?x=1"),
        );
        assert!(check_origin(&h, "http://127.0.0.1:8080").is_ok());
        h.insert("origin", HeaderValue::from_static("https://evil.example"));
        assert!(check_origin(&h, "http://127.0.0.1:8080").is_err());
        assert!(check_token(&h, "abc").is_err());
        h.insert(CSRF_HEADER, HeaderValue::from_static("abd"));
        assert!(check_token(&h, "abc").is_err());
        h.insert(CSRF_HEADER, HeaderValue::from_static("abc"));
        assert!(check_token(&h, "abc").is_ok());
        assert!(is_unsafe(&Method::POST) && !is_unsafe(&Method::GET));
    }
}
