//! The portal's pages for secrets: names, kinds, the tasks that use each; create, replace, delete.

use axum::Router;

use crate::AppState;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
