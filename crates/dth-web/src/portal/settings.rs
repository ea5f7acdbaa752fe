//! The portal's pages for hub settings (admin): the price table, the SMTP test mail.

use axum::Router;

use crate::AppState;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
