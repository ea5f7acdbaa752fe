/*!
The hub's HTTP API: JSON over HTTP on top of the runtime's control surface ([`dth_runtime::Hub`]) and
its store, with an OpenAPI document generated from the handlers (utoipa). The web portal and user
accounts come later; for now every `/api/v1` route except the OpenAPI document needs an API token.

- Layout: [`api`] holds the JSON handlers (one module per area) and the OpenAPI document, [`auth`]
  who the caller is, [`views`] the view types every front end renders, [`error`] the one error type.
- [`router`] builds the [`axum::Router`] for a hub; [`serve`] runs it on a listener until a
  [`CancellationToken`] is cancelled, then finishes the requests in flight (graceful shutdown).
- Routes: `GET /health` (no auth), `GET /metrics` (Prometheus text, outside sign-in: open, or
  behind its own bearer token, [`metrics`]), `GET /api/v1/openapi.json`, the rendered API docs at
  `/api/docs/` (Swagger UI, its files in the binary) and `GET /api/v1/auth/providers`
  (no auth), `GET /auth/oidc/login` and `/auth/oidc/callback` (sign-in through an OpenID Connect
  provider, [`auth::oidc`]), and under `/api/v1`: tasks
  (create, list, get with the latest run, start, stop, delete), runs (list, get with counters, items by
  state paginated by id, retry dead items), events of a task, and secrets (put, list, delete).
- **Data in**: JSON bodies, deserialized into the model's types ([`dth_model::TaskSpec`]) and checked
  by the hub before anything is written; a bad body is a 400 whose message names the field, and nothing
  is created. **Data out**: the view types ([`views::TaskView`], [`views::RunView`],
  [`views::ItemView`], …) that every front end renders, every error as `{"error": "…"}` with its status ([`error::ApiError`]).
- **Auth**: `Authorization: Bearer <token>`, checked against the store's hashed tokens
  ([`dth_store::Store::check_token`]); the token's name becomes the actor `api:<name>` of the hub calls
  and the event log. Missing or wrong: 401 with `WWW-Authenticate: Bearer`.
- Bodies are limited to [`BODY_LIMIT`], requests time out after [`REQUEST_TIMEOUT`], every request is
  traced (method, path, status, latency; never headers or bodies) and counted in the metrics by its
  route template and status ([`metrics::track`]).

What it never does: return or log a secret's value (secrets are write-only here, and task views mask
any key material left in a spec), leak a store error's detail to a client (500 with a generic message,
detail in the log), or write anything on a request it refuses.
*/

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use dth_runtime::Hub;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub mod api;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod portal;
pub mod views;

pub use error::{ApiError, ErrorBody};

/// Largest request body accepted (1 MiB).
pub const BODY_LIMIT: usize = 1024 * 1024;
/// How long one request may take before it is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The runtime's control surface.
    pub hub: Arc<Hub>,
    /// How the hub is reached.
    pub web: Arc<WebConfig>,
}

/// How people reach the hub.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// `scheme://host[:port]` of the public URL: state-changing cookie requests must come from it.
    pub public_origin: String,
    /// Mark cookies `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// Sign-in through an OpenID Connect provider, when one is configured.
    pub oidc: Option<Arc<auth::oidc::OidcLogin>>,
    /// How often a progress stream sends an update (1 s).
    pub progress_every: std::time::Duration,
    /// The bearer token `GET /metrics` needs; `None`: it is open.
    pub metrics_token: Option<metrics::MetricsToken>,
}

impl WebConfig {
    /// The configuration for a public URL (`https://dth.example.com`, `http://127.0.0.1:8080`).
    pub fn new(public_url: &url::Url) -> WebConfig {
        WebConfig {
            public_origin: public_url.origin().ascii_serialization(),
            secure_cookies: public_url.scheme() == "https",
            oidc: None,
            progress_every: std::time::Duration::from_secs(1),
            metrics_token: None,
        }
    }

    /// The same with `GET /metrics` behind this bearer token.
    pub fn with_metrics_token(mut self, token: metrics::MetricsToken) -> WebConfig {
        self.metrics_token = Some(token);
        self
    }

    /// The same with sign-in through this OpenID Connect provider.
    pub fn with_oidc(mut self, oidc: auth::oidc::OidcLogin) -> WebConfig {
        self.oidc = Some(Arc::new(oidc));
        self
    }
}

/// The hub's HTTP surface: `/health`, the OpenID Connect sign-in routes ([`auth::oidc`]) and the
/// `/api/v1` routes, each request's caller found by [`auth::authenticate`]; `/metrics` beside them
/// with its own token check ([`metrics::scrape`]). Installs the process's metrics recorder.
pub fn router(hub: Arc<Hub>, web: WebConfig) -> Router {
    dth_runtime::metrics::install();
    let scrape = metrics::MetricsState {
        hub: Arc::clone(&hub),
        token: web.metrics_token.clone(),
    };
    let state = AppState {
        hub,
        web: Arc::new(web),
    };
    Router::new()
        .merge(portal::router())
        .route("/health", get(health))
        .route(auth::oidc::LOGIN_PATH, get(auth::oidc::login))
        .route(auth::oidc::CALLBACK_PATH, get(auth::oidc::callback))
        .nest("/api/v1", api::router())
        .merge(api::openapi::docs_page())
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        // Added after the sign-in layer, so that it does not wrap it: a metrics token is no API token.
        .route(metrics::PATH, get(metrics::scrape).with_state(scrape))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // The span names the path only: a query may hold an authorization code or `state`.
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        // Outermost: counts every answer, the timeouts and refusals of the layers above too.
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

/// Serves the API of `hub` on `listener` until `shutdown` is cancelled; requests in flight are then
/// finished before it returns.
pub async fn serve(
    hub: Arc<Hub>,
    web: WebConfig,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP API listening");
    }
    let app = router(hub, web).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// The answer of `GET /health`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` when the store answers.
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
}

/// Whether the hub and its store answer.
#[utoipa::path(get, path = "/health", tag = "health",
    responses(
        (status = 200, description = "The hub and its store answer", body = Health),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn health(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    let store = state.hub.store();
    if let Err(e) = state.hub.store_answers().await {
        tracing::error!("health: store does not answer: {e}");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the {} store does not answer", store.backend()),
        ));
    }
    Ok(axum::Json(Health {
        status: "ok",
        store: store.backend(),
    }))
}
