//! From an [`ImageSync`] (what the CLI flags and an image task both say) to a sync ready to run:
//! the source, the destination client, the selection, tag filter and naming to plan with, and a
//! copier for them. The one place that turns locations into clients, so `dth image sync` and the hub's
//! image tasks behave the same.
//!
//! Credentials are asked of the caller per registry host ([`Resolve`]): the CLI looks at its
//! flags, environment and auth files; the hub at the task's secrets. ECR signs in with the AWS
//! credential chain and keeps its 12-hour token fresh for as long as the [`OpenedSync`] lives.

use std::collections::HashSet;
use std::sync::Arc;

use dth_model::{ImageEndpoint, ImageSync, parse_size};
use tokio_util::sync::CancellationToken;

use crate::copy::{Copier, CopyOptions};
use crate::error::{Error, Result};
use crate::plan::{ImageJob, Naming, Selection, TagFilter, TagPattern, plan};
use crate::profile::{Profile, RegistryKind, UploadStrategy, ecr_host};
use crate::registry::{ClientConfig, Credentials, RegistryClient, RetryPolicy};
use crate::source::artifactory::repo_api_base;
use crate::source::ecr::{EcrSource, EcrToken};
use crate::source::{
    ArtifactorySource, DockerArchiveSource, Ecr, ImageSource, OciLayoutSource, RegistrySource,
};
use crate::{ImageEntry, Location, Reference, TagSelector};

/// The credentials for a registry host, or `None` for anonymous access.
pub type Resolve<'a> = &'a (dyn Fn(&str) -> Result<Option<Credentials>> + Sync);

/// A sync with both sides connected.
pub struct OpenedSync {
    /// Where images come from.
    pub source: Arc<dyn ImageSource>,
    /// What to copy, before filters.
    pub selection: Selection,
    /// Tag filters.
    pub filter: TagFilter,
    /// Destination names.
    pub naming: Naming,
    dst: RegistryClient,
    ecr: Option<Ecr>,
    opts: CopyOptions,
    /// Stops the ECR token refreshes when the sync is dropped.
    refresh: CancellationToken,
}

impl std::fmt::Debug for OpenedSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSync")
            .field("source", &self.source.describe())
            .field("selection", &self.selection)
            .field("naming", &self.naming)
            .finish_non_exhaustive()
    }
}

impl Drop for OpenedSync {
    fn drop(&mut self) {
        self.refresh.cancel();
    }
}

impl OpenedSync {
    /// A new copier to the destination. Images copied by one copier share its blobs (each is
    /// sent once, then mounted); a copier remembers what it made present, so take a new one for
    /// each pass over the images.
    pub fn copier(&self) -> Arc<Copier> {
        let mut copier = Copier::new(self.source.clone(), self.dst.clone(), self.opts.clone());
        if let Some(ecr) = &self.ecr {
            copier = copier.with_ecr_repository_creation(ecr.clone());
        }
        Arc::new(copier)
    }

    /// The images to copy: listed, filtered and named.
    pub async fn plan(&self) -> Result<Vec<ImageJob>> {
        plan(
            self.source.as_ref(),
            &self.selection,
            &self.filter,
            &self.naming,
        )
        .await
    }
}

/// Everything that can be checked without a network: locations, entries, patterns, the upload
/// strategy. Messages name the field (`source.location`, `tag_filter`…).
pub fn check(spec: &ImageSync) -> Result<()> {
    let field = |f: &str, e: Error| Error::invalid(format!("{f}: {e}"));
    let src = Location::parse(&spec.source.location).map_err(|e| field("source.location", e))?;
    let dst = Location::parse(&spec.destination.location)
        .map_err(|e| field("destination.location", e))?;
    if matches!(
        dst,
        Location::OciLayout { .. } | Location::DockerArchive { .. }
    ) {
        return Err(Error::invalid(format!(
            "destination.location: {}: must be a registry (docker://, ecr:// or artifactory://)",
            spec.destination.location
        )));
    }
    if let Location::Artifactory { repo_key: None, .. } = dst {
        return Err(Error::invalid(
            "destination.location: an Artifactory destination must name its Docker repository: artifactory://HOST/REPOKEY",
        ));
    }
    filter(spec)?;
    entries(spec)?;
    if !spec.images.is_empty() {
        match src {
            Location::Registry { image: None, .. }
            | Location::Ecr { image: None, .. }
            | Location::Artifactory { .. } => {}
            _ => {
                return Err(Error::invalid(format!(
                    "images: a list of images needs a registry source without a repository (docker://HOST), not {}",
                    spec.source.location
                )));
            }
        }
    }
    if let Some(u) = &spec.upload {
        upload_strategy(u)?;
    }
    for (side, e) in [("source", &spec.source), ("destination", &spec.destination)] {
        if let Some(url) = &e.endpoint {
            endpoint_url(url).map_err(|e| field(&format!("{side}.endpoint"), e))?;
        }
    }
    Ok(())
}

/// Connects both sides of `spec`. `src_creds` and `dst_creds` give the credentials per host
/// (ECR ignores them). `dry_run` makes the copier report and change nothing.
pub async fn open(
    spec: &ImageSync,
    src_creds: Resolve<'_>,
    dst_creds: Resolve<'_>,
    dry_run: bool,
) -> Result<OpenedSync> {
    check(spec)?;
    let src_loc = Location::parse(&spec.source.location)?;
    let dst_loc = Location::parse(&spec.destination.location)?;
    let refresh = CancellationToken::new();
    // Both sides at once: each may sign in and ping its registry.
    let (source, destination) = tokio::join!(
        open_source(spec, src_loc, src_creds, &refresh),
        open_destination(spec, dst_loc, dst_creds)
    );
    let (source, selection, single_repo) = source?;
    let (dst, ecr, path) = destination?;
    let naming = match path {
        None => Naming::Same,
        Some((repo, tag)) if single_repo => Naming::Exact {
            repository: repo,
            tag: match tag {
                Some(TagSelector::One(Reference::Tag(t))) => Some(t),
                Some(_) => {
                    return Err(Error::invalid(format!(
                        "destination {}: a tag, not a digest or ALL_TAGS",
                        spec.destination.location
                    )));
                }
                None => None,
            },
        },
        Some((_, Some(_))) => {
            return Err(Error::invalid(format!(
                "destination {}: a tag needs a single source image",
                spec.destination.location
            )));
        }
        Some((repo, None)) => Naming::Prefix(repo),
    };
    let opts = CopyOptions {
        images: spec.concurrency,
        blobs: spec.blobs,
        platforms: spec.platforms.clone(),
        dry_run,
        mount: spec.mount,
        retries: spec.retries,
    };
    if let Some((ecr, token)) = &ecr {
        ecr.spawn_refresh(dst.clone(), token, refresh.clone());
    }
    let ecr = ecr.map(|(e, _)| e);
    Ok(OpenedSync {
        source,
        selection,
        filter: filter(spec)?,
        naming,
        dst,
        ecr,
        opts,
        refresh,
    })
}

fn filter(spec: &ImageSync) -> Result<TagFilter> {
    let parse = |field: &str, v: &[String]| -> Result<Vec<TagPattern>> {
        v.iter()
            .map(|p| TagPattern::parse(p).map_err(|e| Error::invalid(format!("{field}: {e}"))))
            .collect()
    };
    Ok(TagFilter {
        include: parse("tag_filter", &spec.tag_filter)?,
        exclude: parse("exclude_tags", &spec.exclude_tags)?,
        keep_latest: spec.keep_latest,
    })
}

fn entries(spec: &ImageSync) -> Result<Vec<ImageEntry>> {
    spec.images
        .iter()
        .map(|i| ImageEntry::parse(i).map_err(|e| Error::invalid(format!("images: {e}"))))
        .collect()
}

/// `monolithic`, `patch` or `chunked:SIZE`.
pub fn upload_strategy(s: &str) -> Result<UploadStrategy> {
    Ok(match s {
        "monolithic" => UploadStrategy::Monolithic,
        "patch" => UploadStrategy::SinglePatch,
        _ => match s.strip_prefix("chunked:") {
            Some(size) => {
                let n = parse_size(size).map_err(|e| Error::invalid(format!("upload {s}: {e}")))?;
                if n == 0 {
                    return Err(Error::invalid(format!(
                        "upload {s}: the chunk size must be above 0"
                    )));
                }
                UploadStrategy::Chunked(n)
            }
            None => {
                return Err(Error::invalid(format!(
                    "upload {s:?}: want monolithic, patch or chunked:SIZE"
                )));
            }
        },
    })
}

fn endpoint_url(s: &str) -> Result<url::Url> {
    let url = url::Url::parse(s).map_err(|e| Error::invalid(format!("{s:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(format!(
            "{s:?}: want an http:// or https:// URL"
        )));
    }
    Ok(url)
}

fn config(
    side: &ImageEndpoint,
    host: &str,
    creds: Option<Credentials>,
    retries: u32,
) -> Result<ClientConfig> {
    let mut c = ClientConfig::new(host);
    c.tls_verify = side.tls_verify;
    c.credentials = creds;
    c.retry = RetryPolicy {
        retries,
        ..RetryPolicy::default()
    };
    if let Some(e) = &side.endpoint {
        c.endpoint = Some(endpoint_url(e)?);
    }
    Ok(c)
}

/// An ECR side: the ECR API, its first token, the registry host, and the client configuration
/// signed in with the token under the ECR profile.
async fn ecr_config(
    side: &ImageEndpoint,
    account: &str,
    region: &str,
    retries: u32,
) -> Result<(Ecr, EcrToken, String, ClientConfig)> {
    let ecr = Ecr::connect(account, region, side.ecr_endpoint.as_deref()).await;
    let host = ecr_host(account, region);
    let token = ecr.authorization().await?;
    let mut c = config(side, &host, Some(token.credentials.clone()), retries)?;
    c.profile = Some(Profile::of(RegistryKind::Ecr));
    Ok((ecr, token, host, c))
}

/// The source, its selection, and whether that selection is one repository (so a destination
/// path names it exactly rather than prefixing it).
async fn open_source(
    spec: &ImageSync,
    loc: Location,
    creds: Resolve<'_>,
    refresh: &CancellationToken,
) -> Result<(Arc<dyn ImageSource>, Selection, bool)> {
    let side = &spec.source;
    let listed = |host: &str| -> Result<Option<Vec<ImageEntry>>> {
        if spec.images.is_empty() {
            return Ok(None);
        }
        let entries = entries(spec)?;
        if let Some(e) = entries
            .iter()
            .find(|e| e.host.as_deref().is_some_and(|h| h != host))
        {
            return Err(Error::invalid(format!(
                "images: {}/{} names another registry than the source {host}",
                e.host.as_deref().unwrap_or_default(),
                e.repository
            )));
        }
        Ok(Some(entries))
    };
    let selection = |image: Option<(String, Option<TagSelector>)>,
                     listed: Option<Vec<ImageEntry>>| match (image, listed) {
        (Some((repository, tags)), _) => (
            Selection::Entries(vec![ImageEntry {
                host: None,
                repository,
                tags: tags.unwrap_or(TagSelector::All),
            }]),
            true,
        ),
        (None, Some(entries)) => {
            let repos: HashSet<&String> = entries.iter().map(|e| &e.repository).collect();
            let single = repos.len() == 1;
            (Selection::Entries(entries), single)
        }
        (None, None) => (Selection::All, false),
    };
    Ok(match loc {
        Location::Registry { host, image } => {
            let client =
                RegistryClient::connect(config(side, &host, creds(&host)?, spec.retries)?).await?;
            let (sel, single) = selection(image, listed(&host)?);
            (Arc::new(RegistrySource::new(client)), sel, single)
        }
        Location::Ecr {
            account,
            region,
            image,
        } => {
            let (ecr, token, host, c) = ecr_config(side, &account, &region, spec.retries).await?;
            let client = RegistryClient::connect(c).await?;
            ecr.spawn_refresh(client.clone(), &token, refresh.clone());
            let (sel, single) = selection(image, listed(&host)?);
            (Arc::new(EcrSource::new(client, ecr)), sel, single)
        }
        Location::Artifactory { host, repo_key } => {
            let c = config(side, &host, creds(&host)?, spec.retries)?;
            let source = ArtifactorySource::connect(c, repo_key).await?;
            let sel = match listed(&host)? {
                Some(e) => Selection::Entries(e),
                None => Selection::All,
            };
            (Arc::new(source), sel, false)
        }
        Location::OciLayout { dir, tag } => {
            let layout = OciLayoutSource::open(&dir)?;
            let repos = layout.repositories().await?;
            let sel = match tag {
                Some(t) => {
                    let repo = if repos.iter().any(|r| r.is_empty()) {
                        String::new()
                    } else {
                        repos.first().cloned().unwrap_or_default()
                    };
                    Selection::Entries(vec![ImageEntry {
                        host: None,
                        repository: repo,
                        tags: TagSelector::One(Reference::Tag(t)),
                    }])
                }
                None => Selection::All,
            };
            let single = repos.len() == 1;
            (Arc::new(layout), sel, single)
        }
        Location::DockerArchive { file } => {
            if !file.is_file() {
                return Err(Error::invalid(format!(
                    "docker-archive:{}: no such file",
                    file.display()
                )));
            }
            let archive = DockerArchiveSource::open(&file).await?;
            let repos = archive.repositories().await?;
            if repos.is_empty() {
                return Err(Error::invalid(format!(
                    "docker-archive:{}: no tagged images in it",
                    file.display()
                )));
            }
            let single = repos.len() == 1;
            (Arc::new(archive), Selection::All, single)
        }
    })
}

type DestinationPath = Option<(String, Option<TagSelector>)>;

/// The destination client, the ECR API and its first token when it is ECR, and the path its
/// location names.
async fn open_destination(
    spec: &ImageSync,
    loc: Location,
    creds: Resolve<'_>,
) -> Result<(RegistryClient, Option<(Ecr, EcrToken)>, DestinationPath)> {
    let side = &spec.destination;
    let upload = spec.upload.as_deref().map(upload_strategy).transpose()?;
    match loc {
        Location::Registry { host, image } => {
            let mut c = config(side, &host, creds(&host)?, spec.retries)?;
            c.upload = upload;
            Ok((RegistryClient::connect(c).await?, None, image))
        }
        Location::Ecr {
            account,
            region,
            image,
        } => {
            let (ecr, token, _, mut c) = ecr_config(side, &account, &region, spec.retries).await?;
            c.upload = upload;
            Ok((RegistryClient::connect(c).await?, Some((ecr, token)), image))
        }
        Location::Artifactory {
            host,
            repo_key: Some(key),
        } => {
            let mut c = config(side, &host, creds(&host)?, spec.retries)?;
            let base = match &c.endpoint {
                Some(u) => u.as_str().trim_end_matches('/').to_string(),
                None => format!("https://{host}"),
            };
            c.endpoint = Some(endpoint_url(&repo_api_base(&base, &key))?);
            c.profile = Some(Profile::of(RegistryKind::Artifactory));
            c.upload = upload;
            Ok((RegistryClient::connect(c).await?, None, None))
        }
        _ => Err(Error::invalid(format!(
            "destination {}: must be a registry (docker://, ecr:// or artifactory://HOST/REPOKEY)",
            spec.destination.location
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dth_model::ImageEndpoint;

    fn spec(src: &str, dst: &str) -> ImageSync {
        ImageSync::new(ImageEndpoint::new(src), ImageEndpoint::new(dst))
    }

    #[test]
    fn checks_name_the_field() {
        check(&spec("docker://quay.io/a/b:1", "docker://127.0.0.1:5000/m")).unwrap();
        let msg = |s: &ImageSync| check(s).unwrap_err().to_string();
        assert!(msg(&spec("docker://", "docker://h")).starts_with("source.location"));
        assert!(msg(&spec("docker://h", "oci:/tmp/x")).starts_with("destination.location"));
        assert!(msg(&spec("docker://h", "artifactory://h")).contains("REPOKEY"));
        let mut s = spec("docker://h", "docker://d");
        s.tag_filter = vec!["regex:(".into()];
        assert!(msg(&s).starts_with("tag_filter"));
        let mut s = spec("docker://h", "docker://d");
        s.images = vec!["Bad Name".into()];
        assert!(msg(&s).starts_with("images"));
        let mut s = spec("docker://h/repo", "docker://d");
        s.images = vec!["a".into()];
        assert!(msg(&s).contains("without a repository"));
        let mut s = spec("docker://h", "docker://d");
        s.upload = Some("chunky".into());
        assert!(msg(&s).contains("monolithic, patch or chunked"));
        assert_eq!(
            upload_strategy("chunked:5M").unwrap(),
            UploadStrategy::Chunked(5 << 20)
        );
    }
}
