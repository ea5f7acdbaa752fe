//! The view types: what the JSON API and the portal show of tasks, runs, items, events and secrets.
//! Both front ends render these same values; neither computes a number the other computes
//! differently. No view holds key material: specs are masked ([`redact`]), secrets are names.

use dth_model::{ItemKind, ItemState, Role, RunCounters, RunStatus, Trigger};
use dth_runtime::SecretEntry;
use dth_store::{Event, Item, Millis, Run, Task, TokenInfo, User};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// What replaces key material in a view.
pub const REDACTED: &str = "[REDACTED]";

/// Keys whose values are secret wherever they appear in a spec.
const SECRET_KEYS: &[&str] = &["secret_access_key", "session_token", "password"];

/// A task as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    /// Id (UUID).
    pub id: String,
    /// Name for people.
    pub name: String,
    /// Kind: `s3`.
    pub kind: String,
    /// The task's spec (a `TaskSpec`); key material is never shown, only secret names.
    #[schema(value_type = Object)]
    pub spec: Value,
    /// `STARTING`, `IN_PROGRESS`, `DONE`, `ERROR`, `STOPPING` or `STOPPED`.
    #[schema(value_type = String, example = "IN_PROGRESS")]
    pub status: dth_model::TaskStatus,
    /// Machine-readable error code when `status` is `ERROR`.
    pub error_code: Option<String>,
    /// Error message when `status` is `ERROR`.
    pub error: Option<String>,
    /// When the next scheduled run is due (Unix ms); null: none.
    pub next_run_at: Option<Millis>,
    /// Creation (Unix ms).
    pub created_at: Millis,
    /// Last change (Unix ms).
    pub updated_at: Millis,
}

impl From<Task> for TaskView {
    fn from(t: Task) -> Self {
        TaskView {
            id: t.id,
            name: t.name,
            kind: t.kind,
            spec: redact(t.spec),
            status: t.status,
            error_code: t.error_code,
            error: t.error,
            next_run_at: t.next_run_at,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A task with its latest run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskDetail {
    /// The task.
    #[serde(flatten)]
    pub task: TaskView,
    /// Its newest run with counters; null before the first run.
    pub latest_run: Option<RunDetail>,
}

impl TaskDetail {
    /// A task with its newest run and that run's counters, as every front end shows it.
    pub async fn of(
        hub: &dth_runtime::Hub,
        actor: &dth_model::Actor,
        task: Task,
    ) -> Result<TaskDetail, dth_runtime::Error> {
        let latest_run = match hub.runs(actor, &task.id, 1).await?.into_iter().next() {
            Some(run) => Some(RunDetail::from(hub.run(actor, run.id).await?)),
            None => None,
        };
        Ok(TaskDetail {
            task: task.into(),
            latest_run,
        })
    }
}

impl TaskDetail {
    /// Every task with its newest run and that run's counters, newest task first, the runs read
    /// at once ([`dth_runtime::Hub::latest_runs`]).
    pub async fn all(
        hub: &dth_runtime::Hub,
        actor: &dth_model::Actor,
    ) -> Result<Vec<TaskDetail>, dth_runtime::Error> {
        let mut latest = hub.latest_runs(actor).await?;
        Ok(hub
            .tasks(actor)
            .await?
            .into_iter()
            .map(|task| TaskDetail {
                latest_run: latest.remove(&task.id).map(RunDetail::from),
                task: task.into(),
            })
            .collect())
    }
}

/// Masks key material anywhere in a spec: the values of `secret_access_key`, `session_token` and
/// `password` become `[REDACTED]` (null stays null). The hub moves static keys into secrets when a task
/// is created, so a stored spec should hold none; this is the second line.
pub fn redact(mut spec: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if SECRET_KEYS.contains(&k.as_str()) && !v.is_null() {
                        *v = Value::String(REDACTED.into());
                    } else {
                        walk(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut spec);
    spec
}

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    /// Id.
    pub id: i64,
    /// Its task.
    pub task_id: String,
    /// What started it: `schedule`, `user` or `event`.
    #[schema(value_type = String, example = "schedule")]
    pub trigger: Trigger,
    /// `FINDING`, `TRANSFERRING`, `DONE`, `FAILED` or `STOPPED`.
    #[schema(value_type = String, example = "TRANSFERRING")]
    pub status: RunStatus,
    /// Attempts an item gets before it is dead-lettered.
    pub max_attempts: u32,
    /// Why it failed.
    pub error: Option<String>,
    /// Start (Unix ms).
    pub started_at: Millis,
    /// When the finder finished (Unix ms).
    pub found_at: Option<Millis>,
    /// End (Unix ms).
    pub ended_at: Option<Millis>,
    /// Who started it (`trigger` `user`); null for the schedule and events.
    pub started_by: Option<String>,
}

impl From<Run> for RunView {
    fn from(r: Run) -> Self {
        RunView {
            id: r.id,
            task_id: r.task_id,
            trigger: r.trigger,
            status: r.status,
            max_attempts: r.max_attempts,
            error: r.error,
            started_at: r.started_at,
            found_at: r.found_at,
            ended_at: r.ended_at,
            started_by: r.started_by,
        }
    }
}

/// A run with its counters.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: RunView,
    /// Its counters.
    pub counters: RunCounters,
}

impl From<(Run, RunCounters)> for RunDetail {
    fn from((run, counters): (Run, RunCounters)) -> Self {
        RunDetail {
            run: run.into(),
            counters,
        }
    }
}

/// The live progress of a run (`GET /api/v1/tasks/{id}/progress`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProgressView {
    /// The run and its counters.
    #[serde(flatten)]
    pub run: RunDetail,
    /// Bytes written so far: copied objects, and objects and parts in flight.
    pub bytes_done: u64,
    /// Bytes per second over the last 10 seconds.
    pub rate_bytes_per_s: f64,
    /// Items ended per second over the last 10 seconds.
    pub items_per_s: f64,
    /// Seconds left at the current rate; null while finding, stalled or ended.
    pub eta_seconds: Option<u64>,
}

impl From<dth_runtime::Progress> for ProgressView {
    fn from(p: dth_runtime::Progress) -> Self {
        ProgressView {
            run: RunDetail::from((p.run, p.counters)),
            bytes_done: p.bytes_done,
            rate_bytes_per_s: p.rate_bytes_per_s,
            items_per_s: p.items_per_s,
            eta_seconds: p.eta_seconds,
        }
    }
}

/// A sample of a run's progress, for charts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct SampleView {
    /// When (Unix ms).
    pub at: Millis,
    /// Bytes written so far.
    pub bytes_done: u64,
    /// Items ended (copied, skipped, deleted, dead) so far.
    pub items_done: u64,
    /// Items dead so far.
    pub items_failed: u64,
}

impl From<dth_store::RunSample> for SampleView {
    fn from(s: dth_store::RunSample) -> Self {
        SampleView {
            at: s.at,
            bytes_done: s.bytes_done,
            items_done: s.items_done,
            items_failed: s.items_failed,
        }
    }
}

/// One line of a run's report (CSV columns in this order, or a JSON line).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReportLine {
    /// Object key (or image), relative to the task's prefixes.
    pub key: String,
    /// `object`, `delete`, `image` (parts are reported through their object).
    pub kind: String,
    /// What happened: `copied`, `deleted`, `skipped`, `failed`, `cancelled` or `pending`.
    pub action: String,
    /// Size in bytes.
    pub size: u64,
    /// How the copy was verified, or why it was skipped.
    pub verification: Option<String>,
    /// Claims it took.
    pub attempts: u32,
    /// The last error.
    pub error: Option<String>,
    /// Destination ETag after the copy.
    pub dst_etag: Option<String>,
}

impl From<Item> for ReportLine {
    fn from(i: Item) -> Self {
        let action = match (i.state, i.kind) {
            (ItemState::Done, ItemKind::Delete) => "deleted",
            (ItemState::Done, _) => "copied",
            (ItemState::Skipped, _) => "skipped",
            (ItemState::Dead, _) => "failed",
            (ItemState::Cancelled, _) => "cancelled",
            _ => "pending",
        };
        ReportLine {
            key: i.key,
            kind: i.kind.name().to_string(),
            action: action.to_string(),
            size: i.size,
            verification: i.verification,
            attempts: i.attempts,
            error: i.last_error,
            dst_etag: i.dst_etag,
        }
    }
}

/// A queue item as the API shows it (its engine payload is left out).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ItemView {
    /// Id.
    pub id: i64,
    /// Its run.
    pub run_id: i64,
    /// `object`, `part` or `delete`.
    #[schema(value_type = String, example = "object")]
    pub kind: ItemKind,
    /// Object key, relative to the task's prefixes.
    pub key: String,
    /// Size (a part: its length).
    pub size: u64,
    /// Source ETag seen by the finder.
    pub etag: Option<String>,
    /// For a part: its giant object's item.
    pub parent_id: Option<i64>,
    /// For a part: its number.
    pub part_number: Option<u32>,
    /// `queued`, `leased`, `waiting`, `done`, `skipped`, `dead` or `cancelled`.
    #[schema(value_type = String, example = "dead")]
    pub state: ItemState,
    /// Claims so far.
    pub attempts: u32,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease ends (Unix ms).
    pub lease_expires_at: Option<Millis>,
    /// Not claimable before (Unix ms).
    pub not_before: Millis,
    /// The last failure.
    pub last_error: Option<String>,
    /// Bytes written.
    pub bytes_done: u64,
    /// Destination ETag after the copy.
    pub dst_etag: Option<String>,
    /// How the copy was verified, or why it was skipped.
    pub verification: Option<String>,
    /// Creation (Unix ms).
    pub created_at: Millis,
    /// Last change (Unix ms).
    pub updated_at: Millis,
}

impl From<Item> for ItemView {
    fn from(i: Item) -> Self {
        ItemView {
            id: i.id,
            run_id: i.run_id,
            kind: i.kind,
            key: i.key,
            size: i.size,
            etag: i.etag,
            parent_id: i.parent_id,
            part_number: i.part_number,
            state: i.state,
            attempts: i.attempts,
            lease_owner: i.lease_owner,
            lease_expires_at: i.lease_expires_at,
            not_before: i.not_before,
            last_error: i.last_error,
            bytes_done: i.bytes_done,
            dst_etag: i.dst_etag,
            verification: i.verification,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

/// An entry of the event log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Id.
    pub id: i64,
    /// When (Unix ms).
    pub at: Millis,
    /// Task concerned.
    pub task_id: Option<String>,
    /// Run concerned.
    pub run_id: Option<i64>,
    /// `task.created`, `task.stopped`, `run.started`, `item.dead`, …
    pub kind: String,
    /// Who did it: `user:<email>`, `token:<name> of <email>`, `env-token`, `scheduler`, …
    pub actor: String,
    /// Details for people.
    pub message: String,
    /// What it was done to, when not the task (a user, a token, a secret).
    pub target: Option<String>,
    /// Client address of the request that did it.
    pub client: Option<String>,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        EventView {
            id: e.id,
            at: e.at,
            task_id: e.task_id,
            run_id: e.run_id,
            kind: e.kind,
            actor: e.actor,
            message: e.message,
            target: e.target,
            client: e.client,
        }
    }
}

/// A stored secret: its name, kind, times and the tasks that use it, never its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretView {
    /// Name.
    pub name: String,
    /// `access_key` or `registry_login`; null when the stored value is of neither shape.
    #[serde(default)]
    #[schema(example = "access_key")]
    pub kind: Option<String>,
    /// Creation (Unix ms).
    pub created_at: Millis,
    /// Last change (Unix ms).
    pub updated_at: Millis,
    /// The tasks whose spec names it (as a source's or a destination's credentials).
    #[serde(default)]
    pub used_by: Vec<TaskRef>,
}

/// A task named by another view.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskRef {
    /// Id (UUID).
    pub id: String,
    /// Name for people.
    pub name: String,
}

impl From<SecretEntry> for SecretView {
    fn from(s: SecretEntry) -> Self {
        SecretView {
            name: s.info.name,
            kind: s.kind.map(|k| k.name().to_string()),
            created_at: s.info.created_at,
            updated_at: s.info.updated_at,
            used_by: s
                .tasks
                .into_iter()
                .map(|(id, name)| TaskRef { id, name })
                .collect(),
        }
    }
}

/// A user as the API shows it (never a password or its hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// Id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: Role,
    /// `active` or `disabled`.
    pub state: String,
    /// Locked after too many failed sign-ins (an admin unlocks it).
    pub locked: bool,
    /// Signed in with a temporary password that must be replaced.
    pub must_change_password: bool,
    /// Has a local password (else OpenID Connect only).
    pub has_password: bool,
    /// Linked to an OpenID Connect account.
    pub oidc_linked: bool,
    /// Preferred language, if chosen.
    pub language: Option<String>,
    /// Last sign-in (Unix ms).
    pub last_signin_at: Option<Millis>,
    /// Creation (Unix ms).
    pub created_at: Millis,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            state: if u.disabled { "disabled" } else { "active" }.into(),
            locked: u.locked,
            must_change_password: u.must_change_password,
            has_password: u.has_password,
            oidc_linked: u.oidc_subject.is_some(),
            language: u.language,
            last_signin_at: u.last_signin_at,
            created_at: u.created_at,
        }
    }
}

/// An API token as the API shows it (never the token).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Its user.
    pub user_id: Option<String>,
    /// Role in effect (at most its user's).
    pub role: Role,
    /// Creation (Unix ms).
    pub created_at: Millis,
    /// Expiry (Unix ms); null: never.
    pub expires_at: Option<Millis>,
    /// Last use (Unix ms, to the minute).
    pub last_used_at: Option<Millis>,
}

impl From<TokenInfo> for TokenView {
    fn from(t: TokenInfo) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            user_id: t.user_id,
            role: t.role,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_key_material_anywhere() {
        let spec = serde_json::json!({
            "source": {"credentials": {"kind": "static", "access_key_id": "AKIA",
                       "secret_access_key": "s3cr3t", "session_token": null}},
            "destination": {"credentials": {"kind": "static", "access_key_id": "AKIB",
                            "secret_access_key": "other", "session_token": "tok"}},
            "alarms": [{"password": "pw"}]
        });
        let text = redact(spec).to_string();
        for secret in ["s3cr3t", "other", "\"tok\"", "pw\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("AKIA"));
        assert!(text.contains("\"session_token\":null"));
    }
}
