//! The settings page (admin, `GET /settings`): the price table cost estimates use, edited row by
//! row (`POST /settings/prices`: the hub checks the whole table, and its error is shown by the row
//! it names), how many days the items of finished runs are kept (`POST /settings/retention`), and
//! a test mail through the SMTP server alarms use (`POST /settings/mail`). The same hub calls as
//! `GET`/`PUT /api/v1/settings/prices`, `GET`/`PUT /api/v1/settings/retention` and
//! `POST /api/v1/settings/smtp/test`.

use std::collections::BTreeMap;

use axum::extract::Query;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use dth_model::{PriceTable, Role};
use dth_runtime::MAX_PURGE_AFTER_DAYS;
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::render::Page;
use crate::AppState;

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings", get(show))
        .route("/settings/prices", post(save_prices))
        .route("/settings/retention", post(save_retention))
        .route("/settings/mail", post(test_mail))
}

/// The number fields of a price row, in the table's column order.
const NUMBERS: [&str; 5] = [
    "put_per_1000",
    "get_per_1000",
    "list_per_1000",
    "egress_internet_per_gb",
    "egress_region_per_gb",
];

/// One row of the editor, as typed.
#[derive(Debug, Clone, Default, Serialize)]
struct PriceRow {
    provider: String,
    region: String,
    currency: String,
    /// The five prices, as [`NUMBERS`].
    numbers: [String; 5],
    /// Ticked "remove".
    remove: bool,
    /// The row the hub's error names.
    invalid: bool,
}

impl PriceRow {
    /// Whether nothing was typed (the empty row for a new entry).
    fn is_blank(&self) -> bool {
        self.provider.trim().is_empty()
            && self.region.trim().is_empty()
            && self.currency.trim().is_empty()
            && self.numbers.iter().all(|n| n.trim().is_empty())
    }
}

/// The rows of a stored table.
fn rows_of(table: &PriceTable) -> Vec<PriceRow> {
    table
        .prices
        .iter()
        .map(|p| PriceRow {
            provider: p.provider.clone(),
            region: p.region.clone(),
            currency: p.currency.clone(),
            numbers: [
                p.put_per_1000,
                p.get_per_1000,
                p.list_per_1000,
                p.egress_internet_per_gb,
                p.egress_region_per_gb,
            ]
            .map(|n| n.to_string()),
            remove: false,
            invalid: false,
        })
        .collect()
}

/// The editor's rows from its form fields (`p{row}.{field}`), in row order.
fn rows_of_form(fields: &[(String, String)]) -> Vec<PriceRow> {
    let mut rows: BTreeMap<usize, PriceRow> = BTreeMap::new();
    for (name, value) in fields {
        let Some((row, field)) = name
            .strip_prefix('p')
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(i, f)| Some((i.parse::<usize>().ok()?, f)))
        else {
            continue;
        };
        let r = rows.entry(row).or_default();
        match field {
            "provider" => r.provider = value.clone(),
            "region" => r.region = value.clone(),
            "currency" => r.currency = value.clone(),
            "remove" => r.remove = true,
            f => {
                if let Some(i) = NUMBERS.iter().position(|n| *n == f) {
                    r.numbers[i] = value.clone();
                }
            }
        }
    }
    rows.into_values().collect()
}

/// The table the hub reads (`PUT /api/v1/settings/prices`' body) from the rows kept (not
/// removed, not blank), with the editor row of each entry; a price that is not a number is the
/// error, in the hub's words (`prices[N].field: …`).
fn table_of(rows: &[PriceRow]) -> Result<(serde_json::Value, Vec<usize>), String> {
    let mut prices = Vec::new();
    let mut at = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if row.remove || row.is_blank() {
            continue;
        }
        let n = prices.len();
        let mut entry = json!({
            "provider": row.provider.trim(),
            "region": row.region.trim(),
            "currency": row.currency.trim().to_ascii_uppercase(),
        });
        for (field, text) in NUMBERS.iter().zip(&row.numbers) {
            let text = text.trim();
            let value: f64 = if text.is_empty() {
                0.0
            } else {
                text.parse().map_err(|_| {
                    format!("prices[{n}].{field}: {text:?} is not a number such as 0.005")
                })?
            };
            entry[*field] = json!(value);
        }
        prices.push(entry);
        at.push(i);
    }
    Ok((json!({ "prices": prices }), at))
}

/// The entry index a hub error names (`prices[3].currency: …`).
fn entry_of(message: &str) -> Option<usize> {
    message
        .strip_prefix("prices[")
        .or_else(|| message.strip_prefix("price table: prices["))
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(n, _)| n.parse().ok())
}

/// What the page shows besides the table: saved notices, the retention as typed and its
/// error, the mail form's outcome.
#[derive(Debug, Default)]
struct Notes {
    prices_saved: bool,
    prices_error: Option<String>,
    retention_saved: bool,
    /// The days as typed, shown again with its error.
    retention_input: Option<String>,
    /// The typed days are not a whole number from 0 to [`MAX_PURGE_AFTER_DAYS`].
    retention_invalid: bool,
    /// The hub refused the retention (its words).
    retention_error: Option<String>,
    mail_to: String,
    mail: Option<Value>,
    mail_error: Option<String>,
}

/// Renders the page: the editor's rows (and a blank one for a new entry), the stored retention
/// and the notes.
async fn view(page: &Page, mut rows: Vec<PriceRow>, notes: Notes, status: StatusCode) -> Response {
    let retention = match page.state.hub.retention(&page.actor).await {
        Ok(r) => r.purge_items_after_days,
        Err(e) => return page.fail(e),
    };
    rows.push(PriceRow::default());
    let mut r = page.render(
        "admin/settings.html",
        "settings",
        context! {
            rows,
            numbers => NUMBERS,
            prices_saved => notes.prices_saved,
            prices_error => notes.prices_error,
            retention_days => retention,
            retention_input => notes.retention_input.unwrap_or_else(|| retention.to_string()),
            retention_saved => notes.retention_saved,
            retention_invalid => notes.retention_invalid,
            retention_error => notes.retention_error,
            retention_max => MAX_PURGE_AFTER_DAYS,
            mail_to => notes.mail_to,
            mail => notes.mail,
            mail_error => notes.mail_error,
            smtp => page.state.hub.config().smtp.is_some(),
        },
    );
    *r.status_mut() = status;
    // After a post the address bar shows the page, not the form's action.
    r.headers_mut()
        .insert("hx-replace-url", HeaderValue::from_static("/settings"));
    r
}

/// The admin check of this page, before a form is read: the hub lets viewers read prices (for
/// plans) but this page, like the changes it makes, is for admins.
fn refused(page: &Page) -> Option<Response> {
    page.actor
        .require(Role::Admin)
        .err()
        .map(|e| page.fail(dth_runtime::Error::from(e)))
}

/// The stored price table (admin).
async fn table(page: &Page) -> Result<PriceTable, Response> {
    if let Some(r) = refused(page) {
        return Err(r);
    }
    page.state
        .hub
        .prices(&page.actor)
        .await
        .map_err(|e| page.fail(e))
}

/// `?saved=prices` or `?saved=retention` after a change was stored.
#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    saved: Option<String>,
}

/// `GET /settings`.
async fn show(page: Page, Query(q): Query<ShowQuery>) -> Response {
    let table = match table(&page).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let notes = Notes {
        prices_saved: q.saved.as_deref() == Some("prices"),
        retention_saved: q.saved.as_deref() == Some("retention"),
        ..Notes::default()
    };
    view(&page, rows_of(&table), notes, StatusCode::OK).await
}

/// `POST /settings/prices`: the edited table replaces the stored one, or nothing changes and
/// the error is shown by its row.
async fn save_prices(page: Page, Form(fields): Form<Vec<(String, String)>>) -> Response {
    if let Some(r) = refused(&page) {
        return r;
    }
    let mut rows = rows_of_form(&fields);
    let (message, at) = match table_of(&rows) {
        Ok((body, at)) => match page.state.hub.put_prices(&page.actor, &body).await {
            Ok(_) => return page.redirect("/settings?saved=prices"),
            Err(e) => {
                let e = crate::ApiError::from(e);
                if e.status() != StatusCode::BAD_REQUEST {
                    return page.fail(e);
                }
                (e.message().to_string(), at)
            }
        },
        Err(message) => {
            // The rows a table would have been made of, for the row the error names.
            let at = (0..rows.len())
                .filter(|i| !rows[*i].remove && !rows[*i].is_blank())
                .collect::<Vec<_>>();
            (message, at)
        }
    };
    if let Some(row) = entry_of(&message).and_then(|n| at.get(n)) {
        rows[*row].invalid = true;
    }
    rows.retain(|r| !r.is_blank());
    let notes = Notes {
        prices_error: Some(message),
        ..Notes::default()
    };
    view(&page, rows, notes, StatusCode::BAD_REQUEST).await
}

/// The retention form.
#[derive(Debug, Deserialize)]
pub struct RetentionForm {
    #[serde(default)]
    purge_items_after_days: String,
}

/// The days typed, when they are a whole number from 0 to [`MAX_PURGE_AFTER_DAYS`].
fn days_of(typed: &str) -> Option<u32> {
    typed
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|d| *d <= MAX_PURGE_AFTER_DAYS)
}

/// `POST /settings/retention`: the days replace the stored retention, or nothing changes and the
/// field says why.
async fn save_retention(page: Page, Form(form): Form<RetentionForm>) -> Response {
    let table = match table(&page).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut notes = Notes {
        retention_input: Some(form.purge_items_after_days.trim().to_string()),
        ..Notes::default()
    };
    match days_of(&form.purge_items_after_days) {
        None => notes.retention_invalid = true,
        Some(days) => {
            let body = json!({ "purge_items_after_days": days });
            match page.state.hub.put_retention(&page.actor, &body).await {
                Ok(_) => return page.redirect("/settings?saved=retention"),
                Err(e) => {
                    let e = crate::ApiError::from(e);
                    if e.status() != StatusCode::BAD_REQUEST {
                        return page.fail(e);
                    }
                    notes.retention_error = Some(e.message().to_string());
                }
            }
        }
    }
    view(&page, rows_of(&table), notes, StatusCode::BAD_REQUEST).await
}

/// The mail form.
#[derive(Debug, Deserialize)]
pub struct MailForm {
    #[serde(default)]
    to: String,
}

/// `POST /settings/mail`: a test mail; the page says whether the server took it, or why not.
async fn test_mail(page: Page, Form(form): Form<MailForm>) -> Response {
    let table = match table(&page).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let to = form.to.trim().to_string();
    let mut notes = Notes {
        mail_to: to.clone(),
        ..Notes::default()
    };
    let status = match page
        .state
        .hub
        .test_mail(&page.actor, &json!({ "to": to }))
        .await
    {
        Ok((to, Ok(()))) => {
            notes.mail = Some(context! { sent => true, to });
            StatusCode::OK
        }
        Ok((to, Err(message))) => {
            notes.mail = Some(context! { sent => false, to, message });
            StatusCode::OK
        }
        Err(e) => {
            let e = crate::ApiError::from(e);
            if e.status() != StatusCode::BAD_REQUEST {
                return page.fail(e);
            }
            notes.mail_error = Some(e.message().to_string());
            e.status()
        }
    };
    view(&page, rows_of(&table), notes, status).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &str) -> (String, String) {
        (name.to_string(), value.to_string())
    }

    #[test]
    fn the_editor_reads_rows_and_names_the_row_at_fault() {
        let fields = vec![
            field("p0.provider", "aws"),
            field("p0.region", "*"),
            field("p0.currency", "usd"),
            field("p0.put_per_1000", "0.005"),
            field("p1.provider", "gone"),
            field("p1.remove", "on"),
            field("p2.provider", ""),
            field("p3.provider", "oss"),
            field("p3.region", "cn-*"),
            field("p3.currency", "CNY"),
            field("p3.get_per_1000", "x"),
        ];
        let rows = rows_of_form(&fields);
        assert_eq!(rows.len(), 4);
        assert!(rows[1].remove && rows[2].is_blank());
        let err = table_of(&rows).unwrap_err();
        assert!(err.starts_with("prices[1].get_per_1000:"), "{err}");
        assert_eq!(entry_of(&err), Some(1));
        let mut rows = rows;
        rows[3].numbers[1] = "0.01".into();
        let (body, at) = table_of(&rows).unwrap();
        assert_eq!(at, [0, 3]);
        let table: PriceTable = serde_json::from_value(body).unwrap();
        assert_eq!(table.prices[0].currency, "USD");
        assert_eq!(table.prices[0].put_per_1000, 0.005);
        assert_eq!(table.prices[1].get_per_1000, 0.01);
        assert_eq!(rows_of(&table)[0].numbers[0], "0.005");
        assert_eq!(entry_of("price table: prices[7].region: x"), Some(7));
    }

    #[test]
    fn retention_days_are_whole_numbers_up_to_the_maximum() {
        assert_eq!(days_of(" 30 "), Some(30));
        assert_eq!(days_of("0"), Some(0), "0 keeps items forever");
        assert_eq!(days_of("36500"), Some(MAX_PURGE_AFTER_DAYS));
        for wrong in ["36501", "-1", "1.5", "", "thirty"] {
            assert_eq!(days_of(wrong), None, "{wrong:?}");
        }
    }
}
