//! The portal's pages for one's own account: password, language, API tokens.

use axum::Router;

use crate::AppState;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
