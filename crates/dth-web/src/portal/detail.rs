//! The portal's pages for one task: live counters, charts, runs, items, retry, events, settings, reports.

use axum::Router;

use crate::AppState;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
