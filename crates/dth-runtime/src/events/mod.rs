//! Event-driven copies: S3 event notifications of a task's source bucket become items of the
//! task's event run within seconds of an upload or a delete, from an SQS queue the leader polls
//! ([`sqs`]) or from the webhook (`POST /api/v1/tasks/{id}/events`, [`webhook`]).

pub(crate) mod sqs;
pub mod webhook;

use dth_model::{Credentials, EventSource, ItemKind, Job, S3Job, TaskSpec, TaskStatus};
use dth_s3::ObjectMeta;
use dth_s3::event::{Change, ObjectEvent};
use dth_s3::filter::Filter;
use dth_store::{EventItem, Ingested, Task};

use crate::{Error, Hub, payload};

/// What became of a batch of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventsTaken {
    /// The run and what the store did with the changes.
    pub ingested: Ingested,
    /// Events for another bucket, outside the prefix, filtered out, or deletes while the task
    /// does not propagate deletes.
    pub ignored: u64,
}

/// An object task as the events code reads it: its stored row and its job.
pub(crate) struct EventTask {
    task: Task,
    job: S3Job,
    max_attempts: u32,
}

impl EventTask {
    /// Where the task's events come from.
    pub(crate) fn events(&self) -> Option<&EventSource> {
        self.job.source.events.as_deref()
    }

    /// The source bucket's credentials.
    pub(crate) fn source_credentials(&self) -> &Credentials {
        &self.job.source.credentials
    }
}

impl Hub {
    /// Reads an object task for its events; an image task is a conflict.
    pub(crate) async fn event_task(&self, task_id: &str) -> Result<EventTask, Error> {
        let task = self.task(task_id).await?;
        let spec: TaskSpec = serde_json::from_value(task.spec.clone())
            .map_err(|e| Error::BadRequest(format!("task {task_id}: stored spec: {e}")))?;
        let max_attempts = spec.effective_max_attempts();
        let Job::S3(job) = spec.job else {
            return Err(Error::Conflict(format!(
                "task {task_id} copies images; S3 events are for object tasks"
            )));
        };
        Ok(EventTask {
            task,
            job,
            max_attempts,
        })
    }

    /// Queues the changes `events` report for an object task into its event run. Events the task
    /// does not cover are counted as ignored; a stopped task takes none.
    pub(crate) async fn take_events(
        &self,
        t: &EventTask,
        events: &[ObjectEvent],
    ) -> Result<EventsTaken, Error> {
        let task_id = t.task.id.as_str();
        if matches!(t.task.status, TaskStatus::Stopped | TaskStatus::Stopping) {
            return Err(Error::Conflict(format!(
                "task {task_id} is stopped; start it to take events again"
            )));
        }
        let (items, ignored) = event_items(&t.job, events)?;
        let mut taken = EventsTaken {
            ignored,
            ..Default::default()
        };
        if items.is_empty() {
            return Ok(taken);
        }
        taken.ingested = self
            .store
            .ingest_events(task_id, t.max_attempts, &items)
            .await?;
        if t.task.status != TaskStatus::InProgress {
            self.store
                .set_task_status(task_id, TaskStatus::InProgress, None)
                .await?;
        }
        self.wake_workers.notify_waiters();
        Ok(taken)
    }
}

/// The items of the events a job covers, and how many it does not.
fn event_items(job: &S3Job, events: &[ObjectEvent]) -> Result<(Vec<EventItem>, u64), Error> {
    let filter = Filter::new(&job.options.include, &job.options.exclude)
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    let mut items = Vec::with_capacity(events.len());
    let mut ignored = 0;
    for ev in events {
        let rel = (ev.bucket == job.source.bucket)
            .then(|| ev.key.strip_prefix(job.source.prefix.as_str()))
            .flatten()
            .filter(|rel| !rel.is_empty() && filter.allows(rel));
        let Some(rel) = rel else {
            ignored += 1;
            continue;
        };
        let (kind, size, etag) = match &ev.change {
            Change::Created { size, etag } => (ItemKind::Object, *size, etag.clone()),
            Change::Removed if job.options.delete => (ItemKind::Delete, 0, None),
            Change::Removed => {
                ignored += 1;
                continue;
            }
        };
        let mut item = payload::new_item(
            kind,
            ObjectMeta {
                key: rel.to_string(),
                size,
                etag,
                last_modified: None,
                storage_class: None,
            },
        );
        payload::mark_from_event(&mut item);
        items.push(EventItem {
            item,
            sequencer: ev.sequencer.clone(),
        });
    }
    Ok((items, ignored))
}
