//! `GET /tasks/{id}/live`: the task page's live updates as Server-Sent Events, on the same
//! [`dth_runtime::Hub::watch`] stream as `GET /api/v1/tasks/{id}/progress`. Each `progress`
//! event's data is the rendered counters fragment (`detail/counters.html`), each `chart` event's
//! (every few seconds, and once at the end) the charts (`detail/charts.html`); an `end` event
//! with the run's last status follows the run's end, and the page closes the stream on it.
//!
//! A run started from the page: the start sets the task's pending flag and the page reloads with
//! `newer_than` = its latest run. The scheduler clears the flag a moment before it creates the
//! run, so a watch opened in between would follow the old run and end at once; the stream
//! therefore first waits (a bounded time) for a run newer than that one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use dth_store::now_ms;
use futures::{Stream, StreamExt};
use minijinja::context;
use serde::Deserialize;

use super::{LiveView, charts};
use crate::portal::render::Page;
use crate::views::ProgressView;

/// How often the charts are sent again while a run is active.
const CHART_EVERY: Duration = Duration::from_secs(5);
/// How long the stream waits for the run of a pending start.
const NEWER_RUN_WAIT: Duration = Duration::from_secs(30);
/// How often it looks for that run.
const NEWER_RUN_POLL: Duration = Duration::from_millis(250);

/// The query of the stream.
#[derive(Debug, Default, Deserialize)]
pub struct LiveQuery {
    /// The charts' range (`1h`…).
    #[serde(default)]
    range: String,
    /// Follow a run newer than this one (a start is pending).
    #[serde(default)]
    newer_than: Option<i64>,
}

/// What the stream sends about one look at the run.
enum Update {
    /// Counters (and maybe charts) of the run.
    Progress(Box<ProgressView>),
    /// The watch failed (the task was deleted…).
    Failed(String),
}

/// `GET /tasks/{id}/live`.
pub async fn stream(page: Page, Path(id): Path<String>, Query(q): Query<LiveQuery>) -> Response {
    // The task is checked before the stream starts, so a wrong id is a plain 404.
    if let Err(e) = page.state.hub.get_task(&page.actor, &id).await {
        return page.fail(e);
    }
    let page = Arc::new(page);
    let updates = updates(Arc::clone(&page), id.clone(), q.newer_than);
    let last_status = Arc::new(std::sync::Mutex::new(None::<String>));
    let seen = Arc::clone(&last_status);
    let mut last_chart: Option<Instant> = None;
    let range = q.range.clone();
    let (chart_page, chart_id, chart_range) = (Arc::clone(&page), id.clone(), range.clone());
    let events = updates
        .then(move |u| {
            let (page, id, range) = (Arc::clone(&page), id.clone(), range.clone());
            let chart_due = last_chart.is_none_or(|t| t.elapsed() >= CHART_EVERY);
            if chart_due {
                last_chart = Some(Instant::now());
            }
            let seen = Arc::clone(&seen);
            async move {
                let mut out = Vec::new();
                match u {
                    Update::Progress(p) => {
                        *seen.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(p.run.run.status.name().to_string());
                        out.push(counters_event(&page, LiveView::from(*p)));
                        if chart_due {
                            out.extend(chart_event(&page, &id, &range).await);
                        }
                    }
                    Update::Failed(message) => {
                        let html = page
                            .render_fragment("detail/live_error.html", context! { message })
                            .unwrap_or_default();
                        out.push(Event::default().event("progress").data(html));
                    }
                }
                futures::stream::iter(out.into_iter().map(Ok::<_, std::convert::Infallible>))
            }
        })
        .flatten()
        .chain(
            futures::stream::once(async move {
                let mut out = Vec::new();
                out.extend(chart_event(&chart_page, &chart_id, &chart_range).await);
                let status = last_status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    // An event without data is dropped by browsers: "none" before any run.
                    .unwrap_or_else(|| "none".into());
                out.push(Event::default().event("end").data(status));
                futures::stream::iter(out.into_iter().map(Ok))
            })
            .flatten(),
        );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The watch of the task's run, after waiting for a run newer than `newer_than` when given.
fn updates(
    page: Arc<Page>,
    id: String,
    newer_than: Option<i64>,
) -> impl Stream<Item = Update> + Send {
    let every = page.state.web.progress_every;
    futures::stream::once(async move {
        let hub = &page.state.hub;
        if let Some(old) = newer_than {
            let started = Instant::now();
            while started.elapsed() < NEWER_RUN_WAIT {
                match hub.runs(&page.actor, &id, 1).await {
                    Ok(runs) if runs.first().is_some_and(|r| r.id > old) => break,
                    Ok(_) => tokio::time::sleep(NEWER_RUN_POLL).await,
                    Err(_) => break,
                }
            }
        }
        hub.watch(&page.actor, &id, every).await
    })
    .flat_map(|watch| match watch {
        Ok(s) => s
            .map(|p| match p {
                Ok(p) => Update::Progress(Box::new(ProgressView::from(p))),
                Err(e) => Update::Failed(crate::ApiError::from(e).message().to_string()),
            })
            .left_stream(),
        Err(e) => futures::stream::once(futures::future::ready(Update::Failed(
            crate::ApiError::from(e).message().to_string(),
        )))
        .right_stream(),
    })
}

/// A `progress` event: the counters fragment.
fn counters_event(page: &Page, live: LiveView) -> Event {
    let html = page
        .render_fragment("detail/counters.html", context! { live })
        .unwrap_or_else(|e| {
            tracing::error!("portal: rendering the counters failed: {e:#}");
            String::new()
        });
    Event::default().event("progress").data(html)
}

/// A `chart` event: both charts over the range; none when the samples cannot be read.
async fn chart_event(page: &Page, id: &str, range: &str) -> Option<Event> {
    let charts = charts::task_charts(&page.state.hub, &page.actor, id, range, now_ms())
        .await
        .ok()?;
    let html = page
        .render_fragment("detail/charts.html", context! { charts })
        .map_err(|e| tracing::error!("portal: rendering the charts failed: {e:#}"))
        .ok()?;
    Some(Event::default().event("chart").data(html))
}
