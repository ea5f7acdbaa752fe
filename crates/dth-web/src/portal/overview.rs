//! The overview (`GET /`): tasks by status, what all runs moved in the last 24 hours, the runs in
//! progress with their progress (the fragment `GET /overview/active`, polled every few seconds),
//! and the tasks that need attention (ERROR, or dead items in the latest run) with a link straight
//! to the failing items.

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use minijinja::context;

use super::render::Page;
use super::tasks::summary;
use crate::AppState;
use crate::views::TaskDetail;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/overview/active", get(active))
}

/// Every task with its latest run (the runs read at once).
async fn details(page: &Page) -> Result<Vec<TaskDetail>, Response> {
    TaskDetail::all(&page.state.hub, &page.actor)
        .await
        .map_err(|e| page.fail(e))
}

/// The runs in progress, as rows for the template.
fn active_rows(details: &[TaskDetail]) -> Vec<minijinja::Value> {
    details
        .iter()
        .filter(|d| {
            d.latest_run
                .as_ref()
                .is_some_and(|r| r.run.status.is_active())
        })
        .map(|d| context! { task => d, summary => summary(&d.task.spec) })
        .collect()
}

/// `GET /`.
async fn overview(page: Page) -> Response {
    let details = match details(&page).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let since = dth_store::now_ms() - 24 * 3600 * 1000;
    let (bytes, items) = match page.state.hub.moved_since(&page.actor, since).await {
        Ok(m) => m,
        Err(e) => return page.fail(e),
    };
    let by_status: Vec<_> = dth_model::TaskStatus::ALL
        .iter()
        .map(|s| {
            let n = details.iter().filter(|d| d.task.status == *s).count();
            context! { status => s.name(), count => n }
        })
        .collect();
    let attention: Vec<_> = details
        .iter()
        .filter(|d| {
            d.task.status == dth_model::TaskStatus::Error
                || d.latest_run.as_ref().is_some_and(|r| r.counters.dead > 0)
        })
        .map(|d| context! { task => d })
        .collect();
    page.render(
        "overview.html",
        "overview",
        context! {
            total => details.len(),
            by_status => by_status,
            moved_bytes => bytes,
            moved_items => items,
            active => active_rows(&details),
            attention => attention,
        },
    )
}

/// `GET /overview/active`: the runs in progress, for the overview to poll.
async fn active(page: Page) -> Response {
    match details(&page).await {
        Ok(d) => page.render(
            "overview_active.html",
            "overview",
            context! { active => active_rows(&d) },
        ),
        Err(r) => r,
    }
}
