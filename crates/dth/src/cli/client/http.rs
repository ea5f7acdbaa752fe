//! The HTTP client of the hub's JSON API: a base URL, a credential (an API token, or a session
//! cookie with its CSRF token during `dth login`), timeouts, and one error type whose messages are
//! the one-line answers the CLI prints ([`HubError`]). The credential is never part of a message.

use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::config::Secret;

/// How long a JSON call may take (streams have no overall limit).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How requests prove who sends them.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Nobody (sign-in).
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// The session cookie of a sign-in, with the CSRF token its changes must carry.
    Session {
        /// The `dth_session` cookie value.
        cookie: Secret,
        /// The session's CSRF token.
        csrf: Secret,
    },
}

/// A failed call, worded for the one line the CLI prints.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No connection (refused, DNS, TLS, timeout).
    #[error("cannot reach the hub at {server}: {reason}")]
    Unreachable {
        /// The hub's URL.
        server: String,
        /// Why, in a few words.
        reason: String,
    },
    /// 401.
    #[error(
        "not signed in or token expired/revoked: run dth login (the hub at {server} says: {message})"
    )]
    Unauthorized {
        /// The hub's URL.
        server: String,
        /// The hub's message (shown where a 401 means something else, as at sign-in).
        message: String,
    },
    /// An error answer other than 401.
    #[error("{}", describe(*.status, message))]
    Status {
        /// Its status.
        status: StatusCode,
        /// The hub's message.
        message: String,
    },
    /// A body that is not what the API documents.
    #[error(
        "the hub at {server} sent an answer dth does not understand ({what}): is it a dth hub of a matching version?"
    )]
    Unexpected {
        /// The hub's URL.
        server: String,
        /// What was wrong.
        what: String,
    },
}

impl HubError {
    /// The status of an error answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            HubError::Status { status, .. } => Some(*status),
            HubError::Unauthorized { .. } => Some(StatusCode::UNAUTHORIZED),
            _ => None,
        }
    }
}

/// The line for an error answer: the hub's message, led by what kind of refusal it is.
fn describe(status: StatusCode, message: &str) -> String {
    match status.as_u16() {
        400 | 422 => format!("the hub refused the request: {message}"),
        403 => format!("permission denied: {message}"),
        404 if message.contains("not found") => message.to_string(),
        404 => format!("not found: {message}"),
        409 => format!("conflict: {message}"),
        429 => format!("too many requests: {message}"),
        s if s >= 500 => format!("the hub failed (HTTP {s}): {message}"),
        s => format!("the hub answered HTTP {s}: {message}"),
    }
}

/// A client of one hub.
#[derive(Debug, Clone)]
pub struct HubClient {
    server: String,
    http: reqwest::Client,
    auth: Auth,
}

impl HubClient {
    /// A client of the hub at `server` (normalised, no trailing slash).
    pub fn new(server: &str, auth: Auth) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("dth/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(HubClient {
            server: server.to_string(),
            http,
            auth,
        })
    }

    /// The hub's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The same hub with another credential.
    pub fn with_auth(&self, auth: Auth) -> Self {
        HubClient {
            auth,
            ..self.clone()
        }
    }

    /// A request to `path` (under the server, e.g. `/api/v1/tasks`) with the credential.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self
            .http
            .request(method, format!("{}{path}", self.server))
            .header(header::ACCEPT, "application/json");
        match &self.auth {
            Auth::None => rb,
            Auth::Bearer(token) => rb.bearer_auth(token.expose()),
            Auth::Session { cookie, csrf } => rb
                .header(header::COOKIE, format!("dth_session={}", cookie.expose()))
                .header("x-csrf-token", csrf.expose())
                // The hub checks the origin of cookie-authenticated changes.
                .header(header::ORIGIN, origin_of(&self.server)),
        }
    }

    /// Sends a request; an error answer becomes a [`HubError`].
    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, HubError> {
        let resp = rb.send().await.map_err(|e| self.unreachable(&e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let message = error_message(status, &text);
        if status == StatusCode::UNAUTHORIZED {
            return Err(HubError::Unauthorized {
                server: self.server.clone(),
                message,
            });
        }
        Err(HubError::Status { status, message })
    }

    fn unreachable(&self, e: &reqwest::Error) -> HubError {
        HubError::Unreachable {
            server: self.server.clone(),
            reason: reason(e),
        }
    }

    /// A JSON call: the answer's headers and body (`Value::Null` for an empty body).
    pub async fn call_full(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(header::HeaderMap, Value), HubError> {
        let mut rb = self.request(method, path).timeout(CALL_TIMEOUT);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = self.send(rb).await?;
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((headers, Value::Null));
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| HubError::Unexpected {
            server: self.server.clone(),
            what: format!("not JSON: {e}"),
        })?;
        Ok((headers, value))
    }

    /// A JSON call: the answer's body (`Value::Null` for an empty body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, HubError> {
        Ok(self.call_full(method, path, body).await?.1)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value, HubError> {
        self.call(Method::GET, path, None).await
    }

    /// A call whose answer is read as a stream (a report, server-sent events).
    pub async fn stream(&self, path: &str, accept: &str) -> Result<reqwest::Response, HubError> {
        let rb = self
            .request(Method::GET, path)
            .header(header::ACCEPT, accept);
        self.send(rb).await
    }

    /// Reads a JSON answer as `T`.
    pub fn parse<T: DeserializeOwned>(&self, what: &str, v: &Value) -> Result<T, HubError> {
        serde_json::from_value(v.clone()).map_err(|e| HubError::Unexpected {
            server: self.server.clone(),
            what: format!("{what}: {e}"),
        })
    }

    /// A failure while reading a streamed body.
    pub fn broken_stream(&self, e: &reqwest::Error) -> HubError {
        self.unreachable(e)
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(server: &str) -> String {
    url::Url::parse(server)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| server.to_string())
}

/// The message of an error answer: the `error` of its JSON body, or its text, or the status.
fn error_message(status: StatusCode, text: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(text)
        && let Some(m) = v.get("error").and_then(Value::as_str)
    {
        return m.to_string();
    }
    let text = text.trim();
    if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no message")
            .to_lowercase()
    } else {
        text.chars().take(300).collect()
    }
}

/// Why a connection failed, in a few words: `connection refused`, `timed out`, or the innermost
/// cause.
fn reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time (timed out)".into();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut innermost = e.to_string();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match io.kind() {
                K::ConnectionRefused => "connection refused".into(),
                K::ConnectionReset => "connection reset".into(),
                K::TimedOut => "timed out".into(),
                _ => strip_os_error(&io.to_string()),
            };
        }
        innermost = s.to_string();
        source = s.source();
    }
    strip_os_error(&innermost)
}

/// `Connection refused (os error 111)` → `connection refused`.
fn strip_os_error(text: &str) -> String {
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_read_well() {
        let e = HubError::Status {
            status: StatusCode::FORBIDDEN,
            message: "this needs the operator role; you are viewer".into(),
        };
        assert_eq!(
            e.to_string(),
            "permission denied: this needs the operator role; you are viewer"
        );
        let e = HubError::Status {
            status: StatusCode::NOT_FOUND,
            message: "task x not found".into(),
        };
        assert_eq!(e.to_string(), "task x not found");
        assert_eq!(
            error_message(StatusCode::CONFLICT, r#"{"error":"in use"}"#),
            "in use"
        );
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, ""), "bad gateway");
        assert_eq!(
            strip_os_error("Connection refused (os error 111)"),
            "connection refused"
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080/hub"),
            "http://127.0.0.1:8080"
        );
    }
}
