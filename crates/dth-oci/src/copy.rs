//! The copier: makes each planned image exist at the destination, verified, with as few
//! requests as possible.
//!
//! Per image: HEAD the destination tag; when it exists, HEAD the source tag too, and equal
//! digests mean nothing to do (a warm re-sync costs one HEAD per side and never GETs a
//! manifest); when it does not, the source manifest is read by tag without a HEAD first.
//! Otherwise the manifest tree is copied bottom-up: blobs, then child manifests by digest, then
//! the index, and the tag last, so a reader never sees a tag pointing at missing content.
//!
//! Blobs are deduplicated across the whole run, and each (repository, blob) is dealt with once:
//! the first image needing a blob places it in its repository (a mount from that repository
//! itself answers "already here" or opens the upload session in one request; a HEAD where mounts
//! are not tried), later repositories get it by cross-repository mount (`201`), falling back to
//! an upload in the session the registry opened (`202`). Every blob streamed through us is hashed
//! and checked before its upload is allowed to complete ([`crate::verify`]); a mismatch fails
//! that attempt, and the blob is fetched again (bounded, with backoff).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use futures::future::try_join_all;
use tokio::sync::{OnceCell, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::manifest::{Content, Descriptor, Manifest};
use crate::plan::ImageJob;
use crate::reference::Digest;
use crate::registry::retry::{Backoff, RetryPolicy};
use crate::registry::{Mount, RegistryClient, RequestCounts};
use crate::source::{Ecr, ImageSource};
use crate::verify::Verifying;

/// How the copier works.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Images copied at once.
    pub images: usize,
    /// Blobs transferred at once (across all images).
    pub blobs: usize,
    /// Only the children of these platforms (`os/arch[/variant]`) of multi-arch images; all when empty.
    pub platforms: Vec<String>,
    /// Report what would be copied and change nothing.
    pub dry_run: bool,
    /// Try cross-repository mounts (when the destination's profile allows them).
    pub mount: bool,
    /// Attempts of a whole blob or manifest transfer after the first.
    pub retries: u32,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            images: 10,
            blobs: 8,
            platforms: Vec::new(),
            dry_run: false,
            mount: true,
            retries: 3,
        }
    }
}

/// What happened to one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageAction {
    /// Copied and verified.
    Copied,
    /// The destination tag already pointed at the same digest.
    Unchanged,
    /// Dry run: would be copied.
    WouldCopy,
    /// Failed; see the error.
    Failed,
}

/// One line of the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageReport {
    /// `repo:tag` at the source.
    pub source: String,
    /// `repo:tag` at the destination.
    pub destination: String,
    /// What happened.
    pub action: ImageAction,
    /// The manifest digest copied (or found).
    pub digest: Option<Digest>,
    /// The error, when failed.
    pub error: Option<String>,
}

/// Live counters, readable while the copy runs (progress bars).
#[derive(Debug, Default)]
pub struct CopyStats {
    /// Images planned.
    pub images_total: AtomicU64,
    /// Images finished (any outcome).
    pub images_done: AtomicU64,
    /// Images copied.
    pub images_copied: AtomicU64,
    /// Images already up to date.
    pub images_unchanged: AtomicU64,
    /// Images failed.
    pub images_failed: AtomicU64,
    /// Blobs uploaded through us.
    pub blobs_transferred: AtomicU64,
    /// Blobs mounted from another repository.
    pub blobs_mounted: AtomicU64,
    /// Blobs found already present (HEAD).
    pub blobs_present: AtomicU64,
    /// Bytes uploaded through us.
    pub bytes: AtomicU64,
    /// Manifests pushed (children, indexes and tags).
    pub manifests_pushed: AtomicU64,
    /// Blob or manifest attempts that failed and were tried again.
    pub retried: AtomicU64,
}

/// The outcome of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Images planned.
    pub images: u64,
    /// Copied and verified.
    pub copied: u64,
    /// Already up to date.
    pub unchanged: u64,
    /// Failed.
    pub failed: u64,
    /// Dry run: would be copied.
    pub would_copy: u64,
    /// Blobs uploaded through us.
    pub blobs_transferred: u64,
    /// Blobs mounted.
    pub blobs_mounted: u64,
    /// Blobs found present.
    pub blobs_present: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Manifests pushed.
    pub manifests_pushed: u64,
    /// Attempts retried.
    pub retried: u64,
    /// Wall time.
    pub seconds: f64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Requests to the source registry (absent for local sources).
    pub source_requests: Option<RequestCounts>,
    /// Requests to the destination registry.
    pub destination_requests: RequestCounts,
    /// The first errors (up to 20).
    pub errors: Vec<String>,
}

impl Summary {
    /// Every image copied or unchanged (or would be, in a dry run).
    pub fn is_success(&self) -> bool {
        self.failed == 0
    }
}

type BlobCell = Arc<OnceCell<String>>;
/// (repository, digest) → made present once.
type PresentCells = Mutex<HashMap<(String, Digest), Arc<OnceCell<()>>>>;
/// (repository, manifest digest) → done once.
type TreeCells = Mutex<HashMap<(String, Digest), Arc<OnceCell<()>>>>;

/// Copies images from one source to one destination registry.
pub struct Copier {
    src: Arc<dyn ImageSource>,
    dst: RegistryClient,
    ecr: Option<Ecr>,
    opts: CopyOptions,
    stats: Arc<CopyStats>,
    cancel: CancellationToken,
    blob_slots: Semaphore,
    /// digest → the destination repository it was first made present in.
    blobs: Mutex<HashMap<Digest, BlobCell>>,
    /// (repository, digest) made present at the destination.
    present: PresentCells,
    /// The destination answered a mount from the target repository itself with an error.
    self_mount_refused: AtomicBool,
    /// Destination tags found and missing so far (whether to HEAD the source alongside).
    dst_tags_found: AtomicU64,
    dst_tags_missing: AtomicU64,
    /// (repository, manifest digest) trees made complete.
    trees: TreeCells,
    /// Repositories made to exist (ECR auto-creation).
    repos: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
    errors: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Copier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copier")
            .field("src", &self.src)
            .field("dst", &self.dst)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Copier {
    /// A copier from `src` to `dst`.
    pub fn new(src: Arc<dyn ImageSource>, dst: RegistryClient, opts: CopyOptions) -> Copier {
        let blobs = opts.blobs.max(1);
        Copier {
            src,
            dst,
            ecr: None,
            opts,
            stats: Arc::new(CopyStats::default()),
            cancel: CancellationToken::new(),
            blob_slots: Semaphore::new(blobs),
            blobs: Mutex::new(HashMap::new()),
            present: Mutex::new(HashMap::new()),
            self_mount_refused: AtomicBool::new(false),
            dst_tags_found: AtomicU64::new(0),
            dst_tags_missing: AtomicU64::new(0),
            trees: Mutex::new(HashMap::new()),
            repos: Mutex::new(HashMap::new()),
            errors: Mutex::new(Vec::new()),
        }
    }

    /// Creates missing destination repositories through this ECR API before pushing to them.
    pub fn with_ecr_repository_creation(mut self, ecr: Ecr) -> Copier {
        self.ecr = Some(ecr);
        self
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<CopyStats> {
        self.stats.clone()
    }

    /// Cancelling stops starting new work; running requests end at their next await.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Copies every job, `images` at a time, and reports each on `reports`.
    pub async fn run(
        self: Arc<Self>,
        jobs: Vec<ImageJob>,
        reports: Option<mpsc::UnboundedSender<ImageReport>>,
    ) -> Summary {
        let started = Instant::now();
        self.stats
            .images_total
            .store(jobs.len() as u64, Ordering::Relaxed);
        let mut would_copy = 0u64;
        let mut results = futures::stream::iter(jobs.into_iter().map(|job| {
            let me = self.clone();
            async move {
                let outcome = tokio::select! {
                    _ = me.cancel.cancelled() => Err(Error::Cancelled),
                    r = me.copy(&job) => r,
                };
                (job, outcome)
            }
        }))
        .buffer_unordered(self.opts.images.max(1));
        while let Some((job, outcome)) = results.next().await {
            let s = &self.stats;
            let (action, digest, error) = match outcome {
                Ok((action, digest)) => (action, Some(digest), None),
                Err(e) => (ImageAction::Failed, None, Some(e.to_string())),
            };
            match action {
                ImageAction::Copied => s.images_copied.fetch_add(1, Ordering::Relaxed),
                ImageAction::Unchanged => s.images_unchanged.fetch_add(1, Ordering::Relaxed),
                ImageAction::Failed => s.images_failed.fetch_add(1, Ordering::Relaxed),
                ImageAction::WouldCopy => {
                    would_copy += 1;
                    0
                }
            };
            s.images_done.fetch_add(1, Ordering::Relaxed);
            let report = ImageReport {
                source: format!("{}:{}", job.src_repo, job.reference),
                destination: format!(
                    "{}:{}",
                    job.dst_repo,
                    job.dst_tag.as_deref().unwrap_or(&job.reference)
                ),
                action,
                digest,
                error: error.clone(),
            };
            if let Some(e) = error {
                let mut errs = self.errors.lock().unwrap_or_else(|e| e.into_inner());
                if errs.len() < 20 {
                    errs.push(format!("{} → {}: {e}", report.source, report.destination));
                }
            }
            if let Some(tx) = &reports {
                let _ = tx.send(report);
            }
        }
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &self.stats;
        Summary {
            images: l(&s.images_total),
            copied: l(&s.images_copied),
            unchanged: l(&s.images_unchanged),
            failed: l(&s.images_failed),
            would_copy,
            blobs_transferred: l(&s.blobs_transferred),
            blobs_mounted: l(&s.blobs_mounted),
            blobs_present: l(&s.blobs_present),
            bytes: l(&s.bytes),
            manifests_pushed: l(&s.manifests_pushed),
            retried: l(&s.retried),
            seconds: started.elapsed().as_secs_f64(),
            dry_run: self.opts.dry_run,
            source_requests: self.src.registry().map(|r| r.stats()),
            destination_requests: self.dst.stats(),
            errors: self
                .errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Whether one image needs copying, by HEADs only (a platform selection also reads the
    /// source manifest): the digest the destination tag should have, and whether it has it.
    pub async fn check(&self, job: &ImageJob) -> Result<(Digest, bool)> {
        let (_, want, same) = self.check_from_source(job).await?;
        Ok((want, same))
    }

    /// [`Copier::check`], also answering the source's own digest of the image (before a
    /// platform selection), for [`Copier::blobs`].
    pub async fn check_from_source(&self, job: &ImageJob) -> Result<(Digest, Digest, bool)> {
        let head = self.resolve_source(job).await?;
        let want = if self.opts.platforms.is_empty() {
            head.clone()
        } else {
            let what = format!("{}:{}", job.src_repo, job.reference);
            self.select(
                self.src.manifest(&job.src_repo, head.as_str()).await?,
                &what,
            )?
            .digest
        };
        let dst_ref = job.dst_tag.as_deref().unwrap_or(&job.reference);
        let have = self.dst.head_manifest(&job.dst_repo, dst_ref).await?;
        let same = have.is_some_and(|h| h.digest == want);
        Ok((head, want, same))
    }

    /// The blobs (configs and distributable layers) of the image `head` (the source's digest of
    /// the job's image, from [`Copier::check_from_source`]), after the platform selection, each
    /// once: what a copy would read at most.
    pub async fn blobs(&self, job: &ImageJob, head: &Digest) -> Result<Vec<Descriptor>> {
        let what = format!("{}:{}", job.src_repo, job.reference);
        let top = self.select(
            self.src.manifest(&job.src_repo, head.as_str()).await?,
            &what,
        )?;
        let mut images = Vec::new();
        match top.content(&what)? {
            Content::Image { config, layers } => images.push((config, layers)),
            Content::Index { manifests } => {
                for child in manifests {
                    let m = self
                        .src
                        .manifest(&job.src_repo, child.digest.as_str())
                        .await?;
                    if let Content::Image { config, layers } = m.content(&what)? {
                        images.push((config, layers));
                    }
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        Ok(images
            .into_iter()
            .flat_map(|(config, layers)| std::iter::once(config).chain(layers))
            .filter(|d| !d.foreign && seen.insert(d.digest.clone()))
            .collect())
    }

    async fn resolve_source(&self, job: &ImageJob) -> Result<Digest> {
        let what = format!("{}:{}", job.src_repo, job.reference);
        Ok(self
            .src
            .resolve(&job.src_repo, &job.reference)
            .await?
            .ok_or_else(|| Error::Status {
                method: "HEAD".into(),
                url: format!("{} {what}", self.src.describe()),
                status: 404,
                code: Some("MANIFEST_UNKNOWN".into()),
                message: Some("no such image at the source".into()),
            })?
            .digest)
    }

    /// Copies one image (unless the destination tag already has its digest), blobs shared with
    /// the other images of this copier deduplicated. Counted in [`Copier::stats`] only by
    /// [`Copier::run`].
    pub async fn copy(&self, job: &ImageJob) -> Result<(ImageAction, Digest)> {
        let what = format!("{}:{}", job.src_repo, job.reference);
        let dst_ref = job.dst_tag.clone().unwrap_or_else(|| job.reference.clone());
        // The destination first: when it lacks the tag, the source manifest is needed anyway and
        // is read by its reference straight away (no HEAD); when it has one, the source's HEAD
        // says whether it changed. Once most destination tags of this run have been found (a
        // re-sync), the source is asked at the same time: one round trip instead of two.
        let found = self.dst_tags_found.load(Ordering::Relaxed);
        let (existing, src_head) = if found > self.dst_tags_missing.load(Ordering::Relaxed) {
            let (dst, src) = tokio::join!(
                self.dst.head_manifest(&job.dst_repo, &dst_ref),
                self.resolve_source(job)
            );
            (dst?, Some(src))
        } else {
            (self.dst.head_manifest(&job.dst_repo, &dst_ref).await?, None)
        };
        match existing {
            Some(_) => &self.dst_tags_found,
            None => &self.dst_tags_missing,
        }
        .fetch_add(1, Ordering::Relaxed);
        let manifest = match existing {
            None if !self.opts.dry_run && src_head.is_none() => self.select(
                self.src.manifest(&job.src_repo, &job.reference).await?,
                &what,
            )?,
            existing => {
                let head = match src_head {
                    Some(head) => head?,
                    None => self.resolve_source(job).await?,
                };
                // With a platform selection the destination holds a rewritten index, so the
                // source manifest must be read before comparing.
                let selected = if self.opts.platforms.is_empty() {
                    None
                } else {
                    Some(self.select(
                        self.src.manifest(&job.src_repo, head.as_str()).await?,
                        &what,
                    )?)
                };
                let want = selected.as_ref().map_or(&head, |m| &m.digest);
                if existing.is_some_and(|e| &e.digest == want) {
                    return Ok((ImageAction::Unchanged, want.clone()));
                }
                if self.opts.dry_run {
                    return Ok((ImageAction::WouldCopy, want.clone()));
                }
                match selected {
                    Some(m) => m,
                    None => self.src.manifest(&job.src_repo, head.as_str()).await?,
                }
            }
        };
        self.ensure_repository(&job.dst_repo).await?;
        self.ensure_tree(&job.src_repo, &job.dst_repo, &manifest, &what)
            .await?;
        // The tag last.
        self.push_manifest(&job.dst_repo, &dst_ref, &manifest)
            .await?;
        Ok((ImageAction::Copied, manifest.digest))
    }

    fn select(&self, m: Manifest, what: &str) -> Result<Manifest> {
        if m.is_index() && !self.opts.platforms.is_empty() {
            m.select_platforms(&self.opts.platforms, what)
        } else {
            Ok(m)
        }
    }

    async fn ensure_repository(&self, repo: &str) -> Result<()> {
        let Some(ecr) = &self.ecr else { return Ok(()) };
        let cell = self
            .repos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(repo.to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            if ecr.ensure_repository(repo).await? {
                tracing::info!(repository = repo, "created ECR repository");
            }
            Ok::<(), Error>(())
        })
        .await?;
        Ok(())
    }

    /// Makes everything `manifest` references present in `dst_repo` (not the manifest itself).
    /// Once per (repository, digest) per run; concurrent callers wait for the first.
    async fn ensure_tree(
        &self,
        src_repo: &str,
        dst_repo: &str,
        manifest: &Manifest,
        what: &str,
    ) -> Result<()> {
        let key = (dst_repo.to_string(), manifest.digest.clone());
        let cell = self
            .trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            match manifest.content(what)? {
                Content::Image { config, layers } => {
                    // Largest first: the long transfers start early.
                    let mut blobs: Vec<Descriptor> = std::iter::once(config)
                        .chain(layers)
                        .filter(|d| !d.foreign)
                        .collect();
                    blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
                    let mut seen = HashSet::new();
                    blobs.retain(|d| seen.insert(d.digest.clone()));
                    try_join_all(
                        blobs
                            .iter()
                            .map(|d| self.ensure_blob(src_repo, dst_repo, d)),
                    )
                    .await?;
                }
                Content::Index { manifests } => {
                    let children: Vec<Descriptor> = manifests
                        .into_iter()
                        .filter(|c| {
                            self.opts.platforms.is_empty()
                                || c.platform.as_deref().is_some_and(|p| {
                                    let mut it = p.splitn(3, '/');
                                    let (os, arch, var) = (
                                        it.next().unwrap_or(""),
                                        it.next().unwrap_or(""),
                                        it.next().unwrap_or(""),
                                    );
                                    self.opts.platforms.iter().any(|w| {
                                        crate::manifest::platform_matches(w, os, arch, var)
                                    })
                                })
                        })
                        .collect();
                    try_join_all(children.iter().map(|c| async move {
                        let child_what = format!("{what}@{}", c.digest);
                        let child = self.src.manifest(src_repo, c.digest.as_str()).await?;
                        // Box: an index may nest indexes.
                        Box::pin(self.ensure_tree(src_repo, dst_repo, &child, &child_what)).await?;
                        self.push_manifest(dst_repo, c.digest.as_str(), &child)
                            .await
                    }))
                    .await?;
                }
            }
            Ok::<(), Error>(())
        })
        .await?;
        Ok(())
    }

    async fn push_manifest(&self, repo: &str, reference: &str, m: &Manifest) -> Result<()> {
        let mut backoff = Backoff::new(self.retry_policy());
        loop {
            match self.dst.put_manifest(repo, reference, m).await {
                Ok(()) => {
                    self.stats.manifests_pushed.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) if e.is_retryable() => match backoff.next(None) {
                    Some(w) => {
                        self.stats.retried.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(w).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.opts.retries,
            ..RetryPolicy::default()
        }
    }

    /// Makes one blob present in `dst_repo`, once per (repository, digest) per run: concurrent
    /// images of one repository wait for the first instead of each asking the registry.
    async fn ensure_blob(&self, src_repo: &str, dst_repo: &str, d: &Descriptor) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let cell = self
            .present
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((dst_repo.to_string(), d.digest.clone()))
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.make_present(src_repo, dst_repo, d))
            .await?;
        Ok(())
    }

    /// The first time in the run a blob is needed it is placed into `dst_repo` (found there or
    /// transferred); every other repository then gets it by mount from that one.
    async fn make_present(&self, src_repo: &str, dst_repo: &str, d: &Descriptor) -> Result<()> {
        let cell = self
            .blobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(d.digest.clone())
            .or_default()
            .clone();
        let home = cell
            .get_or_try_init(|| async {
                self.place_blob(src_repo, dst_repo, d).await?;
                Ok::<String, Error>(dst_repo.to_string())
            })
            .await?;
        if home == dst_repo {
            return Ok(());
        }
        if self.opts.mount
            && self.dst.profile().mount
            && self
                .try_mount(src_repo, dst_repo, d, home, &self.stats.blobs_mounted)
                .await?
        {
            return Ok(());
        }
        self.head_or_transfer(src_repo, dst_repo, d).await
    }

    /// Mounts a blob into `dst_repo` from repository `from`: true when it is then present
    /// (mounted, counted in `counter`, or uploaded into the session the registry opened instead),
    /// false when the registry refused the request itself (405, 404, 400…). Auth failures and
    /// cancellation are errors.
    async fn try_mount(
        &self,
        src_repo: &str,
        dst_repo: &str,
        d: &Descriptor,
        from: &str,
        counter: &AtomicU64,
    ) -> Result<bool> {
        match self.dst.mount_blob(dst_repo, &d.digest, from).await {
            Ok(Mount::Mounted) => {
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Ok(Mount::Upload(location)) => {
                self.transfer_blob(src_repo, dst_repo, d, Some(location))
                    .await?;
                Ok(true)
            }
            Err(e @ (Error::Auth { .. } | Error::Cancelled)) => Err(e),
            Err(e) => {
                tracing::debug!(error = %e, from, "mount refused; using HEAD and an upload");
                Ok(false)
            }
        }
    }

    /// Makes a blob present in `dst_repo` without another repository to mount it from. Where
    /// mounts work, a mount from `dst_repo` itself asks "is it here?" and opens the upload when
    /// it is not, in one request instead of a HEAD and a POST; a registry that refuses it is not
    /// asked again in this run.
    async fn place_blob(&self, src_repo: &str, dst_repo: &str, d: &Descriptor) -> Result<()> {
        if self.opts.mount
            && self.dst.profile().mount
            && !self.self_mount_refused.load(Ordering::Relaxed)
        {
            if self
                .try_mount(src_repo, dst_repo, d, dst_repo, &self.stats.blobs_present)
                .await?
            {
                return Ok(());
            }
            self.self_mount_refused.store(true, Ordering::Relaxed);
        }
        self.head_or_transfer(src_repo, dst_repo, d).await
    }

    async fn head_or_transfer(&self, src_repo: &str, dst_repo: &str, d: &Descriptor) -> Result<()> {
        if self.dst.head_blob(dst_repo, &d.digest).await?.is_some() {
            self.stats.blobs_present.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            self.transfer_blob(src_repo, dst_repo, d, None).await
        }
    }

    /// Streams a blob from the source into the destination, verifying it on the way; retried as
    /// a whole (new GET, new upload session) on transient failures and mismatches.
    async fn transfer_blob(
        &self,
        src_repo: &str,
        dst_repo: &str,
        d: &Descriptor,
        mut location: Option<url::Url>,
    ) -> Result<()> {
        let _slot = tokio::select! {
            _ = self.cancel.cancelled() => return Err(Error::Cancelled),
            s = self.blob_slots.acquire() => s.map_err(|_| Error::Cancelled)?,
        };
        let what = format!("blob {} of {}/{src_repo}", d.digest, self.src.describe());
        let mut backoff = Backoff::new(self.retry_policy());
        loop {
            let attempt = async {
                let location = match location.take() {
                    Some(l) => l,
                    None => self.dst.start_upload(dst_repo).await?,
                };
                let body = self.src.blob(src_repo, &d.digest).await?;
                if let Some(size) = body.size
                    && size != d.size
                {
                    return Err(Error::SizeMismatch {
                        what: what.clone(),
                        expected: d.size,
                        actual: size,
                    });
                }
                let (stream, verdict) =
                    Verifying::new(body.stream, d.digest.clone(), Some(d.size), what.clone());
                let uploaded = self
                    .dst
                    .upload_blob(dst_repo, location, &d.digest, d.size, stream)
                    .await;
                match (verdict.get(), uploaded) {
                    // Our own check failed: report that, not the aborted upload it caused.
                    (Some(Err(msg)), Err(_)) if msg.contains("mismatch") => {
                        Err(Error::DigestMismatch {
                            what: what.clone(),
                            expected: d.digest.clone(),
                            actual: msg,
                        })
                    }
                    (_, Err(e)) => Err(e),
                    (Some(Ok(_)), Ok(())) => Ok(()),
                    (v, Ok(())) => Err(Error::invalid(format!(
                        "{what}: upload ended before the body was verified ({v:?})"
                    ))),
                }
            };
            match attempt.await {
                Ok(()) => {
                    self.stats.blobs_transferred.fetch_add(1, Ordering::Relaxed);
                    self.stats.bytes.fetch_add(d.size, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) if e.is_retryable() && !self.cancel.is_cancelled() => {
                    match backoff.next(None) {
                        Some(w) => {
                            tracing::warn!(error = %e, "blob transfer failed; trying again");
                            self.stats.retried.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(w).await;
                        }
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
