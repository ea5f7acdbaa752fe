//! `dth image …`: locations and flags to a source, a destination client, a plan and copy
//! options; then the copier, progress and the summary. No copy logic lives here.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgAction, Args, Subcommand};
use dth_oci::copy::{Copier, CopyOptions, CopyStats, ImageAction, ImageReport, Summary};
use dth_oci::plan::{Naming, Selection, TagFilter, TagPattern, plan, read_images_file};
use dth_oci::profile::{Profile, RegistryKind, UploadStrategy, ecr_host};
use dth_oci::registry::{ClientConfig, Credentials, RegistryClient, RetryPolicy};
use dth_oci::source::artifactory::repo_api_base;
use dth_oci::source::ecr::EcrSource;
use dth_oci::source::{
    ArtifactorySource, DockerArchiveSource, Ecr, ImageSource, OciLayoutSource, RegistrySource,
};
use dth_oci::{ImageEntry, Location, Reference, TagSelector};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Make a destination registry hold the same images as a source: only changed tags are
    /// copied (compared by digest), multi-arch images whole, every blob verified.
    #[command(after_help = SYNC_EXAMPLES)]
    Sync(SyncArgs),
}

const SYNC_EXAMPLES: &str = "\
Locations:
  docker://HOST                 every repository of a registry (listed with /v2/_catalog)
  docker://HOST/REPO            every tag of one repository (filtered by --tag-filter …)
  docker://HOST/REPO:TAG        one tag (REPO@sha256:… for one digest)
  ecr://ACCOUNT.REGION[/REPO]   Amazon ECR (credentials from the AWS chain: env, profile, SSO, IMDS)
  artifactory://HOST[/REPOKEY]  JFrog Artifactory Docker repositories
  oci:DIR[:TAG]                 an OCI image layout directory (source only)
  docker-archive:FILE           a `docker save` tarball (source only)
Docker Hub is docker://docker.io (official images under library/). A destination with a path
names the repository for a single source repository, and is a prefix otherwise.

Examples:
  # Mirror two tags of nginx and all 1.x tags of a private image into a local registry
  printf 'library/nginx:1.27\\nlibrary/nginx:latest\\n' > images.txt
  dth image sync docker://docker.io docker://registry.local:5000/mirror --images-from images.txt

  # Every tag of one repository matching a semver range, keeping the 5 newest, amd64 only
  dth image sync docker://quay.io/team/app ecr://123456789012.eu-west-1/team/app \\
      --tag-filter 'semver:>=1.4' --keep-latest 5 --platform linux/amd64

  # A whole registry to ECR (repositories are created when missing), see the plan first
  DTH_SRC_REGISTRY_USER=ci DTH_SRC_REGISTRY_PASSWORD=… \\
    dth image sync docker://harbor.example.com ecr://123456789012.us-east-1 --dry-run

  # An image built locally (skopeo/buildah/`docker buildx --output type=oci`) to a registry
  dth image sync oci:./build/app:1.0 docker://127.0.0.1:5000/app --dst-tls-verify=false

Exit status: 0 when every image was copied or already up to date, 1 when some image failed,
2 on bad input.";

/// One side's registry flags; flattened twice with `src-`/`dst-` prefixes.
macro_rules! side_args {
    ($name:ident, $p:literal, $env:literal, $side:literal) => {
        #[derive(Debug, Args)]
        pub struct $name {
            #[arg(help = concat!("Credentials for the ", $side, " registry, USER:PASSWORD (or a token as PASSWORD)"),
                  long = concat!($p, "-creds"), id = concat!($p, "-creds"), value_name = "USER:PASS")]
            creds: Option<String>,
            #[arg(help = concat!("User for the ", $side, " registry"), long = concat!($p, "-user"), id = concat!($p, "-user"),
                  env = concat!($env, "_REGISTRY_USER"), value_name = "USER", hide = true)]
            user: Option<String>,
            #[arg(help = concat!("Password for the ", $side, " registry"), long = concat!($p, "-password"), id = concat!($p, "-password"),
                  env = concat!($env, "_REGISTRY_PASSWORD"), value_name = "PASS", hide = true, hide_env_values = true)]
            password: Option<String>,
            #[arg(help = concat!("Docker config.json (or containers auth.json) with credentials for the ", $side),
                  long = concat!($p, "-authfile"), id = concat!($p, "-authfile"), value_name = "FILE")]
            authfile: Option<PathBuf>,
            #[arg(help = concat!("Verify the ", $side, "'s TLS certificate; false also allows plain HTTP"),
                  long = concat!($p, "-tls-verify"), id = concat!($p, "-tls-verify"), value_name = "BOOL",
                  default_value_t = true, action = ArgAction::Set)]
            tls_verify: bool,
            #[arg(help = concat!("Where the ", $side, "'s v2 API really is, e.g. http://127.0.0.1:5000 (a proxy, a mirror, a VPC endpoint)"),
                  long = concat!($p, "-endpoint"), id = concat!($p, "-endpoint"), value_name = "URL")]
            endpoint: Option<String>,
            #[arg(help = concat!("ECR API endpoint of the ", $side, " (default: the region's)"),
                  long = concat!($p, "-ecr-endpoint"), id = concat!($p, "-ecr-endpoint"), value_name = "URL")]
            ecr_endpoint: Option<String>,
        }

        impl From<$name> for Side {
            fn from(a: $name) -> Side {
                Side {
                    prefix: $p,
                    creds: a.creds,
                    user: a.user,
                    password: a.password,
                    authfile: a.authfile,
                    tls_verify: a.tls_verify,
                    endpoint: a.endpoint,
                    ecr_endpoint: a.ecr_endpoint,
                }
            }
        }
    };
}
side_args!(SrcArgs, "src", "DTH_SRC", "source");
side_args!(DstArgs, "dst", "DTH_DST", "destination");

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Source: docker://HOST[/REPO[:TAG]], ecr://ACCOUNT.REGION[/REPO], artifactory://HOST[/KEY], oci:DIR[:TAG], docker-archive:FILE
    src: String,
    /// Destination: docker://HOST[/REPO[:TAG]], ecr://ACCOUNT.REGION[/REPO], artifactory://HOST/KEY
    dst: String,
    #[command(flatten)]
    src_side: SrcArgs,
    #[command(flatten)]
    dst_side: DstArgs,

    /// Copy the images listed in this file, one `name[:tag]` a line (`name:ALL_TAGS` for every
    /// tag, `name@sha256:…` for a digest; no tag means `latest`); SRC is then docker://HOST
    #[arg(long, value_name = "FILE")]
    images_from: Option<PathBuf>,
    /// Copy only listed tags matching this pattern (repeatable): a glob (`v1.*`), `regex:RE`, or `semver:RANGE` (`semver:>=1.2, <2`)
    #[arg(long, value_name = "PATTERN")]
    tag_filter: Vec<String>,
    /// Skip listed tags matching this pattern (repeatable; same forms as --tag-filter)
    #[arg(long, value_name = "PATTERN")]
    exclude_tag: Vec<String>,
    /// Of the listed tags left, keep the N newest (highest semantic versions first)
    #[arg(long, value_name = "N")]
    keep_latest: Option<usize>,
    /// Copy only these platforms of multi-arch images, e.g. linux/amd64 (repeatable; default: the whole index)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Vec<String>,

    /// Images copied at once
    #[arg(long, default_value_t = 10, value_name = "N")]
    images: usize,
    /// Blobs transferred at once, across all images
    #[arg(long, default_value_t = 8, value_name = "N")]
    blobs: usize,
    /// Attempts after the first, per request and per blob
    #[arg(long, default_value_t = 5, value_name = "N")]
    retries: u32,
    /// Never try cross-repository blob mounts at the destination
    #[arg(long)]
    no_mount: bool,
    /// Blob upload at the destination: monolithic, patch (one PATCH then PUT), or chunked:SIZE (default: the registry's profile)
    #[arg(long, value_name = "STRATEGY")]
    dst_upload: Option<String>,

    /// Print what would be copied and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Print a JSON summary on stdout at the end
    #[arg(long)]
    json: bool,
    /// Write one JSON line per image (source, destination, action, digest, error) to this file
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

/// One side's flags, whichever prefix they came with.
struct Side {
    prefix: &'static str,
    creds: Option<String>,
    user: Option<String>,
    password: Option<String>,
    authfile: Option<PathBuf>,
    tls_verify: bool,
    endpoint: Option<String>,
    ecr_endpoint: Option<String>,
}

impl Side {
    /// Flags > environment > auth file > the default auth files > anonymous.
    fn credentials(&self, host: &str) -> anyhow::Result<Option<Credentials>> {
        let p = self.prefix;
        if let Some(c) = &self.creds {
            return Ok(Some(
                Credentials::parse(c).with_context(|| format!("--{p}-creds"))?,
            ));
        }
        match (&self.user, &self.password) {
            (Some(u), Some(pw)) => return Ok(Some(Credentials::new(u.clone(), pw.clone()))),
            (Some(_), None) | (None, Some(_)) => {
                let env = if p == "src" { "DTH_SRC" } else { "DTH_DST" };
                bail!("give both {env}_REGISTRY_USER and {env}_REGISTRY_PASSWORD (or neither)")
            }
            (None, None) => {}
        }
        if let Some(f) = &self.authfile {
            if !f.is_file() {
                bail!("--{p}-authfile {}: no such file", f.display());
            }
            return Credentials::from_auth_file(f, host)
                .map_err(anyhow::Error::from)
                .and_then(|c| {
                    c.ok_or_else(|| {
                        anyhow::anyhow!("--{p}-authfile {}: no entry for {host}", f.display())
                    })
                })
                .map(Some);
        }
        for f in default_auth_files() {
            if f.is_file()
                && let Ok(Some(c)) = Credentials::from_auth_file(&f, host)
            {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    fn config(
        &self,
        host: &str,
        credentials: Option<Credentials>,
        retries: u32,
    ) -> anyhow::Result<ClientConfig> {
        let mut c = ClientConfig::new(host);
        c.tls_verify = self.tls_verify;
        c.credentials = credentials;
        c.retry = RetryPolicy {
            retries,
            ..RetryPolicy::default()
        };
        if let Some(e) = &self.endpoint {
            let url =
                url::Url::parse(e).with_context(|| format!("--{}-endpoint {e:?}", self.prefix))?;
            if !matches!(url.scheme(), "http" | "https") {
                bail!(
                    "--{}-endpoint {e:?}: want an http:// or https:// URL",
                    self.prefix
                );
            }
            c.endpoint = Some(url);
        }
        Ok(c)
    }
}

fn default_auth_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        out.push(PathBuf::from(f));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        out.push(Path::new(&d).join("containers/auth.json"));
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        out.push(Path::new(&d).join("config.json"));
    } else if let Some(h) = std::env::var_os("HOME") {
        out.push(Path::new(&h).join(".docker/config.json"));
    }
    out
}

fn parse_upload(s: &str) -> anyhow::Result<UploadStrategy> {
    Ok(match s {
        "monolithic" => UploadStrategy::Monolithic,
        "patch" => UploadStrategy::SinglePatch,
        _ => match s.strip_prefix("chunked:") {
            Some(size) => {
                let n = crate::size::parse_size(size)
                    .map_err(|e| anyhow::anyhow!("--dst-upload {s}: {e}"))?;
                if n == 0 {
                    bail!("--dst-upload {s}: the chunk size must be above 0");
                }
                UploadStrategy::Chunked(n)
            }
            None => bail!("--dst-upload {s:?}: want monolithic, patch or chunked:SIZE"),
        },
    })
}

/// What the source location selects, before --images-from.
struct Source {
    source: Arc<dyn ImageSource>,
    selection: Selection,
    /// Whether the selection is one repository (so a destination path names it exactly).
    single_repo: bool,
}

async fn open_source(loc: Location, side: &Side, a: &SyncArgs) -> anyhow::Result<Source> {
    let entries_from = |host: &str| -> anyhow::Result<Option<Vec<ImageEntry>>> {
        let Some(f) = &a.images_from else {
            return Ok(None);
        };
        let entries = read_images_file(f)?;
        for e in &entries {
            if let Some(h) = &e.host
                && h != host
            {
                bail!(
                    "--images-from {}: {h}/{} names another registry than the source {host}",
                    f.display(),
                    e.repository
                );
            }
        }
        Ok(Some(entries))
    };
    let one = |repo: String, tags: Option<TagSelector>| {
        Selection::Entries(vec![ImageEntry {
            host: None,
            repository: repo,
            tags: tags.unwrap_or(TagSelector::All),
        }])
    };
    Ok(match loc {
        Location::Registry { host, image } => {
            let creds = side.credentials(&host)?;
            let client = RegistryClient::connect(side.config(&host, creds, a.retries)?)
                .await
                .with_context(|| format!("source registry {host}"))?;
            let source: Arc<dyn ImageSource> = Arc::new(RegistrySource::new(client));
            match (image, entries_from(&host)?) {
                (Some(_), Some(_)) => {
                    bail!("--images-from needs a source without a repository: docker://{host}")
                }
                (Some((repo, tags)), None) => Source {
                    source,
                    selection: one(repo, tags),
                    single_repo: true,
                },
                (None, Some(entries)) => {
                    let single = entries
                        .iter()
                        .map(|e| &e.repository)
                        .collect::<std::collections::HashSet<_>>()
                        .len()
                        == 1;
                    Source {
                        source,
                        selection: Selection::Entries(entries),
                        single_repo: single,
                    }
                }
                (None, None) => Source {
                    source,
                    selection: Selection::All,
                    single_repo: false,
                },
            }
        }
        Location::Ecr {
            account,
            region,
            image,
        } => {
            let ecr = Ecr::connect(&account, &region, side.ecr_endpoint.as_deref()).await;
            let creds = ecr.authorization().await?;
            let host = ecr_host(&account, &region);
            let mut config = side.config(&host, Some(creds), a.retries)?;
            config.profile = Some(Profile::of(RegistryKind::Ecr));
            let client = RegistryClient::connect(config)
                .await
                .with_context(|| format!("source registry {host}"))?;
            let source: Arc<dyn ImageSource> = Arc::new(EcrSource::new(client, ecr));
            match (image, entries_from(&host)?) {
                (Some(_), Some(_)) => bail!("--images-from needs a source without a repository"),
                (Some((repo, tags)), None) => Source {
                    source,
                    selection: one(repo, tags),
                    single_repo: true,
                },
                (None, Some(entries)) => Source {
                    source,
                    selection: Selection::Entries(entries),
                    single_repo: false,
                },
                (None, None) => Source {
                    source,
                    selection: Selection::All,
                    single_repo: false,
                },
            }
        }
        Location::Artifactory { host, repo_key } => {
            let creds = side.credentials(&host)?;
            let source =
                ArtifactorySource::connect(side.config(&host, creds, a.retries)?, repo_key).await?;
            let selection = match entries_from(&host)? {
                Some(e) => Selection::Entries(e),
                None => Selection::All,
            };
            Source {
                source: Arc::new(source),
                selection,
                single_repo: false,
            }
        }
        Location::OciLayout { dir, tag } => {
            if a.images_from.is_some() {
                bail!("--images-from works with registry sources only");
            }
            let layout = OciLayoutSource::open(&dir)?;
            let repos = layout.repositories().await?;
            let selection = match tag {
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
            Source {
                source: Arc::new(layout),
                selection,
                single_repo: repos.len() == 1,
            }
        }
        Location::DockerArchive { file } => {
            if a.images_from.is_some() {
                bail!("--images-from works with registry sources only");
            }
            if !file.is_file() {
                bail!("docker-archive:{}: no such file", file.display());
            }
            let archive = DockerArchiveSource::open(&file).await?;
            let repos = archive.repositories().await?;
            if repos.is_empty() {
                bail!("docker-archive:{}: no tagged images in it", file.display());
            }
            Source {
                source: Arc::new(archive),
                selection: Selection::All,
                single_repo: repos.len() == 1,
            }
        }
    })
}

struct Destination {
    client: RegistryClient,
    ecr: Option<Ecr>,
    path: Option<(String, Option<TagSelector>)>,
}

async fn open_destination(loc: Location, side: &Side, a: &SyncArgs) -> anyhow::Result<Destination> {
    let upload = a.dst_upload.as_deref().map(parse_upload).transpose()?;
    match loc {
        Location::Registry { host, image } => {
            let creds = side.credentials(&host)?;
            let mut config = side.config(&host, creds, a.retries)?;
            config.upload = upload;
            let client = RegistryClient::connect(config)
                .await
                .with_context(|| format!("destination registry {host}"))?;
            Ok(Destination {
                client,
                ecr: None,
                path: image,
            })
        }
        Location::Ecr {
            account,
            region,
            image,
        } => {
            let ecr = Ecr::connect(&account, &region, side.ecr_endpoint.as_deref()).await;
            let creds = ecr.authorization().await?;
            let host = ecr_host(&account, &region);
            let mut config = side.config(&host, Some(creds), a.retries)?;
            config.profile = Some(Profile::of(RegistryKind::Ecr));
            config.upload = upload;
            let client = RegistryClient::connect(config)
                .await
                .with_context(|| format!("destination registry {host}"))?;
            Ok(Destination {
                client,
                ecr: Some(ecr),
                path: image,
            })
        }
        Location::Artifactory {
            host,
            repo_key: Some(key),
        } => {
            let creds = side.credentials(&host)?;
            let mut config = side.config(&host, creds, a.retries)?;
            let base = match &config.endpoint {
                Some(u) => u.as_str().trim_end_matches('/').to_string(),
                None => format!("https://{host}"),
            };
            config.endpoint = Some(url::Url::parse(&repo_api_base(&base, &key))?);
            config.profile = Some(Profile::of(RegistryKind::Artifactory));
            config.upload = upload;
            let client = RegistryClient::connect(config)
                .await
                .with_context(|| format!("destination Artifactory {host}/{key}"))?;
            Ok(Destination {
                client,
                ecr: None,
                path: None,
            })
        }
        Location::Artifactory { repo_key: None, .. } => {
            bail!(
                "an Artifactory destination must name its Docker repository: artifactory://HOST/REPOKEY"
            )
        }
        Location::OciLayout { .. } | Location::DockerArchive { .. } => {
            bail!("the destination must be a registry (docker://, ecr:// or artifactory://)")
        }
    }
}

pub async fn run(cmd: ImageCommand, verbose: u8) -> anyhow::Result<ExitCode> {
    let ImageCommand::Sync(a) = cmd;
    if a.images == 0 || a.blobs == 0 {
        bail!("--images and --blobs must be at least 1");
    }
    for p in &a.platform {
        let n = p.split('/').count();
        if !(2..=3).contains(&n) || p.split('/').any(str::is_empty) {
            bail!("--platform {p:?}: want OS/ARCH[/VARIANT], e.g. linux/arm64/v8");
        }
    }
    let filter = TagFilter {
        include: a
            .tag_filter
            .iter()
            .map(|p| TagPattern::parse(p))
            .collect::<Result<_, _>>()?,
        exclude: a
            .exclude_tag
            .iter()
            .map(|p| TagPattern::parse(p))
            .collect::<Result<_, _>>()?,
        keep_latest: a.keep_latest,
    };
    if let Some(u) = &a.dst_upload {
        parse_upload(u)?;
    }
    if let Some(f) = &a.images_from
        && !f.is_file()
    {
        bail!("--images-from {}: no such file", f.display());
    }
    let src_loc = Location::parse(&a.src).context("source")?;
    let dst_loc = Location::parse(&a.dst).context("destination")?;
    if matches!(
        dst_loc,
        Location::OciLayout { .. } | Location::DockerArchive { .. }
    ) {
        bail!(
            "destination {}: must be a registry (docker://, ecr:// or artifactory://)",
            a.dst
        );
    }
    let src_side: Side = SrcArgs::into(a.src_side_take());
    let dst_side: Side = DstArgs::into(a.dst_side_take());
    let src = open_source(src_loc, &src_side, &a).await?;
    let dst = open_destination(dst_loc, &dst_side, &a).await?;
    let naming = match &dst.path {
        None => Naming::Same,
        Some((repo, tag)) if src.single_repo => Naming::Exact {
            repository: repo.clone(),
            tag: match tag {
                Some(TagSelector::One(Reference::Tag(t))) => Some(t.clone()),
                Some(_) => bail!("destination {}: a tag, not a digest or ALL_TAGS", a.dst),
                None => None,
            },
        },
        Some((_, Some(_))) => bail!("destination {}: a tag needs a single source image", a.dst),
        Some((repo, None)) => Naming::Prefix(repo.clone()),
    };
    let jobs = plan(src.source.as_ref(), &src.selection, &filter, &naming).await?;
    if jobs.is_empty() {
        eprintln!("nothing selected at {}", src.source.describe());
    }

    let opts = CopyOptions {
        images: a.images,
        blobs: a.blobs,
        platforms: a.platform.clone(),
        dry_run: a.dry_run,
        mount: !a.no_mount,
        retries: a.retries,
    };
    let cancel_refresh = CancellationToken::new();
    let mut copier = Copier::new(src.source.clone(), dst.client.clone(), opts);
    if let Some(ecr) = &dst.ecr {
        ecr.spawn_refresh(dst.client.clone(), cancel_refresh.clone());
        copier = copier.with_ecr_repository_creation(ecr.clone());
    }
    let copier = Arc::new(copier);
    let cancel = copier.cancel_token();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping");
                cancel.cancel();
            }
        }
    });

    let mut report_file = match &a.report {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("cannot create the report {}", p.display()))?,
        )),
        None => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<ImageReport>();
    let list = verbose >= 1 || a.dry_run;
    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let stdout = std::io::stdout();
        let mut print = list;
        while let Some(r) = rx.blocking_recv() {
            if let Some(f) = &mut report_file {
                serde_json::to_writer(&mut *f, &r)?;
                f.write_all(b"\n")?;
            }
            if print && (r.action != ImageAction::Unchanged || verbose >= 1) {
                let action = serde_json::to_value(r.action)?;
                let mut line = format!(
                    "{}\t{}\t{}",
                    action.as_str().unwrap_or(""),
                    r.source,
                    r.destination
                );
                if let Some(e) = &r.error {
                    line.push('\t');
                    line.push_str(e);
                }
                print = writeln!(stdout.lock(), "{line}").is_ok();
            }
        }
        if let Some(f) = &mut report_file {
            f.flush()?;
        }
        Ok(())
    });
    let done = CancellationToken::new();
    let bar = tokio::spawn(progress(copier.stats(), done.clone()));
    let summary = copier.run(jobs, Some(tx)).await;
    done.cancel();
    cancel_refresh.cancel();
    let _ = bar.await;
    writer
        .await
        .context("report writer")?
        .context("writing the report")?;
    for e in &summary.errors {
        eprintln!("error: {e}");
    }
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        eprintln!("{}", describe(&summary));
    }
    Ok(if summary.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

impl SyncArgs {
    fn src_side_take(&self) -> SrcArgs {
        SrcArgs {
            creds: self.src_side.creds.clone(),
            user: self.src_side.user.clone(),
            password: self.src_side.password.clone(),
            authfile: self.src_side.authfile.clone(),
            tls_verify: self.src_side.tls_verify,
            endpoint: self.src_side.endpoint.clone(),
            ecr_endpoint: self.src_side.ecr_endpoint.clone(),
        }
    }
    fn dst_side_take(&self) -> DstArgs {
        DstArgs {
            creds: self.dst_side.creds.clone(),
            user: self.dst_side.user.clone(),
            password: self.dst_side.password.clone(),
            authfile: self.dst_side.authfile.clone(),
            tls_verify: self.dst_side.tls_verify,
            endpoint: self.dst_side.endpoint.clone(),
            ecr_endpoint: self.dst_side.ecr_endpoint.clone(),
        }
    }
}

fn describe(s: &Summary) -> String {
    let mib = s.bytes as f64 / (1024.0 * 1024.0);
    if s.dry_run {
        format!(
            "would copy {} of {} images ({} unchanged, {} failed) in {:.1}s",
            s.would_copy, s.images, s.unchanged, s.failed, s.seconds
        )
    } else {
        format!(
            "copied {} images ({} blobs, {mib:.1} MiB; {} mounted, {} already there), unchanged {}, failed {} in {:.1}s",
            s.copied,
            s.blobs_transferred,
            s.blobs_mounted,
            s.blobs_present,
            s.unchanged,
            s.failed,
            s.seconds
        )
    }
}

/// A progress line on a terminal: images, blobs, bytes.
async fn progress(stats: Arc<CopyStats>, done: CancellationToken) {
    if !std::io::stderr().is_terminal() {
        done.cancelled().await;
        return;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} images {msg}",
        )
        .expect("valid template"),
    );
    loop {
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        bar.set_length(l(&stats.images_total));
        bar.set_position(l(&stats.images_done));
        bar.set_message(format!(
            "blobs {} (+{} mounted) {}, failed {}",
            l(&stats.blobs_transferred),
            l(&stats.blobs_mounted),
            indicatif::HumanBytes(l(&stats.bytes)),
            l(&stats.images_failed)
        ));
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    bar.finish_and_clear();
}
