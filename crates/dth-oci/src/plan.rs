//! The planner: from a source and a selection to the list of images to copy. It expands
//! whole-registry and `ALL_TAGS` selections by listing, applies the tag filters, and names each
//! image at the destination. It reads listings only; it never fetches a manifest.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use globset::{Glob, GlobMatcher};
use regex::Regex;
use semver::{Version, VersionReq};

use crate::error::{Error, Result};
use crate::reference::{ImageEntry, Reference, TagSelector};
use crate::source::ImageSource;

/// One tag filter.
#[derive(Debug, Clone)]
pub enum TagPattern {
    /// A glob (`v1.*`, `*-alpine`).
    Glob(GlobMatcher),
    /// `regex:…`, anchored at both ends.
    Regex(Regex),
    /// `semver:…`, a range (`>=1.2, <2`); tags may start with `v`.
    Semver(VersionReq),
}

impl TagPattern {
    /// Parses `GLOB`, `regex:RE` or `semver:RANGE`.
    pub fn parse(s: &str) -> Result<TagPattern> {
        if let Some(re) = s.strip_prefix("regex:") {
            Regex::new(&format!("^(?:{re})$"))
                .map(TagPattern::Regex)
                .map_err(|e| {
                    // regex errors span lines (a caret diagram); keep the last, which names the problem.
                    let text = e.to_string();
                    let last = text
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("")
                        .trim();
                    Error::invalid(format!(
                        "tag filter {s:?}: bad regex: {}",
                        last.trim_start_matches("error: ")
                    ))
                })
        } else if let Some(range) = s.strip_prefix("semver:") {
            VersionReq::parse(range)
                .map(TagPattern::Semver)
                .map_err(|e| Error::invalid(format!("tag filter {s:?}: bad semver range: {e}")))
        } else {
            Glob::new(s)
                .map(|g| TagPattern::Glob(g.compile_matcher()))
                .map_err(|e| Error::invalid(format!("tag filter {s:?}: bad glob: {e}")))
        }
    }

    /// Whether `tag` matches.
    pub fn matches(&self, tag: &str) -> bool {
        match self {
            TagPattern::Glob(g) => g.is_match(tag),
            TagPattern::Regex(r) => r.is_match(tag),
            TagPattern::Semver(req) => semver_of(tag).is_some_and(|v| req.matches(&v)),
        }
    }
}

/// `v1.2.3` / `1.2.3` / `1.2` / `1` as a version.
fn semver_of(tag: &str) -> Option<Version> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    Version::parse(t).ok().or_else(|| {
        let parts: Vec<&str> = t.split('.').collect();
        match parts.as_slice() {
            [maj] => Version::parse(&format!("{maj}.0.0")).ok(),
            [maj, min] => Version::parse(&format!("{maj}.{min}.0")).ok(),
            _ => None,
        }
    })
}

/// Which tags of a listed repository are copied. Tags named explicitly (`repo:tag`) bypass the
/// filters.
#[derive(Debug, Clone, Default)]
pub struct TagFilter {
    /// Keep tags matching any of these (all when empty).
    pub include: Vec<TagPattern>,
    /// Then drop tags matching any of these.
    pub exclude: Vec<TagPattern>,
    /// Then keep only the N highest: semantic versions first (highest first), then other tags in
    /// reverse lexical order.
    pub keep_latest: Option<usize>,
}

impl TagFilter {
    /// Applies the filter to a listing.
    pub fn apply(&self, tags: Vec<String>) -> Vec<String> {
        let mut kept: Vec<String> = tags
            .into_iter()
            .filter(|t| self.include.is_empty() || self.include.iter().any(|p| p.matches(t)))
            .filter(|t| !self.exclude.iter().any(|p| p.matches(t)))
            .collect();
        if let Some(n) = self.keep_latest {
            kept.sort_by(|a, b| latest_first(a, b));
            kept.truncate(n);
        }
        kept.sort();
        kept.dedup();
        kept
    }
}

fn latest_first(a: &str, b: &str) -> Ordering {
    match (semver_of(a), semver_of(b)) {
        (Some(x), Some(y)) => y.cmp(&x).then_with(|| b.cmp(a)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => b.cmp(a),
    }
}

/// How destination repositories are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Naming {
    /// The source repository's name (`docker://HOST` destination).
    Same,
    /// `<prefix>/<source repository>` (a `docker://HOST/PREFIX` destination for several repositories).
    Prefix(String),
    /// Exactly this repository, and this tag when given (a single-image source).
    Exact {
        /// Destination repository.
        repository: String,
        /// Destination tag (renames a single tag).
        tag: Option<String>,
    },
}

/// What to copy from a source.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every repository the source lists, every tag (filtered).
    All,
    /// These entries (`name`, `name:tag`, `name@digest`, `name:ALL_TAGS`); a missing tag is `latest`.
    Entries(Vec<ImageEntry>),
}

/// One image to copy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageJob {
    /// Source repository.
    pub src_repo: String,
    /// Source tag or digest.
    pub reference: String,
    /// Destination repository.
    pub dst_repo: String,
    /// Destination tag; `None` pushes by digest only (a `name@digest` selection).
    pub dst_tag: Option<String>,
}

/// Expands a selection into image jobs (sorted, duplicates removed).
pub async fn plan(
    source: &dyn ImageSource,
    selection: &Selection,
    filter: &TagFilter,
    naming: &Naming,
) -> Result<Vec<ImageJob>> {
    let entries: Vec<(String, TagSelector)> = match selection {
        Selection::All => source
            .repositories()
            .await?
            .into_iter()
            .map(|r| (r, TagSelector::All))
            .collect(),
        Selection::Entries(e) => e
            .iter()
            .map(|e| (e.repository.clone(), e.tags.clone()))
            .collect(),
    };
    if let Naming::Exact { tag: Some(_), .. } = naming {
        let single = entries.len() == 1 && matches!(entries[0].1, TagSelector::One(_));
        if !single {
            return Err(Error::invalid(
                "a destination tag can only rename a single source tag",
            ));
        }
    }
    // Tag lists of whole repositories, all at once (the client's window bounds the requests in
    // flight); boxed so the future stays `Send` for callers that spawn it.
    let whole: BTreeSet<&String> = entries
        .iter()
        .filter(|(_, t)| matches!(t, TagSelector::All))
        .map(|(r, _)| r)
        .collect();
    type Listing<'a> = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(String, Vec<String>)>> + Send + 'a>,
    >;
    let listings: Vec<Listing<'_>> = whole
        .into_iter()
        .map(|repo| -> Listing<'_> {
            Box::pin(async move { Ok((repo.clone(), source.tags(repo).await?)) })
        })
        .collect();
    let listed: HashMap<String, Vec<String>> = futures::future::try_join_all(listings)
        .await?
        .into_iter()
        .collect();
    let mut jobs = BTreeSet::new();
    for (repo, tags) in entries {
        let dst_repo = match naming {
            Naming::Same if repo.is_empty() => {
                return Err(Error::invalid(format!(
                    "{} holds images without a repository name: name one in the destination (docker://HOST/REPO)",
                    source.describe()
                )));
            }
            Naming::Same => repo.clone(),
            Naming::Prefix(p) if repo.is_empty() => p.clone(),
            Naming::Prefix(p) => format!("{p}/{repo}"),
            Naming::Exact { repository, .. } => repository.clone(),
        };
        let refs: Vec<(String, Option<String>)> = match tags {
            TagSelector::One(Reference::Tag(t)) => {
                let dst_tag = match naming {
                    Naming::Exact { tag: Some(t2), .. } => t2.clone(),
                    _ => t.clone(),
                };
                vec![(t, Some(dst_tag))]
            }
            TagSelector::One(Reference::Digest(d)) => vec![(d.to_string(), None)],
            TagSelector::All => {
                let listed = listed.get(&repo).cloned().unwrap_or_default();
                filter
                    .apply(listed)
                    .into_iter()
                    .map(|t| (t.clone(), Some(t)))
                    .collect()
            }
        };
        for (reference, dst_tag) in refs {
            jobs.insert((repo.clone(), reference, dst_repo.clone(), dst_tag));
        }
    }
    Ok(jobs
        .into_iter()
        .map(|(src_repo, reference, dst_repo, dst_tag)| ImageJob {
            src_repo,
            reference,
            dst_repo,
            dst_tag,
        })
        .collect())
}

/// Reads an `--images-from` file: one `name[:tag]` a line; blank lines and `#` comments skipped.
/// Every line is checked ([`ImageEntry::parse`]); the entries are returned as written.
pub fn read_images_file(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        ImageEntry::parse(line)
            .map_err(|e| Error::invalid(format!("{}:{}: {e}", path.display(), i + 1)))?;
        out.push(line.to_string());
    }
    if out.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no images listed",
            path.display()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn filters() {
        let all = tags(&[
            "1.0",
            "1.2.3",
            "v1.10.0",
            "2.0.0-rc1",
            "latest",
            "dev-x",
            "1.2.3-alpine",
        ]);
        let f = TagFilter {
            include: vec![TagPattern::parse("semver:>=1.2, <2").unwrap()],
            ..Default::default()
        };
        assert_eq!(f.apply(all.clone()), tags(&["1.2.3", "v1.10.0"]));
        let f = TagFilter {
            include: vec![TagPattern::parse("regex:[0-9.]+(-alpine)?").unwrap()],
            exclude: vec![TagPattern::parse("*alpine").unwrap()],
            ..Default::default()
        };
        assert_eq!(f.apply(all.clone()), tags(&["1.0", "1.2.3"]));
        let f = TagFilter {
            keep_latest: Some(2),
            ..Default::default()
        };
        assert_eq!(f.apply(all.clone()), tags(&["2.0.0-rc1", "v1.10.0"]));
        let f = TagFilter {
            include: vec![TagPattern::parse("dev-*").unwrap()],
            ..Default::default()
        };
        assert_eq!(f.apply(all), tags(&["dev-x"]));
        assert!(
            TagPattern::parse("regex:(")
                .unwrap_err()
                .to_string()
                .contains("bad regex")
        );
        assert!(TagPattern::parse("semver:>>1").is_err());
    }
}
