//! Dry runs: what a run of a spec would do now and what it would cost, before the task exists.

use axum::Json;
use axum::extract::State;
use dth_model::Plan;
use serde_json::Value;

use crate::api::tasks::TaskSpecDoc;
use crate::auth::Caller;
use crate::error::ApiJson;
use crate::{ApiError, AppState, ErrorBody};

/// Lists and compares both sides of a spec (objects), or plans and checks its images, and
/// answers the counts, the requests and the cost estimate from the price table. Nothing is
/// stored; keys given in clear are used for this call only.
#[utoipa::path(post, path = "/api/v1/plan", tag = "tasks",
    request_body = TaskSpecDoc,
    responses(
        (status = 200, description = "What a run would do now", body = Plan),
        (status = 400, description = "Malformed or invalid spec, or an endpoint that cannot be read", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the operator role", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn plan(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Plan>, ApiError> {
    Ok(Json(state.hub.plan(&actor, &body).await?))
}
