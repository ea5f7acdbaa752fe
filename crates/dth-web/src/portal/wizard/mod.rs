//! The create-task wizards: `/tasks/new/objects` (source → destination → options → schedule and
//! alarms → review) and `/tasks/new/images` (source → destination → images → schedule and alarms
//! → review). Each is one server-driven `<form>` holding every step as a `<fieldset>`; only the
//! current one is shown, the others travel along hidden. "Next" and "Back" post the whole form
//! with a `step`; the server checks the steps up to the one asked for and answers that step, or
//! the first one at fault with each message next to its field.
//!
//! A step is checked like the API checks a body: the spec JSON is built from the form in one
//! function ([`objects::build`], [`images::build`]) — later steps at their defaults — and read
//! with the model's own [`TaskSpec::from_json`] and [`TaskSpec::validate`] (and the image engine's
//! offline check), each message mapped back to the field it names. The review shows the hub's
//! dry run ([`Hub::plan`](dth_runtime::Hub::plan)) before "Create task" calls
//! [`Hub::create_task`](dth_runtime::Hub::create_task).
//!
//! A key or password typed in is stored as a hub secret as soon as the form is posted, and from
//! then on only the secret's name is in the form: no answer ever holds a secret value.

mod images;
mod objects;
mod presets;

use std::collections::BTreeMap;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use dth_model::{ParseError, Schedule, TaskSpec};
use minijinja::context;
use minijinja::value::Value as Ctx;
use serde::Deserialize;
use serde_json::{Value, json};

use super::i18n::Lang;
use super::render::Page;
use crate::{ApiError, AppState};

/// This area's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/tasks/new/objects",
            get(|page: Page| start(page, Kind::Objects)).post(
                |page: Page, Form(form): Form<Vec<(String, String)>>| {
                    step(page, Kind::Objects, form)
                },
            ),
        )
        .route(
            "/tasks/new/objects/plan",
            post(|page: Page, Form(form): Form<Vec<(String, String)>>| {
                plan(page, Kind::Objects, form)
            }),
        )
        .route("/tasks/new/objects/endpoint", get(objects::endpoint))
        .route(
            "/tasks/new/images",
            get(|page: Page| start(page, Kind::Images)).post(
                |page: Page, Form(form): Form<Vec<(String, String)>>| {
                    step(page, Kind::Images, form)
                },
            ),
        )
        .route(
            "/tasks/new/images/plan",
            post(|page: Page, Form(form): Form<Vec<(String, String)>>| {
                plan(page, Kind::Images, form)
            }),
        )
        .route("/tasks/new/images/location", get(images::location))
        .route("/tasks/new/schedule", get(fires))
}

/// Messages of a form, by field name (`""`: not about one field).
pub(super) type Errors = BTreeMap<String, String>;

/// The catalog's string for `key` in `lang`, its `{name}` holes filled.
pub(super) use super::i18n::text as tr;

/// One step of a wizard: its name (the `step` value and the catalog key `wizard.step.NAME`) and
/// the form fields it holds.
pub(super) struct Step {
    name: &'static str,
    fields: &'static [&'static str],
}

/// The fields of the schedule and alarms step, the same in both wizards.
const SCHEDULE_FIELDS: &[&str] = &[
    "sched",
    "every_n",
    "every_unit",
    "cron",
    "webhooks",
    "emails",
];

/// How a side signs in with a key or password typed in once: on the next post it is stored as a
/// secret and the side switches to that secret.
pub(super) struct Login {
    /// `source` or `destination`, for the secret's name and messages.
    side: &'static str,
    /// The side's field prefix (`src`, `dst`).
    prefix: &'static str,
    /// The value of `{prefix}_cred` that means "typed in".
    mode: &'static str,
    /// (field suffix, JSON key of the secret, required).
    parts: &'static [(&'static str, &'static str, bool)],
}

/// Which wizard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Objects between S3-compatible services.
    Objects,
    /// Container images between registries.
    Images,
}

impl Kind {
    fn template(self) -> &'static str {
        match self {
            Kind::Objects => "wizard/objects.html",
            Kind::Images => "wizard/images.html",
        }
    }

    fn steps(self) -> &'static [Step] {
        match self {
            Kind::Objects => objects::STEPS,
            Kind::Images => images::STEPS,
        }
    }

    /// Fields that are checkboxes: absent from a post means off.
    fn checkboxes(self) -> &'static [&'static str] {
        match self {
            Kind::Objects => objects::CHECKBOXES,
            Kind::Images => images::CHECKBOXES,
        }
    }

    /// Fields given once per checked box (joined by newlines).
    fn multi(self) -> &'static [&'static str] {
        match self {
            Kind::Objects => &[],
            Kind::Images => images::MULTI,
        }
    }

    /// Fields whose value is never put back into a page.
    fn hidden_values(self) -> &'static [&'static str] {
        match self {
            Kind::Objects => &[
                "src_key_secret",
                "src_key_token",
                "dst_key_secret",
                "dst_key_token",
            ],
            Kind::Images => &["src_password", "dst_password"],
        }
    }

    fn logins(self) -> &'static [Login] {
        match self {
            Kind::Objects => objects::LOGINS,
            Kind::Images => images::LOGINS,
        }
    }

    /// The secret kind (as [`crate::views::SecretView::kind`]) a side may pick.
    fn secret_kind(self) -> &'static str {
        match self {
            Kind::Objects => "access_key",
            Kind::Images => "registry_login",
        }
    }

    fn defaults(self) -> Fields {
        let mut f = Fields::default();
        for (k, v) in [
            ("at", "source"),
            ("step", ""),
            ("name", ""),
            ("description", ""),
            ("sched", "cron"),
            ("every_n", "1"),
            ("every_unit", "h"),
            ("cron", "0 * * * *"),
            ("webhooks", ""),
            ("emails", ""),
        ] {
            f.set(k, v);
        }
        match self {
            Kind::Objects => objects::defaults(&mut f),
            Kind::Images => images::defaults(&mut f),
        }
        f
    }

    /// The spec JSON of a form, and the messages of the fields that could not be read.
    fn build(self, f: &Fields, lang: Lang) -> (Value, Errors) {
        match self {
            Kind::Objects => objects::build(f, lang),
            Kind::Images => images::build(f, lang),
        }
    }

    /// The form field a path of the model's messages names (`source.bucket` → `src_bucket`).
    fn field_of(self, path: &str, f: &Fields) -> Option<&'static str> {
        let common = match path {
            "name" => Some("name"),
            "description" => Some("description"),
            "max_attempts" => Some("max_attempts"),
            "schedule.cron" => Some("cron"),
            "schedule.every-seconds" => Some("every_n"),
            "schedule" => Some("sched"),
            "alarms.url" | "alarms" => Some("webhooks"),
            "alarms.to" => Some("emails"),
            _ => None,
        };
        common.or_else(|| match self {
            Kind::Objects => objects::field_of(path),
            Kind::Images => images::field_of(path, f),
        })
    }

    /// The index of a step by name.
    fn index(self, name: &str) -> Option<usize> {
        self.steps().iter().position(|s| s.name == name)
    }

    /// The step holding a field (the current one for a message about no field).
    fn step_of(self, field: &str) -> Option<usize> {
        self.steps().iter().position(|s| s.fields.contains(&field))
    }
}

/// A wizard's form: every field by name, each with one value (a checkbox `"1"` or `""`).
/// `Debug` is not derived: it may hold a key typed in.
#[derive(Clone, Default)]
pub(super) struct Fields(BTreeMap<String, String>);

impl Fields {
    /// A field's value (empty when unknown).
    pub(super) fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// A field's value, trimmed.
    pub(super) fn trimmed(&self, name: &str) -> &str {
        self.get(name).trim()
    }

    pub(super) fn set(&mut self, name: &str, value: &str) {
        self.0.insert(name.to_string(), value.to_string());
    }

    /// Whether a checkbox is on.
    pub(super) fn checked(&self, name: &str) -> bool {
        self.get(name) == "1"
    }

    /// The non-empty lines of a field, trimmed.
    pub(super) fn lines(&self, name: &str) -> Vec<String> {
        self.get(name)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// A posted form: the wizard's defaults, every checkbox off, then what was sent (fields the
    /// wizard does not have are dropped).
    fn posted(kind: Kind, pairs: Vec<(String, String)>) -> Fields {
        let mut f = kind.defaults();
        for name in kind.checkboxes().iter().chain(kind.multi()) {
            f.set(name, "");
        }
        for (name, value) in pairs {
            let Some(old) = f.0.get_mut(&name) else {
                continue;
            };
            if kind.multi().contains(&name.as_str()) && !old.is_empty() {
                old.push('\n');
                old.push_str(&value);
            } else {
                *old = value;
            }
        }
        f
    }

    /// The form as of step `last`: its fields up to that step, the later ones at their defaults.
    fn upto(&self, kind: Kind, last: usize) -> Fields {
        let mut f = kind.defaults();
        for step in &kind.steps()[..=last] {
            for name in step.fields {
                f.set(name, self.get(name));
            }
        }
        f
    }

    /// The values a page may show: those typed in as secrets are left empty.
    fn shown(&self, kind: Kind) -> BTreeMap<String, String> {
        let mut v = self.0.clone();
        for name in kind.hidden_values() {
            v.insert((*name).to_string(), String::new());
        }
        v
    }
}

/// The 403 page for a viewer: creating tasks needs the operator role.
fn forbidden(page: &Page) -> Response {
    page.fail(ApiError::new(
        StatusCode::FORBIDDEN,
        tr(page.lang, "wizard.forbidden", &[]),
    ))
}

/// `GET /tasks/new/objects|images`: the first step with every default.
async fn start(page: Page, kind: Kind) -> Response {
    if !page.is_operator() {
        return forbidden(&page);
    }
    render(
        &page,
        kind,
        &kind.defaults(),
        0,
        &Errors::new(),
        &[],
        StatusCode::OK,
    )
    .await
}

/// `POST /tasks/new/objects|images`: the step asked for (`step`: a step name, or `create`),
/// once the steps before it pass; or the first step at fault.
async fn step(page: Page, kind: Kind, pairs: Vec<(String, String)>) -> Response {
    if !page.is_operator() {
        return forbidden(&page);
    }
    let mut f = Fields::posted(kind, pairs);
    let at = kind.index(f.get("at")).unwrap_or(0);
    let review = kind.steps().len() - 1;
    let target = f.get("step").to_string();
    let create = target == "create";
    let to = if create {
        review
    } else {
        kind.index(&target).unwrap_or(at)
    };
    let mut notices = Vec::new();
    if let Err((field, message)) = store_logins(&page, kind, &mut f, &mut notices).await {
        let step = kind.step_of(&field).unwrap_or(at);
        let errors = Errors::from([(field, message)]);
        return render(
            &page,
            kind,
            &f,
            step,
            &errors,
            &notices,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    // Forward: every step before the one asked for must pass; back: nothing is checked.
    let must_pass = if create || to > at { to } else { 0 };
    for i in 0..must_pass {
        let errors = check(kind, &f, i, page.lang);
        if !errors.is_empty() {
            return render(
                &page,
                kind,
                &f,
                i,
                &errors,
                &notices,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    }
    if create {
        let (spec, _) = kind.build(&f, page.lang);
        return match page.state.hub.create_task(&page.actor, &spec).await {
            Ok(task) => page.redirect(&format!("/tasks/{}", task.id)),
            Err(e) => {
                let e = ApiError::from(e);
                if e.status() == StatusCode::FORBIDDEN {
                    return page.fail(e);
                }
                let (step, errors) = place(kind, &f, e.message(), review);
                render(&page, kind, &f, step, &errors, &notices, e.status()).await
            }
        };
    }
    render(
        &page,
        kind,
        &f,
        to,
        &Errors::new(),
        &notices,
        StatusCode::OK,
    )
    .await
}

/// Where a message of the hub goes: the step and field it names, else the review's top.
fn place(kind: Kind, f: &Fields, message: &str, fallback: usize) -> (usize, Errors) {
    let field = field_in_message(kind, f, message);
    let step = field.and_then(|n| kind.step_of(n)).unwrap_or(fallback);
    (
        step,
        Errors::from([(field.unwrap_or("").to_string(), message.to_string())]),
    )
}

/// The field named by a message of the model, the image engine or the hub (`invalid task spec:
/// source.bucket: …`, `invalid source.bucket "x": …`, `images: …`): the longest path named.
fn field_in_message(kind: Kind, f: &Fields, message: &str) -> Option<&'static str> {
    let mut best: Option<(usize, &'static str)> = None;
    for word in message.split([' ', ':', '"']) {
        let mut path = word;
        loop {
            if let Some(field) = kind.field_of(path, f)
                && best.is_none_or(|(len, _)| path.len() > len)
            {
                best = Some((path.len(), field));
            }
            match path.rsplit_once('.') {
                Some((head, _)) => path = head,
                None => break,
            }
        }
    }
    best.map(|(_, field)| field)
}

/// Checks step `i` of a form: the spec built from the fields up to that step (the later ones at
/// their defaults) read and validated by the model; only messages about this step's fields or an
/// earlier one's count.
fn check(kind: Kind, f: &Fields, i: usize, lang: Lang) -> Errors {
    let upto = f.upto(kind, i);
    let (spec, mut errors) = kind.build(&upto, lang);
    let in_scope = |field: &str| kind.step_of(field).is_some_and(|s| s <= i);
    errors.retain(|field, _| in_scope(field));
    if !errors.is_empty() {
        return errors;
    }
    let message = match TaskSpec::from_json(&spec) {
        Err(m) => Some((field_in_message(kind, f, &m), m)),
        Ok(spec) => match spec.validate() {
            Err(e @ ParseError::BadValue { what, .. }) => {
                Some((kind.field_of(what, f), e.to_string()))
            }
            Err(e) => Some((field_in_message(kind, f, &e.to_string()), e.to_string())),
            Ok(()) => images::engine_check(&spec)
                .err()
                .map(|m| (field_in_message(kind, f, &m), m)),
        },
    };
    if let Some((field, message)) = message
        && field.is_some_and(in_scope)
    {
        errors.insert(field.unwrap_or("").to_string(), message);
    }
    errors
}

/// Stores every key or password typed in as a secret (whatever else is wrong, so the page never
/// has to carry it back) and switches its side to that secret. A partial entry is an error on
/// the missing part.
async fn store_logins(
    page: &Page,
    kind: Kind,
    f: &mut Fields,
    notices: &mut Vec<String>,
) -> Result<(), (String, String)> {
    for login in kind.logins() {
        let field = |suffix: &str| format!("{}_{suffix}", login.prefix);
        if f.get(&field("cred")) != login.mode {
            continue;
        }
        let given = login
            .parts
            .iter()
            .filter(|(suffix, _, _)| !f.trimmed(&field(suffix)).is_empty())
            .count();
        if given == 0 {
            continue;
        }
        let mut value = serde_json::Map::new();
        for (suffix, key, required) in login.parts {
            let v = f.get(&field(suffix)).trim();
            if v.is_empty() && *required {
                return Err((field(suffix), tr(page.lang, "wizard.err.login_part", &[])));
            }
            if !v.is_empty() {
                value.insert((*key).into(), json!(v));
            }
        }
        let name = secret_name(page, f.trimmed("name"), login.side).await;
        let value = Value::Object(value);
        if let Err(e) = page.state.hub.put_secret(&page.actor, &name, &value).await {
            return Err((field("cred"), ApiError::from(e).message().to_string()));
        }
        for (suffix, _, _) in login.parts {
            f.set(&field(suffix), "");
        }
        f.set(&field("cred"), "secret");
        f.set(&field("secret"), &name);
        notices.push(tr(
            page.lang,
            &format!("wizard.stored.{}", login.side),
            &[("name", name)],
        ));
    }
    Ok(())
}

/// A name for a secret made from a key typed in: `<task name or wizard>-<side>-<6 hex>`, one no
/// secret has yet.
async fn secret_name(page: &Page, task: &str, side: &str) -> String {
    let mut base: String = task
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base = base.trim_matches('-').chars().take(40).collect();
    if base.is_empty() {
        base = "wizard".into();
    }
    let taken: Vec<String> = page
        .state
        .hub
        .list_secrets(&page.actor)
        .await
        .map(|l| {
            l.into_iter()
                .map(|s| crate::views::SecretView::from(s).name)
                .collect()
        })
        .unwrap_or_default();
    loop {
        let name = format!("{base}-{side}-{:06x}", random() & 0xff_ffff);
        if !taken.contains(&name) {
            return name;
        }
    }
}

/// A random number from the standard library's per-process hash keys (seeded by the OS), for
/// names only.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The stored secrets a side of this wizard may pick (of its kind).
async fn secrets(page: &Page, kind: Kind) -> Vec<String> {
    page.state
        .hub
        .list_secrets(&page.actor)
        .await
        .map(|list| {
            list.into_iter()
                .map(crate::views::SecretView::from)
                .filter(|s| s.kind.as_deref().is_none_or(|k| k == kind.secret_kind()))
                .map(|s| s.name)
                .collect()
        })
        .unwrap_or_default()
}

/// Renders step `i` of a form with its messages.
async fn render(
    page: &Page,
    kind: Kind,
    f: &Fields,
    i: usize,
    errors: &Errors,
    notices: &[String],
    status: StatusCode,
) -> Response {
    let steps = kind.steps();
    let mut secrets = secrets(page, kind).await;
    for prefix in ["src", "dst"] {
        let chosen = f.get(&format!("{prefix}_secret"));
        if !chosen.is_empty() && !secrets.iter().any(|s| s == chosen) {
            secrets.push(chosen.to_string());
        }
    }
    let (fires, mut fires_error) = next_fires(f, page.lang);
    if errors.contains_key("cron") || errors.contains_key("every_n") {
        // The field's own message says it already.
        fires_error = None;
    }
    let review = if steps[i].name == "review" {
        Some(review_of(kind, f, page.lang))
    } else {
        None
    };
    let extra = match kind {
        Kind::Objects => objects::context(f),
        Kind::Images => images::context(f),
    };
    let ctx = context! {
        step => steps[i].name,
        steps => steps.iter().enumerate().map(|(n, s)| context! { name => s.name, done => n < i }).collect::<Vec<_>>(),
        prev => (i > 0).then(|| steps[i - 1].name),
        next => steps.get(i + 1).map(|s| s.name),
        v => f.shown(kind),
        errors => errors,
        notices => notices,
        secrets => secrets,
        fires => fires,
        fires_error => fires_error,
        review => review,
        ..extra
    };
    let mut r = page.render(kind.template(), "tasks", ctx);
    *r.status_mut() = status;
    r
}

/// What the review summarizes: the spec a form makes, and its one-line source, destination and
/// schedule as the task list shows them.
fn review_of(kind: Kind, f: &Fields, lang: Lang) -> Ctx {
    let (spec, _) = kind.build(f, lang);
    let summary = super::tasks::summary(&spec);
    Ctx::from_serialize(json!({
        "spec": spec,
        "summary": summary,
    }))
}

/// `POST /tasks/new/objects|images/plan`: the dry run of the form's spec, as a fragment of the
/// review (the same [`Hub::plan`](dth_runtime::Hub::plan) as `POST /api/v1/plan`).
async fn plan(page: Page, kind: Kind, pairs: Vec<(String, String)>) -> Response {
    if !page.is_operator() {
        return forbidden(&page);
    }
    let f = Fields::posted(kind, pairs);
    let (spec, errors) = kind.build(&f, page.lang);
    let (plan, error) = if let Some(message) = errors.values().next() {
        (None, Some(message.clone()))
    } else {
        match page.state.hub.plan(&page.actor, &spec).await {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(plan_error(e))),
        }
    };
    page.render(
        "wizard/plan.html",
        "tasks",
        context! { kind => spec["kind"].clone(), plan => plan, error => error },
    )
}

/// The message of a failed dry run. The engines' messages name the request, the endpoint and the
/// bucket or image, never a key, so they are shown as they are: they tell what to fix.
fn plan_error(e: dth_runtime::Error) -> String {
    match e {
        e @ (dth_runtime::Error::Engine(_) | dth_runtime::Error::Image(_)) => e.to_string(),
        e => ApiError::from(e).message().to_string(),
    }
}

/// The query of the next-fire-times fragment.
#[derive(Debug, Deserialize)]
struct ScheduleQuery {
    #[serde(default)]
    sched: String,
    #[serde(default)]
    every_n: String,
    #[serde(default)]
    every_unit: String,
    #[serde(default)]
    cron: String,
}

/// `GET /tasks/new/schedule`: the next five runs of a schedule, as a fragment.
async fn fires(page: Page, Query(q): Query<ScheduleQuery>) -> Response {
    let mut f = Fields::default();
    for (k, v) in [
        ("sched", q.sched),
        ("every_n", q.every_n),
        ("every_unit", q.every_unit),
        ("cron", q.cron),
    ] {
        f.set(k, &v);
    }
    let (fires, fires_error) = next_fires(&f, page.lang);
    page.render(
        "wizard/fires.html",
        "tasks",
        context! { fires => fires, fires_error => fires_error, v => f.shown(Kind::Objects) },
    )
}

/// The schedule of a form as the spec's JSON, or the message of the field at fault.
pub(super) fn schedule_json(f: &Fields, lang: Lang) -> Result<Value, (&'static str, String)> {
    match f.get("sched") {
        "once" => Ok(json!("once")),
        "every" => {
            let n = f
                .trimmed("every_n")
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or(("every_n", tr(lang, "wizard.err.whole_number", &[])))?;
            let unit = match f.get("every_unit") {
                "min" => 60,
                "h" => 3600,
                _ => 1,
            };
            Ok(json!({ "every-seconds": n.saturating_mul(unit) }))
        }
        _ => {
            let expr = f.trimmed("cron");
            if expr.split_whitespace().count() != 5 {
                return Err(("cron", tr(lang, "wizard.err.cron_fields", &[])));
            }
            Schedule::Cron(expr.to_string()).validate().map_err(|e| {
                (
                    "cron",
                    tr(lang, "wizard.err.cron", &[("reason", e.to_string())]),
                )
            })?;
            Ok(json!({ "cron": expr }))
        }
    }
}

/// The alarms of a form (one webhook URL or email address a line), or the message of the field
/// at fault.
pub(super) fn alarms_json(f: &Fields, lang: Lang) -> (Value, Errors) {
    let mut errors = Errors::new();
    let mut alarms = Vec::new();
    for url in f.lines("webhooks") {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.insert(
                "webhooks".into(),
                tr(lang, "wizard.err.webhook", &[("value", url.clone())]),
            );
        }
        alarms.push(json!({"kind": "webhook", "url": url}));
    }
    for to in f.lines("emails") {
        let parts: Vec<&str> = to.split('@').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            errors.insert(
                "emails".into(),
                tr(lang, "wizard.err.email", &[("value", to.clone())]),
            );
        }
        alarms.push(json!({"kind": "email", "to": to}));
    }
    (Value::Array(alarms), errors)
}

/// The next five runs of a form's schedule from now (Unix ms), or why there are none to show.
fn next_fires(f: &Fields, lang: Lang) -> (Vec<i64>, Option<String>) {
    let schedule = match schedule_json(f, lang) {
        Ok(v) => serde_json::from_value::<Schedule>(v).ok(),
        Err((_, message)) => return (Vec::new(), Some(message)),
    };
    let Some(schedule) = schedule.filter(Schedule::is_recurring) else {
        return (Vec::new(), None);
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut fires = Vec::new();
    // A fixed rate runs at once, then every interval.
    if matches!(schedule, Schedule::EverySeconds(_)) {
        fires.push(now);
    }
    let mut at = now;
    while fires.len() < 5 {
        match schedule.next_after(at) {
            Some(t) => {
                fires.push(t);
                at = t;
            }
            None => break,
        }
    }
    (fires, None)
}

/// A size field (`16MiB`, `1GiB`, `4096`) in bytes, or the message for it.
pub(super) fn size(f: &Fields, name: &'static str, lang: Lang, errors: &mut Errors) -> u64 {
    dth_model::parse_size(f.get(name)).unwrap_or_else(|_| {
        errors.insert(name.into(), tr(lang, "wizard.err.size", &[]));
        0
    })
}

/// A whole number field of at least 1, or the message for it.
pub(super) fn count(f: &Fields, name: &'static str, lang: Lang, errors: &mut Errors) -> u64 {
    match f.trimmed(name).parse::<u64>() {
        Ok(n) if n >= 1 => n,
        _ => {
            errors.insert(name.into(), tr(lang, "wizard.err.whole_number", &[]));
            1
        }
    }
}

/// The name, description, schedule, alarms and attempts of a spec, the same in both wizards.
pub(super) fn common_json(
    f: &Fields,
    lang: Lang,
    errors: &mut Errors,
) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    let name = f.trimmed("name");
    if name.is_empty() {
        errors.insert("name".into(), tr(lang, "wizard.err.name", &[]));
    }
    m.insert("name".into(), json!(name));
    let description = f.trimmed("description");
    m.insert(
        "description".into(),
        json!((!description.is_empty()).then_some(description)),
    );
    match schedule_json(f, lang) {
        Ok(s) => {
            m.insert("schedule".into(), s);
        }
        Err((field, message)) => {
            errors.insert(field.into(), message);
        }
    }
    let (alarms, alarm_errors) = alarms_json(f, lang);
    errors.extend(alarm_errors);
    m.insert("alarms".into(), alarms);
    m.insert(
        "max_attempts".into(),
        json!(count(f, "max_attempts", lang, errors)),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portal::i18n::CATALOG;

    #[test]
    fn every_message_key_of_the_wizards_is_in_the_catalog() {
        for text in [
            include_str!("mod.rs"),
            include_str!("objects.rs"),
            include_str!("images.rs"),
        ] {
            let calls = text.split("tr(lang, \"").skip(1);
            for part in calls.chain(text.split("tr(page.lang, \"").skip(1)) {
                let key = part.split('"').next().unwrap();
                assert!(CATALOG.contains_key(key), "{key} is not in the catalog");
            }
        }
        for side in ["source", "destination"] {
            assert!(CATALOG.contains_key(&format!("wizard.stored.{side}")));
        }
    }

    #[test]
    fn messages_find_their_fields() {
        let f = Kind::Objects.defaults();
        let k = Kind::Objects;
        assert_eq!(
            field_in_message(k, &f, "invalid task spec: destination.bucket: bad"),
            Some("dst_bucket")
        );
        assert_eq!(
            field_in_message(k, &f, "invalid options.part_size \"1\": at least 5 MiB"),
            Some("part_size")
        );
        assert_eq!(
            field_in_message(k, &f, "source.credentials: secret \"x\" does not exist"),
            Some("src_secret")
        );
        assert_eq!(field_in_message(k, &f, "nothing known"), None);
    }

    #[test]
    fn schedules_and_fire_times() {
        let mut f = Kind::Objects.defaults();
        f.set("cron", "*/10 * * * *");
        let (fires, error) = next_fires(&f, Lang::En);
        assert_eq!((fires.len(), error), (5, None));
        assert!(fires.windows(2).all(|w| w[1] - w[0] == 600_000));
        f.set("cron", "61 * * * *");
        assert!(next_fires(&f, Lang::En).1.is_some());
        f.set("sched", "every");
        f.set("every_n", "2");
        f.set("every_unit", "min");
        assert_eq!(
            schedule_json(&f, Lang::En).unwrap(),
            json!({"every-seconds": 120})
        );
        f.set("sched", "once");
        assert_eq!(next_fires(&f, Lang::En), (Vec::new(), None));
    }
}
