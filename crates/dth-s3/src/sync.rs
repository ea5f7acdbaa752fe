//! A whole sync: the finder walks both listings partition by partition and decides per key; a pool of
//! transfers copies and deletes. Memory stays constant in the number of objects: listings stream
//! through a merge-join, decisions flow through a bounded channel, and only the partition queue (the
//! `/`-delimited prefixes down to `list_depth`) is held.
//!
//! Partitions: at each level above `list_depth` both sides are listed with the `/` delimiter; objects of
//! the level are diffed right away and each common prefix becomes a partition of its own (listed only on
//! the sides that have it). At `list_depth` a partition is listed flat. With a prefix list, each listed
//! prefix is a flat partition. A partition whose listing is out of order is redone from a sorted copy of
//! its listings (see [`crate::sort`]).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use dth_model::{Action, CompareMode, SyncOptions, Verification};
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::copy::Copier;
use crate::diff::{Diff, MergeJoin};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::list::{Entry, list};
use crate::meta::{Keyed, ObjectMeta};
use crate::stats::{Snapshot, Stats};

/// Partitions listed at once.
const CHECKERS: usize = 16;
/// Objects in a sorted run before the fallback sorter spills to disk.
const SORT_RUN: usize = 100_000;

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

/// A unit of listing work.
#[derive(Debug, Clone)]
enum Part {
    /// List one level of both sides with the delimiter.
    Level { rel: String, depth: u32 },
    /// List everything below `rel` on the sides that have it.
    Flat { rel: String, src: bool, dst: bool },
    /// Like `Flat`, through the sorter (listing came out of order).
    Sorted { rel: String },
}

type Listing = Pin<Box<dyn Stream<Item = Result<ObjectMeta>> + Send>>;

/// An object sync between two endpoints.
pub struct Sync {
    copier: Arc<Copier>,
    opts: SyncOptions,
    filter: Filter,
    prefix_list: Option<PathBuf>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
    reports: Option<mpsc::UnboundedSender<ObjectReport>>,
}

impl Sync {
    /// Prepares a sync; checks both endpoints (bucket exists, credentials can list) before anything is
    /// written.
    pub async fn new(src: Endpoint, dst: Endpoint, opts: SyncOptions) -> Result<Self> {
        let filter = Filter::new(&opts.include, &opts.exclude)?;
        let (a, b) = tokio::join!(src.check(), dst.check());
        a?;
        b?;
        let stats = Arc::new(Stats::default());
        let copier = Arc::new(Copier::new(src, dst, opts.clone(), Arc::clone(&stats)));
        Ok(Sync {
            copier,
            opts,
            filter,
            prefix_list: None,
            stats,
            cancel: CancellationToken::new(),
            reports: None,
        })
    }

    /// Lists only below the prefixes in this file (one relative prefix a line), not the whole bucket.
    pub fn with_prefix_list(mut self, path: PathBuf) -> Self {
        self.prefix_list = Some(path);
        self
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
        let this = Arc::new(self);
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let finder = tokio::spawn({
            let this = Arc::clone(&this);
            async move { this.find(tx).await }
        });
        let transfers = this.opts.transfers.max(1);
        let rx =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|j| (j, rx)) });
        rx.take_until(this.cancel.cancelled())
            .for_each_concurrent(transfers, |job| {
                let this = Arc::clone(&this);
                async move {
                    let _ = tokio::spawn(async move { this.execute(job).await }).await;
                }
            })
            .await;
        let mut errors = finder
            .await
            .unwrap_or_else(|e| vec![format!("finder crashed: {e}")]);
        if this.cancel.is_cancelled() {
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

    async fn execute(&self, job: Job) {
        match job {
            Job::Copy(obj) => {
                if self
                    .copier
                    .src
                    .profile()
                    .is_archived(obj.storage_class.as_deref())
                {
                    match self.copier.is_restored(&obj.key).await {
                        Ok(true) => {}
                        Ok(false) => {
                            Stats::add(&self.stats.skipped_archived, 1);
                            self.send(self.report(&obj.key, Action::SkipArchived, obj.size));
                            return;
                        }
                        Err(e) => return self.fail(&obj, e),
                    }
                }
                match self.copier.copy(&obj).await {
                    Ok(done) => {
                        Stats::add(&self.stats.copied, 1);
                        Stats::add(&self.stats.copied_bytes, obj.size);
                        let mut r = self.report(&obj.key, Action::Copy, obj.size);
                        r.verification = Some(done.verification);
                        r.attempts = Some(done.attempts);
                        self.send(r);
                    }
                    Err(e)
                        if e.is_not_found()
                            && matches!(
                                &e,
                                Error::Request {
                                    op: "GetObject" | "HeadObject",
                                    side: crate::Side::Source,
                                    ..
                                }
                            ) =>
                    {
                        Stats::add(&self.stats.vanished, 1);
                        self.send(self.report(&obj.key, Action::SkipVanished, obj.size));
                    }
                    Err(e) => self.fail(&obj, e),
                }
            }
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

    /// Walks every partition; returns the listing errors.
    async fn find(self: Arc<Self>, tx: mpsc::Sender<Job>) -> Vec<String> {
        let mut errors = Vec::new();
        let mut queue: VecDeque<Part> = VecDeque::new();
        let mut prefixes = match &self.prefix_list {
            Some(path) => match tokio::fs::File::open(path).await {
                Ok(f) => Some(tokio::io::BufReader::new(f).lines()),
                Err(e) => {
                    return vec![format!(
                        "cannot read the prefix list {}: {e}",
                        path.display()
                    )];
                }
            },
            None => {
                queue.push_back(if self.opts.list_depth == 0 {
                    Part::Flat {
                        rel: String::new(),
                        src: true,
                        dst: true,
                    }
                } else {
                    Part::Level {
                        rel: String::new(),
                        depth: self.opts.list_depth,
                    }
                });
                None
            }
        };
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < CHECKERS {
                if queue.is_empty()
                    && let Some(lines) = &mut prefixes
                {
                    match lines.next_line().await {
                        Ok(Some(line)) => {
                            let rel = line.trim_end_matches(['\r', '\n']).to_string();
                            if !rel.is_empty() {
                                queue.push_back(Part::Flat {
                                    rel,
                                    src: true,
                                    dst: true,
                                });
                            }
                            continue;
                        }
                        Ok(None) => prefixes = None,
                        Err(e) => {
                            errors.push(format!("reading the prefix list: {e}"));
                            prefixes = None;
                        }
                    }
                }
                let Some(part) = queue.pop_front() else { break };
                let this = Arc::clone(&self);
                let tx = tx.clone();
                running.push(async move {
                    let rel = part_rel(&part).to_string();
                    (rel, this.walk(part, &tx).await)
                });
            }
            if self.cancel.is_cancelled() {
                break;
            }
            match running.next().await {
                None => break,
                Some((_, Ok(more))) => queue.extend(more),
                Some((rel, Err(Error::Unsorted { side, prev, key }))) => {
                    tracing::warn!(%side, prev, key, "listing of {rel:?} is out of order; sorting it instead");
                    queue.push_back(Part::Sorted { rel });
                }
                Some((rel, Err(e))) => {
                    Stats::add(&self.stats.failed, 1);
                    errors.push(format!("listing {rel:?}: {e}"));
                }
            }
        }
        errors
    }

    /// Lists one partition, sends its jobs, and returns the sub-partitions found.
    async fn walk(&self, part: Part, tx: &mpsc::Sender<Job>) -> Result<Vec<Part>> {
        let c = &self.copier;
        let (rel, depth) = match part {
            Part::Level { rel, depth } => (rel, depth),
            Part::Flat { rel, src, dst } => {
                let s: Listing = if src {
                    objects(list(&c.src, &rel, false))
                } else {
                    Box::pin(futures::stream::empty())
                };
                let d: Listing = if dst {
                    objects(list(&c.dst, &rel, false))
                } else {
                    Box::pin(futures::stream::empty())
                };
                self.merge(s, d, tx).await?;
                return Ok(Vec::new());
            }
            Part::Sorted { rel } => {
                let s =
                    crate::sort::sort_by_key(objects(list(&c.src, &rel, false)), SORT_RUN).await?;
                let d =
                    crate::sort::sort_by_key(objects(list(&c.dst, &rel, false)), SORT_RUN).await?;
                self.merge(Box::pin(s), Box::pin(d), tx).await?;
                return Ok(Vec::new());
            }
        };
        let mut join = MergeJoin::new(
            Box::pin(list(&c.src, &rel, true)),
            Box::pin(list(&c.dst, &rel, true)),
            true,
        );
        let mut subs = Vec::new();
        while let Some(step) = join.next().await {
            let sub = |p: String, src: bool, dst: bool| {
                if src && dst && depth > 1 {
                    Part::Level {
                        rel: p,
                        depth: depth - 1,
                    }
                } else {
                    Part::Flat { rel: p, src, dst }
                }
            };
            match step? {
                Diff::Both(Entry::Prefix(p), Entry::Prefix(_)) => subs.push(sub(p, true, true)),
                Diff::SrcOnly(Entry::Prefix(p)) => subs.push(sub(p, true, false)),
                Diff::DstOnly(Entry::Prefix(p)) => {
                    if self.opts.delete {
                        subs.push(sub(p, false, true));
                    }
                }
                Diff::Both(Entry::Object(s), Entry::Object(d)) => {
                    self.decide(Diff::Both(s, d), tx).await?
                }
                Diff::SrcOnly(Entry::Object(s)) => self.decide(Diff::SrcOnly(s), tx).await?,
                Diff::DstOnly(Entry::Object(d)) => self.decide(Diff::DstOnly(d), tx).await?,
                Diff::Both(a, b) => {
                    return Err(Error::Unsorted {
                        side: crate::Side::Source,
                        prev: a.key().to_string(),
                        key: b.key().to_string(),
                    });
                }
            }
        }
        Ok(subs)
    }

    async fn merge(&self, src: Listing, dst: Listing, tx: &mpsc::Sender<Job>) -> Result<()> {
        let mut join = MergeJoin::new(src, dst, self.opts.delete);
        while let Some(step) = join.next().await {
            self.decide(step?, tx).await?;
        }
        Ok(())
    }

    /// Decides what to do with one key and queues the job.
    async fn decide(&self, step: Diff<ObjectMeta>, tx: &mpsc::Sender<Job>) -> Result<()> {
        let key = match &step {
            Diff::SrcOnly(o) | Diff::DstOnly(o) | Diff::Both(o, _) => &o.key,
        };
        if !self.filter.allows(key) {
            return Ok(());
        }
        let job = match step {
            Diff::SrcOnly(s) => {
                Stats::add(&self.stats.listed, 1);
                Some(Job::Copy(s))
            }
            Diff::Both(s, d) => {
                Stats::add(&self.stats.listed, 1);
                if needs_copy(self.opts.compare, &s, &d) {
                    Some(Job::Copy(s))
                } else {
                    Stats::add(&self.stats.skipped, 1);
                    if self.reports.is_some() {
                        self.send(self.report(&s.key, Action::Skip, s.size));
                    }
                    None
                }
            }
            Diff::DstOnly(d) => self.opts.delete.then_some(Job::Delete(d)),
        };
        let Some(job) = job else { return Ok(()) };
        match &job {
            Job::Copy(o) => {
                Stats::add(&self.stats.planned, 1);
                Stats::add(&self.stats.planned_bytes, o.size);
            }
            Job::Delete(_) => Stats::add(&self.stats.planned_deletes, 1),
        }
        if self.opts.dry_run {
            let (key, action, size) = match &job {
                Job::Copy(o) => (&o.key, Action::Copy, o.size),
                Job::Delete(o) => (&o.key, Action::Delete, o.size),
            };
            self.send(self.report(key, action, size));
            return Ok(());
        }
        tx.send(job).await.map_err(|_| Error::Cancelled)
    }
}

fn part_rel(p: &Part) -> &str {
    match p {
        Part::Level { rel, .. } | Part::Flat { rel, .. } | Part::Sorted { rel } => rel,
    }
}

/// Keeps the objects of a flat listing.
fn objects(s: impl Stream<Item = Result<Entry>> + Send + 'static) -> Listing {
    Box::pin(s.filter_map(|e| async move {
        match e {
            Ok(Entry::Object(o)) => Some(Ok(o)),
            Ok(Entry::Prefix(_)) => None,
            Err(e) => Some(Err(e)),
        }
    }))
}

/// Whether an object present on both sides must be copied.
pub fn needs_copy(mode: CompareMode, src: &ObjectMeta, dst: &ObjectMeta) -> bool {
    match mode {
        CompareMode::None => true,
        CompareMode::Size => src.size != dst.size,
        CompareMode::SizeEtag => {
            src.size != dst.size || matches!((&src.etag, &dst.etag), (Some(a), Some(b)) if a != b)
        }
        CompareMode::Newer => {
            src.size != dst.size && src.last_modified.is_none()
                || matches!((src.last_modified, dst.last_modified), (Some(a), Some(b)) if a > b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn m(size: u64, etag: Option<&str>, secs: u64) -> ObjectMeta {
        ObjectMeta {
            key: "k".into(),
            size,
            etag: etag.map(str::to_string),
            last_modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
            storage_class: None,
        }
    }

    #[test]
    fn compare_modes() {
        let a = m(1, Some("x"), 10);
        assert!(!needs_copy(CompareMode::Size, &a, &m(1, Some("y"), 10)));
        assert!(needs_copy(CompareMode::Size, &a, &m(2, Some("x"), 10)));
        assert!(needs_copy(CompareMode::SizeEtag, &a, &m(1, Some("y"), 10)));
        assert!(!needs_copy(CompareMode::SizeEtag, &a, &m(1, None, 10)));
        assert!(needs_copy(CompareMode::Newer, &m(1, None, 20), &a));
        assert!(!needs_copy(CompareMode::Newer, &a, &m(5, None, 20)));
        assert!(needs_copy(CompareMode::None, &a, &a));
    }
}
