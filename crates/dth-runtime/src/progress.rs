//! Watching runs: live progress of a task's run ([`Hub::watch`], a stream of [`Progress`] at most
//! once per interval, ending with the run), the samples of a run's progress kept for throughput
//! charts ([`Hub::samples`]), and the sampler the scheduler's leader runs to take them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dth_model::{Actor, Role, RunCounters};
use dth_store::{Run, RunSample, now_ms};
use futures::Stream;

use crate::Error;
use crate::hub::Hub;

/// How far back the current rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Where a run is now.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The run.
    pub run: Run,
    /// Its counters.
    pub counters: RunCounters,
    /// Bytes written so far: copied objects, and objects and parts in flight.
    pub bytes_done: u64,
    /// Bytes per second over the last seconds.
    pub rate_bytes_per_s: f64,
    /// Items ended (copied, skipped, deleted, dead) per second over the last seconds.
    pub items_per_s: f64,
    /// Seconds until the bytes left are written at the current rate; `None` while the run is
    /// still finding, stalled, or ended.
    pub eta_seconds: Option<u64>,
}

/// Where a watch is between two polls.
struct Watch {
    hub: Arc<Hub>,
    actor: Actor,
    task_id: String,
    every: Duration,
    run_id: Option<i64>,
    window: VecDeque<(Instant, u64, u64)>,
    polls: u64,
    ended: bool,
}

impl Hub {
    /// The progress of a task's run (viewer): the one in progress, or the next one when a start is
    /// pending, else the last one. Yields at once, then at most once per `every`, and ends after
    /// the poll that sees the run ended (or at once when the task has no run and none is due).
    pub async fn watch(
        self: &Arc<Self>,
        actor: &Actor,
        task_id: &str,
        every: Duration,
    ) -> Result<impl Stream<Item = Result<Progress, Error>> + Send + use<>, Error> {
        actor.require(Role::Viewer)?;
        self.task(task_id).await?;
        let watch = Watch {
            hub: Arc::clone(self),
            actor: actor.clone(),
            task_id: task_id.to_string(),
            every,
            run_id: None,
            window: VecDeque::new(),
            polls: 0,
            ended: false,
        };
        Ok(futures::stream::unfold(watch, |mut w| async move {
            if w.ended {
                return None;
            }
            loop {
                if w.polls > 0 {
                    tokio::time::sleep(w.every).await;
                }
                w.polls += 1;
                match w.poll().await {
                    Ok(Some(p)) => return Some((Ok(p), w)),
                    Ok(None) if w.ended => return None,
                    Ok(None) => continue,
                    Err(e) => {
                        w.ended = true;
                        return Some((Err(e), w));
                    }
                }
            }
        }))
    }

    /// A run's progress samples taken at or after `since` (viewer), oldest first.
    pub async fn samples(
        &self,
        actor: &Actor,
        run_id: i64,
        since: i64,
    ) -> Result<Vec<RunSample>, Error> {
        actor.require(Role::Viewer)?;
        self.get_run(run_id).await?;
        Ok(self.store.samples(run_id, since).await?)
    }

    /// Bytes and items (objects, images) all runs moved since `since` (viewer), by their samples.
    pub async fn moved_since(&self, actor: &Actor, since: i64) -> Result<(u64, u64), Error> {
        actor.require(Role::Viewer)?;
        Ok(self.store.moved_since(since).await?)
    }

    /// Records a sample of each active run (the scheduler's leader does, every
    /// [`crate::Config::sample_every`]).
    pub(crate) async fn sample_active_runs(&self) {
        let runs = match self.store.active_runs().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("sampler: {e}");
                return;
            }
        };
        for run in runs {
            self.sample(run.id).await;
        }
    }

    /// Records one sample of a run now.
    pub(crate) async fn sample(&self, run_id: i64) {
        let res = match self.store.run_counters(run_id).await {
            Ok(c) => self.store.add_sample(run_id, sample_of(now_ms(), &c)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            tracing::warn!(run = run_id, "sampler: {e}");
        }
    }
}

/// The sample of a run's counters at `at`.
pub(crate) fn sample_of(at: i64, c: &RunCounters) -> RunSample {
    RunSample {
        at,
        bytes_done: c.copied_bytes + c.bytes_in_flight,
        items_done: ended_items(c),
        items_failed: c.dead,
    }
}

/// Items that reached an end: copied, skipped, deleted, dead.
fn ended_items(c: &RunCounters) -> u64 {
    c.copied + c.skipped + c.deleted + c.dead
}

impl Watch {
    /// One look at the run: `None` while there is nothing to show yet.
    async fn poll(&mut self) -> Result<Option<Progress>, Error> {
        let run_id = match self.run_id {
            Some(id) => id,
            None => {
                let task = self.hub.get_task(&self.actor, &self.task_id).await?;
                let latest = self
                    .hub
                    .runs(&self.actor, &self.task_id, 1)
                    .await?
                    .into_iter()
                    .next();
                let pending = task.run_requested_by.is_some();
                match latest {
                    Some(r) if r.status.is_active() || !pending => r.id,
                    // A start is pending: wait for its run.
                    _ if pending => return Ok(None),
                    _ => {
                        self.ended = true;
                        return Ok(None);
                    }
                }
            }
        };
        self.run_id = Some(run_id);
        let (run, counters) = self.hub.run(&self.actor, run_id).await?;
        let now = Instant::now();
        let bytes_done = counters.copied_bytes + counters.bytes_in_flight;
        self.window
            .push_back((now, bytes_done, ended_items(&counters)));
        while self
            .window
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.window.pop_front();
        }
        let (t0, b0, i0) = *self.window.front().unwrap_or(&(now, bytes_done, 0));
        let span = now.duration_since(t0).as_secs_f64();
        let (rate, items_rate) = if span >= 0.5 {
            (
                bytes_done.saturating_sub(b0) as f64 / span,
                ended_items(&counters).saturating_sub(i0) as f64 / span,
            )
        } else {
            (0.0, 0.0)
        };
        let active = run.status.is_active();
        let left = counters
            .found_bytes
            .saturating_sub(run.up_to_date_bytes)
            .saturating_sub(bytes_done);
        let eta_seconds = (active && run.found_at.is_some() && rate > 0.0)
            .then(|| (left as f64 / rate).ceil() as u64);
        if !active {
            self.ended = true;
        }
        Ok(Some(Progress {
            run,
            counters,
            bytes_done,
            rate_bytes_per_s: if active { rate } else { 0.0 },
            items_per_s: if active { items_rate } else { 0.0 },
            eta_seconds,
        }))
    }
}
