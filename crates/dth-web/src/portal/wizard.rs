//! The portal's pages for creating object and image tasks, step by step, with the plan and cost before anything is made.

use axum::Router;

use crate::AppState;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
