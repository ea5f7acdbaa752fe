//! `dth s3 sync --state FILE`: the one-shot sync run through the hub's runtime on a SQLite file, so an
//! interrupted sync (Ctrl-C, a crash, a lost machine) goes on where it stopped when run again with the
//! same endpoints and the same file. The file holds one task per source/destination/options; access
//! keys given on the command line are kept in it sealed (master key `master.key` beside the file, or
//! `DTH_MASTER_KEY`) and replaced by the ones given on each run. A sync that resumes after one on the
//! same machine died (SIGKILL, a crash) takes that one's items at once instead of waiting for their
//! leases to expire; each one's next attempt aborts the multipart upload the dead sync left open.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dth_model::Actor;
use dth_model::{
    Credentials, DEFAULT_GIANT_THRESHOLD, EndpointSpec, Job, S3Job, Schedule, SyncOptions,
    TaskSpec, TaskStatus,
};
use dth_runtime::{Config, Hub};
use dth_store::{MasterKey, Store};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// What `--json` prints for a sync with a state file.
#[derive(Debug, Serialize)]
struct StateSummary {
    copied: u64,
    skipped: u64,
    deleted: u64,
    failed: u64,
    bytes: u64,
    verified: u64,
    seconds: f64,
    run_id: i64,
    resumed: bool,
    errors: Vec<String>,
}

/// Runs (or resumes) the sync recorded in `path`.
pub async fn run(
    path: &Path,
    src: EndpointSpec,
    dst: EndpointSpec,
    opts: SyncOptions,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("--state: cannot create {}", dir.display()))?;
    let key = MasterKey::from_env_or_file(&dir)?;
    let store = dth_store::open(&format!("sqlite://{}", path.display()), key)
        .await
        .with_context(|| format!("--state {}", path.display()))?;
    let spec = TaskSpec {
        name: "dth s3 sync".into(),
        description: None,
        job: Job::S3(S3Job {
            source: src,
            destination: dst,
            options: opts.clone(),
            giant_threshold: DEFAULT_GIANT_THRESHOLD.max(opts.part_size),
        }),
        schedule: Some(Schedule::Once),
        alarms: Vec::new(),
        max_attempts: None,
    };
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let config = Config {
        worker_id: format!("cli:{host}:{}", std::process::id()),
        concurrency: opts.transfers.max(1),
        lease: Duration::from_secs(30),
        poll: Duration::from_millis(100),
        retry_base: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(5),
        ..Config::default()
    };
    let hub = Hub::new(Arc::clone(&store), config);
    let (task_id, resumed) = find_or_create(&hub, store.as_ref(), spec).await?;
    if resumed {
        take_over_dead_syncs(store.as_ref(), &task_id, &host).await?;
    }
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "interrupted: giving back work in flight; run the same command again to resume"
                );
                shutdown.cancel();
            }
        }
    });
    let mut jobs = tokio::task::JoinSet::new();
    jobs.spawn(Arc::clone(&hub).run_scheduler(shutdown.clone()));
    jobs.spawn(Arc::clone(&hub).run_workers(shutdown.clone()));
    let status = loop {
        let t = store
            .get_task(&task_id)
            .await?
            .context("the task vanished from the state file")?;
        if matches!(
            t.status,
            TaskStatus::Done | TaskStatus::Error | TaskStatus::Stopped
        ) && store
            .list_runs(&task_id, 1)
            .await?
            .first()
            .is_some_and(|r| !r.status.is_active())
        {
            break t.status;
        }
        if shutdown.is_cancelled() {
            break t.status;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.cancelled() => {}
        }
    };
    shutdown.cancel();
    while jobs.join_next().await.is_some() {}
    let run = store
        .list_runs(&task_id, 1)
        .await?
        .into_iter()
        .next()
        .context("no run was started")?;
    let c = store.run_counters(run.id).await?;
    let mut errors: Vec<String> = run.error.clone().into_iter().collect();
    for item in store
        .list_items(run.id, Some(dth_model::ItemState::Dead), 0, 20)
        .await?
    {
        errors.push(format!(
            "{}: {}",
            item.key,
            item.last_error.unwrap_or_default()
        ));
    }
    let summary = StateSummary {
        copied: c.copied,
        skipped: c.skipped,
        deleted: c.deleted,
        failed: c.dead,
        bytes: c.copied_bytes,
        verified: c.copied,
        seconds: started.elapsed().as_secs_f64(),
        run_id: run.id,
        resumed,
        errors,
    };
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        for e in &summary.errors {
            eprintln!("error: {e}");
        }
        eprintln!(
            "copied {} objects ({} bytes), skipped {}, deleted {}, failed {}{} in {:.1}s",
            summary.copied,
            summary.bytes,
            summary.skipped,
            summary.deleted,
            summary.failed,
            if resumed { " (resumed)" } else { "" },
            summary.seconds
        );
    }
    Ok(match status {
        TaskStatus::Done => ExitCode::SUCCESS,
        _ if shutdown.is_cancelled() && status != TaskStatus::Error => ExitCode::from(130),
        _ => ExitCode::from(1),
    })
}

/// The task of these endpoints and options in the state file (resumed, or started again when its last
/// run ended), or a new one.
async fn find_or_create(
    hub: &Hub,
    store: &dyn Store,
    spec: TaskSpec,
) -> anyhow::Result<(String, bool)> {
    let want = fingerprint(&spec);
    for task in store.list_tasks().await? {
        let Ok(old) = serde_json::from_value::<TaskSpec>(task.spec.clone()) else {
            continue;
        };
        if fingerprint(&old) != want {
            continue;
        }
        refresh_keys(store, &old, &spec).await?;
        let active = store
            .list_runs(&task.id, 1)
            .await?
            .first()
            .is_some_and(|r| r.status.is_active());
        if active {
            if task.status == TaskStatus::Stopped {
                bail!("the sync in the state file was stopped; delete the file to start over");
            }
            return Ok((task.id, true));
        }
        hub.start_task(&Actor::system(), &task.id).await?;
        return Ok((task.id, false));
    }
    let spec = serde_json::to_value(&spec)?;
    Ok((hub.create_task(&Actor::system(), &spec).await?.id, false))
}

/// Gives back the items of the task's run that a sync on this machine held when its process died, so
/// this one claims them now rather than when their leases expire.
async fn take_over_dead_syncs(store: &dyn Store, task_id: &str, host: &str) -> anyhow::Result<()> {
    let Some(run) = store.list_runs(task_id, 1).await?.into_iter().next() else {
        return Ok(());
    };
    let mut dead: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    let mut after = 0;
    loop {
        let items = store
            .list_items(run.id, Some(dth_model::ItemState::Leased), after, 1000)
            .await?;
        let Some(last) = items.last() else { break };
        after = last.id;
        for item in items {
            if let Some(owner) = item.lease_owner
                && dead_sync_here(&owner, host)
            {
                dead.entry(owner).or_default().push(item.id);
            }
        }
    }
    for (owner, ids) in dead {
        let n = store.release(&owner, &ids).await?;
        tracing::info!(worker = %owner, items = n, "took over the items of a sync that died");
    }
    Ok(())
}

/// Whether `owner` is the worker id of a sync on this host whose process is gone.
fn dead_sync_here(owner: &str, host: &str) -> bool {
    let Some(pid) = owner
        .strip_prefix("cli:")
        .and_then(|rest| rest.strip_prefix(host))
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|pid| pid.parse::<i32>().ok())
    else {
        return false;
    };
    if pid <= 0 || pid as u32 == std::process::id() {
        return false;
    }
    // Signal 0 checks for the process without touching it; ESRCH: no such process.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
    !alive
}

/// The spec without credentials and tuning (speed, memory, retries): what makes two invocations the
/// same sync. A resumed sync keeps the tuning it was started with.
fn fingerprint(spec: &TaskSpec) -> serde_json::Value {
    let mut v = serde_json::to_value(spec).unwrap_or_default();
    for side in ["source", "destination"] {
        if let Some(s) = v.get_mut(side).and_then(|s| s.as_object_mut()) {
            s.remove("credentials");
        }
    }
    if let Some(o) = v.get_mut("options").and_then(|o| o.as_object_mut()) {
        for tuning in [
            "bwlimit",
            "transfers",
            "transfers_max",
            "buffer_memory",
            "retries",
            "list_depth",
        ] {
            o.remove(tuning);
        }
    }
    v
}

/// Puts this run's access keys into the secrets the stored task refers to.
async fn refresh_keys(store: &dyn Store, old: &TaskSpec, new: &TaskSpec) -> anyhow::Result<()> {
    let (Job::S3(o), Job::S3(n)) = (&old.job, &new.job) else {
        anyhow::bail!("the state file holds a task of another kind");
    };
    for (o, n) in [(&o.source, &n.source), (&o.destination, &n.destination)] {
        if let (
            Credentials::Secret { name },
            Credentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            },
        ) = (&o.credentials, &n.credentials)
        {
            let value = serde_json::json!({
                "access_key_id": access_key_id,
                "secret_access_key": secret_access_key,
                "session_token": session_token,
            });
            store.put_secret(name, value.to_string().as_bytes()).await?;
        }
    }
    Ok(())
}
