//! The JSON API under `/api/v1`: one module per area, each handler a thin rendering of a
//! [`dth_runtime::Hub`] call into a view ([`crate::views`]); the OpenAPI document is generated from
//! the handlers' annotations ([`openapi`]). Which role each call needs is decided by the hub;
//! [`ROUTES`] lists every route, so tests can try each one with each role.

use axum::Router;

use crate::AppState;

pub mod audit;
pub mod events;
pub mod openapi;
pub mod plan;
pub mod runs;
pub mod secrets;
pub mod session;
pub mod settings;
pub mod tasks;
pub mod tokens;
pub mod users;

/// Declares the routes once: [`ROUTES`] (method, path) and the router that serves them.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every route under `/api/v1`, as (method, path), in the order they are served.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn add_routes(router: Router<AppState>) -> Router<AppState> {
            $(let router = router.route($path, axum::routing::$method($handler));)*
            router
        }
    };
}

routes! {
    get "/openapi.json" => openapi::document,
    get "/auth/providers" => session::providers,
    post "/session" => session::sign_in,
    get "/session" => session::current,
    delete "/session" => session::sign_out,
    get "/me" => session::me,
    put "/me/password" => session::change_password,
    put "/me/language" => session::set_language,
    get "/users" => users::list,
    post "/users" => users::create,
    get "/users/{id}" => users::get,
    patch "/users/{id}" => users::update,
    delete "/users/{id}" => users::delete,
    post "/users/{id}/reset-password" => users::reset_password,
    post "/users/{id}/unlock" => users::unlock,
    get "/tokens" => tokens::list,
    post "/tokens" => tokens::create,
    delete "/tokens/{id}" => tokens::revoke,
    get "/audit" => audit::list,
    post "/plan" => plan::plan,
    post "/tasks" => tasks::create,
    get "/tasks" => tasks::list,
    get "/tasks/{id}" => tasks::get,
    patch "/tasks/{id}" => tasks::edit,
    delete "/tasks/{id}" => tasks::delete,
    post "/tasks/{id}/start" => tasks::start,
    post "/tasks/{id}/stop" => tasks::stop,
    post "/tasks/{id}/clone" => tasks::clone,
    get "/tasks/{id}/progress" => tasks::progress,
    get "/tasks/{id}/runs" => runs::list,
    get "/tasks/{id}/events" => tasks::events,
    post "/tasks/{id}/events" => events::take,
    post "/tasks/{id}/events/token" => events::new_token,
    get "/runs/{id}" => runs::get,
    get "/runs/{id}/items" => runs::items,
    get "/runs/{id}/samples" => runs::samples,
    get "/runs/{id}/report" => runs::report,
    post "/runs/{id}/retry" => runs::retry,
    get "/settings/prices" => settings::prices,
    put "/settings/prices" => settings::put_prices,
    get "/settings/retention" => settings::retention,
    put "/settings/retention" => settings::put_retention,
    post "/settings/smtp/test" => settings::test_mail,
    get "/secrets" => secrets::list,
    put "/secrets/{name}" => secrets::put,
    delete "/secrets/{name}" => secrets::delete,
}

/// The routes under `/api/v1`.
pub fn router() -> Router<AppState> {
    add_routes(Router::new())
}
