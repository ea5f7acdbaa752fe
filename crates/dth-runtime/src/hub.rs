//! The control surface: configuration, and the calls the API and CLI make on tasks and runs.

use std::sync::Arc;
use std::time::Duration;

use dth_model::{
    AccessKey, Credentials, ItemState, Job, RegistryCredentials, RegistryLogin, SecretValue,
    TaskSpec, TaskStatus, check_secret_name,
};
use dth_model::{Actor, Role, RunCounters};
use dth_store::{Event, Item, ItemQuery, NewEvent, NewTask, Run, SecretInfo, Store, Task, now_ms};
use tokio::sync::Notify;

use crate::Error;
use crate::access::AccessConfig;
use crate::alarm::{Alarms, SmtpConfig};
use crate::engine::{Engines, connect};
use crate::payload;

/// How this process runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// This process's name in leases and events (`host:pid` by default).
    pub worker_id: String,
    /// Items worked on at once by this process.
    pub concurrency: usize,
    /// Items claimed per store round trip.
    pub claim_batch: usize,
    /// How long a claim is good for without a heartbeat.
    pub lease: Duration,
    /// How often an idle worker asks for work.
    pub poll: Duration,
    /// Delay before the first retry of a failed item; doubles with each attempt, up to 15 minutes.
    pub retry_base: Duration,
    /// On shutdown, how long items in flight may finish before their leases are given back.
    pub shutdown_grace: Duration,
    /// Mail server for email alarms.
    pub smtp: Option<SmtpConfig>,
    /// Sign-in, sessions and tokens.
    pub access: AccessConfig,
    /// How often the scheduler's leader samples the progress of active runs (for charts).
    pub sample_every: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            worker_id: default_worker_id(),
            concurrency: 64,
            claim_batch: 64,
            lease: dth_model::DEFAULT_LEASE,
            poll: Duration::from_millis(500),
            retry_base: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            smtp: None,
            access: AccessConfig::default(),
            sample_every: Duration::from_secs(10),
        }
    }
}

/// The secrets a spec refers to, with the side naming each.
pub(crate) fn secret_names(spec: &TaskSpec) -> Vec<(&'static str, String)> {
    let names = match &spec.job {
        Job::S3(j) => [&j.source, &j.destination].map(|e| match &e.credentials {
            Credentials::Secret { name } => Some(name.clone()),
            _ => None,
        }),
        Job::Image(j) => [&j.source, &j.destination].map(|e| match &e.credentials {
            RegistryCredentials::Secret { name } => Some(name.clone()),
            _ => None,
        }),
    };
    let mut out: Vec<(&'static str, String)> = ["source", "destination"]
        .into_iter()
        .zip(names)
        .filter_map(|(side, n)| n.map(|n| (side, n)))
        .collect();
    // The SQS queue's own credentials (never a secret the hub made: clear keys are refused there).
    if let Job::S3(j) = &spec.job
        && let Some(events) = &j.source.events
        && let dth_model::EventSource::Sqs {
            credentials: Some(Credentials::Secret { name }),
            ..
        } = events.as_ref()
    {
        out.push(("source.events", name.clone()));
    }
    out
}

/// What a stored secret holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// An S3 access key (object tasks).
    AccessKey,
    /// A registry login (image tasks).
    RegistryLogin,
}

impl SecretKind {
    /// `access_key` or `registry_login`.
    pub fn name(self) -> &'static str {
        match self {
            SecretKind::AccessKey => "access_key",
            SecretKind::RegistryLogin => "registry_login",
        }
    }
}

/// A stored secret as [`Hub::list_secrets`] tells of it: never its value.
#[derive(Debug, Clone)]
pub struct SecretEntry {
    /// Name and times.
    pub info: SecretInfo,
    /// What it holds; `None` when the stored value is of neither shape.
    pub kind: Option<SecretKind>,
    /// The tasks whose spec names it on either side, as (id, name).
    pub tasks: Vec<(String, String)>,
}

/// Whether a secret name is one [`Hub::create_task`] made (`task-XXXXXXXX-source|destination`).
pub(crate) fn is_generated_secret(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("task-") else {
        return false;
    };
    let Some((tag, side)) = rest.split_once('-') else {
        return false;
    };
    tag.len() == 8
        && tag.bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(side, "source" | "destination")
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}:{}", std::process::id())
}

/// The runtime of one hub or worker process.
pub struct Hub {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: Config,
    pub(crate) engines: Engines,
    pub(crate) alarms: Alarms,
    /// Wakes the scheduler (a task was created or started).
    pub(crate) wake: Notify,
    /// Wakes this process's idle workers when items were queued here (events).
    pub(crate) wake_workers: Notify,
    /// SQS clients of the tasks whose events this process polls.
    pub(crate) event_queues: crate::events::sqs::EventQueues,
    /// This process's acks, batched (started with the first one).
    pub(crate) acks: std::sync::OnceLock<crate::ack_batch::AckBatcher>,
    /// Items this process's workers hold: claimed and not acked.
    pub(crate) held: crate::worker::Held,
}

impl Hub {
    /// A runtime over a store.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Arc<Self> {
        Arc::new(Hub {
            alarms: Alarms::new(config.smtp.clone()),
            store,
            config,
            engines: Engines::default(),
            wake: Notify::new(),
            wake_workers: Notify::new(),
            event_queues: Default::default(),
            acks: std::sync::OnceLock::new(),
            held: Default::default(),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// This process's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Validates and creates a task; its first run is due at once. Nothing is created on bad input.
    /// Access keys given in clear are moved into the store's secrets first, so the stored spec (and
    /// every view of it) holds only a secret's name.
    /// The spec is read from JSON here, after the role check, so a caller without the role learns
    /// nothing from validation.
    pub async fn create_task(
        &self,
        actor: &Actor,
        spec: &serde_json::Value,
    ) -> Result<Task, Error> {
        actor.require(Role::Operator)?;
        let mut spec = self.read_spec(spec).await?;
        let moved = self.move_credentials(&mut spec).await?;
        self.insert_task(actor, &spec, moved, "created").await
    }

    /// Stores a checked spec as a new task due at once, on behalf of `actor`; on failure the
    /// secrets in `made` (made for it) are deleted again.
    pub(crate) async fn insert_task(
        &self,
        actor: &Actor,
        spec: &TaskSpec,
        made: Vec<String>,
        how: &str,
    ) -> Result<Task, Error> {
        let created = match serde_json::to_value(spec) {
            Ok(value) => self
                .store
                .create_task(NewTask {
                    name: spec.name.clone(),
                    kind: spec.kind().to_string(),
                    spec: value,
                    next_run_at: Some(now_ms()),
                    run_requested_by: Some(actor.label()),
                })
                .await
                .map_err(Error::from),
            Err(e) => Err(Error::BadRequest(format!("task spec: {e}"))),
        };
        let task = match created {
            Ok(t) => t,
            Err(e) => {
                self.forget_secrets(&made).await;
                return Err(e);
            }
        };
        self.audit(
            actor,
            "task.created",
            Some(&task.id),
            None,
            &format!("task {:?} {how}", spec.name),
        )
        .await;
        self.wake.notify_waiters();
        Ok(task)
    }

    /// Deletes secrets made for a task that was not created after all.
    pub(crate) async fn forget_secrets(&self, names: &[String]) {
        for name in names {
            let _ = self.store.delete_secret(name).await;
        }
    }

    /// Reads and checks a spec: its JSON, its values, and that the secrets it names exist.
    pub(crate) async fn read_spec(&self, spec: &serde_json::Value) -> Result<TaskSpec, Error> {
        let spec = TaskSpec::from_json(spec).map_err(Error::BadRequest)?;
        spec.validate()?;
        if let Job::Image(job) = &spec.job {
            dth_oci::open::check(job).map_err(|e| Error::BadRequest(e.to_string()))?;
        }
        for (side, name) in secret_names(&spec) {
            if self.store.secret(&name).await?.is_none() {
                return Err(Error::BadRequest(format!(
                    "{side}.credentials: secret {name:?} does not exist; create it first"
                )));
            }
        }
        Ok(spec)
    }

    /// Starts a stopped, done or failed task, or runs an active one again now.
    pub async fn start_task(&self, actor: &Actor, id: &str) -> Result<Task, Error> {
        actor.require(Role::Operator)?;
        let task = self.task(id).await?;
        if task.status == TaskStatus::Stopping {
            return Err(Error::Conflict(format!("task {id} is still stopping")));
        }
        if !matches!(task.status, TaskStatus::Starting | TaskStatus::InProgress) {
            self.store
                .set_task_status(id, TaskStatus::Starting, None)
                .await?;
        }
        self.store.request_run(id, &actor.label()).await?;
        self.audit(actor, "task.started", Some(id), None, "started")
            .await;
        self.wake.notify_waiters();
        self.task(id).await
    }

    /// Stops a task: no new runs, its runs stopped, work in flight cancelled, open uploads of giant
    /// objects aborted.
    pub async fn stop_task(&self, actor: &Actor, id: &str) -> Result<Task, Error> {
        actor.require(Role::Operator)?;
        self.stop(id, &actor.label()).await
    }

    /// Stops a task on behalf of `actor` (a label: the scheduler stops tasks too).
    pub(crate) async fn stop(&self, id: &str, actor: &str) -> Result<Task, Error> {
        let task = self.task(id).await?;
        if matches!(task.status, TaskStatus::Stopped) {
            return Ok(task);
        }
        self.store
            .set_task_status(id, TaskStatus::Stopping, None)
            .await?;
        self.store.set_next_run(id, None).await?;
        self.engines.cancel(id);
        let runs = self.store.list_runs(id, 1000).await?;
        for run in runs.iter().filter(|r| r.status.is_active()) {
            self.abort_giants(&task, run.id).await;
            let cancelled = self.store.stop_run(run.id).await?;
            crate::metrics::run_ended(
                &run.task_id,
                run.started_at,
                None,
                dth_model::RunStatus::Stopped,
            );
            self.event(
                id,
                Some(run.id),
                "run.stopped",
                actor,
                &format!("stopped; {cancelled} items cancelled"),
            )
            .await;
        }
        self.store
            .set_task_status(id, TaskStatus::Stopped, None)
            .await?;
        self.event(id, None, "task.stopped", actor, "stopped").await;
        self.task(id).await
    }

    /// Stops and deletes a task with its runs and items.
    /// The secrets the hub made from the task's clear keys go with it.
    pub async fn delete_task(&self, actor: &Actor, id: &str) -> Result<(), Error> {
        actor.require(Role::Operator)?;
        let task = self.stop(id, &actor.label()).await?;
        if !self.store.delete_task(id).await? {
            return Err(Error::NotFound(format!("task {id}")));
        }
        let _ = self
            .store
            .delete_secret(&crate::events::webhook::token_secret_name(id))
            .await;
        if let Ok(spec) = serde_json::from_value::<TaskSpec>(task.spec) {
            for (_, name) in secret_names(&spec) {
                if is_generated_secret(&name) {
                    let _ = self.store.delete_secret(&name).await;
                }
            }
        }
        self.audit(
            actor,
            "task.deleted",
            Some(id),
            None,
            &format!("task {:?} deleted", task.name),
        )
        .await;
        Ok(())
    }

    /// Stores a secret (JSON of an access key or a registry login, read after the role check)
    /// under a name, replacing one of the same name; audited, the value never logged.
    pub async fn put_secret(
        &self,
        actor: &Actor,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<(), Error> {
        actor.require(Role::Operator)?;
        check_secret_name(name).map_err(Error::BadRequest)?;
        let value = SecretValue::from_json(value.clone()).map_err(Error::BadRequest)?;
        self.store.put_secret(name, &value.to_bytes()).await?;
        self.audit(
            actor,
            "secret.stored",
            None,
            Some(name),
            &format!("{} {name:?} stored", value.kind()),
        )
        .await;
        Ok(())
    }

    /// The stored secrets (viewer): names, times, what each holds and the tasks that use it —
    /// never a value. A secret is opened only to tell its kind.
    pub async fn list_secrets(&self, actor: &Actor) -> Result<Vec<SecretEntry>, Error> {
        actor.require(Role::Viewer)?;
        let specs: Vec<(Task, TaskSpec)> = self
            .store
            .list_tasks()
            .await?
            .into_iter()
            .filter_map(|t| {
                let spec = serde_json::from_value::<TaskSpec>(t.spec.clone()).ok()?;
                Some((t, spec))
            })
            .collect();
        let mut entries = Vec::new();
        for info in self.store.list_secrets().await? {
            if crate::events::webhook::is_token_secret(&info.name) {
                continue;
            }
            let kind = self
                .store
                .secret(&info.name)
                .await?
                .and_then(|v| SecretValue::from_bytes(&v.0))
                .map(|v| match v {
                    SecretValue::AccessKey(_) => SecretKind::AccessKey,
                    SecretValue::RegistryLogin(_) => SecretKind::RegistryLogin,
                });
            let tasks = specs
                .iter()
                .filter(|(_, spec)| secret_names(spec).iter().any(|(_, n)| *n == info.name))
                .map(|(t, _)| (t.id.clone(), t.name.clone()))
                .collect();
            entries.push(SecretEntry { info, kind, tasks });
        }
        Ok(entries)
    }

    /// Deletes a secret no task refers to; a secret in use is refused (Conflict, naming the
    /// tasks). Returns whether it existed.
    pub async fn delete_secret(&self, actor: &Actor, name: &str) -> Result<bool, Error> {
        actor.require(Role::Operator)?;
        check_secret_name(name).map_err(Error::BadRequest)?;
        let users: Vec<String> = self
            .store
            .list_tasks()
            .await?
            .into_iter()
            .filter(|t| {
                serde_json::from_value::<TaskSpec>(t.spec.clone())
                    .is_ok_and(|spec| secret_names(&spec).iter().any(|(_, n)| n == name))
            })
            .map(|t| format!("{} ({})", t.id, t.name))
            .collect();
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "secret {name:?} is used by task {}; change or delete the task first",
                users.join(", ")
            )));
        }
        let existed = self.store.delete_secret(name).await?;
        if existed {
            self.audit(
                actor,
                "secret.deleted",
                None,
                Some(name),
                &format!("secret {name:?} deleted"),
            )
            .await;
        }
        Ok(existed)
    }

    /// Queues dead items of a run again (all, or these ids).
    pub async fn retry_dead(
        &self,
        actor: &Actor,
        run_id: i64,
        ids: Option<&[i64]>,
    ) -> Result<u64, Error> {
        actor.require(Role::Operator)?;
        let run = self
            .store
            .get_run(run_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("run {run_id}")))?;
        let n = self.store.retry_dead(run_id, ids).await?;
        // The retried items connect anew, so a secret fixed since their failure is used.
        self.engines.forget(&run.task_id);
        // A task that failed with these items is in progress again, so the run's end sets it.
        if n > 0 && self.task(&run.task_id).await?.status == TaskStatus::Error {
            self.store
                .set_task_status(&run.task_id, TaskStatus::InProgress, None)
                .await?;
        }
        self.event_by(
            actor,
            &run.task_id,
            Some(run_id),
            "items.retried",
            &format!("{n} dead items queued again"),
        )
        .await;
        Ok(n)
    }

    /// Every task, newest first (viewer).
    pub async fn tasks(&self, actor: &Actor) -> Result<Vec<Task>, Error> {
        actor.require(Role::Viewer)?;
        Ok(self.store.list_tasks().await?)
    }

    /// One task (viewer).
    pub async fn get_task(&self, actor: &Actor, id: &str) -> Result<Task, Error> {
        actor.require(Role::Viewer)?;
        self.task(id).await
    }

    /// A task's runs, newest first (viewer).
    pub async fn runs(&self, actor: &Actor, task_id: &str, limit: u32) -> Result<Vec<Run>, Error> {
        actor.require(Role::Viewer)?;
        self.task(task_id).await?;
        Ok(self.store.list_runs(task_id, limit).await?)
    }

    /// One run with its counters (viewer).
    pub async fn run(&self, actor: &Actor, id: i64) -> Result<(Run, RunCounters), Error> {
        actor.require(Role::Viewer)?;
        let run = self.get_run(id).await?;
        let counters = self.store.run_counters(id).await?;
        Ok((run, counters))
    }

    /// The newest run of every task with its counters (viewer), by task id: one query for the
    /// runs, then each run's counters (kept by a run that ended, counted for one in progress).
    pub async fn latest_runs(
        &self,
        actor: &Actor,
    ) -> Result<std::collections::HashMap<String, (Run, RunCounters)>, Error> {
        actor.require(Role::Viewer)?;
        let mut out = std::collections::HashMap::new();
        for run in self.store.latest_runs().await? {
            let counters = self.store.run_counters(run.id).await?;
            out.insert(run.task_id.clone(), (run, counters));
        }
        Ok(out)
    }

    /// One run, without its counters (they are a count over its items).
    pub(crate) async fn get_run(&self, id: i64) -> Result<Run, Error> {
        self.store
            .get_run(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("run {id}")))
    }

    /// A run's items matching a query (state, key prefix, page), by id (viewer).
    pub async fn items(
        &self,
        actor: &Actor,
        run_id: i64,
        query: &ItemQuery,
    ) -> Result<Vec<Item>, Error> {
        actor.require(Role::Viewer)?;
        self.get_run(run_id).await?;
        Ok(self.store.search_items(run_id, query).await?)
    }

    /// A task's events, newest first (viewer).
    pub async fn task_events(
        &self,
        actor: &Actor,
        task_id: &str,
        limit: u32,
    ) -> Result<Vec<Event>, Error> {
        actor.require(Role::Viewer)?;
        self.task(task_id).await?;
        Ok(self.store.list_events(Some(task_id), limit).await?)
    }

    /// Whether the store answers (for health checks; no actor needed).
    pub async fn store_answers(&self) -> Result<(), Error> {
        self.store.count_users().await?;
        Ok(())
    }

    pub(crate) async fn task(&self, id: &str) -> Result<Task, Error> {
        self.store
            .get_task(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("task {id}")))
    }

    /// Aborts the uploads of a run's giant objects that are waiting for parts.
    async fn abort_giants(&self, task: &Task, run_id: i64) {
        let Ok(spec) = serde_json::from_value::<TaskSpec>(task.spec.clone()) else {
            return;
        };
        let Job::S3(job) = &spec.job else { return };
        let mut after = 0;
        let mut copier = None;
        loop {
            let Ok(items) = self
                .store
                .list_items(run_id, Some(ItemState::Waiting), after, 500)
                .await
            else {
                return;
            };
            let Some(last) = items.last() else { return };
            after = last.id;
            for item in &items {
                let (_, p) = payload::object(item);
                let Some(upload) = p.upload else { continue };
                if copier.is_none() {
                    match connect(self.store.as_ref(), job).await {
                        Ok((src, dst)) => {
                            copier = Some(dth_s3::Copier::new(
                                src,
                                dst,
                                job.options.clone(),
                                Arc::default(),
                            ))
                        }
                        Err(e) => {
                            tracing::error!(task = %task.id, "cannot abort uploads: {e}");
                            return;
                        }
                    }
                }
                if let Some(c) = &copier {
                    c.abort_upload(&item.key, &upload.upload_id).await;
                }
            }
        }
    }

    /// Moves credentials given in clear into secrets named `task-XXXXXXXX-<side>` and puts the
    /// secrets' names in their place; returns the names.
    async fn move_credentials(&self, spec: &mut TaskSpec) -> Result<Vec<String>, Error> {
        let tag: u32 = rand::random();
        let mut clear = Vec::new();
        match &mut spec.job {
            Job::S3(job) => {
                for (side, e) in [
                    ("source", &mut job.source),
                    ("destination", &mut job.destination),
                ] {
                    if let Credentials::Static {
                        access_key_id,
                        secret_access_key,
                        session_token,
                    } = &e.credentials
                    {
                        let name = format!("task-{tag:08x}-{side}");
                        let value = SecretValue::AccessKey(AccessKey {
                            access_key_id: access_key_id.clone(),
                            secret_access_key: secret_access_key.clone(),
                            session_token: session_token.clone(),
                        });
                        e.credentials = Credentials::Secret { name: name.clone() };
                        clear.push((name, value));
                    }
                }
            }
            Job::Image(job) => {
                for (side, e) in [
                    ("source", &mut job.source),
                    ("destination", &mut job.destination),
                ] {
                    if let RegistryCredentials::Basic { username, password } = &e.credentials {
                        let name = format!("task-{tag:08x}-{side}");
                        let value = SecretValue::RegistryLogin(RegistryLogin {
                            username: username.clone(),
                            password: password.clone(),
                        });
                        e.credentials = RegistryCredentials::Secret { name: name.clone() };
                        clear.push((name, value));
                    }
                }
            }
        }
        let mut moved: Vec<String> = Vec::new();
        for (name, value) in clear {
            if let Err(e) = self.store.put_secret(&name, &value.to_bytes()).await {
                self.forget_secrets(&moved).await;
                return Err(e.into());
            }
            moved.push(name);
        }
        Ok(moved)
    }

    /// Records what an actor did to a run of a task; a failure is logged, not returned.
    async fn event_by(
        &self,
        actor: &Actor,
        task_id: &str,
        run_id: Option<i64>,
        kind: &str,
        message: &str,
    ) {
        let res = self
            .store
            .add_event(NewEvent {
                task_id: Some(task_id.to_string()),
                run_id,
                kind: kind.to_string(),
                actor: actor.label(),
                message: message.to_string(),
                target: None,
                client: actor.client.clone(),
            })
            .await;
        if let Err(e) = res {
            tracing::warn!(task = task_id, "event log: {e}");
        }
    }

    /// Appends to the event log; a failure is logged, not returned.
    pub(crate) async fn event(
        &self,
        task_id: &str,
        run_id: Option<i64>,
        kind: &str,
        actor: &str,
        message: &str,
    ) {
        let res = self
            .store
            .add_event(NewEvent {
                task_id: Some(task_id.to_string()),
                run_id,
                kind: kind.to_string(),
                actor: actor.to_string(),
                message: message.to_string(),
                target: None,
                client: None,
            })
            .await;
        if let Err(e) = res {
            tracing::warn!(task = task_id, "event log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_its_own_secret_names() {
        assert!(is_generated_secret("task-00c0ffee-source"));
        assert!(is_generated_secret("task-00c0ffee-destination"));
        assert!(!is_generated_secret("task-shared-source"));
        assert!(!is_generated_secret("aws-prod"));
    }
}
