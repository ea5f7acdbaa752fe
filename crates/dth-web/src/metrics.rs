//! Prometheus metrics over HTTP: `GET /metrics` ([`scrape`]) answers the text exposition format
//! from [`dth_runtime::Hub::metrics_text`] (names and labels: [`dth_runtime::metrics`]), and
//! [`track`] counts and times every request by its route template.
//!
//! `/metrics` sits outside the API's sign-in: API tokens and sessions are not looked at there.
//! With a [`MetricsToken`] configured (`dth serve --metrics-token-env`, `DTH_METRICS_TOKEN` by
//! default) it needs `Authorization: Bearer <that token>` and answers 401 otherwise; without one it
//! is open to whoever reaches the port, like `/health`. The token is compared in constant time and
//! never logged or printed.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dth_runtime::Hub;
use dth_runtime::metrics::{HTTP_REQUEST_DURATION, HTTP_REQUESTS};
use metrics::{counter, histogram};

use crate::ApiError;

/// The path of the metrics endpoint.
pub const PATH: &str = "/metrics";
/// The `Content-Type` of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The `route` label of requests that matched no route (their raw path is never a label).
pub const UNMATCHED: &str = "unmatched";

/// The bearer token `/metrics` requires. Its `Debug` never shows it.
#[derive(Clone)]
pub struct MetricsToken(String);

impl MetricsToken {
    /// A token; `None` when it is empty (no protection asked for).
    pub fn new(token: impl Into<String>) -> Option<MetricsToken> {
        let token = token.into();
        (!token.trim().is_empty()).then(|| MetricsToken(token.trim().to_string()))
    }

    /// Whether `presented` is this token (in time independent of where they differ).
    fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken([REDACTED])")
    }
}

/// What [`scrape`] needs.
#[derive(Clone)]
pub struct MetricsState {
    /// Whose metrics.
    pub hub: Arc<Hub>,
    /// The bearer token asked for, if any.
    pub token: Option<MetricsToken>,
}

/// `GET /metrics` alone, for a process without the API (`dth worker --metrics-listen`).
pub fn router(state: MetricsState) -> Router {
    dth_runtime::metrics::install();
    Router::new()
        .route(PATH, get(scrape))
        .layer(axum::middleware::from_fn(track))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` is cancelled.
pub async fn serve(
    state: MetricsState,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// `GET /metrics`: the Prometheus text of this process and the store's gauges.
pub async fn scrape(State(state): State<MetricsState>, req: Request) -> Response {
    if let Some(token) = &state.token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        if !presented.is_some_and(|p| token.matches(p)) {
            return ApiError::unauthorized(
                "/metrics needs `Authorization: Bearer <the metrics token>` (DTH_METRICS_TOKEN)",
            )
            .into_response();
        }
    }
    let text = state.hub.metrics_text().await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// Counts and times each request by method, route template and status ([`HTTP_REQUESTS`],
/// [`HTTP_REQUEST_DURATION`]); the time is until the response's head is ready.
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED.to_string());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    histogram!(HTTP_REQUEST_DURATION, "method" => method, "route" => route.clone())
        .record(start.elapsed().as_secs_f64());
    counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status).increment(1);
    resp
}

/// The method as a label: the standard ones by name, anything else `other` (bounded).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly_and_never_print() {
        let t = MetricsToken::new(" s3cret-metrics ").unwrap();
        assert!(t.matches("s3cret-metrics"));
        assert!(!t.matches("s3cret-metricz"));
        assert!(!t.matches("s3cret"));
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(MetricsToken::new("  ").is_none());
    }
}
