//! The hub's Prometheus metrics: every metric name is defined here, once, with what it counts and
//! its labels (the list in `docs/hub.md` follows this module).
//!
//! - **Recorded as things happen** through the `metrics` facade: items acked, objects and bytes
//!   copied, retries and dead items (the workers), run durations (where runs end), store call
//!   latencies ([`timed`], around the store calls the runtime makes), and HTTP requests (`dth-web`).
//!   They go to one Prometheus recorder per process, installed by [`install`] (idempotent); a
//!   process that never installs it records nothing, at the cost of a no-op call.
//! - **Read from the store at scrape time**: items of active runs by task and state, and the queue
//!   depth ([`Hub::metrics_text`], one [`dth_store::QueueStore::item_counts`] call). They are
//!   rendered straight from that answer, never kept in the recorder, so a task whose run ended has
//!   no stale series left behind.
//!
//! Labels are bounded: task ids (one per task), item kinds and states, run statuses, error classes
//! ([`cause_of_s3`], [`cause_of_image`]: a fixed set), store call names, HTTP route templates and
//! statuses. Object keys, image names, error messages and raw paths are never labels.
//!
//! Counters are per process (they restart at zero with it, which Prometheus' `rate()` handles);
//! with several worker processes, sum them across the processes' scrapes. The store gauges are the
//! same from every hub (one store), so take them from one.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dth_model::{ItemKind, ItemState, RunStatus};
use dth_store::Item;
use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::hub::Hub;

/// Objects and images copied and verified (items of kind `object` or `image` acked done).
/// Labels: `task`, `kind` (`object`, `image`). Per task, the sum over a run equals the run's
/// `copied` counter.
pub const COPIED_OBJECTS: &str = "dth_copied_objects_total";
/// Bytes of the objects and images in [`COPIED_OBJECTS`] (their sizes at the source). Labels:
/// `task`, `kind`. Per task, the sum over a run equals the run's `copied_bytes` counter.
pub const COPIED_BYTES: &str = "dth_copied_bytes_total";
/// Acks sent by workers. Labels: `task`, `kind` (`object`, `part`, `delete`, `image`), `outcome`
/// (`done`, `skipped`, or `refused` when the worker had lost its lease and the store kept nothing).
pub const ITEMS_ACKED: &str = "dth_items_acked_total";
/// Failed attempts queued again for later. Labels: `task`, `cause` (an error class, see
/// [`CAUSES`]).
pub const ITEM_RETRIES: &str = "dth_item_retries_total";
/// Items dead-lettered (attempts used up, or a permanent error). Labels: `task`, `kind`, `cause`.
pub const ITEMS_DEAD: &str = "dth_items_dead_total";
/// How long runs took, from start to end, observed when a run ends. Labels: `task`, `status`
/// (`DONE`, `FAILED`, `STOPPED`).
pub const RUN_DURATION: &str = "dth_run_duration_seconds";
/// Gauge, read from the store at scrape time: items of active runs (FINDING, TRANSFERRING), parts
/// included. Labels: `task`, `state` (`queued`, `leased`, `waiting`, `done`, `skipped`, `dead`,
/// `cancelled`); states without items are left out.
pub const ITEMS: &str = "dth_items";
/// Gauge, read from the store at scrape time: the queue of all active runs. Label `state`: `ready`
/// (a claim would take them now: queued and due, or leased with an expired lease), `delayed`
/// (queued, waiting for their retry time), `leased` (held by a worker under a live lease).
pub const QUEUE_ITEMS: &str = "dth_queue_items";
/// HTTP requests answered by the hub. Labels: `method`, `route` (the matched route template such as
/// `/api/v1/tasks/{id}`, or `unmatched`), `status` (the HTTP status code).
pub const HTTP_REQUESTS: &str = "dth_http_requests_total";
/// Time to answer HTTP requests. Labels: `method`, `route`.
pub const HTTP_REQUEST_DURATION: &str = "dth_http_request_duration_seconds";
/// Time of the store calls the runtime makes on its hot paths ([`timed`]). Label `call`: the store
/// method (`claim`, `claim_item`, `heartbeat`, `ack`, `retry_later`, `release`, `insert_items`,
/// `existing_keys`, `split_item`, `parts`, `get_run`, `finish_run_if_drained`, `run_counters`,
/// `add_up_to_date`, `item_counts`).
pub const STORE_CALL_DURATION: &str = "dth_store_call_duration_seconds";
/// Store calls in [`STORE_CALL_DURATION`] that failed. Label `call`.
pub const STORE_CALL_ERRORS: &str = "dth_store_call_errors_total";

/// Every error class a retry or a dead item is counted under (the `cause` label).
pub const CAUSES: &[&str] = &[
    "throttled",
    "server",
    "network",
    "access",
    "not_found",
    "client",
    "verify",
    "upload_gone",
    "config",
    "store",
    "abandoned",
    "other",
];

const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const STORE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const RUN_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];
/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs this process's Prometheus recorder (once; later calls return the same handle) and
/// describes every metric. If another recorder was installed first, metrics render empty and a
/// warning is logged.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = [
            (HTTP_REQUEST_DURATION, HTTP_BUCKETS),
            (STORE_CALL_DURATION, STORE_BUCKETS),
            (RUN_DURATION, RUN_BUCKETS),
        ]
        .into_iter()
        .fold(PrometheusBuilder::new(), |b, (name, buckets)| {
            b.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
                .expect("bucket lists are not empty")
        });
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!("metrics: another recorder is installed in this process ({e})");
        }
        describe();
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("dth-metrics".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        handle
    })
}

fn describe() {
    describe_counter!(
        COPIED_OBJECTS,
        "Objects and images copied and verified, by task and item kind"
    );
    describe_counter!(
        COPIED_BYTES,
        Unit::Bytes,
        "Bytes of the objects and images copied and verified, by task and item kind"
    );
    describe_counter!(
        ITEMS_ACKED,
        "Items acked by workers, by task, item kind and outcome (done, skipped, refused)"
    );
    describe_counter!(
        ITEM_RETRIES,
        "Failed attempts queued for a retry, by task and error class"
    );
    describe_counter!(
        ITEMS_DEAD,
        "Items dead-lettered, by task, item kind and error class"
    );
    describe_histogram!(
        RUN_DURATION,
        Unit::Seconds,
        "Duration of ended runs, by task and final status"
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests, by method, route template and status"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer HTTP requests, by method and route template"
    );
    describe_histogram!(
        STORE_CALL_DURATION,
        Unit::Seconds,
        "Time of the runtime's store calls, by call"
    );
    describe_counter!(STORE_CALL_ERRORS, "Failed store calls, by call");
}

/// Runs a store call, recording its time under `call` (and a failure in [`STORE_CALL_ERRORS`]).
pub async fn timed<T, E>(
    call: &'static str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let start = Instant::now();
    let res = fut.await;
    histogram!(STORE_CALL_DURATION, "call" => call).record(start.elapsed().as_secs_f64());
    if res.is_err() {
        counter!(STORE_CALL_ERRORS, "call" => call).increment(1);
    }
    res
}

/// Records an ack of `item` as `state`; `accepted` false when the store refused it (lease lost).
pub(crate) fn acked(item: &Item, state: ItemState, accepted: bool) {
    let outcome = if accepted { state.name() } else { "refused" };
    counter!(ITEMS_ACKED, "task" => item.task_id.clone(), "kind" => item.kind.name(),
        "outcome" => outcome)
    .increment(1);
    if accepted
        && state == ItemState::Done
        && matches!(item.kind, ItemKind::Object | ItemKind::Image)
    {
        counter!(COPIED_OBJECTS, "task" => item.task_id.clone(), "kind" => item.kind.name())
            .increment(1);
        counter!(COPIED_BYTES, "task" => item.task_id.clone(), "kind" => item.kind.name())
            .increment(item.size);
    }
}

/// Records a failed attempt of `item` that the store took: queued again, or dead.
pub(crate) fn failed(item: &Item, cause: &'static str, dead: bool) {
    if dead {
        counter!(ITEMS_DEAD, "task" => item.task_id.clone(), "kind" => item.kind.name(),
            "cause" => cause)
        .increment(1);
    } else {
        counter!(ITEM_RETRIES, "task" => item.task_id.clone(), "cause" => cause).increment(1);
    }
}

/// Records the end of a run that started at `started_at` and ended at `ended_at` (Unix ms; now
/// when `None`) as `status`.
pub(crate) fn run_ended(task_id: &str, started_at: i64, ended_at: Option<i64>, status: RunStatus) {
    let end = ended_at.unwrap_or_else(dth_store::now_ms);
    let secs = end.saturating_sub(started_at).max(0) as f64 / 1000.0;
    histogram!(RUN_DURATION, "task" => task_id.to_string(), "status" => status.name()).record(secs);
}

/// The error class of an object engine error (the `cause` label).
pub fn cause_of_s3(e: &dth_s3::Error) -> &'static str {
    use dth_s3::Error as E;
    match e {
        E::Request { status, code, .. } => {
            let slow = code.as_deref() == Some("SlowDown");
            match status {
                Some(429) | Some(503) => "throttled",
                _ if slow => "throttled",
                Some(s) => status_class(*s),
                None => "network",
            }
        }
        E::Body { .. } => "network",
        E::Verify { .. } | E::WrittenMismatch { .. } => "verify",
        E::UploadGone { .. } => "upload_gone",
        E::Config { .. } => "config",
        _ => "other",
    }
}

/// The error class of an image engine error (the `cause` label).
pub fn cause_of_image(e: &dth_oci::Error) -> &'static str {
    use dth_oci::Error as E;
    match e {
        E::Status { status: 429, .. } => "throttled",
        E::Status { status, code, .. } => {
            if code.as_deref().is_some_and(|c| c.ends_with("_UNKNOWN")) {
                "not_found"
            } else {
                status_class(*status)
            }
        }
        E::Auth { .. } => "access",
        E::DigestMismatch { .. } | E::SizeMismatch { .. } => "verify",
        E::Transport { .. } => "network",
        E::Invalid(_) | E::Manifest { .. } => "config",
        _ => "other",
    }
}

/// The error class of a runtime error (making a task's engine, reading its item).
pub(crate) fn cause_of(e: &crate::Error) -> &'static str {
    match e {
        crate::Error::Engine(e) => cause_of_s3(e),
        crate::Error::Image(e) => cause_of_image(e),
        crate::Error::Store(_) => "store",
        crate::Error::BadRequest(_) | crate::Error::NotFound(_) => "config",
        _ => "other",
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        401 | 403 => "access",
        404 => "not_found",
        408 => "network",
        429 => "throttled",
        500..=599 => "server",
        400..=499 => "client",
        _ => "other",
    }
}

impl Hub {
    /// This process's metrics in the Prometheus text format: what the recorder holds (installed
    /// here if it was not yet) and the store's gauges read now. When the store does not answer,
    /// the gauges are left out (the failure is counted in [`STORE_CALL_ERRORS`] and logged).
    pub async fn metrics_text(&self) -> String {
        let handle = install();
        let counts = timed("item_counts", self.store.item_counts()).await;
        let mut out = handle.render();
        match counts {
            Ok(counts) => render_store_gauges(&mut out, &counts),
            Err(e) => tracing::warn!("metrics: reading item counts: {e}"),
        }
        out
    }

    /// The queue of all active runs now ([`QueueDepth`]): the numbers of the [`QUEUE_ITEMS`]
    /// gauge, for other reporters than `/metrics` (the CloudWatch lines of [`crate::emf`]).
    pub async fn queue_depth(&self) -> Result<QueueDepth, dth_store::Error> {
        let counts = timed("item_counts", self.store.item_counts()).await?;
        Ok(QueueDepth::of(&counts))
    }
}

/// The queue of all active runs, as the [`QUEUE_ITEMS`] gauge reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    /// Items a claim would take now: queued and due, or leased with an expired lease.
    pub ready: u64,
    /// Items queued until their retry time.
    pub delayed: u64,
    /// Items held by a worker under a live lease.
    pub leased: u64,
}

impl QueueDepth {
    /// The queue depth from the store's counts ([`dth_store::QueueStore::item_counts`]).
    pub fn of(counts: &[dth_store::ItemCount]) -> QueueDepth {
        let mut depth = QueueDepth::default();
        for c in counts {
            match c.state {
                ItemState::Queued => {
                    depth.ready += c.claimable;
                    depth.delayed += c.items - c.claimable;
                }
                ItemState::Leased => {
                    depth.ready += c.claimable;
                    depth.leased += c.items - c.claimable;
                }
                _ => {}
            }
        }
        depth
    }
}

/// Appends the gauges of [`ITEMS`] and [`QUEUE_ITEMS`] from the store's counts.
fn render_store_gauges(out: &mut String, counts: &[dth_store::ItemCount]) {
    if !out.is_empty() && !out.ends_with("\n\n") {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "# HELP {ITEMS} Items of active runs, by task and state (read from the store)"
    );
    let _ = writeln!(out, "# TYPE {ITEMS} gauge");
    for c in counts {
        let _ = writeln!(
            out,
            "{ITEMS}{{task=\"{}\",state=\"{}\"}} {}",
            escape(&c.task_id),
            c.state.name(),
            c.items
        );
    }
    let depth = QueueDepth::of(counts);
    out.push('\n');
    let _ = writeln!(
        out,
        "# HELP {QUEUE_ITEMS} Queue of all active runs: ready to claim, delayed until a retry, leased (read from the store)"
    );
    let _ = writeln!(out, "# TYPE {QUEUE_ITEMS} gauge");
    for (state, n) in [
        ("ready", depth.ready),
        ("delayed", depth.delayed),
        ("leased", depth.leased),
    ] {
        let _ = writeln!(out, "{QUEUE_ITEMS}{{state=\"{state}\"}} {n}");
    }
}

/// A label value in the text format: backslash, double quote and line feed escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_gauges_render_items_and_queue_depth() {
        let c = |task: &str, state, items, claimable| dth_store::ItemCount {
            task_id: task.into(),
            state,
            items,
            claimable,
        };
        let mut out = String::new();
        render_store_gauges(
            &mut out,
            &[
                c("t1", ItemState::Done, 5, 0),
                c("t1", ItemState::Queued, 4, 3),
                c("t\"2", ItemState::Leased, 2, 1),
            ],
        );
        assert!(
            out.contains("dth_items{task=\"t1\",state=\"done\"} 5\n"),
            "{out}"
        );
        assert!(
            out.contains("dth_items{task=\"t\\\"2\",state=\"leased\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("dth_queue_items{state=\"ready\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("dth_queue_items{state=\"delayed\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("dth_queue_items{state=\"leased\"} 1\n"),
            "{out}"
        );
    }

    #[test]
    fn error_classes_are_in_the_list() {
        let req = |status: Option<u16>, code: Option<&str>| dth_s3::Error::Request {
            op: "GetObject",
            side: dth_s3::Side::Source,
            target: "s3://b/k".into(),
            endpoint: "e".into(),
            status,
            code: code.map(str::to_string),
            detail: String::new(),
            retryable: true,
        };
        for (e, want) in [
            (req(Some(503), None), "throttled"),
            (req(Some(500), None), "server"),
            (req(Some(403), Some("AccessDenied")), "access"),
            (req(Some(404), None), "not_found"),
            (req(Some(400), Some("SlowDown")), "throttled"),
            (req(None, None), "network"),
        ] {
            assert_eq!(cause_of_s3(&e), want);
        }
        let verify = dth_s3::Error::Verify {
            key: "k".into(),
            detail: String::new(),
        };
        assert_eq!(cause_of_s3(&verify), "verify");
        for s in [200u16, 401, 404, 408, 418, 429, 500, 599] {
            assert!(CAUSES.contains(&status_class(s)));
        }
    }
}
