//! Changing a task after it was created: editing what may change without a new task (name,
//! description, schedule, alarms, attempts, copy options; [`Hub::edit_task`]) and cloning a task
//! into a new one ([`Hub::clone_task`]). The next run reads the stored spec, so it uses the edit.

use dth_model::{Actor, Job, Role, TaskSpec, TaskStatus};
use dth_store::Task;
use serde_json::Value;

use crate::Error;
use crate::hub::{Hub, is_generated_secret, secret_names};

/// Top-level fields a PATCH may change, for every kind of task.
const EDITABLE: &[&str] = &["name", "description", "schedule", "alarms", "max_attempts"];
/// More fields a PATCH may change on an object task (`options` is merged field by field).
const EDITABLE_S3: &[&str] = &["options", "giant_threshold"];
/// More fields a PATCH may change on an image task.
const EDITABLE_IMAGE: &[&str] = &[
    "tag_filter",
    "exclude_tags",
    "keep_latest",
    "platforms",
    "concurrency",
];

impl Hub {
    /// Edits a task (operator): `patch` is a JSON object of the fields to change; `null` resets a
    /// field to its default, and `options` is merged key by key. Source and destination cannot
    /// change (clone the task for that). A changed schedule of an active task takes effect at
    /// once: its next run is due by the new schedule.
    pub async fn edit_task(&self, actor: &Actor, id: &str, patch: &Value) -> Result<Task, Error> {
        actor.require(Role::Operator)?;
        let task = self.task(id).await?;
        let Value::Object(changes) = patch else {
            return Err(Error::BadRequest(
                "the body must be a JSON object of the fields to change".into(),
            ));
        };
        if changes.is_empty() {
            return Ok(task);
        }
        let Value::Object(mut spec) = task.spec.clone() else {
            return Err(Error::Conflict(format!(
                "task {id}: the stored spec is not an object"
            )));
        };
        let extra = if task.kind == "image" {
            EDITABLE_IMAGE
        } else {
            EDITABLE_S3
        };
        for (field, value) in changes {
            if !EDITABLE.contains(&field.as_str()) && !extra.contains(&field.as_str()) {
                return Err(Error::BadRequest(format!(
                    "{field}: cannot be changed on a {} task (editable: {}); clone the task to \
                     change its source or destination",
                    task.kind,
                    EDITABLE
                        .iter()
                        .chain(extra)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            match (field.as_str(), value) {
                (_, Value::Null) => {
                    spec.remove(field);
                }
                ("options", Value::Object(opts)) => {
                    let merged = spec
                        .entry("options")
                        .or_insert_with(|| Value::Object(Default::default()));
                    let Value::Object(merged) = merged else {
                        return Err(Error::Conflict(format!(
                            "task {id}: the stored options are not an object"
                        )));
                    };
                    for (k, v) in opts {
                        if v.is_null() {
                            merged.remove(k);
                        } else {
                            merged.insert(k.clone(), v.clone());
                        }
                    }
                }
                ("options", _) => {
                    return Err(Error::BadRequest("options: must be a JSON object".into()));
                }
                _ => {
                    spec.insert(field.clone(), value.clone());
                }
            }
        }
        let edited = self.read_spec(&Value::Object(spec)).await?;
        let old: Option<TaskSpec> = serde_json::from_value(task.spec.clone()).ok();
        let value = serde_json::to_value(&edited)
            .map_err(|e| Error::BadRequest(format!("task spec: {e}")))?;
        let updated = self.store.update_task(id, &edited.name, &value).await?;
        let rescheduled = old.is_none_or(|o| o.schedule != edited.schedule);
        let active = matches!(task.status, TaskStatus::Starting | TaskStatus::InProgress);
        if rescheduled && active && task.run_requested_by.is_none() {
            let next = edited.effective_schedule().next_after(dth_store::now_ms());
            self.store.set_next_run(id, next).await?;
            self.wake.notify_waiters();
        }
        let fields: Vec<&str> = changes.keys().map(String::as_str).collect();
        self.audit(
            actor,
            "task.edited",
            Some(id),
            None,
            &format!("changed {}", fields.join(", ")),
        )
        .await;
        self.task(&updated.id).await
    }

    /// Copies a task into a new one (operator) named `name` (default: the original's name with
    /// " (copy)"), due at once like a new task. Secrets the hub made from the original's clear
    /// keys are copied too, so deleting either task leaves the other working.
    pub async fn clone_task(
        &self,
        actor: &Actor,
        id: &str,
        name: Option<&str>,
    ) -> Result<Task, Error> {
        actor.require(Role::Operator)?;
        let original = self.task(id).await?;
        let mut spec: TaskSpec = serde_json::from_value(original.spec.clone()).map_err(|e| {
            Error::Conflict(format!("task {id}: the stored spec is unreadable: {e}"))
        })?;
        spec.name = match name {
            Some(n) => n.to_string(),
            None => format!("{} (copy)", original.name),
        };
        spec.validate()?;
        let tag: u32 = rand::random();
        let mut copied = Vec::new();
        for (side, secret) in secret_names(&spec) {
            if !is_generated_secret(&secret) {
                continue;
            }
            let Some(value) = self.store.secret(&secret).await? else {
                continue;
            };
            let new = format!("task-{tag:08x}-{side}");
            if let Err(e) = self.store.put_secret(&new, &value.0).await {
                self.forget_secrets(&copied).await;
                return Err(e.into());
            }
            rename_secret(&mut spec, side, &new);
            copied.push(new);
        }
        let task = self
            .insert_task(actor, &spec, copied, &format!("cloned from task {id}"))
            .await?;
        Ok(task)
    }
}

/// Points one side of a spec at another secret.
fn rename_secret(spec: &mut TaskSpec, side: &str, name: &str) {
    use dth_model::{Credentials, RegistryCredentials};
    match &mut spec.job {
        Job::S3(j) => {
            let e = if side == "source" {
                &mut j.source
            } else {
                &mut j.destination
            };
            e.credentials = Credentials::Secret { name: name.into() };
        }
        Job::Image(j) => {
            let e = if side == "source" {
                &mut j.source
            } else {
                &mut j.destination
            };
            e.credentials = RegistryCredentials::Secret { name: name.into() };
        }
    }
}
