//! The portal's static files (`static/`: the stylesheet, the page script, and the vendored htmx
//! 2.0.11 with its SSE extension 2.2.4), compiled in and served under `/static/` with a long
//! cache lifetime; the layout links them with the hub's version in the query, so an upgrade is
//! fetched anew.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

/// The static files, compiled in.
#[derive(RustEmbed)]
#[folder = "src/portal/static/"]
struct Static;

/// Where static files are served.
pub const PREFIX: &str = "/static";

/// `GET /static/{*path}`.
pub async fn file(Path(path): Path<String>) -> Response {
    let Some(file) = Static::get(&path) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mime = match path.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        file.data,
    )
        .into_response()
}
