//! Rows as both backends return them (integers as `i64`, JSON as text), their conversion to the
//! public types, and the column lists the SQL of both backends shares.

use dth_model::{ItemKind, ItemState, RunStatus, TaskStatus, Trigger};

use crate::{Error, Event, Item, Millis, Result, Run, SecretInfo, Task};

/// Columns of `tasks`, in [`TaskRow`] order.
pub(crate) const TASK_COLS: &str = "id, name, kind, spec, status, error_code, error, next_run_at, created_at, updated_at, \
     run_requested_by";
/// Columns of `runs`.
pub(crate) const RUN_COLS: &str = "id, task_id, trigger_kind, status, max_attempts, error, \
     started_at, found_at, ended_at, up_to_date, up_to_date_bytes, started_by";
/// Columns of `items`.
pub(crate) const ITEM_COLS: &str = "id, run_id, task_id, kind, key, size, etag, parent_id, \
     part_number, state, attempts, lease_owner, lease_expires_at, not_before, last_error, \
     bytes_done, dst_etag, verification, payload, created_at, updated_at";
/// Columns of `events`.
pub(crate) const EVENT_COLS: &str = "id, at, task_id, run_id, kind, actor, message, target, client";

/// A failed statement, saying what was being done.
pub(crate) fn db(what: impl std::fmt::Display) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| Error::Db(format!("{what}: {e}"))
}

/// Stored counts and sizes are `i64`; the API speaks `u64`.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Milliseconds of a delay, saturating.
pub(crate) fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

pub(crate) fn parse<T: std::str::FromStr>(
    what: &str,
    id: impl std::fmt::Display,
    s: &str,
) -> Result<T> {
    s.parse().map_err(|_| {
        Error::Db(format!(
            "{what} of {id} is {s:?}, which this version does not know; is the database from a \
             newer dth?"
        ))
    })
}

fn json(what: &str, id: impl std::fmt::Display, s: &str) -> Result<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| Error::Db(format!("{what} of {id} is not valid JSON: {e}")))
}

pub(crate) fn to_json(v: &serde_json::Value) -> String {
    v.to_string()
}

#[derive(sqlx::FromRow)]
pub(crate) struct TaskRow {
    id: String,
    name: String,
    kind: String,
    spec: String,
    status: String,
    error_code: Option<String>,
    error: Option<String>,
    next_run_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    run_requested_by: Option<String>,
}

impl TryFrom<TaskRow> for Task {
    type Error = Error;
    fn try_from(r: TaskRow) -> Result<Task> {
        Ok(Task {
            status: parse::<TaskStatus>("status", format!("task {}", r.id), &r.status)?,
            spec: json("spec", format!("task {}", r.id), &r.spec)?,
            id: r.id,
            name: r.name,
            kind: r.kind,
            error_code: r.error_code,
            error: r.error,
            next_run_at: r.next_run_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            run_requested_by: r.run_requested_by,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RunRow {
    id: i64,
    task_id: String,
    trigger_kind: String,
    status: String,
    max_attempts: i64,
    error: Option<String>,
    started_at: i64,
    found_at: Option<i64>,
    ended_at: Option<i64>,
    up_to_date: i64,
    up_to_date_bytes: i64,
    started_by: Option<String>,
}

impl TryFrom<RunRow> for Run {
    type Error = Error;
    fn try_from(r: RunRow) -> Result<Run> {
        let what = format!("run {}", r.id);
        Ok(Run {
            id: r.id,
            task_id: r.task_id,
            trigger: parse::<Trigger>("trigger", &what, &r.trigger_kind)?,
            status: parse::<RunStatus>("status", &what, &r.status)?,
            max_attempts: u32::try_from(r.max_attempts).unwrap_or(u32::MAX),
            error: r.error,
            started_at: r.started_at,
            found_at: r.found_at,
            ended_at: r.ended_at,
            up_to_date: to_u64(r.up_to_date),
            up_to_date_bytes: to_u64(r.up_to_date_bytes),
            started_by: r.started_by,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ItemRow {
    id: i64,
    run_id: i64,
    task_id: String,
    kind: String,
    key: String,
    size: i64,
    etag: Option<String>,
    parent_id: Option<i64>,
    part_number: i64,
    state: String,
    attempts: i64,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    not_before: i64,
    last_error: Option<String>,
    bytes_done: i64,
    dst_etag: Option<String>,
    verification: Option<String>,
    payload: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ItemRow> for Item {
    type Error = Error;
    fn try_from(r: ItemRow) -> Result<Item> {
        let what = format!("item {}", r.id);
        let kind = parse::<ItemKind>("kind", &what, &r.kind)?;
        Ok(Item {
            id: r.id,
            run_id: r.run_id,
            task_id: r.task_id,
            kind,
            key: r.key,
            size: to_u64(r.size),
            etag: r.etag,
            parent_id: r.parent_id,
            part_number: (kind == ItemKind::Part)
                .then(|| u32::try_from(r.part_number).unwrap_or(0)),
            state: parse::<ItemState>("state", &what, &r.state)?,
            attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
            lease_owner: r.lease_owner,
            lease_expires_at: r.lease_expires_at,
            not_before: r.not_before,
            last_error: r.last_error,
            bytes_done: to_u64(r.bytes_done),
            dst_etag: r.dst_etag,
            verification: r.verification,
            payload: json("payload", &what, &r.payload)?,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

pub(crate) fn items(rows: Vec<ItemRow>) -> Result<Vec<Item>> {
    rows.into_iter().map(Item::try_from).collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: i64,
    at: Millis,
    task_id: Option<String>,
    run_id: Option<i64>,
    kind: String,
    actor: String,
    message: String,
    target: Option<String>,
    client: Option<String>,
}

impl From<EventRow> for Event {
    fn from(r: EventRow) -> Event {
        Event {
            id: r.id,
            at: r.at,
            task_id: r.task_id,
            run_id: r.run_id,
            kind: r.kind,
            actor: r.actor,
            message: r.message,
            target: r.target,
            client: r.client,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SecretRow {
    name: String,
    created_at: i64,
    updated_at: i64,
}

impl From<SecretRow> for SecretInfo {
    fn from(r: SecretRow) -> SecretInfo {
        SecretInfo {
            name: r.name,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// One group of `run_counters`' GROUP BY.
#[derive(sqlx::FromRow)]
pub(crate) struct CounterRow {
    pub kind: String,
    pub state: String,
    pub n: i64,
    pub bytes: i64,
    pub failed_before: i64,
    pub bytes_done: i64,
}

/// `kind` as stored.
pub(crate) fn prio(kind: ItemKind) -> i64 {
    if kind == ItemKind::Part { 0 } else { 1 }
}

/// Rows or values per multi-row statement (SQLite allows 32,766 bound values, PostgreSQL 65,535).
pub(crate) const CHUNK: usize = 1000;

/// Run counters from the GROUP BY (kind, state) of a run's items.
pub(crate) fn counters(
    groups: &[CounterRow],
    up_to_date: u64,
    up_to_date_bytes: u64,
    parts_done_bytes: u64,
) -> dth_model::RunCounters {
    let mut c = dth_model::RunCounters {
        found: up_to_date,
        found_bytes: up_to_date_bytes,
        skipped: up_to_date,
        bytes_in_flight: parts_done_bytes,
        ..Default::default()
    };
    for g in groups {
        let (n, bytes) = (to_u64(g.n), to_u64(g.bytes));
        let pending = matches!(g.state.as_str(), "queued" | "leased" | "waiting");
        if pending {
            // Bytes written so far by unfinished objects and parts.
            c.bytes_in_flight += to_u64(g.bytes_done);
        }
        if g.kind == "part" {
            continue;
        }
        // Objects and images are what a run finds and copies; deletes and parts are not.
        let copyable = matches!(g.kind.as_str(), "object" | "image");
        if copyable {
            c.found += n;
            c.found_bytes += bytes;
        }
        match g.state.as_str() {
            "done" if copyable => {
                c.copied += n;
                c.copied_bytes += bytes;
            }
            "done" if g.kind == "delete" => c.deleted += n,
            "skipped" => c.skipped += n,
            "dead" => c.dead += n,
            "cancelled" => c.cancelled += n,
            _ if pending => {
                c.pending += n;
                c.retrying += to_u64(g.failed_before);
            }
            _ => {}
        }
    }
    c
}
