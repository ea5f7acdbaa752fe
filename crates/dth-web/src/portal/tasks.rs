//! The task list (`GET /tasks`: filter by status and kind, search by name, pages of 25, each
//! task with its latest run's progress and result) and the actions on one task that the list and
//! the detail page share: start, stop, clone and delete (`POST /tasks/{id}/start|stop|clone|delete`).
//! [`summary`] gives the one-line source → destination and schedule texts every page shows.

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dth_store::Task;
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::render::Page;
use crate::AppState;
use crate::views::TaskDetail;

/// Tasks per page of the list.
pub const PAGE_SIZE: usize = 25;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tasks", get(list))
        .route("/tasks/{id}/start", post(start))
        .route("/tasks/{id}/stop", post(stop))
        .route("/tasks/{id}/clone", post(clone))
        .route("/tasks/{id}/delete", post(delete))
}

/// The list's filters.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct ListQuery {
    /// A task status (`IN_PROGRESS`…), or empty for all.
    #[serde(default)]
    status: String,
    /// `s3`, `image`, or empty for both.
    #[serde(default)]
    kind: String,
    /// Part of the name, any case.
    #[serde(default)]
    q: String,
    /// 1-based page.
    #[serde(default)]
    page: Option<usize>,
}

/// How a page shows a task besides its view: where from, where to, when.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The source, as a location (`aws s3://bucket/prefix/`, `docker://host/repo`).
    pub source: String,
    /// The destination, the same way.
    pub destination: String,
    /// `once`, `every`, or `cron`.
    pub schedule_kind: &'static str,
    /// The interval (`1 h 30 min`) or the cron expression.
    pub schedule_value: String,
}

/// The source, destination and schedule of a stored spec.
pub fn summary(spec: &Value) -> Summary {
    let side = |name: &str| -> String {
        let s = &spec[name];
        if let Some(loc) = s.get("location").and_then(Value::as_str) {
            return loc.to_string();
        }
        let provider = s["provider"].as_str().unwrap_or("");
        let bucket = s["bucket"].as_str().unwrap_or("");
        let prefix = s["prefix"].as_str().unwrap_or("");
        format!("{provider} s3://{bucket}/{prefix}")
    };
    let (schedule_kind, schedule_value) = match &spec["schedule"] {
        Value::String(s) if s == "once" => ("once", String::new()),
        Value::Object(m) if m.contains_key("every-seconds") => (
            "every",
            every(m["every-seconds"].as_u64().unwrap_or_default()),
        ),
        Value::Object(m) if m.contains_key("cron") => {
            ("cron", m["cron"].as_str().unwrap_or_default().to_string())
        }
        _ => ("cron", "0 * * * *".into()),
    };
    Summary {
        source: side("source"),
        destination: side("destination"),
        schedule_kind,
        schedule_value,
    }
}

/// An interval for people: `90` → `1 min 30 s`, `3600` → `1 h`.
fn every(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    [(h, "h"), (m, "min"), (s, "s")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n} {u}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a task passes the list's filters.
fn matches(task: &Task, q: &ListQuery) -> bool {
    (q.status.is_empty() || task.status.name() == q.status)
        && (q.kind.is_empty() || task.kind == q.kind)
        && (q.q.trim().is_empty()
            || task
                .name
                .to_lowercase()
                .contains(&q.q.trim().to_lowercase()))
}

/// `GET /tasks`.
async fn list(page: Page, Query(q): Query<ListQuery>) -> Response {
    let hub = &page.state.hub;
    let tasks = match hub.tasks(&page.actor).await {
        Ok(t) => t,
        Err(e) => return page.fail(e),
    };
    let matching: Vec<Task> = tasks.into_iter().filter(|t| matches(t, &q)).collect();
    let total = matching.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let current = q.page.unwrap_or(1).clamp(1, pages);
    let mut rows = Vec::new();
    for task in matching
        .into_iter()
        .skip((current - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
    {
        let s = summary(&task.spec);
        match TaskDetail::of(hub, &page.actor, task).await {
            Ok(d) => rows.push(context! { task => d, summary => s }),
            Err(e) => return page.fail(e),
        }
    }
    let link = |p: usize| {
        format!(
            "/tasks?status={}&kind={}&q={}&page={p}",
            q.status,
            q.kind,
            super::render::urlencode(&q.q)
        )
    };
    page.render(
        "tasks/list.html",
        "tasks",
        context! {
            rows => rows,
            filter => &q,
            statuses => dth_model::TaskStatus::ALL.iter().map(|s| s.name()).collect::<Vec<_>>(),
            total => total,
            from => if total == 0 { 0 } else { (current - 1) * PAGE_SIZE + 1 },
            to => (current * PAGE_SIZE).min(total),
            prev => (current > 1).then(|| link(current - 1)),
            next => (current < pages).then(|| link(current + 1)),
        },
    )
}

/// After an action: the page the form came from again (htmx), or the task.
fn back(page: &Page, id: &str) -> Response {
    if super::render::is_htmx(&page.headers) {
        let mut r = ().into_response();
        r.headers_mut()
            .insert("hx-refresh", HeaderValue::from_static("true"));
        r
    } else {
        page.redirect(&format!("/tasks/{id}"))
    }
}

/// `POST /tasks/{id}/start`: a run now.
async fn start(page: Page, Path(id): Path<String>) -> Response {
    match page.state.hub.start_task(&page.actor, &id).await {
        Ok(_) => back(&page, &id),
        Err(e) => page.fail(e),
    }
}

/// `POST /tasks/{id}/stop`: no new runs; work in flight cancelled.
async fn stop(page: Page, Path(id): Path<String>) -> Response {
    match page.state.hub.stop_task(&page.actor, &id).await {
        Ok(_) => back(&page, &id),
        Err(e) => page.fail(e),
    }
}

/// `POST /tasks/{id}/clone`: a copy, then its page.
async fn clone(page: Page, Path(id): Path<String>) -> Response {
    match page.state.hub.clone_task(&page.actor, &id, None).await {
        Ok(t) => page.redirect(&format!("/tasks/{}", t.id)),
        Err(e) => page.fail(e),
    }
}

/// `POST /tasks/{id}/delete`: the task with its runs, items and events; then the list.
async fn delete(page: Page, Path(id): Path<String>) -> Response {
    match page.state.hub.delete_task(&page.actor, &id).await {
        Ok(()) => page.redirect("/tasks"),
        Err(e) => page.fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summarizes_sides_and_schedules() {
        let s = summary(&json!({
            "kind": "s3",
            "source": {"provider": "aws", "bucket": "a", "prefix": "p/"},
            "destination": {"provider": "minio", "bucket": "b", "prefix": ""},
            "schedule": {"every-seconds": 60}
        }));
        assert_eq!(s.source, "aws s3://a/p/");
        assert_eq!(s.destination, "minio s3://b/");
        assert_eq!(
            (s.schedule_kind, s.schedule_value.as_str()),
            ("every", "1 min")
        );
        assert_eq!(every(5400), "1 h 30 min");
        assert_eq!(every(45), "45 s");
        let s = summary(&json!({
            "kind": "image",
            "source": {"location": "docker://r1/app"},
            "destination": {"location": "docker://r2"},
            "schedule": "once"
        }));
        assert_eq!(s.source, "docker://r1/app");
        assert_eq!(s.schedule_kind, "once");
    }
}
