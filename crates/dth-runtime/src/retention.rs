//! Retention of finished runs' items: the hub setting "purge the items of finished runs after N
//! days" (default [`DEFAULT_PURGE_AFTER_DAYS`], 0 keeps them forever; read by viewers with
//! [`Hub::retention`], changed by admins with [`Hub::put_retention`], audited), and the purge
//! itself ([`Hub::purge_expired_items`]), which the scheduler's leader starts every hour in the
//! background. A purge deletes, in batches of [`PURGE_BATCH`] rows per statement, the items of runs
//! that ended (DONE, FAILED or STOPPED) more than N days ago; the runs stay with their counters, so
//! their summaries, samples and events are unchanged. Active runs are never touched.

use std::sync::Arc;
use std::time::Duration;

use dth_model::{Actor, Role};
use dth_store::{Millis, Purged};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Error;
use crate::hub::Hub;

/// The setting holding the retention.
const RETENTION: &str = "retention";
/// Days after which a finished run's items are purged when no admin changed it.
pub const DEFAULT_PURGE_AFTER_DAYS: u32 = 30;
/// The longest retention that can be set (a hundred years); 0 keeps items forever.
pub const MAX_PURGE_AFTER_DAYS: u32 = 36_500;
/// Items deleted per statement: each statement is short, so claims and acks of running tasks wait
/// for at most one batch.
pub const PURGE_BATCH: u32 = 10_000;
/// How often the leader purges.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How long after taking the lead the first purge starts (after resuming what was left).
const FIRST_PURGE_AFTER: Duration = Duration::from_secs(60);
const DAY_MS: Millis = 86_400_000;

/// How long the items of finished runs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Days after its end that a finished run's items are deleted; 0 keeps them forever.
    pub purge_items_after_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            purge_items_after_days: DEFAULT_PURGE_AFTER_DAYS,
        }
    }
}

impl Retention {
    /// Items of runs that ended before this time are due at `now`; `None` when kept forever.
    fn ended_before(self, now: Millis) -> Option<Millis> {
        (self.purge_items_after_days > 0)
            .then(|| now.saturating_sub(Millis::from(self.purge_items_after_days) * DAY_MS))
    }

    /// What the audit log says of it.
    fn describe(self) -> String {
        match self.purge_items_after_days {
            0 => "items of finished runs kept forever".to_string(),
            1 => "items of finished runs purged 1 day after the run ended".to_string(),
            n => format!("items of finished runs purged {n} days after the run ended"),
        }
    }
}

impl Hub {
    /// How long the items of finished runs are kept (viewer): the stored setting, or the default.
    pub async fn retention(&self, actor: &Actor) -> Result<Retention, Error> {
        actor.require(Role::Viewer)?;
        self.retention_setting().await
    }

    /// Changes how long the items of finished runs are kept (admin; audited). The JSON
    /// (`{"purge_items_after_days": N}`, 0 to keep them forever) is read after the role check.
    pub async fn put_retention(
        &self,
        actor: &Actor,
        body: &serde_json::Value,
    ) -> Result<Retention, Error> {
        actor.require(Role::Admin)?;
        let retention: Retention = serde_path_to_error::deserialize(dth_model::whole_numbers(
            body.clone(),
        ))
        .map_err(|e| Error::BadRequest(format!("retention: {}: {}", e.path(), e.inner())))?;
        if retention.purge_items_after_days > MAX_PURGE_AFTER_DAYS {
            return Err(Error::BadRequest(format!(
                "retention: purge_items_after_days: {} is more than {MAX_PURGE_AFTER_DAYS} \
                 (use 0 to keep items forever)",
                retention.purge_items_after_days
            )));
        }
        let value = serde_json::to_value(retention)
            .map_err(|e| Error::BadRequest(format!("retention: {e}")))?;
        self.store
            .put_setting(RETENTION, &value, &actor.label())
            .await?;
        self.audit(
            actor,
            "settings.retention",
            None,
            Some(RETENTION),
            &retention.describe(),
        )
        .await;
        Ok(retention)
    }

    /// Deletes the items of runs that ended more than the retention before `now` (Unix ms), in
    /// batches of [`PURGE_BATCH`]; `None` when items are kept forever. The scheduler's leader calls
    /// it every hour; each batch checks its run again, so it is safe beside workers and other hubs.
    pub async fn purge_expired_items(&self, now: Millis) -> Result<Option<Purged>, Error> {
        let Some(before) = self.retention_setting().await?.ended_before(now) else {
            return Ok(None);
        };
        Ok(Some(
            self.store.purge_finished_items(before, PURGE_BATCH).await?,
        ))
    }

    async fn retention_setting(&self) -> Result<Retention, Error> {
        match self.store.setting(RETENTION).await? {
            Some(s) => serde_json::from_value(s.value).map_err(|e| {
                Error::Conflict(format!("the stored retention setting is unreadable: {e}"))
            }),
            None => Ok(Retention::default()),
        }
    }

    /// One purge, its outcome logged.
    async fn purge_and_log(&self) {
        match self.purge_expired_items(dth_store::now_ms()).await {
            Ok(None) => tracing::debug!("retention: the items of finished runs are kept forever"),
            Ok(Some(p)) if p.items == 0 => {
                tracing::debug!("retention: no finished run's items are due for purging");
            }
            Ok(Some(p)) => tracing::info!(
                items = p.items,
                runs = p.runs,
                "retention: purged {} items of {} finished runs",
                p.items,
                p.runs
            ),
            Err(e) => tracing::warn!(
                "retention: cannot purge the items of finished runs (tried again in an hour): {e}"
            ),
        }
    }
}

/// The leader's purge clock: a purge a minute after taking the lead, then every hour, each in the
/// background (a large purge must not hold up the scheduler's ticks) and never two at once. Dropping
/// it (the lead is lost or the hub stops) aborts a purge in progress between two batches' commits or
/// inside one, which its transaction then rolls back.
pub(crate) struct RetentionTimer {
    next: Instant,
    running: Option<JoinHandle<()>>,
}

impl RetentionTimer {
    /// A clock whose first purge is [`FIRST_PURGE_AFTER`] from now.
    pub(crate) fn new() -> Self {
        RetentionTimer {
            next: Instant::now() + FIRST_PURGE_AFTER,
            running: None,
        }
    }

    /// Whether a purge is to start at `now`; if so the next is due [`PURGE_EVERY`] later.
    fn is_due(&mut self, now: Instant) -> bool {
        if now < self.next || self.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return false;
        }
        self.next = now + PURGE_EVERY;
        true
    }

    /// Starts a purge in the background when one is due (called on every scheduler tick).
    pub(crate) fn tick(&mut self, hub: &Arc<Hub>) {
        if self.is_due(Instant::now()) {
            let hub = Arc::clone(hub);
            self.running = Some(tokio::spawn(async move { hub.purge_and_log().await }));
        }
    }
}

impl Drop for RetentionTimer {
    fn drop(&mut self) {
        if let Some(purge) = self.running.take() {
            purge.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_n_days_before_now_and_zero_keeps_forever() {
        let now = 100 * DAY_MS;
        assert_eq!(Retention::default().ended_before(now), Some(70 * DAY_MS));
        let one = Retention {
            purge_items_after_days: 1,
        };
        assert_eq!(one.ended_before(now), Some(99 * DAY_MS));
        let forever = Retention {
            purge_items_after_days: 0,
        };
        assert_eq!(forever.ended_before(now), None);
        let longest = Retention {
            purge_items_after_days: MAX_PURGE_AFTER_DAYS,
        };
        assert!(longest.ended_before(now).is_some_and(|t| t < 0));
        assert_eq!(
            forever.describe(),
            "items of finished runs kept forever",
            "the audit message"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_starts_a_minute_after_the_lead_then_hourly_never_two_at_once() {
        let mut timer = RetentionTimer::new();
        let start = Instant::now();
        assert!(!timer.is_due(start));
        assert!(!timer.is_due(start + FIRST_PURGE_AFTER - Duration::from_millis(1)));
        assert!(timer.is_due(start + FIRST_PURGE_AFTER));
        let later = start + FIRST_PURGE_AFTER + PURGE_EVERY;
        assert!(!timer.is_due(later - Duration::from_secs(1)));
        // A purge still running at the next hour: none starts beside it.
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        timer.running = Some(tokio::spawn(async move {
            let _ = wait.await;
        }));
        assert!(!timer.is_due(later));
        release.send(()).unwrap();
        timer.running.as_mut().unwrap().await.unwrap();
        assert!(timer.is_due(later), "the last purge has ended");
        assert!(!timer.is_due(later + Duration::from_secs(1)));
    }
}
