//! A whole sync in one process: the [`Finder`] decides per key and a pool of transfers copies and
//! deletes. Memory stays constant in the number of objects: decisions flow through a bounded channel.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use dth_model::{Action, SyncOptions, Verification};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::adapt::Adaptive;
use crate::copy::{Copier, Transferred};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::finder::{Finder, Found};
use crate::meta::ObjectMeta;
use crate::multipart::Unrecorded;
use crate::stats::{Snapshot, Stats};

/// What happened to one key, for `--report` and `-v`.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectReport {
    /// The key relative to the endpoint prefixes.
    pub key: String,
    /// What was done (or, in a dry run, planned).
    pub action: Action,
    /// Object size.
    pub size: u64,
    /// How the copy was verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Attempts used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether this is a plan only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// The end of a sync.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Objects copied and verified.
    pub copied: u64,
    /// Objects left alone (up to date, archived, vanished).
    pub skipped: u64,
    /// Destination objects deleted.
    pub deleted: u64,
    /// Objects or partitions that failed.
    pub failed: u64,
    /// Bytes of the objects copied.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
    /// Objects verified (equal to `copied`: nothing counts as copied unverified).
    pub verified: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Every counter.
    pub detail: Snapshot,
    /// Errors that were not about one object (listing failures).
    pub errors: Vec<String>,
}

impl Summary {
    /// Whether every planned object was copied and verified.
    pub fn is_success(&self) -> bool {
        self.failed == 0 && self.errors.is_empty()
    }
}

/// A planned change, from the finder to the transfers.
enum Job {
    Copy(ObjectMeta),
    Delete(ObjectMeta),
}

/// An object sync between two endpoints.
pub struct Sync {
    copier: Arc<Copier>,
    opts: SyncOptions,
    stats: Arc<Stats>,
    cancel: CancellationToken,
    reports: Option<mpsc::UnboundedSender<ObjectReport>>,
    /// The finder, started while the endpoints were checked (it only reads), and what it found.
    finding: JoinHandle<Vec<String>>,
    found: mpsc::Receiver<Found>,
}

impl Sync {
    /// Prepares a sync of everything below the endpoints (or only below the prefixes listed in
    /// `prefix_list`, one relative prefix a line); checks both endpoints (bucket exists, credentials
    /// can list) before anything is written. The finder starts listing meanwhile: a far endpoint's
    /// round trip is paid once, not twice.
    pub async fn new(
        src: Endpoint,
        dst: Endpoint,
        opts: SyncOptions,
        prefix_list: Option<PathBuf>,
    ) -> Result<Self> {
        let cancel = CancellationToken::new();
        let finder = Finder::new(src.clone(), dst.clone(), opts.clone())?
            .with_cancel(cancel.clone())
            .with_prefix_list(prefix_list);
        let (found_tx, found) = mpsc::channel::<Found>(4096);
        let finding = finder.start_checked(found_tx).await?;
        let stats = Arc::new(Stats::default());
        let copier = Arc::new(
            Copier::new(src, dst, opts.clone(), Arc::clone(&stats)).with_cancel(cancel.clone()),
        );
        Ok(Sync {
            copier,
            opts,
            stats,
            cancel,
            reports: None,
            finding,
            found,
        })
    }

    /// Sends one report per key to `tx`.
    pub fn with_reports(mut self, tx: mpsc::UnboundedSender<ObjectReport>) -> Self {
        self.reports = Some(tx);
        self
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// A token that stops the sync when cancelled.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs the sync to the end.
    pub async fn run(self) -> Summary {
        let started = Instant::now();
        let Sync {
            copier,
            opts,
            stats,
            cancel,
            reports,
            finding: finder,
            found: mut found_rx,
        } = self;
        let this = Arc::new(Transfers {
            copier,
            opts,
            stats,
            reports,
        });
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let planner = tokio::spawn({
            let this = Arc::clone(&this);
            async move {
                while let Some(found) = found_rx.recv().await {
                    if let Some(job) = this.plan(found)
                        && tx.send(job).await.is_err()
                    {
                        break;
                    }
                }
            }
        });
        // Objects in flight: `transfers`, grown while it pays up to `transfers_max` (see `adapt`).
        let transfers = Adaptive::new(this.opts.transfers, this.opts.transfers_max);
        let rx =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|j| (j, rx)) });
        rx.take_until(cancel.cancelled())
            .for_each_concurrent(transfers.cap(), |job| {
                let this = Arc::clone(&this);
                let transfers = Arc::clone(&transfers);
                async move {
                    let turn = transfers.turn().await;
                    let bytes = match &job {
                        Job::Copy(o) => o.size,
                        Job::Delete(_) => 0,
                    };
                    // Boxed: an object's copy is a large future, and tokio moves a spawned future
                    // by value into its task (callgrind: ~100k instructions an object in memcpy).
                    let _ = tokio::spawn(Box::pin(async move { this.execute(job).await })).await;
                    turn.finish(bytes);
                }
            })
            .await;
        tracing::debug!(
            transfers = transfers.limit(),
            "objects in flight at the end"
        );
        let _ = planner.await;
        let mut errors = finder
            .await
            .unwrap_or_else(|e| vec![format!("finder crashed: {e}")]);
        Stats::add(&this.stats.failed, errors.len() as u64);
        if cancel.is_cancelled() {
            errors.push("cancelled".into());
        }
        let s = this.stats.snapshot();
        Summary {
            copied: s.copied,
            skipped: s.skipped + s.skipped_archived + s.vanished,
            deleted: s.deleted,
            failed: s.failed,
            bytes: s.copied_bytes,
            seconds: started.elapsed().as_secs_f64(),
            verified: s.copied,
            dry_run: this.opts.dry_run,
            detail: s,
            errors,
        }
    }
}

/// The copying side of a [`Sync`].
struct Transfers {
    copier: Arc<Copier>,
    opts: SyncOptions,
    stats: Arc<Stats>,
    reports: Option<mpsc::UnboundedSender<ObjectReport>>,
}

impl Transfers {
    fn report(&self, key: &str, action: Action, size: u64) -> ObjectReport {
        ObjectReport {
            key: key.to_string(),
            action,
            size,
            verification: None,
            attempts: None,
            error: None,
            dry_run: self.opts.dry_run,
        }
    }

    fn send(&self, r: ObjectReport) {
        if let Some(tx) = &self.reports {
            let _ = tx.send(r);
        }
    }

    /// Counts what the finder decided and turns it into a job (none in a dry run).
    fn plan(&self, found: Found) -> Option<Job> {
        let job = match found {
            Found::UpToDate(s) => {
                Stats::add(&self.stats.listed, 1);
                Stats::add(&self.stats.skipped, 1);
                if self.reports.is_some() {
                    self.send(self.report(&s.key, Action::Skip, s.size));
                }
                return None;
            }
            Found::Copy(o) => {
                Stats::add(&self.stats.listed, 1);
                Stats::add(&self.stats.planned, 1);
                Stats::add(&self.stats.planned_bytes, o.size);
                Job::Copy(o)
            }
            Found::Delete(o) => {
                Stats::add(&self.stats.planned_deletes, 1);
                Job::Delete(o)
            }
        };
        if self.opts.dry_run {
            let (key, action, size) = match &job {
                Job::Copy(o) => (&o.key, Action::Copy, o.size),
                Job::Delete(o) => (&o.key, Action::Delete, o.size),
            };
            self.send(self.report(key, action, size));
            return None;
        }
        Some(job)
    }

    async fn execute(&self, job: Job) {
        match job {
            Job::Copy(obj) => match self.copier.transfer(&obj, &Unrecorded).await {
                Ok(Transferred::Copied(done)) => {
                    Stats::add(&self.stats.copied, 1);
                    Stats::add(&self.stats.copied_bytes, obj.size);
                    let mut r = self.report(&obj.key, Action::Copy, obj.size);
                    r.verification = Some(done.verification);
                    r.attempts = Some(done.attempts);
                    self.send(r);
                }
                Ok(Transferred::Archived) => {
                    Stats::add(&self.stats.skipped_archived, 1);
                    self.send(self.report(&obj.key, Action::SkipArchived, obj.size));
                }
                Ok(Transferred::Vanished) => {
                    Stats::add(&self.stats.vanished, 1);
                    self.send(self.report(&obj.key, Action::SkipVanished, obj.size));
                }
                Err(e) => self.fail(&obj, e),
            },
            Job::Delete(obj) => match self.copier.delete(&obj.key).await {
                Ok(()) => {
                    Stats::add(&self.stats.deleted, 1);
                    self.send(self.report(&obj.key, Action::Delete, obj.size));
                }
                Err(e) => self.fail(&obj, e),
            },
        }
    }

    fn fail(&self, obj: &ObjectMeta, e: Error) {
        tracing::error!(key = %obj.key, "{e}");
        Stats::add(&self.stats.failed, 1);
        let mut r = self.report(&obj.key, Action::Fail, obj.size);
        r.error = Some(e.to_string());
        self.send(r);
    }
}
