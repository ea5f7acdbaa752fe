//! The OpenAPI document, generated from the handlers' annotations and the view types.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{runs, secrets, tasks};
use crate::views;

/// The API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Data Transfer Hub API",
        description = "Tasks, runs, items and secrets of a Data Transfer Hub. Every /api/v1 route but \
                       this document needs `Authorization: Bearer <token>`. Errors are `{\"error\": \"…\"}`."
    ),
    paths(
        crate::health,
        tasks::create, tasks::list, tasks::get, tasks::start, tasks::stop, tasks::delete, tasks::events,
        runs::list, runs::get, runs::items, runs::retry,
        secrets::put, secrets::list, secrets::delete,
    ),
    components(schemas(
        crate::Health, crate::ErrorBody,
        views::TaskView, views::TaskDetail, views::EventView, views::RunView, views::RunDetail,
        views::ItemView, views::SecretView, dth_model::RunCounters,
        tasks::TaskSpecDoc, runs::ItemsPage, runs::RetryRequest, runs::Retried,
        dth_model::SecretValue, dth_model::AccessKey, dth_model::RegistryLogin,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness"),
        (name = "tasks", description = "Transfer tasks"),
        (name = "runs", description = "Runs of tasks and their queue items"),
        (name = "secrets", description = "Access keys, stored encrypted, never returned"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the routes refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
