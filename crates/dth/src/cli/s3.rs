//! `dth s3 …`: flags to endpoint specs and sync options, then the engine, progress and the summary.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dth_model::{CompareMode, Credentials, EndpointSpec, Provider, S3Url, Sse, SyncOptions};
use dth_s3::{Endpoint, ObjectReport, Side, Sync};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use dth_model::parse_size;

mod uploads;

#[derive(Debug, Subcommand)]
pub enum S3Command {
    /// Make a destination bucket (or prefix) hold the same objects as a source, copying only what is
    /// missing or changed, and verifying every copy.
    #[command(after_help = SYNC_EXAMPLES)]
    Sync(Box<SyncArgs>),
    /// Find and abort the multipart uploads an interrupted sync left open on a bucket.
    #[command(subcommand)]
    Uploads(Box<uploads::UploadsCommand>),
}

const SYNC_EXAMPLES: &str = "\
Examples:
  # AWS to Alibaba OSS, credentials for each side from the environment
  DTH_SRC_ACCESS_KEY_ID=… DTH_SRC_SECRET_ACCESS_KEY=… DTH_DST_ACCESS_KEY_ID=… DTH_DST_SECRET_ACCESS_KEY=… \\
    dth s3 sync s3://photos s3://photos-copy --src-region us-west-2 \\
      --dst-provider aliyun-oss --dst-region cn-hangzhou

  # AWS global to AWS China, one named profile per side, see the plan first
  dth s3 sync s3://logs/2026/ s3://logs-cn/2026/ --src-profile global \\
      --dst-profile china --dst-region cn-north-1 --dry-run -v

  # Two MinIO servers, only JPEGs, delete what the source no longer has
  dth s3 sync s3://uploads s3://uploads-replica --src-endpoint http://10.0.0.1:9000 --dst-endpoint http://10.0.0.2:9000 \\
      --src-provider minio --dst-provider minio --include '*.jpg' --delete

Exit status: 0 when every planned object was copied and verified, 1 when some failed, 2 on bad input.";

/// One side's flags; clap flattens it twice with `src-`/`dst-` prefixes.
macro_rules! side_args {
    ($name:ident, $p:literal, $env:literal, $side:literal) => {
        #[derive(Debug, Args)]
        pub struct $name {
            #[arg(help = concat!("Provider of the ", $side, ": aws, aliyun-oss, tencent-cos, qiniu-kodo, gcs, minio, ceph, other [default: aws, or other when an endpoint is given]"), long = concat!($p, "-provider"), id = concat!($p, "-provider"), value_name = "PROVIDER")]
            provider: Option<String>,
            #[arg(help = concat!("Endpoint URL of the ", $side, " (default: derived from provider and region)"), long = concat!($p, "-endpoint"), id = concat!($p, "-endpoint"), value_name = "URL")]
            endpoint: Option<String>,
            #[arg(help = concat!("Region of the ", $side), long = concat!($p, "-region"), id = concat!($p, "-region"), value_name = "REGION")]
            region: Option<String>,
            #[arg(help = concat!("Named AWS profile for the ", $side, "'s credentials"), long = concat!($p, "-profile"), id = concat!($p, "-profile"), value_name = "NAME")]
            profile: Option<String>,
            #[arg(help = concat!("Access key id of the ", $side), long = concat!($p, "-access-key"), id = concat!($p, "-access-key"), env = concat!($env, "_ACCESS_KEY_ID"), value_name = "KEY", hide_env_values = true)]
            access_key: Option<String>,
            #[arg(help = concat!("Secret access key of the ", $side), long = concat!($p, "-secret-key"), id = concat!($p, "-secret-key"), env = concat!($env, "_SECRET_ACCESS_KEY"), value_name = "SECRET", hide_env_values = true)]
            secret_key: Option<String>,
            #[arg(help = concat!("Session token of the ", $side, " (temporary credentials)"), long = concat!($p, "-session-token"), id = concat!($p, "-session-token"), env = concat!($env, "_SESSION_TOKEN"), value_name = "TOKEN", hide_env_values = true)]
            session_token: Option<String>,
            #[arg(help = concat!("Send unsigned requests to the ", $side, " (public buckets)"), long = concat!($p, "-anonymous"), id = concat!($p, "-anonymous"))]
            anonymous: bool,
        }

        impl From<$name> for SideFlags {
            fn from(a: $name) -> Self {
                SideFlags {
                    provider: a.provider,
                    endpoint: a.endpoint,
                    region: a.region,
                    profile: a.profile,
                    access_key: a.access_key,
                    secret_key: a.secret_key,
                    session_token: a.session_token,
                    anonymous: a.anonymous,
                }
            }
        }
    };
}
side_args!(SrcArgs, "src", "DTH_SRC", "source");
side_args!(DstArgs, "dst", "DTH_DST", "destination");

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Source: s3://BUCKET[/PREFIX]
    src: String,
    /// Destination: s3://BUCKET[/PREFIX]
    dst: String,
    #[command(flatten)]
    src_side: SrcArgs,
    #[command(flatten)]
    dst_side: DstArgs,
    /// The source bucket is requester-pays: we accept the charges
    #[arg(long)]
    requester_pays: bool,

    /// When an object on both sides is copied again: size (sizes differ), size-etag (sizes or ETags
    /// differ), newer (source modified later), none (always)
    #[arg(long, default_value = "size", value_name = "MODE")]
    compare: String,
    /// Copy only keys matching this glob (repeatable; `*` crosses `/`)
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Leave keys matching this glob alone (repeatable)
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// List only below the prefixes in this file, one a line (relative to the source and destination prefixes)
    #[arg(long, value_name = "FILE")]
    prefix_list: Option<PathBuf>,
    /// Delete destination objects that the source does not have
    #[arg(long)]
    delete: bool,
    /// Print the plan (counts and bytes; keys with -v) and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Depth of `/` prefixes listed in parallel (0: one flat listing)
    #[arg(long, default_value_t = 2, value_name = "N")]
    list_depth: u32,

    /// Objects of this size or more are copied in parts
    #[arg(long, default_value = "16M", value_name = "SIZE")]
    multipart_threshold: String,
    /// Part size (grown to stay within the provider's part count)
    #[arg(long, default_value = "16M", value_name = "SIZE")]
    part_size: String,
    /// Objects copied at once, fixed [default: 64 at the start, grown while throughput grows, up to
    /// --max-transfers]
    #[arg(long, value_name = "N")]
    transfers: Option<usize>,
    /// The most objects copied at once when the number adapts (no --transfers)
    #[arg(long, default_value_t = 512, value_name = "N")]
    max_transfers: usize,
    /// Memory for object bodies and parts in flight, across all transfers (at least two parts)
    #[arg(long, default_value = "128M", value_name = "SIZE")]
    max_buffer: String,
    /// Bandwidth limit for the whole sync, e.g. 50M (bytes per second)
    #[arg(long, value_name = "RATE")]
    bwlimit: Option<String>,
    /// Attempts after the first, per request and per object
    #[arg(long, default_value_t = 5, value_name = "N")]
    retries: u32,
    /// Never copy server-side, even when both sides are the same service and credentials
    #[arg(long)]
    no_server_side_copy: bool,

    /// Do not copy Content-Type, Cache-Control, … and x-amz-meta-* metadata
    #[arg(long)]
    no_metadata: bool,
    /// Copy object tags too (one more request per object)
    #[arg(long)]
    tags: bool,
    /// Storage class of written objects, e.g. STANDARD_IA
    #[arg(long, value_name = "CLASS")]
    storage_class: Option<String>,
    /// Canned ACL of written objects, e.g. bucket-owner-full-control
    #[arg(long, value_name = "ACL")]
    acl: Option<String>,
    /// Server-side encryption of written objects: AES256 or aws:kms
    #[arg(long, value_name = "MODE")]
    sse: Option<String>,
    /// KMS key for --sse aws:kms
    #[arg(long, value_name = "KEY_ID")]
    sse_kms_key_id: Option<String>,

    /// Print a JSON summary on stdout at the end
    #[arg(long)]
    json: bool,
    /// Write one JSON line per object (key, action, size, verification, error) to this file
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Keep the sync's progress in this SQLite file: run the same command again after an interruption
    /// and it goes on where it stopped (see docs/hub.md)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dry_run", "report", "prefix_list"])]
    state: Option<PathBuf>,
}

/// One side's flags, whichever prefix they came with.
struct SideFlags {
    provider: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    profile: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    session_token: Option<String>,
    anonymous: bool,
}

fn endpoint_spec(side: &str, p: &str, url: &str, a: SideFlags) -> anyhow::Result<EndpointSpec> {
    let url = S3Url::parse(url).with_context(|| format!("{side} URL"))?;
    let provider = match &a.provider {
        Some(name) => name
            .parse::<Provider>()
            .with_context(|| format!("--{p}-provider"))?,
        None if a.endpoint.is_some() => Provider::Other,
        None => Provider::Aws,
    };
    let credentials = match (a.access_key, a.secret_key, a.profile, a.anonymous) {
        (Some(k), Some(s), None, false) => Credentials::Static {
            access_key_id: k,
            secret_access_key: s,
            session_token: a.session_token,
        },
        (Some(_), None, _, _) | (None, Some(_), _, _) => {
            bail!("{side}: give both --{p}-access-key and --{p}-secret-key (or neither)")
        }
        (None, None, Some(name), false) => Credentials::Profile { name },
        (None, None, None, true) => Credentials::Anonymous,
        (None, None, None, false) => Credentials::DefaultChain,
        _ => bail!("{side}: choose one of an access key, --{p}-profile or --{p}-anonymous"),
    };
    let mut spec = EndpointSpec::new(provider, url);
    spec.region = a.region;
    spec.endpoint_url = a.endpoint;
    spec.credentials = credentials;
    Ok(spec)
}

fn options(a: &SyncArgs) -> anyhow::Result<SyncOptions> {
    let size = |flag: &str, v: &str| parse_size(v).map_err(|e| anyhow::anyhow!("--{flag}: {e}"));
    let part_size = size("part-size", &a.part_size)?;
    if part_size < 5 << 20 {
        bail!("--part-size must be at least 5M (the S3 minimum)");
    }
    let threshold = size("multipart-threshold", &a.multipart_threshold)?;
    if threshold > 5 << 30 {
        bail!("--multipart-threshold must be at most 5G (the largest single PUT)");
    }
    if a.transfers == Some(0) || a.max_transfers == 0 {
        bail!("--transfers and --max-transfers must be at least 1");
    }
    let defaults = SyncOptions::default();
    let (transfers, transfers_max) = match a.transfers {
        Some(n) => (n, n),
        None => (defaults.transfers.min(a.max_transfers), a.max_transfers),
    };
    Ok(SyncOptions {
        compare: a.compare.parse::<CompareMode>()?,
        include: a.include.clone(),
        exclude: a.exclude.clone(),
        delete: a.delete,
        dry_run: a.dry_run,
        list_depth: a.list_depth,
        multipart_threshold: threshold.max(1),
        part_size,
        transfers,
        transfers_max,
        buffer_memory: size("max-buffer", &a.max_buffer)?.max(2 * part_size),
        bwlimit: a
            .bwlimit
            .as_deref()
            .map(|v| size("bwlimit", v))
            .transpose()?,
        metadata: !a.no_metadata,
        tags: a.tags,
        storage_class: a.storage_class.clone(),
        acl: a.acl.clone(),
        sse: a.sse.as_deref().map(str::parse::<Sse>).transpose()?,
        sse_kms_key_id: a.sse_kms_key_id.clone(),
        retries: a.retries,
        server_side_copy: !a.no_server_side_copy,
    })
}

pub async fn run(cmd: S3Command, verbose: u8) -> anyhow::Result<ExitCode> {
    let a = match cmd {
        S3Command::Sync(a) => *a,
        S3Command::Uploads(c) => return uploads::run(*c).await,
    };
    let opts = options(&a)?;
    if let Some(p) = &a.prefix_list
        && !p.is_file()
    {
        bail!("--prefix-list {}: no such file", p.display());
    }
    let mut src = endpoint_spec("source", "src", &a.src, a.src_side.into())?;
    src.requester_pays = a.requester_pays;
    let dst = endpoint_spec("destination", "dst", &a.dst, a.dst_side.into())?;
    if let Some(state) = &a.state {
        // Check the endpoints before anything is recorded, as a plain sync does.
        let s = Endpoint::connect(Side::Source, &src, opts.retries).await?;
        let d = Endpoint::connect(Side::Destination, &dst, opts.retries).await?;
        let (x, y) = tokio::join!(s.check(), d.check());
        x?;
        y?;
        return super::state::run(state, src, dst, opts, a.json).await;
    }
    let src = Endpoint::connect(Side::Source, &src, opts.retries).await?;
    let dst = Endpoint::connect(Side::Destination, &dst, opts.retries).await?;
    let mut sync = Sync::new(src, dst, opts, a.prefix_list.clone()).await?;
    let mut report_file = match &a.report {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("cannot create the report {}", p.display()))?,
        )),
        None => None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<ObjectReport>();
    let listing = verbose >= 1 || report_file.is_some();
    if listing {
        sync = sync.with_reports(tx);
    } else {
        drop(tx);
    }
    let stats = sync.stats();
    let cancel = sync.cancel_token();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping transfers");
                cancel.cancel();
            }
        }
    });
    let done = CancellationToken::new();
    let bar = tokio::spawn(crate::progress::show(stats, done.clone()));
    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let stdout = std::io::stdout();
        let mut print_keys = verbose >= 1;
        while let Some(r) = rx.blocking_recv() {
            if let Some(f) = &mut report_file {
                serde_json::to_writer(&mut *f, &r)?;
                f.write_all(b"\n")?;
            }
            // A closed stdout (`dth … -v | head`) ends the listing, not the sync.
            if print_keys && r.action != dth_model::Action::Skip {
                let mut out = stdout.lock();
                let action = serde_json::to_value(r.action)?;
                let action = action.as_str().unwrap_or("");
                let written = match (&r.error, r.verification) {
                    (Some(e), _) => writeln!(out, "{action}\t{}\t{e}", r.key),
                    (None, Some(v)) => writeln!(out, "{action}\t{}\t{}", r.key, v.name()),
                    (None, None) => writeln!(out, "{action}\t{}", r.key),
                };
                print_keys = written.is_ok();
            }
        }
        if let Some(f) = &mut report_file {
            f.flush()?;
        }
        Ok(())
    });
    let summary = sync.run().await;
    done.cancel();
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
        let d = &summary.detail;
        let verb = if summary.dry_run {
            "would copy"
        } else {
            "copied"
        };
        let (n, bytes) = if summary.dry_run {
            (d.planned, d.planned_bytes)
        } else {
            (summary.copied, summary.bytes)
        };
        let deleted = if summary.dry_run {
            d.planned_deletes
        } else {
            summary.deleted
        };
        eprintln!(
            "{verb} {n} objects ({}), skipped {} (archived {}, vanished {}), {} {deleted}, failed {} in {:.1}s",
            human_bytes(bytes),
            summary.skipped,
            d.skipped_archived,
            d.vanished,
            if summary.dry_run {
                "would delete"
            } else {
                "deleted"
            },
            summary.failed,
            summary.seconds
        );
    }
    Ok(if summary.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}
