//! The SQS pollers, run by the scheduler's leader: a few long-polling receivers per object task
//! whose source names an SQS queue and that is not stopped. Each batch of messages becomes items of the
//! task's event run, and the messages are deleted only after the items are stored, so a crash or
//! a store error has SQS deliver them again. A message that is not an S3 notification is kept in
//! the task's event log with its body, raises the task's alarm, and is deleted: it never stops the
//! poller.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dth_model::{Credentials, EventSource, Job, TaskSpec, TaskStatus};
use dth_s3::event::parse_notification;
use dth_s3::event_queue::{EventQueue, QueueMessage};
use tokio_util::sync::CancellationToken;

use crate::{Error, Hub, engine};

/// How often the leader looks for tasks to start or stop polling for.
const RECONCILE_EVERY: Duration = Duration::from_secs(5);
/// The long poll.
const WAIT: Duration = Duration::from_secs(20);
/// How long received messages stay hidden from other receivers while their items are stored.
const VISIBILITY: Duration = Duration::from_secs(120);
/// Receivers per queue: while one stores its batch, the others receive the next ones.
const RECEIVERS: usize = 4;
/// The most of a malformed message's body the event log keeps.
const BODY_KEPT: usize = 4096;

/// The pollers this leader runs, by task id, with the events spec each was started for.
#[derive(Default)]
pub(crate) struct EventPollers {
    running: HashMap<String, (EventSource, CancellationToken)>,
    checked: Option<Instant>,
}

impl EventPollers {
    /// Starts pollers for tasks that need one and stops those whose task is gone, stopped, or
    /// changed its queue. Does the work at most every few seconds.
    pub(crate) async fn reconcile(&mut self, hub: &Arc<Hub>, shutdown: &CancellationToken) {
        if self.checked.is_some_and(|t| t.elapsed() < RECONCILE_EVERY) {
            return;
        }
        self.checked = Some(Instant::now());
        let tasks = match hub.store.list_tasks().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("event pollers: listing tasks: {e}");
                return;
            }
        };
        let mut wanted: HashMap<String, EventSource> = HashMap::new();
        for task in tasks {
            if matches!(task.status, TaskStatus::Stopped | TaskStatus::Stopping) {
                continue;
            }
            let Ok(spec) = serde_json::from_value::<TaskSpec>(task.spec) else {
                continue;
            };
            if let Job::S3(job) = spec.job
                && let Some(events) = job.source.events
                && matches!(*events, EventSource::Sqs { .. })
            {
                wanted.insert(task.id, *events);
            }
        }
        self.running.retain(|id, (events, cancel)| {
            let keep = wanted.get(id) == Some(events) && !cancel.is_cancelled();
            if !keep {
                cancel.cancel();
            }
            keep
        });
        for (id, events) in wanted {
            if self.running.contains_key(&id) {
                continue;
            }
            let cancel = shutdown.child_token();
            for _ in 0..RECEIVERS {
                tokio::spawn(poll(
                    hub.clone(),
                    id.clone(),
                    events.clone(),
                    cancel.clone(),
                ));
            }
            self.running.insert(id, (events, cancel));
        }
    }

    /// Stops every poller (the lead was lost, or shutdown).
    pub(crate) fn stop_all(&mut self) {
        for (_, (_, cancel)) in self.running.drain() {
            cancel.cancel();
        }
        self.checked = None;
    }
}

impl Drop for EventPollers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Polls one task's queue until `cancel`.
async fn poll(hub: Arc<Hub>, task_id: String, events: EventSource, cancel: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    while !cancel.is_cancelled() {
        let res = tokio::select! {
            r = poll_once(&hub, &task_id, &events) => r,
            _ = cancel.cancelled() => return,
        };
        match res {
            Ok(()) => {
                if failing {
                    hub.event(
                        &task_id,
                        None,
                        "events.resumed",
                        "sqs",
                        "polling the queue again",
                    )
                    .await;
                }
                failing = false;
                backoff = Duration::from_secs(1);
            }
            Err(Error::Conflict(_)) => return,
            Err(e) => {
                tracing::warn!(task = %task_id, "events: {e}");
                if !failing {
                    hub.event(&task_id, None, "events.error", "sqs", &e.to_string())
                        .await;
                }
                failing = true;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = cancel.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// One receive, and the items of what it brought; the messages are deleted once stored.
async fn poll_once(hub: &Arc<Hub>, task_id: &str, events: &EventSource) -> Result<(), Error> {
    let queue = hub.event_queue(task_id, events).await?;
    let messages = queue
        .receive(WAIT, VISIBILITY)
        .await
        .map_err(Error::BadRequest)?;
    if messages.is_empty() {
        return Ok(());
    }
    let mut changes = Vec::new();
    for m in &messages {
        match parse_notification(&m.body) {
            Ok(evs) => changes.extend(evs),
            Err(why) => malformed(hub, task_id, m, &why).await,
        }
    }
    if !changes.is_empty() {
        let task = hub.event_task(task_id).await?;
        let taken = hub.take_events(&task, &changes).await?;
        tracing::debug!(task = task_id, ?taken, "events from SQS");
    }
    let all: Vec<&QueueMessage> = messages.iter().collect();
    for chunk in all.chunks(10) {
        queue.delete(chunk).await.map_err(Error::BadRequest)?;
    }
    Ok(())
}

/// Keeps a message that is not an S3 notification in the event log, with its body, and alarms.
async fn malformed(hub: &Arc<Hub>, task_id: &str, m: &QueueMessage, why: &str) {
    let mut body = m.body.clone();
    if body.len() > BODY_KEPT {
        let mut end = BODY_KEPT;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
        body.push('…');
    }
    let msg = format!("SQS message {} set aside: {why}; body: {body}", m.id);
    tracing::warn!(task = task_id, message = %m.id, "events: {why}");
    hub.event(task_id, None, "events.malformed", "sqs", &msg)
        .await;
    hub.alarm(task_id, None, "events.malformed", &msg).await;
}

impl Hub {
    /// A client of the task's queue, with the events' credentials or else the source's; cached
    /// per task while its spec stays the same.
    async fn event_queue(&self, task_id: &str, events: &EventSource) -> Result<EventQueue, Error> {
        if let Some(q) = self.event_queues.get(task_id, events) {
            return Ok(q);
        }
        let task = self.event_task(task_id).await?;
        let EventSource::Sqs { credentials, .. } = events else {
            return Err(Error::Conflict(format!("task {task_id} has no SQS queue")));
        };
        let given: &Credentials = credentials.as_ref().unwrap_or(task.source_credentials());
        let creds = engine::resolve_credentials(self.store.as_ref(), given).await?;
        let queue = EventQueue::connect(events, &creds)
            .await
            .map_err(Error::BadRequest)?;
        self.event_queues.put(task_id, events, queue.clone());
        Ok(queue)
    }
}

/// SQS clients by task, kept while the task's events spec is the same.
#[derive(Default)]
pub(crate) struct EventQueues(std::sync::Mutex<HashMap<String, (EventSource, EventQueue)>>);

impl EventQueues {
    fn get(&self, task_id: &str, events: &EventSource) -> Option<EventQueue> {
        let map = self.0.lock().ok()?;
        map.get(task_id)
            .filter(|(e, _)| e == events)
            .map(|(_, q)| q.clone())
    }

    fn put(&self, task_id: &str, events: &EventSource, queue: EventQueue) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(task_id.to_string(), (events.clone(), queue));
        }
    }
}
