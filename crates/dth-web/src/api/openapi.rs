//! The OpenAPI document, generated from the handlers' annotations and the view types.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{audit, events, plan, runs, secrets, session, settings, tasks, tokens, users};
use crate::views;

/// The API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Data Transfer Hub API",
        description = "Tasks, runs, items and secrets of a Data Transfer Hub. Every /api/v1 route but \
                       this document, the sign-in providers and sign-in needs `Authorization: Bearer <token>` or the \
                       session cookie (with `X-CSRF-Token` on changes). Errors are `{\"error\": \"…\"}`."
    ),
    paths(
        crate::health,
        plan::plan,
        tasks::create, tasks::list, tasks::get, tasks::edit, tasks::start, tasks::stop, tasks::delete,
        tasks::clone, tasks::progress, tasks::events, events::take, events::new_token,
        runs::list, runs::get, runs::items, runs::samples, runs::report, runs::retry,
        settings::prices, settings::put_prices, settings::retention, settings::put_retention,
        settings::test_mail,
        secrets::put, secrets::list, secrets::delete,
        session::providers, session::sign_in, session::current, session::sign_out, session::me, session::change_password, session::set_language,
        users::list, users::create, users::get, users::update, users::delete, users::reset_password,
        users::unlock, tokens::create, tokens::list, tokens::revoke, audit::list,
    ),
    components(schemas(
        crate::Health, crate::ErrorBody,
        views::TaskView, views::TaskDetail, views::EventView, views::RunView, views::RunDetail,
        views::ItemView, views::SecretView, views::TaskRef, dth_model::RunCounters, views::UserView,
        views::TokenView, dth_model::Role, session::SignInRequest, session::SessionView,
        session::SignInProviders, session::OidcProviderView,
        session::PasswordChange, session::LanguageChange, users::NewUserRequest, users::UserWithPassword, users::UserPatch,
        tokens::NewTokenRequest, tokens::CreatedToken, audit::AuditPage,
        tasks::TaskSpecDoc, runs::ItemsPage, runs::RetryRequest, runs::Retried,
        dth_model::SecretValue, dth_model::AccessKey, dth_model::RegistryLogin,
        tasks::TaskPatchDoc, tasks::CloneRequest, views::ProgressView, views::SampleView,
        views::ReportLine, runs::ReportFormat, dth_model::Plan, dth_model::ObjectPlan,
        dth_model::ImagePlan, dth_model::Requests, dth_model::CostEstimate, dth_model::CostLine,
        dth_model::PriceTable, dth_model::Price, settings::RetentionView, settings::TestMailRequest,
        settings::TestMailResult, events::EventsAccepted, events::WebhookToken,
    )),
    modifiers(&BearerAuth, &CommonErrors, &TaggedOperationIds),
    tags(
        (name = "health", description = "Liveness"),
        (name = "tasks", description = "Transfer tasks"),
        (name = "runs", description = "Runs of tasks and their queue items"),
        (name = "secrets", description = "Access keys, stored encrypted, never returned"),
        (name = "session", description = "Sign-in for people: the session cookie, the caller's account"),
        (name = "users", description = "User accounts (admin)"),
        (name = "tokens", description = "API tokens of the caller"),
        (name = "audit", description = "Who changed what (admin)"),
        (name = "settings", description = "Hub settings: prices of cost estimates, retention of finished runs' items, SMTP test (admin)"),
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
        components.add_security_scheme(
            "webhook",
            SecurityScheme::Http(
                utoipa::openapi::security::HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The task's webhook token (POST /api/v1/tasks/{id}/events/token), not an \
                         API token; or X-Dth-Signature: sha256=HMAC-SHA256(token, body)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::cookies::SESSION_COOKIE,
            ))),
        );
    }
}

/// Adds the error answers every route of a kind can give, where its annotation does not name them:
/// 401 (no or unknown token or cookie) and 403 (a role it lacks, or a change made with the cookie
/// without its CSRF token) to the authenticated ones, 400 to those with a query or body, 404 to
/// those with a path parameter (unknown id, or one of the wrong type), 413 and 415 to those with
/// a JSON body (larger than the limit, or not `application/json`).
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{Content, Ref, ResponseBuilder};
        for op in operations(openapi) {
            let params = op.parameters.as_deref().unwrap_or_default();
            let in_path = params
                .iter()
                .any(|p| matches!(p.parameter_in, ParameterIn::Path));
            let in_query = params
                .iter()
                .any(|p| matches!(p.parameter_in, ParameterIn::Query));
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let body = op.request_body.is_some();
            let wanted = [
                (
                    secured,
                    "401",
                    "Not signed in: no or unknown token or session",
                ),
                (
                    secured,
                    "403",
                    "Not allowed: the caller's role, or a change made with the session cookie without its X-CSRF-Token",
                ),
                (in_query || body, "400", "Malformed query or body"),
                (in_path, "404", "No such object"),
                (body, "413", "The body is too large"),
                (body, "415", "The body is not `application/json`"),
            ];
            for (applies, status, description) in wanted {
                if applies && !op.responses.responses.contains_key(status) {
                    let response = ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                        )
                        .build();
                    op.responses
                        .responses
                        .insert(status.to_string(), response.into());
                }
            }
        }
    }
}

/// Every operation of the document, whatever its method.
fn operations(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    })
}

/// Prefixes each operation id (the handler's name) with its tag, so that ids are unique
/// (`tasks_list`, `users_list`), as OpenAPI requires.
struct TaggedOperationIds;

impl Modify for TaggedOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for op in operations(openapi) {
            if let (Some(tag), Some(id)) = (
                op.tags.as_ref().and_then(|t| t.first()),
                op.operation_id.as_mut(),
            ) {
                *id = format!("{tag}_{id}");
            }
        }
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The rendered API docs at `/api/docs/`: Swagger UI over this document, its files served from
/// the binary (no CDN: the hub may be offline).
pub fn docs_page() -> axum::Router<crate::AppState> {
    utoipa_swagger_ui::SwaggerUi::new("/api/docs")
        .config(utoipa_swagger_ui::Config::from("/api/v1/openapi.json"))
        .into()
}
