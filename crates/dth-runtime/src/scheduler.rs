//! The scheduler: fires due runs. Only the leader fires (PostgreSQL advisory lock, SQLite lease row),
//! and each firing first moves the task's `next_run_at` with a compare-and-set, so a schedule fires
//! once however many hubs share the store. A new run is refused while the previous run of the task is
//! still finding. On taking the lead the scheduler resumes what a previous leader left: finders of runs
//! still FINDING, runs that drained without being closed, and tasks left STOPPING. While leading it
//! also purges the items of long-finished runs every hour (`retention.rs`).

use std::sync::Arc;
use std::time::Duration;

use dth_model::{RunStatus, TaskSpec, TaskStatus, Trigger};
use dth_store::{Task, now_ms};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::retention::RetentionTimer;

/// How often due tasks are looked for (a create or start wakes it sooner).
const TICK: Duration = Duration::from_secs(1);
/// How often a follower tries to become the leader.
const FOLLOW: Duration = Duration::from_secs(2);

impl Hub {
    /// Runs the scheduler until `shutdown`.
    pub async fn run_scheduler(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let lead = match self.store.try_lead(&self.config.worker_id).await {
                Ok(Some(lead)) => lead,
                Ok(None) => {
                    wait(&shutdown, FOLLOW).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!("scheduler: cannot ask for the lead: {e}");
                    wait(&shutdown, FOLLOW).await;
                    continue;
                }
            };
            tracing::info!(worker = %self.config.worker_id, "leading the scheduler");
            self.resume().await;
            let mut sampled = tokio::time::Instant::now();
            let mut retention = RetentionTimer::new();
            let mut pollers = crate::events::sqs::EventPollers::default();
            while lead.is_held() && !shutdown.is_cancelled() {
                self.tick().await;
                retention.tick(&self);
                pollers.reconcile(&self, &shutdown).await;
                if sampled.elapsed() >= self.config.sample_every {
                    sampled = tokio::time::Instant::now();
                    self.sample_active_runs().await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = self.wake.notified() => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            pollers.stop_all();
            if !lead.is_held() {
                tracing::warn!("lost the scheduler lead");
            }
        }
    }

    /// Picks up what a previous leader left unfinished.
    async fn resume(self: &Arc<Self>) {
        match self.store.active_runs().await {
            Ok(runs) => {
                for run in runs {
                    if run.status == RunStatus::Finding {
                        tracing::info!(run = run.id, "resuming the finder of an unfinished run");
                        tokio::spawn(Arc::clone(self).find(run, true));
                    } else {
                        self.check_run_end(run.id).await;
                    }
                }
            }
            Err(e) => tracing::error!("scheduler: cannot list active runs: {e}"),
        }
        if let Ok(tasks) = self.store.list_tasks().await {
            for t in tasks.iter().filter(|t| t.status == TaskStatus::Stopping) {
                if let Err(e) = self.stop(&t.id, "scheduler").await {
                    tracing::error!(task = %t.id, "finishing a stop: {e}");
                }
            }
        }
    }

    async fn tick(self: &Arc<Self>) {
        let now = now_ms();
        match self.store.due_tasks(now).await {
            Ok(tasks) => {
                for t in tasks {
                    self.fire(t, now).await;
                }
            }
            Err(e) => tracing::error!("scheduler: cannot list due tasks: {e}"),
        }
    }

    async fn fire(self: &Arc<Self>, task: Task, now: i64) {
        let Some(due) = task.next_run_at else { return };
        let spec: TaskSpec = match serde_json::from_value(task.spec.clone()) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("the stored spec cannot be read: {e}");
                let _ = self.store.set_next_run(&task.id, None).await;
                self.task_error(&task.id, None, "SPEC", &msg).await;
                return;
            }
        };
        let next = spec.effective_schedule().next_after(now.max(due));
        // A user's start (or the task's creation) names who asked; otherwise the schedule fired.
        let trigger = match task.run_requested_by {
            Some(_) => Trigger::User,
            None => Trigger::Schedule,
        };
        match self.store.advance_schedule(&task.id, due, next).await {
            Ok(true) => {}
            Ok(false) => return, // another scheduler fired it
            Err(e) => {
                tracing::error!(task = %task.id, "scheduler: {e}");
                return;
            }
        }
        match self
            .store
            .create_run(
                &task.id,
                trigger,
                task.run_requested_by.as_deref(),
                spec.effective_max_attempts(),
            )
            .await
        {
            Ok(run) => {
                self.sample(run.id).await;
                if let Err(e) = self
                    .store
                    .set_task_status(&task.id, TaskStatus::InProgress, None)
                    .await
                {
                    tracing::error!(task = %task.id, "{e}");
                }
                let by = run.started_by.as_deref().unwrap_or("scheduler");
                let msg = format!("run started ({})", run.trigger.name());
                self.event(&task.id, Some(run.id), "run.started", by, &msg)
                    .await;
                tokio::spawn(Arc::clone(self).find(run, false));
            }
            Err(dth_store::Error::Conflict(m)) => {
                self.event(
                    &task.id,
                    None,
                    "run.skipped",
                    "scheduler",
                    &format!("not started: {m}"),
                )
                .await;
            }
            Err(e) => tracing::error!(task = %task.id, "cannot start a run: {e}"),
        }
    }
}

async fn wait(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.cancelled() => {}
    }
}
