//! The page of one task (`GET /tasks/{id}`): what it is and where it copies, its operator
//! actions, the live counters of its current run (pushed over SSE by [`live`]), throughput and
//! object charts ([`charts`]), the run history, the items of one run (filtered by state and key
//! prefix, 100 a page by id cursor) with retry of dead items (`POST /runs/{id}/retry`), the event
//! log, its settings (editable by operators through [`edit`]) and the run's report downloads.
//!
//! Every number comes from the same hub calls and view types as the JSON API: `Hub::run` for
//! counters (aggregated by the store), `Hub::items` for items (one page, never a count),
//! `Hub::watch` for live progress and `Hub::samples` for charts.

mod charts;
mod edit;
mod live;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::response::Response;
use axum::routing::{get, post};
use dth_model::ItemState;
use dth_store::{ItemQuery, now_ms};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::render::{Page, urlencode};
use super::tasks::summary;
use crate::AppState;
use crate::views::{EventView, ItemView, RunDetail, TaskView};

/// Items per page of the items table.
pub const ITEMS_PAGE: u32 = 100;
/// Runs shown in the history.
const HISTORY: u32 = 10;
/// Events shown in the log.
const EVENTS: u32 = 50;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tasks/{id}", get(detail))
        .route("/tasks/{id}/live", get(live::stream))
        .route("/tasks/{id}/edit", get(edit::form).post(edit::save))
        .route("/runs/{id}/retry", post(retry))
}

/// The query of the task page.
#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    /// The run whose items are shown (default: the latest).
    #[serde(default)]
    run: Option<String>,
    /// Only items in this state.
    #[serde(default)]
    state: String,
    /// Only items whose key starts with this.
    #[serde(default)]
    prefix: String,
    /// Only items after this id (the next page).
    #[serde(default)]
    after: Option<i64>,
    /// The charts' range: `1h`, `12h`, `1d`, `1w`.
    #[serde(default)]
    range: String,
}

/// What the counters show: a run's counters with its live rate, or a start on its way.
#[derive(Debug, Clone, Serialize)]
pub struct LiveView {
    /// The run followed; `None` before the first run.
    pub run: Option<RunDetail>,
    /// Bytes written so far (copied objects and work in flight).
    pub bytes_done: u64,
    /// Bytes per second now; `None` when not known (the page was just rendered).
    pub rate_bytes_per_s: Option<f64>,
    /// Items ended per second now.
    pub items_per_s: Option<f64>,
    /// Seconds left at the current rate.
    pub eta_seconds: Option<u64>,
    /// A start is pending: its run is about to begin.
    pub pending: bool,
}

impl LiveView {
    /// The counters of a run as stored, before any live update.
    fn of_run(run: Option<RunDetail>, pending: bool) -> LiveView {
        let bytes_done = run
            .as_ref()
            .map_or(0, |r| r.counters.copied_bytes + r.counters.bytes_in_flight);
        LiveView {
            run,
            bytes_done,
            rate_bytes_per_s: None,
            items_per_s: None,
            eta_seconds: None,
            pending,
        }
    }
}

impl From<crate::views::ProgressView> for LiveView {
    fn from(p: crate::views::ProgressView) -> Self {
        LiveView {
            run: Some(p.run),
            bytes_done: p.bytes_done,
            rate_bytes_per_s: Some(p.rate_bytes_per_s),
            items_per_s: Some(p.items_per_s),
            eta_seconds: p.eta_seconds,
            pending: false,
        }
    }
}

/// A run of the history: the run, its counters, how long it took (so far).
#[derive(Debug, Serialize)]
struct HistoryRow {
    #[serde(flatten)]
    run: RunDetail,
    duration_ms: i64,
}

/// An event of the log with how much it matters.
#[derive(Debug, Serialize)]
struct EventRow {
    #[serde(flatten)]
    event: EventView,
    /// `error`, `warning` or `info`.
    level: &'static str,
}

/// How much an event matters, by its kind.
fn level(kind: &str) -> &'static str {
    match kind {
        "item.dead" | "items.dead" | "alarm.failed" | "task.error" => "error",
        "run.skipped" | "run.stopped" | "task.stopped" => "warning",
        _ => "info",
    }
}

/// The item state of the filter, when it names one.
fn state_filter(s: &str) -> Option<ItemState> {
    s.parse().ok()
}

/// `GET /tasks/{id}`.
async fn detail(page: Page, Path(id): Path<String>, Query(q): Query<DetailQuery>) -> Response {
    let hub = &page.state.hub;
    let actor = &page.actor;
    let task = match hub.get_task(actor, &id).await {
        Ok(t) => t,
        Err(e) => return page.fail(e),
    };
    let pending = task.run_requested_by.is_some();
    let runs = match hub.runs(actor, &id, HISTORY).await {
        Ok(r) => r,
        Err(e) => return page.fail(e),
    };
    let now = now_ms();
    let mut history = Vec::with_capacity(runs.len());
    for run in runs {
        match hub.run(actor, run.id).await {
            Ok(r) => {
                let detail = RunDetail::from(r);
                let duration_ms = detail.run.ended_at.unwrap_or(now) - detail.run.started_at;
                history.push(HistoryRow {
                    run: detail,
                    duration_ms,
                });
            }
            Err(e) => return page.fail(e),
        }
    }
    let latest = history.first().map(|h| h.run.clone());
    // The run whose items are shown: the one asked for (of this task), else the latest.
    let selected = match q.run.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => {
            let Ok(run_id) = r.parse::<i64>() else {
                return page.fail(dth_runtime::Error::NotFound(format!("run {r}")));
            };
            match hub.run(actor, run_id).await {
                Ok(r) if r.0.task_id == id => Some(RunDetail::from(r)),
                Ok(_) => return page.fail(dth_runtime::Error::NotFound(format!("run {run_id}"))),
                Err(e) => return page.fail(e),
            }
        }
        None => latest.clone(),
    };
    let state = state_filter(&q.state);
    let prefix = q.prefix.trim().to_string();
    let after = q.after.unwrap_or(0).max(0);
    let (items, next_after) = match &selected {
        Some(run) => {
            let query = ItemQuery {
                state,
                key_prefix: (!prefix.is_empty()).then(|| prefix.clone()),
                after_id: after,
                limit: ITEMS_PAGE,
            };
            match hub.items(actor, run.run.id, &query).await {
                Ok(items) => {
                    let next = (items.len() as u32 == ITEMS_PAGE)
                        .then(|| items.last().map(|i| i.id))
                        .flatten();
                    (items.into_iter().map(ItemView::from).collect(), next)
                }
                Err(e) => return page.fail(e),
            }
        }
        None => (Vec::<ItemView>::new(), None),
    };
    let events = match hub.task_events(actor, &id, EVENTS).await {
        Ok(e) => e
            .into_iter()
            .map(|e| EventRow {
                level: level(&e.kind),
                event: EventView::from(e),
            })
            .collect::<Vec<_>>(),
        Err(e) => return page.fail(e),
    };
    let charts = match charts::task_charts(hub, actor, &id, &q.range, now).await {
        Ok(c) => c,
        Err(e) => return page.fail(e),
    };
    let live_run = latest.clone();
    let active = live_run.as_ref().is_some_and(|r| r.run.status.is_active());
    // While a start is pending, the stream waits for a run newer than the latest one.
    let live_url = format!(
        "/tasks/{id}/live?range={}{}",
        charts.range,
        if pending {
            format!("&newer_than={}", live_run.as_ref().map_or(0, |r| r.run.id))
        } else {
            String::new()
        }
    );
    let selected_id = selected.as_ref().map(|r| r.run.id);
    let filter_link = |after: Option<i64>| {
        let mut link = format!(
            "/tasks/{id}?run={}&state={}&prefix={}&range={}",
            selected_id.map(|r| r.to_string()).unwrap_or_default(),
            urlencode(&q.state),
            urlencode(&prefix),
            charts.range
        );
        if let Some(a) = after {
            link.push_str(&format!("&after={a}"));
        }
        link.push_str("#items");
        link
    };
    let spec = task.spec.clone();
    let settings = edit::Settings::of(&task.kind, &spec);
    let view = TaskView::from(task);
    page.render(
        "detail/page.html",
        "tasks",
        context! {
            task => view,
            summary => summary(&spec),
            settings => settings,
            live => LiveView::of_run(live_run, pending),
            live_url => live_url,
            watching => active || pending,
            history => history,
            selected => selected,
            items => items,
            item_states => ItemState::ALL.iter().map(|s| s.name()).collect::<Vec<_>>(),
            filter => context! { state => state.map(|s| s.name()), prefix => prefix, after => q.after },
            next_page => next_after.map(|a| filter_link(Some(a))),
            first_page => (after > 0).then(|| filter_link(None)),
            events => events,
            charts => charts,
            ranges => charts::RANGES.iter().map(|(name, _, key)| context! { name => name, key => key }).collect::<Vec<_>>(),
        },
    )
}

/// The retry form: one item (`one`), the checked ones (`ids`), or every dead item (`all`).
fn retry_ids(body: &[u8]) -> Result<Option<Vec<i64>>, &'static str> {
    let mut one = None;
    let mut ids = Vec::new();
    let mut all = false;
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "one" => one = v.parse::<i64>().ok(),
            "ids" => ids.extend(v.parse::<i64>().ok()),
            "scope" if v == "all" => all = true,
            _ => {}
        }
    }
    match (one, all) {
        (Some(id), _) => Ok(Some(vec![id])),
        (None, true) => Ok(None),
        (None, false) if ids.is_empty() => Err("detail.retry_none_selected"),
        (None, false) => Ok(Some(ids)),
    }
}

/// `POST /runs/{id}/retry`: queues dead items of a run again, then back to its items.
async fn retry(page: Page, Path(run): Path<String>, body: Bytes) -> Response {
    let hub = &page.state.hub;
    let Ok(run_id) = run.parse::<i64>() else {
        return page.fail(dth_runtime::Error::NotFound(format!("run {run}")));
    };
    let task_id = match hub.run(&page.actor, run_id).await {
        Ok((r, _)) => r.task_id,
        Err(e) => return page.fail(e),
    };
    let ids = match retry_ids(&body) {
        Ok(ids) => ids,
        Err(key) => {
            let message = super::i18n::text(page.lang, key, &[]);
            return page.fail(crate::ApiError::bad_request(message));
        }
    };
    match hub.retry_dead(&page.actor, run_id, ids.as_deref()).await {
        Ok(_) => page.redirect(&format!("/tasks/{task_id}?run={run_id}#items")),
        Err(e) => page.fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_form_names_one_some_or_all_items() {
        assert_eq!(retry_ids(b"one=7&ids=1&ids=2"), Ok(Some(vec![7])));
        assert_eq!(
            retry_ids(b"ids=1&ids=2&scope=selected"),
            Ok(Some(vec![1, 2]))
        );
        assert_eq!(retry_ids(b"ids=1&scope=all"), Ok(None));
        assert_eq!(
            retry_ids(b"scope=selected"),
            Err("detail.retry_none_selected")
        );
    }

    #[test]
    fn events_have_a_level_by_kind() {
        assert_eq!(level("item.dead"), "error");
        assert_eq!(level("run.stopped"), "warning");
        assert_eq!(level("run.started"), "info");
    }
}
