//! The finder: walks both listings partition by partition, diffs them, and says per key what must be
//! done ([`Found`]). Memory stays constant in the number of objects: listings stream through a
//! merge-join and only the partition queue (the `/`-delimited prefixes down to `list_depth`) is held.
//!
//! Partitions: at each level above `list_depth` both sides are listed with the `/` delimiter; objects of
//! the level are diffed right away and each common prefix becomes a partition of its own (listed only on
//! the sides that have it). At `list_depth` a partition is listed flat. With a prefix list, each listed
//! prefix is a flat partition. A partition whose listing is out of order is redone from a sorted copy of
//! its listings (see [`crate::sort`]).
//!
//! The finder only reads. [`crate::Sync`] turns its output into copies in this process; the hub's
//! runtime turns it into queue items.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use dth_model::{CompareMode, SyncOptions};
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::diff::{Diff, MergeJoin};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::list::{Entry, list};
use crate::meta::{Keyed, ObjectMeta};

/// Partitions listed at once.
const CHECKERS: usize = 16;
/// Objects in a sorted run before the fallback sorter spills to disk.
const SORT_RUN: usize = 100_000;

/// What the finder decided for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Missing or changed at the destination: copy it.
    Copy(ObjectMeta),
    /// Only at the destination, and deletes are on: delete it.
    Delete(ObjectMeta),
    /// The same on both sides: nothing to do.
    UpToDate(ObjectMeta),
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

/// Lists and diffs two endpoints.
#[derive(Debug)]
pub struct Finder {
    src: Endpoint,
    dst: Endpoint,
    opts: SyncOptions,
    filter: Filter,
    prefix_list: Option<PathBuf>,
    cancel: CancellationToken,
}

impl Finder {
    /// A finder over two connected endpoints; fails on a malformed include/exclude pattern.
    pub fn new(src: Endpoint, dst: Endpoint, opts: SyncOptions) -> Result<Self> {
        Ok(Finder {
            filter: Filter::new(&opts.include, &opts.exclude)?,
            src,
            dst,
            opts,
            prefix_list: None,
            cancel: CancellationToken::new(),
        })
    }

    /// Lists only below the prefixes in this file (one relative prefix a line), not the whole bucket.
    pub fn with_prefix_list(mut self, path: Option<PathBuf>) -> Self {
        self.prefix_list = path;
        self
    }

    /// Stops the walk when `cancel` is cancelled.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Starts the walk ([`Finder::run`]) while both endpoints are checked (bucket exists, credentials
    /// can list): the walk only reads, so a far endpoint's round trip is paid once, not twice. A failed
    /// check stops the walk and is returned; the caller reads `tx`'s receiver only after this returned,
    /// so nothing found is acted on before both checks passed.
    pub async fn start_checked(self, tx: mpsc::Sender<Found>) -> Result<JoinHandle<Vec<String>>> {
        let (src, dst) = (self.src.clone(), self.dst.clone());
        let walk = tokio::spawn(Arc::new(self).run(tx));
        let (a, b) = tokio::join!(src.check(), dst.check());
        if let Err(e) = a.and(b) {
            walk.abort();
            return Err(e);
        }
        Ok(walk)
    }

    /// Walks every partition, sending what it finds to `tx`; returns the listing errors (a failed
    /// partition is skipped, the others go on).
    pub async fn run(self: Arc<Self>, tx: mpsc::Sender<Found>) -> Vec<String> {
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
                Some((rel, Err(e))) => errors.push(format!("listing {rel:?}: {e}")),
            }
        }
        errors
    }

    /// Lists one partition, sends its jobs, and returns the sub-partitions found.
    async fn walk(&self, part: Part, tx: &mpsc::Sender<Found>) -> Result<Vec<Part>> {
        let c = self;
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

    async fn merge(&self, src: Listing, dst: Listing, tx: &mpsc::Sender<Found>) -> Result<()> {
        let mut join = MergeJoin::new(src, dst, self.opts.delete);
        while let Some(step) = join.next().await {
            self.decide(step?, tx).await?;
        }
        Ok(())
    }

    /// Decides what to do with one key and sends it on.
    async fn decide(&self, step: Diff<ObjectMeta>, tx: &mpsc::Sender<Found>) -> Result<()> {
        let key = match &step {
            Diff::SrcOnly(o) | Diff::DstOnly(o) | Diff::Both(o, _) => &o.key,
        };
        if !self.filter.allows(key) {
            return Ok(());
        }
        let found = match step {
            Diff::SrcOnly(s) => Found::Copy(s),
            Diff::Both(s, d) if needs_copy(self.opts.compare, &s, &d) => Found::Copy(s),
            Diff::Both(s, _) => Found::UpToDate(s),
            Diff::DstOnly(d) if self.opts.delete => Found::Delete(d),
            Diff::DstOnly(_) => return Ok(()),
        };
        tx.send(found).await.map_err(|_| Error::Cancelled)
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
