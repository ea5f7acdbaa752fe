//! The web portal: server-rendered pages over the same [`dth_runtime::Hub`] calls and
//! [`crate::views`] as the JSON API, so a page never computes a number the API computes
//! differently. Templates (minijinja, `templates/`), the string catalog (`catalog/`, English and
//! Simplified Chinese) and the static files (`static/`: stylesheet, page script, vendored htmx 2
//! and its SSE extension) are compiled into the binary; `dth serve` serves everything.
//!
//! - [`render`]: the template environment, the filters, and [`render::Page`], the signed-in
//!   person a page is for (language, role, CSRF token).
//! - [`i18n`]: languages and the catalog. [`assets`]: `/static/`.
//! - One module per area: [`signin`] (sign-in, password change, sign-out), [`overview`] (`/`),
//!   [`tasks`] (the task list and its actions), [`wizard`] (creating tasks), [`detail`] (one
//!   task: live progress, charts, runs, items, events, settings), [`secrets`], [`users`],
//!   [`audit`], [`settings`] and [`profile`].
//!
//! Pages use htmx's boost: links and forms load over XHR with the session's CSRF token in the
//! `X-CSRF-Token` header (set once on `<body>`), so the sign-in middleware checks every form post
//! like an API call; a forged post without the token is refused before any handler runs. Roles are
//! checked by the hub: a page only hides the controls a role may not use.

use axum::Router;
use axum::routing::get;

use crate::AppState;

pub mod assets;
pub mod audit;
pub mod detail;
pub mod i18n;
pub mod overview;
pub mod profile;
pub mod render;
pub mod secrets;
pub mod settings;
pub mod signin;
pub mod tasks;
pub mod users;
pub mod wizard;

/// Every portal route.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/static/{*path}", get(assets::file))
        .merge(signin::routes())
        .merge(overview::routes())
        .merge(tasks::routes())
        .merge(wizard::routes())
        .merge(detail::routes())
        .merge(secrets::routes())
        .merge(users::routes())
        .merge(audit::routes())
        .merge(settings::routes())
        .merge(profile::routes())
}
