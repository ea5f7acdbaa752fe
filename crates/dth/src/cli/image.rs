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
use dth_model::{ImageEndpoint, ImageSync};
use dth_oci::copy::{CopyStats, ImageAction, ImageReport, Summary};
use dth_oci::plan::read_images_file;
use dth_oci::registry::Credentials;
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

    /// The model's form of this side: the location and the flags that are not credentials.
    fn endpoint(&self, location: &str) -> ImageEndpoint {
        ImageEndpoint {
            tls_verify: self.tls_verify,
            endpoint: self.endpoint.clone(),
            ecr_endpoint: self.ecr_endpoint.clone(),
            ..ImageEndpoint::new(location)
        }
    }
}

/// Credentials for the engine, which wants its own error type.
fn resolved(r: anyhow::Result<Option<Credentials>>) -> dth_oci::Result<Option<Credentials>> {
    r.map_err(|e| dth_oci::Error::Invalid(format!("{e:#}")))
}

/// A spec check's message with the spec's field names turned into the flags that set them.
fn flag_names(msg: &str) -> String {
    const FLAGS: [(&str, &str); 9] = [
        ("source.location", "source"),
        ("destination.location", "destination"),
        ("source.endpoint", "--src-endpoint"),
        ("destination.endpoint", "--dst-endpoint"),
        ("tag_filter", "--tag-filter"),
        ("exclude_tags", "--exclude-tag"),
        ("platforms", "--platform"),
        ("images", "--images-from"),
        ("upload", "--dst-upload"),
    ];
    let (lead, rest) = match msg.strip_prefix("invalid ") {
        Some(rest) => ("invalid ", rest),
        None => ("", msg),
    };
    FLAGS
        .iter()
        .find_map(|(field, flag)| rest.strip_prefix(field).map(|r| format!("{lead}{flag}{r}")))
        .unwrap_or_else(|| msg.to_string())
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

pub async fn run(cmd: ImageCommand, verbose: u8) -> anyhow::Result<ExitCode> {
    let ImageCommand::Sync(a) = cmd;
    if a.images == 0 || a.blobs == 0 {
        bail!("--images and --blobs must be at least 1");
    }
    let images = match &a.images_from {
        Some(f) if !f.is_file() => bail!("--images-from {}: no such file", f.display()),
        Some(f) => read_images_file(f)?,
        None => Vec::new(),
    };
    let src_side: Side = SrcArgs::into(a.src_side_take());
    let dst_side: Side = DstArgs::into(a.dst_side_take());
    let spec = ImageSync {
        images,
        tag_filter: a.tag_filter.clone(),
        exclude_tags: a.exclude_tag.clone(),
        keep_latest: a.keep_latest,
        platforms: a.platform.clone(),
        concurrency: a.images,
        blobs: a.blobs,
        retries: a.retries,
        mount: !a.no_mount,
        upload: a.dst_upload.clone(),
        ..ImageSync::new(src_side.endpoint(&a.src), dst_side.endpoint(&a.dst))
    };
    // The engine's checks first: they say most about a location.
    dth_oci::open::check(&spec).map_err(|e| anyhow::anyhow!(flag_names(&e.to_string())))?;
    spec.validate()
        .map_err(|e| anyhow::anyhow!(flag_names(&e.to_string())))?;
    let resolve_src = |host: &str| resolved(src_side.credentials(host));
    let resolve_dst = |host: &str| resolved(dst_side.credentials(host));
    let sync = dth_oci::open::open(&spec, &resolve_src, &resolve_dst, a.dry_run).await?;
    let jobs = sync.plan().await?;
    if jobs.is_empty() {
        eprintln!("nothing selected at {}", sync.source.describe());
    }
    let copier = sync.copier();
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
    drop(sync);
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
