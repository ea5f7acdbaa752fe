//! `dth task …`: create, list, show, start, stop, delete, edit and clone tasks; their runs, items
//! and events; retry dead items; plan a spec; download a run's report; watch a run live.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Subcommand, ValueEnum};
use dth_model::{Plan, RunCounters};
use dth_web::views::ProgressView;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::output::{self, ago, bytes, when};
use super::{Ctx, array, confirm, s, seg, sse};

pub(crate) const TASK_EXAMPLES: &str = "\
Examples:
  dth task create task.json            # the spec as for POST /api/v1/tasks (docs/hub.md); - reads stdin
  dth task plan task.json              # what a run would copy, and what it would cost, without a task
  dth task list
  dth task show photos                 # a task by id, id prefix or name, with its latest run
  dth task watch photos                # live progress of the current run; exit 0 when it ends DONE
  dth task stop photos && dth task start photos
  dth task runs photos                 # its runs; then the dead items of one and retry them
  dth task items 12 --state dead
  dth task retry 12                    # every dead item of run 12 (or --item ID …)
  dth task report 12 --format csv -o run-12.csv
  dth task edit photos patch.json      # change name, description, schedule, alarms or options
  dth task clone photos --name 'photos (copy)'
  dth task delete photos --yes
  dth task list --json | jq -r '.[] | select(.status == \"ERROR\") | .id'";

/// `dth task` subcommands.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Create a task from a JSON spec; its first run starts at once.
    Create {
        /// The spec (JSON, as POST /api/v1/tasks takes); - for stdin.
        file: PathBuf,
    },
    /// List the tasks, newest first.
    List,
    /// Show a task with its latest run and counters.
    Show {
        /// Task id, a unique prefix of it, or the task's name.
        task: String,
    },
    /// Start a stopped, done or failed task, or run an active one again now.
    Start {
        /// Task id, prefix or name.
        task: String,
    },
    /// Stop a task: no new runs, work in flight cancelled.
    Stop {
        /// Task id, prefix or name.
        task: String,
    },
    /// Stop and delete a task with its runs, items and events.
    Delete {
        /// Task id, prefix or name.
        task: String,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
    },
    /// Change a task: name, description, schedule, alarms or options (a partial spec).
    Edit {
        /// Task id, prefix or name.
        task: String,
        /// The changes (JSON); - for stdin.
        file: PathBuf,
    },
    /// Create a copy of a task.
    Clone {
        /// Task id, prefix or name.
        task: String,
        /// Name of the copy [default: the hub's].
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// List a task's runs, newest first.
    Runs {
        /// Task id, prefix or name.
        task: String,
        /// At most this many.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: u32,
    },
    /// List a run's items, by id.
    Items {
        /// Run id.
        run: i64,
        /// Only items in this state: queued, leased, waiting, done, skipped, dead, cancelled.
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        /// Only items with an id above this one (the next page).
        #[arg(long, value_name = "ID")]
        after: Option<i64>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: u32,
    },
    /// List a task's events: runs, stops, dead items, alarms.
    Events {
        /// Task id, prefix or name.
        task: String,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
    },
    /// Queue a run's dead items again (all, or the ones given).
    Retry {
        /// Run id.
        run: i64,
        /// Only this dead item (repeat for more).
        #[arg(long = "item", value_name = "ID")]
        items: Vec<i64>,
    },
    /// What a run of a spec would do and cost, without creating a task.
    Plan {
        /// The spec (JSON, as for create); - for stdin.
        file: PathBuf,
    },
    /// Download a run's report: one line per item.
    Report {
        /// Run id.
        run: i64,
        /// Its format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
        format: ReportFormat,
        /// Write it to this file [default: stdout].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Show the progress of a task's current run live, until it ends.
    Watch {
        /// Task id, prefix or name.
        task: String,
    },
}

/// Formats of a run report.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// Runs a task command.
pub async fn run(ctx: &Ctx, cmd: TaskCommand) -> anyhow::Result<ExitCode> {
    use TaskCommand as C;
    match cmd {
        C::Create { file } => {
            let spec = read_json(&file)?;
            let v = ctx
                .hub
                .call(Method::POST, "/api/v1/tasks", Some(&spec))
                .await?;
            if !ctx.printed_json(&v) {
                println!(
                    "created task {} ({}), {}; follow it with: dth task watch {}",
                    s(&v, "id"),
                    s(&v, "name"),
                    s(&v, "status"),
                    s(&v, "id")
                );
            }
        }
        C::List => {
            let v = ctx.hub.get("/api/v1/tasks").await?;
            if !ctx.printed_json(&v) {
                list(&v);
            }
        }
        C::Show { task } => {
            let id = resolve(ctx, &task).await?;
            let v = ctx.hub.get(&format!("/api/v1/tasks/{}", seg(&id))).await?;
            if !ctx.printed_json(&v) {
                show(ctx, &v)?;
            }
        }
        C::Start { task } => start_stop(ctx, &task, "start").await?,
        C::Stop { task } => start_stop(ctx, &task, "stop").await?,
        C::Delete { task, yes } => {
            let id = resolve(ctx, &task).await?;
            if !yes && std::io::stdin().is_terminal() {
                let t = ctx.hub.get(&format!("/api/v1/tasks/{}", seg(&id))).await?;
                let q = format!(
                    "Delete task {} ({}) with its runs, items and events?",
                    id,
                    s(&t, "name")
                );
                if !confirm(&q)? {
                    eprintln!("dth: nothing deleted");
                    return Ok(ExitCode::FAILURE);
                }
            }
            ctx.hub
                .call(Method::DELETE, &format!("/api/v1/tasks/{}", seg(&id)), None)
                .await?;
            if !ctx.json {
                println!("deleted task {id}");
            }
        }
        C::Edit { task, file } => {
            let id = resolve(ctx, &task).await?;
            let patch = read_json(&file)?;
            let v = ctx
                .hub
                .call(
                    Method::PATCH,
                    &format!("/api/v1/tasks/{}", seg(&id)),
                    Some(&patch),
                )
                .await?;
            if !ctx.printed_json(&v) {
                println!("changed task {id} ({})", s(&v, "name"));
            }
        }
        C::Clone { task, name } => {
            let id = resolve(ctx, &task).await?;
            let body = match name {
                Some(n) => json!({"name": n}),
                None => json!({}),
            };
            let v = ctx
                .hub
                .call(
                    Method::POST,
                    &format!("/api/v1/tasks/{}/clone", seg(&id)),
                    Some(&body),
                )
                .await?;
            if !ctx.printed_json(&v) {
                println!(
                    "created task {} ({}) as a copy of {id}",
                    s(&v, "id"),
                    s(&v, "name")
                );
            }
        }
        C::Runs { task, limit } => {
            let id = resolve(ctx, &task).await?;
            let v = ctx
                .hub
                .get(&format!("/api/v1/tasks/{}/runs?limit={limit}", seg(&id)))
                .await?;
            if !ctx.printed_json(&v) {
                runs(&v);
            }
        }
        C::Items {
            run,
            state,
            after,
            limit,
        } => {
            let mut path = format!("/api/v1/runs/{run}/items?limit={limit}");
            if let Some(st) = state {
                path.push_str(&format!("&state={}", seg(&st)));
            }
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            let v = ctx.hub.get(&path).await?;
            if !ctx.printed_json(&v) {
                items(&v);
            }
        }
        C::Events { task, limit } => {
            let id = resolve(ctx, &task).await?;
            let v = ctx
                .hub
                .get(&format!("/api/v1/tasks/{}/events?limit={limit}", seg(&id)))
                .await?;
            if !ctx.printed_json(&v) {
                let rows = array(&v)
                    .iter()
                    .map(|e| {
                        vec![
                            ago(e.get("at").and_then(Value::as_i64)),
                            s(e, "kind"),
                            s(e, "actor"),
                            s(e, "message"),
                        ]
                    })
                    .collect();
                output::table(&["at", "kind", "actor", "message"], rows);
            }
        }
        C::Retry { run, items } => {
            let body = if items.is_empty() {
                json!({})
            } else {
                json!({ "ids": items })
            };
            let v = ctx
                .hub
                .call(
                    Method::POST,
                    &format!("/api/v1/runs/{run}/retry"),
                    Some(&body),
                )
                .await?;
            if !ctx.printed_json(&v) {
                let n = v.get("queued").and_then(Value::as_u64).unwrap_or(0);
                println!("queued {n} dead item(s) of run {run} again");
            }
        }
        C::Plan { file } => {
            let spec = read_json(&file)?;
            let v = ctx
                .hub
                .call(Method::POST, "/api/v1/plan", Some(&spec))
                .await?;
            if !ctx.printed_json(&v) {
                let plan: Plan = ctx.hub.parse("plan", &v)?;
                let lines = plan_lines(&plan);
                let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
                for (k, val) in lines {
                    println!("{k:<width$}{val}");
                }
            }
        }
        C::Report {
            run,
            format,
            output,
        } => report(ctx, run, format, output).await?,
        C::Watch { task } => {
            let id = resolve(ctx, &task).await?;
            return watch(ctx, &id).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `POST /api/v1/tasks/{id}/start` or `/stop`.
async fn start_stop(ctx: &Ctx, task: &str, action: &str) -> anyhow::Result<()> {
    let id = resolve(ctx, task).await?;
    let v = ctx
        .hub
        .call(
            Method::POST,
            &format!("/api/v1/tasks/{}/{action}", seg(&id)),
            None,
        )
        .await?;
    if !ctx.printed_json(&v) {
        let done = if action == "start" {
            "started"
        } else {
            "stopped"
        };
        println!("{done} task {id} ({}): {}", s(&v, "name"), s(&v, "status"));
    }
    Ok(())
}

/// Reads a JSON document from a file, or stdin for `-`.
fn read_json(file: &PathBuf) -> anyhow::Result<Value> {
    let (what, text) = if file.as_os_str() == "-" {
        let mut t = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
            .context("cannot read stdin")?;
        ("stdin".to_string(), t)
    } else {
        let t = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        (file.display().to_string(), t)
    };
    serde_json::from_str(&text).map_err(|e| anyhow!("{what} is not valid JSON: {e}"))
}

/// Whether a string is a whole task id (a UUID).
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A task id from an id, a unique id prefix or an exact name.
async fn resolve(ctx: &Ctx, given: &str) -> anyhow::Result<String> {
    if is_uuid(given) {
        return Ok(given.to_string());
    }
    let list = ctx.hub.get("/api/v1/tasks").await?;
    let tasks = array(&list);
    let by_name: Vec<&Value> = tasks.iter().filter(|t| s(t, "name") == given).collect();
    let found: Vec<&Value> = if by_name.is_empty() {
        tasks
            .iter()
            .filter(|t| s(t, "id").starts_with(given))
            .collect()
    } else {
        by_name
    };
    match found.as_slice() {
        [one] => Ok(s(one, "id")),
        [] => bail!("no task has the id or name {given:?} (see dth task list)"),
        many => bail!(
            "{given:?} matches {} tasks: {}; give more of the id",
            many.len(),
            many.iter()
                .map(|t| format!("{} ({})", s(t, "id"), s(t, "name")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn status_of(t: &Value) -> String {
    let status = s(t, "status");
    match t.get("error_code").and_then(Value::as_str) {
        Some(code) => format!("{status} ({code})"),
        None => status,
    }
}

fn list(v: &Value) {
    let rows = array(v)
        .iter()
        .map(|t| {
            vec![
                s(t, "id"),
                s(t, "name"),
                s(t, "kind"),
                status_of(t),
                ago(t.get("next_run_at").and_then(Value::as_i64)),
                ago(t.get("updated_at").and_then(Value::as_i64)),
            ]
        })
        .collect::<Vec<_>>();
    if rows.is_empty() {
        eprintln!("dth: no tasks yet (dth task create FILE)");
    }
    output::table(
        &["id", "name", "kind", "status", "next run", "updated"],
        rows,
    );
}

/// How a schedule reads.
fn schedule(spec: &Value) -> String {
    match spec.get("schedule") {
        None | Some(Value::Null) => "hourly (0 * * * *, the default)".into(),
        Some(Value::String(s)) if s == "once" => "once".into(),
        Some(v) => {
            if let Some(c) = v.get("cron").and_then(Value::as_str) {
                format!("cron {c} (UTC)")
            } else if let Some(n) = v.get("every-seconds").and_then(Value::as_u64) {
                format!("every {}", output::duration(n))
            } else {
                v.to_string()
            }
        }
    }
}

/// How a source or destination reads: `s3://bucket/prefix (provider, region, endpoint) with secret
/// NAME` or an image location.
fn side(v: Option<&Value>) -> String {
    let Some(v) = v else { return String::new() };
    let creds = match v.get("credentials") {
        Some(c) => match (c.get("kind").and_then(Value::as_str), c.get("name")) {
            (Some("secret"), Some(n)) => format!(", secret {}", n.as_str().unwrap_or_default()),
            (Some(kind), _) => format!(", {kind} credentials"),
            _ => String::new(),
        },
        None => String::new(),
    };
    if let Some(loc) = v.get("location").and_then(Value::as_str) {
        return format!("{loc}{creds}");
    }
    let mut where_ = vec![s(v, "provider"), s(v, "region"), s(v, "endpoint_url")];
    where_.retain(|w| !w.is_empty());
    format!(
        "s3://{}/{} ({}{creds})",
        s(v, "bucket"),
        s(v, "prefix"),
        where_.join(", ")
    )
}

fn show(ctx: &Ctx, t: &Value) -> anyhow::Result<()> {
    let spec = t.get("spec").cloned().unwrap_or(Value::Null);
    let error = match (t.get("error").and_then(Value::as_str), t.get("error_code")) {
        (Some(e), Some(Value::String(c))) => format!("{c}: {e}"),
        (Some(e), _) => e.to_string(),
        _ => String::new(),
    };
    output::fields(&[
        ("id", s(t, "id")),
        ("name", s(t, "name")),
        ("kind", s(t, "kind")),
        ("status", s(t, "status")),
        ("error", error),
        ("schedule", schedule(&spec)),
        ("source", side(spec.get("source"))),
        ("destination", side(spec.get("destination"))),
        (
            "next run",
            when(t.get("next_run_at").and_then(Value::as_i64)),
        ),
        ("created", when(t.get("created_at").and_then(Value::as_i64))),
        ("updated", when(t.get("updated_at").and_then(Value::as_i64))),
    ]);
    let Some(run) = t.get("latest_run").filter(|r| !r.is_null()) else {
        println!("\nno run yet");
        return Ok(());
    };
    let c: RunCounters = ctx
        .hub
        .parse("counters", run.get("counters").unwrap_or(&Value::Null))?;
    println!("\nlatest run");
    output::fields(&[
        ("run", s(run, "id")),
        ("status", s(run, "status")),
        ("trigger", s(run, "trigger")),
        ("started by", s(run, "started_by")),
        ("error", s(run, "error")),
        (
            "started",
            when(run.get("started_at").and_then(Value::as_i64)),
        ),
        ("found", when(run.get("found_at").and_then(Value::as_i64))),
        ("ended", when(run.get("ended_at").and_then(Value::as_i64))),
    ]);
    println!();
    output::table(
        &[
            "found",
            "copied",
            "skipped",
            "deleted",
            "pending",
            "dead",
            "cancelled",
        ],
        vec![vec![
            format!("{} ({})", c.found, bytes(c.found_bytes)),
            format!("{} ({})", c.copied, bytes(c.copied_bytes)),
            c.skipped.to_string(),
            c.deleted.to_string(),
            if c.retrying > 0 {
                format!("{} ({} retrying)", c.pending, c.retrying)
            } else {
                c.pending.to_string()
            },
            c.dead.to_string(),
            c.cancelled.to_string(),
        ]],
    );
    if c.dead > 0 {
        println!(
            "\n{} dead item(s): dth task items {} --state dead; dth task retry {}",
            c.dead,
            s(run, "id"),
            s(run, "id")
        );
    }
    Ok(())
}

fn runs(v: &Value) {
    let rows = array(v)
        .iter()
        .map(|r| {
            vec![
                s(r, "id"),
                s(r, "status"),
                s(r, "trigger"),
                s(r, "started_by"),
                ago(r.get("started_at").and_then(Value::as_i64)),
                ago(r.get("ended_at").and_then(Value::as_i64)),
                s(r, "error"),
            ]
        })
        .collect();
    output::table(
        &[
            "run", "status", "trigger", "by", "started", "ended", "error",
        ],
        rows,
    );
}

fn items(v: &Value) {
    let list = v.get("items").map(array).unwrap_or_default();
    let rows = list
        .iter()
        .map(|i| {
            vec![
                s(i, "id"),
                s(i, "kind"),
                s(i, "state"),
                s(i, "key"),
                bytes(i.get("size").and_then(Value::as_u64).unwrap_or(0)),
                s(i, "attempts"),
                s(i, "last_error"),
            ]
        })
        .collect();
    output::table(
        &[
            "id",
            "kind",
            "state",
            "key",
            "size",
            "attempts",
            "last error",
        ],
        rows,
    );
    if let Some(next) = v.get("next_after").and_then(Value::as_i64) {
        eprintln!("dth: more items: add --after {next}");
    }
}

/// The summary of a plan, one (label, value) per line.
fn plan_lines(plan: &Plan) -> Vec<(String, String)> {
    let mut out = vec![("kind".to_string(), plan.kind.clone())];
    if let Some(o) = &plan.objects {
        out.push((
            "to copy".into(),
            format!("{} objects, {}", o.copy, bytes(o.copy_bytes)),
        ));
        out.push((
            "up to date".into(),
            format!("{} objects, {}", o.skip, bytes(o.skip_bytes)),
        ));
        if o.delete > 0 {
            out.push((
                "to delete".into(),
                format!("{} objects, {}", o.delete, bytes(o.delete_bytes)),
            ));
        }
        if o.multipart > 0 {
            out.push(("multipart".into(), format!("{} objects", o.multipart)));
        }
        if o.archived > 0 {
            out.push((
                "archived".into(),
                format!(
                    "{} objects, {} (restore them before a run can read them)",
                    o.archived,
                    bytes(o.archived_bytes)
                ),
            ));
        }
        for e in &o.errors {
            out.push(("listing error".into(), e.clone()));
        }
    }
    if let Some(i) = &plan.images {
        out.push((
            "to copy".into(),
            format!("{} images, {} blobs, {}", i.copy, i.blobs, bytes(i.bytes)),
        ));
        out.push(("up to date".into(), format!("{} images", i.up_to_date)));
        if i.unchecked > 0 {
            out.push(("not checked".into(), format!("{} images", i.unchecked)));
        }
        for e in &i.errors {
            out.push(("check error".into(), e.clone()));
        }
    }
    let r = &plan.requests;
    out.push((
        "requests".into(),
        format!(
            "source {} LIST, {} GET; destination {} LIST, {} PUT, {} DELETE",
            r.source_list,
            r.source_get,
            r.destination_list,
            r.destination_put,
            r.destination_delete
        ),
    ));
    out.push(("egress".into(), bytes(plan.egress_bytes)));
    for l in &plan.cost.lines {
        let quantity = if l.what == "egress" {
            bytes(l.quantity)
        } else {
            format!("{} requests", l.quantity)
        };
        out.push((
            format!("cost {} {}", l.side, l.what),
            format!(
                "{} {:.4} ({quantity} at {} {} per {}, prices {})",
                l.currency,
                l.amount,
                l.currency,
                l.unit_price,
                if l.what == "egress" { "GB" } else { "1,000" },
                l.price
            ),
        ));
    }
    let totals: Vec<String> = plan
        .cost
        .totals
        .iter()
        .map(|(cur, v)| match *v {
            v if v >= 1.0 || v == 0.0 => format!("{cur} {v:.2}"),
            v => format!("{cur} {v:.4}"),
        })
        .collect();
    out.push((
        "cost".into(),
        if totals.is_empty() {
            "nothing priced".into()
        } else {
            format!("≈ {}", totals.join(" + "))
        },
    ));
    out
}

/// Streams a run's report to a file or stdout, chunk by chunk. A file is written beside its name
/// and renamed when complete, so a broken download leaves no half report under that name.
async fn report(
    ctx: &Ctx,
    run: i64,
    format: ReportFormat,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let format = match format {
        ReportFormat::Csv => "csv",
        ReportFormat::Jsonl => "jsonl",
    };
    let accept = match format {
        "csv" => "text/csv",
        _ => "application/x-ndjson",
    };
    let resp = ctx
        .hub
        .stream(
            &format!("/api/v1/runs/{run}/report?format={format}"),
            accept,
        )
        .await?;
    let mut body = resp.bytes_stream();
    match output {
        None => {
            let mut out = tokio::io::stdout();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| ctx.hub.broken_stream(&e))?;
                match out.write_all(&chunk).await {
                    // The reader went away (`dth task report 7 | head`): nothing more is wanted.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    r => r?,
                }
            }
            match out.flush().await {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                r => r?,
            }
        }
        Some(path) => {
            let mut part = path.clone().into_os_string();
            part.push(".part");
            let part = PathBuf::from(part);
            let mut file = tokio::fs::File::create(&part)
                .await
                .with_context(|| format!("cannot create {}", part.display()))?;
            let mut written = 0u64;
            let result: anyhow::Result<()> = async {
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| ctx.hub.broken_stream(&e))?;
                    file.write_all(&chunk).await?;
                    written += chunk.len() as u64;
                }
                file.flush().await?;
                file.sync_all().await?;
                Ok(())
            }
            .await;
            if let Err(e) = result {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(e.context(format!("report of run {run} not written")));
            }
            tokio::fs::rename(&part, &path)
                .await
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "dth: report of run {run} written to {} ({})",
                path.display(),
                bytes(written)
            );
        }
    }
    Ok(())
}

/// One line of a progress event: `run 12 TRANSFERRING: 120/300 objects, 1.2 GiB/3.4 GiB,
/// 12.3 MiB/s, ETA 1m 30s`.
fn progress_line(p: &ProgressView) -> String {
    let c = &p.run.counters;
    let mut parts = vec![format!(
        "{}/{} objects, {}/{}",
        c.copied + c.skipped,
        c.found,
        bytes(done_bytes(c)),
        bytes(c.found_bytes)
    )];
    if p.rate_bytes_per_s > 0.0 {
        parts.push(format!("{}/s", bytes(p.rate_bytes_per_s as u64)));
    }
    if let Some(eta) = p.eta_seconds {
        parts.push(format!("ETA {}", output::duration(eta)));
    }
    if c.deleted > 0 {
        parts.push(format!("deleted {}", c.deleted));
    }
    if c.retrying > 0 {
        parts.push(format!("retrying {}", c.retrying));
    }
    if c.dead > 0 {
        parts.push(format!("dead {}", c.dead));
    }
    format!(
        "run {} {}: {}",
        p.run.run.id,
        p.run.run.status.name(),
        parts.join(", ")
    )
}

fn done_bytes(c: &RunCounters) -> u64 {
    (c.copied_bytes + c.bytes_in_flight).min(c.found_bytes.max(c.copied_bytes))
}

/// Follows a task's progress events until the `end` event; exit status 0 when the run ended
/// `DONE`.
async fn watch(ctx: &Ctx, id: &str) -> anyhow::Result<ExitCode> {
    let resp = ctx
        .hub
        .stream(
            &format!("/api/v1/tasks/{}/progress", seg(id)),
            "text/event-stream",
        )
        .await?;
    let terminal = std::io::stderr().is_terminal() && !ctx.json;
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {wide_bar} {msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut parser = sse::Parser::default();
    let mut body = resp.bytes_stream();
    let mut last: Option<ProgressView> = None;
    let mut last_line = (String::new(), Instant::now());
    let mut end: Option<Value> = None;
    'stream: while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ctx.hub.broken_stream(&e))?;
        for event in parser.push(&chunk).map_err(|e| anyhow!(e))? {
            match event.name.as_str() {
                "progress" => {
                    if ctx.json {
                        println!("{}", event.data);
                    }
                    let p: ProgressView = serde_json::from_str(&event.data).map_err(|e| {
                        anyhow!("the hub sent a progress event this dth cannot read: {e}")
                    })?;
                    let line = progress_line(&p);
                    if let Some(bar) = &bar {
                        bar.set_length(p.run.counters.found_bytes.max(1));
                        bar.set_position(done_bytes(&p.run.counters));
                        bar.set_message(line);
                    } else if !ctx.json
                        && (line != last_line.0 || last_line.1.elapsed() >= Duration::from_secs(30))
                    {
                        println!("{line}");
                        last_line = (line, Instant::now());
                    }
                    last = Some(p);
                }
                "end" => {
                    if ctx.json {
                        println!("{}", event.data);
                    }
                    end = Some(serde_json::from_str(&event.data).unwrap_or(Value::Null));
                    break 'stream;
                }
                _ => {}
            }
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let Some(end) = end else {
        bail!("the hub's progress stream ended before the run did; run dth task watch {id} again");
    };
    // The final status: the end event's, else the last progress event's, else the task's.
    let mut status = end
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| last.as_ref().map(|p| p.run.run.status.name().to_string()))
        .unwrap_or_default();
    if !matches!(status.as_str(), "DONE" | "FAILED" | "STOPPED") {
        let t = ctx.hub.get(&format!("/api/v1/tasks/{}", seg(id))).await?;
        if let Some(st) = t.pointer("/latest_run/status").and_then(Value::as_str) {
            status = st.to_string();
        }
    }
    if !ctx.json {
        let summary = last.as_ref().map(progress_line).unwrap_or_default();
        let run = last
            .as_ref()
            .map(|p| format!("run {} ", p.run.run.id))
            .unwrap_or_default();
        println!(
            "{run}ended {status}{}",
            summary
                .split_once(':')
                .map(|(_, r)| format!(":{r}"))
                .unwrap_or_default()
        );
    }
    Ok(if status == "DONE" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dth_model::{ObjectPlan, PriceTable, PricedSide, Requests};

    #[test]
    fn ids_and_plans() {
        assert!(is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(!is_uuid("0f8fad5b"));
        let plan = Plan {
            kind: "s3".into(),
            objects: Some(ObjectPlan {
                copy: 3,
                copy_bytes: 3072,
                skip: 1,
                skip_bytes: 10,
                archived: 2,
                archived_bytes: 2048,
                ..ObjectPlan::default()
            }),
            images: None,
            requests: Requests {
                source_get: 3,
                destination_put: 3,
                ..Requests::default()
            },
            egress_bytes: 3072,
            cost: PriceTable::defaults().estimate(
                &PricedSide {
                    provider: "aws".into(),
                    region: "us-east-1".into(),
                },
                &PricedSide {
                    provider: "aliyun-oss".into(),
                    region: "cn-hangzhou".into(),
                },
                &Requests {
                    source_get: 3,
                    destination_put: 3,
                    ..Requests::default()
                },
                3072,
            ),
        };
        let text = plan_lines(&plan)
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("to copy: 3 objects, 3.0 KiB"), "{text}");
        assert!(text.contains("archived: 2 objects"), "{text}");
        assert!(text.contains("cost: ≈ CNY 0.0000 + USD 0.0000"), "{text}");
        assert!(text.contains("prices aliyun-oss/*"), "{text}");
        let p: ProgressView = serde_json::from_value(json!({
            "id": 7, "task_id": "t", "trigger": "user", "status": "TRANSFERRING", "max_attempts": 5,
            "error": null, "started_at": 0, "found_at": 1, "ended_at": null, "started_by": null,
            "rate_bytes_per_s": 2048.0, "items_per_s": 1.0, "eta_seconds": 90, "bytes_done": 5120,
            "counters": {"found": 10, "found_bytes": 10240, "copied": 4, "copied_bytes": 4096,
                         "skipped": 1, "deleted": 0, "pending": 4, "retrying": 0, "dead": 1,
                         "cancelled": 0, "bytes_in_flight": 1024}
        }))
        .unwrap();
        assert_eq!(
            progress_line(&p),
            "run 7 TRANSFERRING: 5/10 objects, 5.0 KiB/10.0 KiB, 2.0 KiB/s, ETA 1m 30s, dead 1"
        );
    }
}
