//! The audit log page (admin, `GET /audit`): who changed what, newest first, filtered by actor,
//! action, target and a range of dates (whole days in UTC), 50 events a page — the same hub call,
//! filter and paging as `GET /api/v1/audit`.

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use chrono::NaiveDate;
use dth_store::AuditFilter;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::render::{Page, urlencode};
use crate::AppState;
use crate::views::EventView;

/// Events per page.
const PAGE_SIZE: u32 = 50;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/audit", get(list))
}

/// The page's filters (all optional, kept in the links).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AuditQuery {
    /// Actors containing this.
    #[serde(default)]
    actor: String,
    /// Actions (event kinds) starting with this.
    #[serde(default)]
    kind: String,
    /// This target (a user's email, a secret's name, a token) or task id.
    #[serde(default)]
    target: String,
    /// First day, `YYYY-MM-DD` (UTC).
    #[serde(default)]
    from: String,
    /// Last day, `YYYY-MM-DD` (UTC), included.
    #[serde(default)]
    to: String,
    /// Events older than this id (the next page).
    #[serde(default)]
    before: Option<i64>,
}

impl AuditQuery {
    /// The query string of these filters, without the page.
    fn filters(&self) -> String {
        format!(
            "actor={}&kind={}&target={}&from={}&to={}",
            urlencode(&self.actor),
            urlencode(&self.kind),
            urlencode(&self.target),
            urlencode(&self.from),
            urlencode(&self.to)
        )
    }
}

/// The start of a day (`YYYY-MM-DD`, UTC) in Unix ms, `days` later; `None` for empty; an error
/// names the field.
fn day_start(field: &str, day: &str, days: i64) -> Result<Option<i64>, String> {
    let day = day.trim();
    if day.is_empty() {
        return Ok(None);
    }
    let date = NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|_| format!("{field}: {day:?} is not a date such as 2025-01-31"))?;
    let start = date
        .checked_add_signed(chrono::Duration::days(days))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| format!("{field}: {day:?} is out of range"))?;
    Ok(Some(start.and_utc().timestamp_millis()))
}

/// The store's filter of a page's query, and the error of a date that is not one (that bound
/// is left out).
fn filter(q: &AuditQuery) -> (AuditFilter, Option<(&'static str, String)>) {
    let blank = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let mut error = None;
    let mut bound = |field: &'static str, day: &str, days: i64| {
        day_start(field, day, days).unwrap_or_else(|message| {
            error.get_or_insert((field, message));
            None
        })
    };
    let since = bound("from", &q.from, 0);
    let until = bound("to", &q.to, 1);
    let filter = AuditFilter {
        kind_prefix: blank(&q.kind),
        actor: blank(&q.actor),
        target: blank(&q.target),
        before_id: q.before,
        since,
        until,
        limit: PAGE_SIZE,
    };
    (filter, error)
}

/// `GET /audit`.
async fn list(page: Page, Query(q): Query<AuditQuery>) -> Response {
    let (filter, error) = filter(&q);
    let events = match page.state.hub.audit_log(&page.actor, &filter).await {
        Ok(e) => e,
        Err(e) => return page.fail(e),
    };
    let next = (events.len() as u32 == PAGE_SIZE)
        .then(|| events.last().map(|e| e.id))
        .flatten()
        .map(|id| format!("/audit?{}&before={id}", q.filters()));
    let first = q.before.map(|_| format!("/audit?{}", q.filters()));
    let events: Vec<EventView> = events.into_iter().map(EventView::from).collect();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let (error_field, error) = error.map_or((None, None), |(f, m)| (Some(f), Some(m)));
    let mut r = page.render(
        "admin/audit.html",
        "audit",
        context! { events, filter => &q, error_field, error, next, first },
    );
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_whole_utc_days() {
        assert_eq!(day_start("from", "", 0), Ok(None));
        assert_eq!(
            day_start("from", "2025-01-31", 0),
            Ok(Some(1_738_281_600_000))
        );
        assert_eq!(
            day_start("to", "2025-01-31", 1),
            Ok(Some(1_738_281_600_000 + 86_400_000))
        );
        assert!(
            day_start("to", "31.01.2025", 1)
                .unwrap_err()
                .starts_with("to:")
        );
        let q = AuditQuery {
            actor: "a b".into(),
            ..AuditQuery::default()
        };
        assert_eq!(q.filters(), "actor=a+b&kind=&target=&from=&to=");
    }
}
