//! A task's settings: read from its stored spec for the task page ([`Settings::of`]), and the
//! edit form (`GET /tasks/{id}/edit`, `POST` to save) for what `PATCH /api/v1/tasks/{id}` may
//! change — name, description, schedule, alarms, max attempts, and the main copy options of an
//! object task or the tag selection of an image task. The form becomes the same JSON patch the
//! API takes and goes through [`dth_runtime::Hub::edit_task`]; a refusal is shown next to the
//! field it names. Viewers see the form read-only.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::ApiError;
use crate::portal::render::Page;
use crate::views::TaskView;

/// Bytes in a MiB: the form gives the bandwidth limit in MiB/s.
const MIB: f64 = 1024.0 * 1024.0;

/// The settings as the form shows and sends them: every value as text, lists one per line,
/// check boxes `Some` when ticked.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    name: String,
    description: String,
    /// `once`, `every` or `cron`.
    schedule_kind: String,
    every_seconds: String,
    cron: String,
    /// Webhook URLs, one per line.
    webhooks: String,
    /// Email recipients, one per line.
    emails: String,
    max_attempts: String,
    // Object tasks.
    compare: String,
    include: String,
    exclude: String,
    delete: Option<String>,
    transfers: String,
    /// MiB per second; empty for no limit.
    bwlimit: String,
    /// `bwlimit` as the form showed it: unchanged, the stored limit (in bytes, which MiB with
    /// two decimals may round) is kept as it is.
    bwlimit_shown: String,
    storage_class: String,
    metadata: Option<String>,
    tags: Option<String>,
    // Image tasks.
    tag_filter: String,
    exclude_tags: String,
    keep_latest: String,
    platforms: String,
    concurrency: String,
}

/// A list of strings as lines.
fn lines(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// A number or text as text; null as empty.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// `Some("on")` for a true flag, like a ticked check box.
fn flag(v: &Value) -> Option<String> {
    v.as_bool().filter(|b| *b).map(|_| "on".into())
}

impl Settings {
    /// The settings of a stored spec.
    pub fn of(kind: &str, spec: &Value) -> Settings {
        let (schedule_kind, every_seconds, cron) = match &spec["schedule"] {
            Value::String(s) if s == "once" => ("once", String::new(), String::new()),
            Value::Object(m) if m.contains_key("every-seconds") => {
                ("every", text(&m["every-seconds"]), String::new())
            }
            Value::Object(m) => ("cron", String::new(), text(&m["cron"])),
            _ => ("cron", String::new(), "0 * * * *".into()),
        };
        let alarms = spec["alarms"].as_array().cloned().unwrap_or_default();
        let alarm_lines = |kind: &str, field: &str| {
            alarms
                .iter()
                .filter(|a| a["kind"] == kind)
                .filter_map(|a| a[field].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let o = &spec["options"];
        let mut s = Settings {
            name: text(&spec["name"]),
            description: text(&spec["description"]),
            schedule_kind: schedule_kind.into(),
            every_seconds,
            cron,
            webhooks: alarm_lines("webhook", "url"),
            emails: alarm_lines("email", "to"),
            max_attempts: text(&spec["max_attempts"]),
            ..Settings::default()
        };
        if kind == "image" {
            s.tag_filter = lines(&spec["tag_filter"]);
            s.exclude_tags = lines(&spec["exclude_tags"]);
            s.keep_latest = text(&spec["keep_latest"]);
            s.platforms = lines(&spec["platforms"]);
            s.concurrency = text(&spec["concurrency"]);
        } else {
            s.compare = o["compare"].as_str().unwrap_or("size").into();
            s.include = lines(&o["include"]);
            s.exclude = lines(&o["exclude"]);
            s.delete = flag(&o["delete"]);
            s.transfers = text(&o["transfers"]);
            s.bwlimit = o["bwlimit"]
                .as_f64()
                .map(|b| format_mib(b / MIB))
                .unwrap_or_default();
            s.bwlimit_shown = s.bwlimit.clone();
            s.storage_class = text(&o["storage_class"]);
            s.metadata = flag(&o["metadata"]);
            s.tags = flag(&o["tags"]);
        }
        s
    }

    /// The JSON patch of `PATCH /api/v1/tasks/{id}` for these settings, or the fields whose text
    /// is no number (field → catalog key).
    fn patch(&self, kind: &str) -> Result<Value, BTreeMap<&'static str, &'static str>> {
        let mut errors = BTreeMap::new();
        let list = |v: &str| -> Value {
            let items: Vec<&str> = v.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            if items.is_empty() {
                Value::Null
            } else {
                json!(items)
            }
        };
        let schedule = match self.schedule_kind.as_str() {
            "once" => json!("once"),
            "every" => match number(&mut errors, "every_seconds", &self.every_seconds) {
                Value::Null => {
                    errors.insert("every_seconds", "detail.edit.whole_number");
                    Value::Null
                }
                n => json!({ "every-seconds": n }),
            },
            _ => json!({ "cron": self.cron.trim() }),
        };
        let mut alarms: Vec<Value> = Vec::new();
        for url in self
            .webhooks
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            alarms.push(json!({ "kind": "webhook", "url": url }));
        }
        for to in self.emails.lines().map(str::trim).filter(|l| !l.is_empty()) {
            alarms.push(json!({ "kind": "email", "to": to }));
        }
        let description = self.description.trim();
        let mut patch = Map::new();
        patch.insert("name".into(), json!(self.name.trim()));
        patch.insert(
            "description".into(),
            if description.is_empty() {
                Value::Null
            } else {
                json!(description)
            },
        );
        patch.insert("schedule".into(), schedule);
        patch.insert("alarms".into(), json!(alarms));
        patch.insert(
            "max_attempts".into(),
            number(&mut errors, "max_attempts", &self.max_attempts),
        );
        if kind == "image" {
            patch.insert("tag_filter".into(), list(&self.tag_filter));
            patch.insert("exclude_tags".into(), list(&self.exclude_tags));
            patch.insert(
                "keep_latest".into(),
                number(&mut errors, "keep_latest", &self.keep_latest),
            );
            patch.insert("platforms".into(), list(&self.platforms));
            patch.insert(
                "concurrency".into(),
                number(&mut errors, "concurrency", &self.concurrency),
            );
        } else {
            let bwlimit = match self.bwlimit.trim() {
                "" => Value::Null,
                v => match v.parse::<f64>() {
                    Ok(m) if m > 0.0 && m.is_finite() => json!((m * MIB).round() as u64),
                    _ => {
                        errors.insert("bwlimit", "detail.edit.positive_number");
                        Value::Null
                    }
                },
            };
            let storage_class = self.storage_class.trim();
            let mut options = json!({
                    "compare": self.compare,
                    "include": list(&self.include),
                    "exclude": list(&self.exclude),
                    "delete": self.delete.is_some(),
                    "transfers": number(&mut errors, "transfers", &self.transfers),
                    "bwlimit": bwlimit,
                    "storage_class": if storage_class.is_empty() { Value::Null } else { json!(storage_class) },
                    "metadata": self.metadata.is_some(),
                    "tags": self.tags.is_some(),
            });
            let unchanged =
                !self.bwlimit_shown.is_empty() && self.bwlimit.trim() == self.bwlimit_shown;
            if let Some(o) = options.as_object_mut().filter(|_| unchanged) {
                o.remove("bwlimit");
            }
            patch.insert("options".into(), options);
        }
        if errors.is_empty() {
            Ok(Value::Object(patch))
        } else {
            Err(errors)
        }
    }
}

/// A whole number from a field, null when empty; anything else is an error of `field`.
fn number(
    errors: &mut BTreeMap<&'static str, &'static str>,
    field: &'static str,
    v: &str,
) -> Value {
    let v = v.trim();
    if v.is_empty() {
        return Value::Null;
    }
    match v.parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => {
            errors.insert(field, "detail.edit.whole_number");
            Value::Null
        }
    }
}

/// `1.5` → `1.5`, `2.0` → `2`.
fn format_mib(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The form field a hub refusal names (`invalid schedule.cron "x": …`, `options.transfers: …`).
fn field_of(message: &str) -> Option<&'static str> {
    const FIELDS: [&str; 17] = [
        "name",
        "description",
        "max_attempts",
        "include",
        "exclude",
        "delete",
        "transfers",
        "bwlimit",
        "storage_class",
        "metadata",
        "tags",
        "tag_filter",
        "exclude_tags",
        "keep_latest",
        "platforms",
        "concurrency",
        "compare",
    ];
    let m = message.strip_prefix("invalid ").unwrap_or(message);
    let path: &str = m.split([':', ' ']).next().unwrap_or("");
    let path = path.strip_prefix("options.").unwrap_or(path);
    let head = path.split(['.', '[']).next().unwrap_or("");
    match head {
        "schedule" if path.contains("every") => Some("every_seconds"),
        "schedule" => Some("cron"),
        "alarms" => Some("alarms"),
        _ => FIELDS.iter().find(|f| **f == head).copied(),
    }
}

/// Renders the form with its errors.
fn view(
    page: &Page,
    task: TaskView,
    settings: &Settings,
    errors: BTreeMap<&str, String>,
    general: Option<String>,
    status: StatusCode,
) -> Response {
    let mut r = page.render(
        "detail/edit.html",
        "tasks",
        context! {
            task => task,
            settings => settings,
            errors => errors,
            general => general,
            compare_modes => dth_model::CompareMode::NAMES,
        },
    );
    *r.status_mut() = status;
    r
}

/// `GET /tasks/{id}/edit`.
pub async fn form(page: Page, Path(id): Path<String>) -> Response {
    match page.state.hub.get_task(&page.actor, &id).await {
        Ok(task) => {
            let settings = Settings::of(&task.kind, &task.spec);
            view(
                &page,
                task.into(),
                &settings,
                BTreeMap::new(),
                None,
                StatusCode::OK,
            )
        }
        Err(e) => page.fail(e),
    }
}

/// `POST /tasks/{id}/edit`: saves through `Hub::edit_task`, then the task page.
pub async fn save(page: Page, Path(id): Path<String>, Form(settings): Form<Settings>) -> Response {
    let hub = &page.state.hub;
    let task = match hub.get_task(&page.actor, &id).await {
        Ok(t) => t,
        Err(e) => return page.fail(e),
    };
    let t = |key: &str| crate::portal::i18n::text(page.lang, key, &[]);
    let patch = match settings.patch(&task.kind) {
        Ok(p) => p,
        Err(errors) => {
            let errors = errors.into_iter().map(|(f, k)| (f, t(k))).collect();
            return view(
                &page,
                task.into(),
                &settings,
                errors,
                None,
                StatusCode::BAD_REQUEST,
            );
        }
    };
    match hub.edit_task(&page.actor, &id, &patch).await {
        Ok(_) => page.redirect(&format!("/tasks/{id}")),
        Err(e) => {
            let e = ApiError::from(e);
            if e.status() != StatusCode::BAD_REQUEST {
                return page.fail(e);
            }
            let message = e.message().to_string();
            let mut errors = BTreeMap::new();
            let general = match field_of(&message) {
                Some(field) => {
                    errors.insert(field, message);
                    None
                }
                None => Some(message),
            };
            view(
                &page,
                task.into(),
                &settings,
                errors,
                general,
                StatusCode::BAD_REQUEST,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_spec() -> Value {
        json!({
            "name": "photos", "kind": "s3", "description": "nightly",
            "schedule": {"every-seconds": 600},
            "alarms": [{"kind": "webhook", "url": "https://hook.example/a"}, {"kind": "email", "to": "ops@example.com"}],
            "max_attempts": 4,
            "options": {"compare": "size-etag", "include": ["*.jpg", "*.png"], "exclude": [],
                        "delete": true, "transfers": 64, "bwlimit": 3145728, "storage_class": null,
                        "metadata": true, "tags": false},
        })
    }

    #[test]
    fn settings_read_a_spec_and_give_it_back_as_a_patch() {
        let s = Settings::of("s3", &s3_spec());
        assert_eq!(s.schedule_kind, "every");
        assert_eq!(s.every_seconds, "600");
        assert_eq!(s.webhooks, "https://hook.example/a");
        assert_eq!(s.emails, "ops@example.com");
        assert_eq!(s.include, "*.jpg\n*.png");
        assert_eq!(s.bwlimit, "3");
        assert_eq!(s.delete.as_deref(), Some("on"));
        assert_eq!(s.tags, None);
        let patch = s.patch("s3").unwrap();
        assert_eq!(patch["schedule"], json!({"every-seconds": 600}));
        assert_eq!(patch["alarms"].as_array().unwrap().len(), 2);
        assert_eq!(patch["max_attempts"], 4);
        // The limit as shown is kept as stored; a changed one is sent in bytes.
        assert!(patch["options"].get("bwlimit").is_none());
        let mut changed = s.clone();
        changed.bwlimit = "1.5".into();
        assert_eq!(changed.patch("s3").unwrap()["options"]["bwlimit"], 1572864);
        assert_eq!(patch["options"]["include"], json!(["*.jpg", "*.png"]));
        assert_eq!(patch["options"]["exclude"], Value::Null);
        assert_eq!(patch["options"]["delete"], true);
        assert_eq!(patch["options"]["storage_class"], Value::Null);
    }

    #[test]
    fn bad_numbers_are_field_errors() {
        let mut s = Settings::of("s3", &s3_spec());
        s.transfers = "many".into();
        s.bwlimit = "-1".into();
        let errors = s.patch("s3").unwrap_err();
        assert_eq!(errors["transfers"], "detail.edit.whole_number");
        assert_eq!(errors["bwlimit"], "detail.edit.positive_number");
    }

    #[test]
    fn hub_messages_point_at_their_field() {
        assert_eq!(field_of("invalid schedule.cron \"x\": bad"), Some("cron"));
        assert_eq!(
            field_of("invalid schedule.every-seconds \"0\": at least 1"),
            Some("every_seconds")
        );
        assert_eq!(
            field_of("options.transfers: invalid type"),
            Some("transfers")
        );
        assert_eq!(
            field_of("invalid alarms.url \"ftp://x\": an http:// URL"),
            Some("alarms")
        );
        assert_eq!(field_of("name: must not be empty"), Some("name"));
        assert_eq!(field_of("something else"), None);
    }
}
