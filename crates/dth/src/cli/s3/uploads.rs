//! `dth s3 uploads list|abort`: find the open multipart uploads an interrupted plain sync left on a
//! bucket, and abort them. The endpoint flags are the destination flags of `dth s3 sync` (`--dst-*`,
//! `DTH_DST_*`), so the command that left the uploads names where to look. The listing and the aborts
//! are `dth_s3::uploads`; this module only parses flags and prints.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use dth_s3::uploads::{Aborted, ListedUpload, UploadPages};
use dth_s3::{Endpoint, Side};
use futures::StreamExt;
use serde::Serialize;

use super::{DstArgs, endpoint_spec};
use crate::cli::client::output;

/// Attempts after the first per request, as `dth s3 sync` makes by default.
const REQUEST_RETRIES: u32 = 5;
/// Aborts in flight at once.
const ABORTS_IN_FLIGHT: usize = 16;

#[derive(Debug, Subcommand)]
pub enum UploadsCommand {
    /// List the open multipart uploads under a bucket or prefix: key, start time, age, upload id.
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Abort the open multipart uploads under a bucket or prefix, deleting their stored parts.
    #[command(after_help = ABORT_EXAMPLES)]
    Abort(AbortArgs),
}

const LIST_EXAMPLES: &str = "\
A plain `dth s3 sync` (without --state) that is killed while copying objects of --multipart-threshold
or more can leave multipart uploads open at its destination; their parts are stored, and billed, until
aborted. The endpoint flags are the sync's destination flags (--dst-*, DTH_DST_*).

Examples:
  # Everything open in a bucket on AWS, credentials from the environment
  DTH_DST_ACCESS_KEY_ID=… DTH_DST_SECRET_ACCESS_KEY=… dth s3 uploads list s3://photos-copy --dst-region us-west-2

  # Under one prefix of an Alibaba OSS bucket, as JSON lines for a script
  dth s3 uploads list s3://photos-copy/2026/ --dst-provider aliyun-oss --dst-region cn-hangzhou --json

  # A MinIO server
  dth s3 uploads list s3://backups --dst-endpoint http://10.0.0.2:9000 --dst-provider minio

Exit status: 0 when the listing finished, 2 when it could not be made (bad input, wrong bucket or
credentials, a server that does not implement ListMultipartUploads).";

const ABORT_EXAMPLES: &str = "\
Aborting deletes an upload's parts; the object it was writing never appears. Do not abort uploads a
running sync or another program is still using: --older-than leaves recent ones alone. The endpoint
flags are the sync's destination flags (--dst-*, DTH_DST_*).

Examples:
  # See what would go, then abort everything open under a prefix for more than a day
  dth s3 uploads abort s3://photos-copy/2026/ --dst-region us-west-2 --older-than 24h --dry-run
  dth s3 uploads abort s3://photos-copy/2026/ --dst-region us-west-2 --older-than 24h

  # Every open upload of a bucket on Tencent COS, a named profile's credentials
  dth s3 uploads abort s3://media-1250000000 --dst-provider tencent-cos --dst-region ap-guangzhou \\
      --dst-profile cos

Exit status: 0 when every selected upload was aborted (or was already gone), 1 when some abort
failed, 2 when the uploads could not be listed or on bad input.";

/// Where to look, and how to print.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Where: s3://BUCKET[/PREFIX] (a prefix is a folder: s3://b/photos means keys under photos/)
    url: String,
    #[command(flatten)]
    endpoint: DstArgs,
    /// Print one JSON object per upload (JSON lines) instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Abort only uploads started at least this long ago: 90s, 30m, 24h, 7d, 2w, 1d12h [default: all]
    #[arg(long, value_name = "DURATION", value_parser = Age::parse)]
    older_than: Option<Age>,
    /// Print what would be aborted and abort nothing
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(cmd: UploadsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UploadsCommand::List(a) => list(a).await,
        UploadsCommand::Abort(a) => abort(a).await,
    }
}

/// Connects to the bucket and checks it exists and the credentials may list it.
async fn connect(t: TargetArgs) -> anyhow::Result<(Endpoint, bool)> {
    let spec = endpoint_spec("destination", "dst", &t.url, t.endpoint.into())?;
    let endpoint = Endpoint::connect(Side::Destination, &spec, REQUEST_RETRIES).await?;
    endpoint.check().await?;
    Ok((endpoint, t.json))
}

async fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let (endpoint, json) = connect(a.target).await?;
    let mut pages = UploadPages::new(&endpoint);
    let mut table = Table::new(json, false);
    let now = SystemTime::now();
    let mut count = 0u64;
    while let Some(page) = pages.next_page().await? {
        count += page.len() as u64;
        let rows: Vec<Row> = page.iter().map(|u| Row::new(u, now, None, None)).collect();
        table.print(&rows)?;
    }
    if !json {
        eprintln!(
            "{count} open upload{} under {}",
            plural(count),
            endpoint.target(Some(""))
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn abort(a: AbortArgs) -> anyhow::Result<ExitCode> {
    let (older_than, dry_run) = (a.older_than, a.dry_run);
    let (endpoint, json) = connect(a.target).await?;
    let now = SystemTime::now();
    let mut pages = UploadPages::new(&endpoint);
    let mut table = Table::new(json, true);
    let mut tally = Tally::default();
    let mut errors = Vec::new();
    while let Some(page) = pages.next_page().await? {
        let min_age = older_than.as_ref().map(|a| a.duration);
        let (chosen, young): (Vec<_>, Vec<_>) = page
            .into_iter()
            .partition(|u| is_old_enough(u, now, min_age));
        tally.young += young.len() as u64;
        let results: Vec<(ListedUpload, Outcome)> = if dry_run {
            chosen
                .into_iter()
                .map(|u| (u, Outcome::WouldAbort))
                .collect()
        } else {
            futures::stream::iter(chosen)
                .map(|u| {
                    let endpoint = &endpoint;
                    async move {
                        let outcome = match dth_s3::uploads::abort(endpoint, &u).await {
                            Ok(Aborted::Now) => Outcome::Aborted,
                            Ok(Aborted::AlreadyGone) => Outcome::AlreadyGone,
                            Err(e) => Outcome::Failed(e.to_string()),
                        };
                        (u, outcome)
                    }
                })
                .buffered(ABORTS_IN_FLIGHT)
                .collect()
                .await
        };
        let rows: Vec<Row> = results
            .iter()
            .map(|(u, outcome)| {
                tally.add(outcome);
                if let Outcome::Failed(e) = outcome {
                    errors.push(e.clone());
                }
                Row::new(u, now, Some(outcome.name()), outcome.error())
            })
            .collect();
        table.print(&rows)?;
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    eprintln!("{}", tally.summary(dry_run, older_than.as_ref()));
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Whether an upload is selected by `--older-than`: every upload without it; with it, only uploads
/// whose start time is known and at least that long ago.
fn is_old_enough(u: &ListedUpload, now: SystemTime, older_than: Option<Duration>) -> bool {
    match (older_than, u.initiated) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(min), Some(t)) => now.duration_since(t).is_ok_and(|age| age >= min),
    }
}

/// What happened to one selected upload.
enum Outcome {
    WouldAbort,
    Aborted,
    AlreadyGone,
    Failed(String),
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Outcome::WouldAbort => "would-abort",
            Outcome::Aborted => "aborted",
            Outcome::AlreadyGone => "already-gone",
            Outcome::Failed(_) => "failed",
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Outcome::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// Counts for the closing line of `abort`.
#[derive(Default)]
struct Tally {
    would_abort: u64,
    aborted: u64,
    already_gone: u64,
    failed: u64,
    young: u64,
}

impl Tally {
    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::WouldAbort => self.would_abort += 1,
            Outcome::Aborted => self.aborted += 1,
            Outcome::AlreadyGone => self.already_gone += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }

    fn summary(&self, dry_run: bool, older_than: Option<&Age>) -> String {
        let mut s = if dry_run {
            format!(
                "would abort {} upload{} (dry run: nothing aborted)",
                self.would_abort,
                plural(self.would_abort)
            )
        } else {
            format!(
                "aborted {} upload{}, {} already gone, {} failed",
                self.aborted,
                plural(self.aborted),
                self.already_gone,
                self.failed
            )
        };
        if let Some(age) = older_than {
            s.push_str(&format!(
                "; left {} started less than {} ago",
                self.young, age.text
            ));
        }
        s
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// One printed upload: a table row, or a JSON line.
#[derive(Serialize)]
struct Row {
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'static str>,
    key: String,
    upload_id: String,
    /// RFC 3339, UTC.
    initiated: Option<String>,
    age_seconds: Option<u64>,
    storage_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip)]
    initiated_local: String,
}

impl Row {
    fn new(
        u: &ListedUpload,
        now: SystemTime,
        result: Option<&'static str>,
        error: Option<&str>,
    ) -> Row {
        let utc = u.initiated.map(chrono::DateTime::<chrono::Utc>::from);
        Row {
            result,
            key: u.key.clone(),
            upload_id: u.upload_id.clone(),
            initiated: utc.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            age_seconds: u
                .initiated
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| d.as_secs()),
            storage_class: u.storage_class.clone(),
            error: error.map(str::to_string),
            initiated_local: utc
                .map(|t| {
                    t.with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                })
                .unwrap_or_default(),
        }
    }
}

/// Prints rows page by page as they come, so a listing of any length needs one page of memory: JSON
/// lines, or a table whose columns are sized by the first page (the upload id, the longest value,
/// comes last).
struct Table {
    json: bool,
    with_result: bool,
    key_width: Option<usize>,
}

impl Table {
    fn new(json: bool, with_result: bool) -> Table {
        Table {
            json,
            with_result,
            key_width: None,
        }
    }

    fn print(&mut self, rows: &[Row]) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            for r in rows {
                serde_json::to_writer(&mut out, r)?;
                out.write_all(b"\n")?;
            }
            return Ok(out.flush()?);
        }
        if rows.is_empty() {
            return Ok(());
        }
        let key_width = match self.key_width {
            Some(w) => w,
            None => {
                let w = rows.iter().map(|r| r.key.chars().count()).max();
                let w = w.unwrap_or(0).max("KEY".len());
                self.key_width = Some(w);
                let mut line = String::new();
                if self.with_result {
                    line.push_str(&format!("{:<12}  ", "RESULT"));
                }
                line.push_str(&format!(
                    "{:<w$}  {:<19}  {:<9}  {:<13}  UPLOAD ID",
                    "KEY", "INITIATED", "AGE", "STORAGE CLASS"
                ));
                writeln!(out, "{line}")?;
                w
            }
        };
        for r in rows {
            let mut line = String::new();
            if self.with_result {
                line.push_str(&format!("{:<12}  ", r.result.unwrap_or("")));
            }
            let age = r.age_seconds.map(output::duration).unwrap_or_default();
            line.push_str(&format!(
                "{:<key_width$}  {:<19}  {:<9}  {:<13}  {}",
                r.key,
                r.initiated_local,
                age,
                r.storage_class.as_deref().unwrap_or(""),
                r.upload_id
            ));
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(out.flush()?)
    }
}

/// The value of `--older-than`: whole numbers with a unit each, s, m, h, d or w (`24h`, `7d`,
/// `1d12h`), kept as written for the closing line.
#[derive(Debug, Clone)]
struct Age {
    text: String,
    duration: Duration,
}

impl Age {
    fn parse(s: &str) -> Result<Age, String> {
        let bad = || format!("{s:?} is not a duration such as 90s, 30m, 24h, 7d, 2w or 1d12h");
        let text = s.trim();
        let mut secs: u64 = 0;
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit: u64 = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 7 * 86_400,
                _ => return Err(bad()),
            };
            let n: u64 = digits.parse().map_err(|_| bad())?;
            secs = n
                .checked_mul(unit)
                .and_then(|v| secs.checked_add(v))
                .ok_or_else(bad)?;
            digits.clear();
        }
        if !digits.is_empty() || text.is_empty() {
            return Err(bad());
        }
        Ok(Age {
            text: text.to_string(),
            duration: Duration::from_secs(secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_with_units() {
        let secs = |s: &str| Age::parse(s).map(|a| a.duration.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("30m"), Ok(1800));
        assert_eq!(secs("24h"), Ok(86_400));
        assert_eq!(secs("7d"), Ok(7 * 86_400));
        assert_eq!(secs("2w"), Ok(14 * 86_400));
        assert_eq!(secs("1d12h"), Ok(36 * 3600));
        assert_eq!(Age::parse(" 7d ").unwrap().text, "7d");
        for bad in ["", "7", "d", "7x", "1.5h", "-1h", "99999999999999999999w"] {
            assert!(Age::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn older_than_selects_only_known_old_uploads() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let started = |ago: Option<u64>| ListedUpload {
            key: "k".into(),
            upload_id: "u".into(),
            initiated: ago.map(|s| now - Duration::from_secs(s)),
            storage_class: None,
        };
        let day = Some(Duration::from_secs(86_400));
        assert!(is_old_enough(&started(Some(86_400)), now, day));
        assert!(is_old_enough(&started(Some(90_000)), now, day));
        assert!(!is_old_enough(&started(Some(86_399)), now, day));
        assert!(!is_old_enough(&started(None), now, day));
        assert!(is_old_enough(&started(None), now, None));
        assert!(is_old_enough(&started(Some(0)), now, None));
    }
}
