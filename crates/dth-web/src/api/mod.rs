//! The JSON API under `/api/v1`: one module per area, each handler a thin rendering of a
//! [`dth_runtime::Hub`] call into a view ([`crate::views`]); the OpenAPI document is generated from
//! the handlers' annotations ([`openapi`]).

use axum::Router;
use axum::routing::{get, post, put};

use crate::{AppState, auth};

pub mod openapi;
pub mod runs;
pub mod secrets;
pub mod tasks;

/// The routes under `/api/v1`: the OpenAPI document (no auth) and the token-protected rest.
pub fn router(state: AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/tasks", post(tasks::create).get(tasks::list))
        .route("/tasks/{id}", get(tasks::get).delete(tasks::delete))
        .route("/tasks/{id}/start", post(tasks::start))
        .route("/tasks/{id}/stop", post(tasks::stop))
        .route("/tasks/{id}/runs", get(runs::list))
        .route("/tasks/{id}/events", get(tasks::events))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/items", get(runs::items))
        .route("/runs/{id}/retry", post(runs::retry))
        .route("/secrets", get(secrets::list))
        .route("/secrets/{name}", put(secrets::put).delete(secrets::delete))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            auth::require_token,
        ));
    Router::new()
        .route("/openapi.json", get(openapi::document))
        .merge(protected)
}
