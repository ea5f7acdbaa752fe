//! Errors as the API answers them: a status and `{"error": "<message>"}`, and extractors whose
//! rejections (malformed JSON, wrong query) become such errors.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the field or object concerned.
    pub error: String,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds for a `Retry-After` header (429).
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status and message (shown to the client as is).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the request is malformed; nothing was changed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 401 (answered with `WWW-Authenticate: Bearer`).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 500 with a generic message; the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the hub's log has the details",
        )
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: self.message,
        });
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else if let Some(secs) = self.retry_after {
            (self.status, [(header::RETRY_AFTER, secs.to_string())], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

impl From<dth_runtime::Error> for ApiError {
    fn from(e: dth_runtime::Error) -> Self {
        use dth_runtime::Error as E;
        match e {
            E::BadRequest(m) => ApiError::bad_request(m),
            e @ E::NotFound(_) => ApiError::not_found(e.to_string()),
            E::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            E::Unauthorized(m) => ApiError::unauthorized(m),
            E::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, m),
            e @ E::Denied(_) => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
            e @ E::Throttled { retry_after } => ApiError {
                retry_after: Some(retry_after),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
            },
            E::Store(e) => ApiError::from(e),
            E::Engine(e) => ApiError::internal(format!("engine: {e}")),
            E::Image(e) => ApiError::internal(format!("image engine: {e}")),
        }
    }
}

impl From<dth_store::Error> for ApiError {
    fn from(e: dth_store::Error) -> Self {
        use dth_store::Error as E;
        match e {
            e @ E::NotFound { .. } => ApiError::not_found(e.to_string()),
            E::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            e @ (E::Db(_) | E::Crypto(_)) => ApiError::internal(e),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match &r {
            // Well-formed JSON of the wrong shape: still a bad request (axum says 422).
            JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
                StatusCode::BAD_REQUEST
            }
            other => other.status(),
        };
        let detail = r.body_text();
        let message = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                "the body must be JSON with `Content-Type: application/json`".to_string()
            }
            JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
                format!("the body is larger than {} bytes", crate::BODY_LIMIT)
            }
            _ => clean_serde_message(&detail),
        };
        ApiError::new(status, message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(format!(
            "query: {}",
            r.body_text()
                .trim_start_matches("Failed to deserialize query string: ")
        ))
    }
}

/// axum's text is `Failed to deserialize the JSON body into the target type: <path>: <serde message>`
/// or `Failed to parse the request body as JSON: <…>`; keep the part that names the problem.
fn clean_serde_message(text: &str) -> String {
    for (prefix, lead) in [
        (
            "Failed to deserialize the JSON body into the target type: ",
            "invalid body: ",
        ),
        (
            "Failed to parse the request body as JSON: ",
            "malformed JSON body: ",
        ),
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return format!("{lead}{rest}");
        }
    }
    text.to_string()
}

/// `Json<T>` whose rejection is an [`ApiError`].
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(r.into()),
        }
    }
}

/// `Query<T>` whose rejection is an [`ApiError`].
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(r.into()),
        }
    }
}

/// The answer to an unknown path.
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// The answer to a known path with a method it does not take.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
}

/// Checks a `limit` query parameter: 1 to `max`, `default` when absent.
pub fn limit(value: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit: {n} is out of range; give 1 to {max}"
        ))),
    }
}

/// An optional JSON body: empty (or only whitespace) or `null` is `T::default()`.
pub fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

/// Deserializes `T` with whole floats (`3.0`, an integer to JSON Schema) read as integers, for
/// integer fields of request bodies (`#[serde(default, deserialize_with = "whole_numbers")]`).
pub fn whole_numbers<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    use serde::Deserialize;
    serde_json::from_value(dth_model::whole_numbers(serde_json::Value::deserialize(d)?))
        .map_err(serde::de::Error::custom)
}
