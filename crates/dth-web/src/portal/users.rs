//! The portal's pages for users (admin): invite, role, disable, reset.

use axum::Router;

use crate::AppState;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
