//! `GET /metrics` of a hub running a real object task between two s3s-fs peers (the source behind
//! the fault proxy: slow GETs, two corrupted bodies, one object denied), scraped during and after
//! the run and parsed by the reference parser, PyPI `prometheus-client`
//! (`text_string_to_metric_families`) from the peers' venv (`scripts/install-peers`; without it the
//! test fails). The parsed values are checked against the run's counters from the API.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use dth_runtime::{Config, Hub};
use dth_testkit::{FaultProxy, Faults, PeerKind, S3Peer};
use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const API_TOKEN: &str = "api-token-0123456789";
const METRICS_TOKEN: &str = "metrics-token-9876543210";

/// One sample as the parser reports it.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A sample as the parser script prints it: name, labels, value (Python's `repr`).
type RawSample = (String, BTreeMap<String, String>, String);

/// What `prometheus_client` made of a scrape: family name → (type, samples).
#[derive(Debug)]
struct Parsed(BTreeMap<String, (String, Vec<Sample>)>);

impl Parsed {
    /// Parses `text` with `prometheus_client.parser` in the peers' venv; panics (fails the test)
    /// when the venv or the package is missing, or the parser rejects the text.
    fn parse(text: &str) -> Parsed {
        let python = dth_testkit::tools_dir().join("venv/bin/python");
        assert!(
            python.is_file(),
            "{} not found: run scripts/install-peers (it installs prometheus-client)",
            python.display()
        );
        let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = [f.type, [[s.name, s.labels, repr(float(s.value))] for s in f.samples]]
json.dump(out, sys.stdout)
"#;
        let mut child = Command::new(&python)
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "prometheus_client rejected the scrape (or is not installed: run scripts/install-peers):\n{}\n--- text ---\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let raw: BTreeMap<String, (String, Vec<RawSample>)> =
            serde_json::from_slice(&out.stdout).unwrap();
        Parsed(
            raw.into_iter()
                .map(|(family, (kind, samples))| {
                    let samples = samples
                        .into_iter()
                        .map(|(name, labels, value)| Sample {
                            name,
                            labels,
                            value: value.parse().unwrap(),
                        })
                        .collect();
                    (family, (kind, samples))
                })
                .collect(),
        )
    }

    fn family_type(&self, family: &str) -> Option<&str> {
        self.0.get(family).map(|f| f.0.as_str())
    }

    /// Samples named `name` whose labels include all of `want`.
    fn samples(&self, name: &str, want: &[(&str, &str)]) -> Vec<&Sample> {
        self.0
            .values()
            .flat_map(|f| &f.1)
            .filter(|s| s.name == name)
            .filter(|s| {
                want.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The sum of the samples named `name` with these labels (0 when none).
    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.samples(name, want).iter().map(|s| s.value).sum()
    }
}

/// A hub with its scheduler, workers and HTTP API on a free port, over a SQLite file.
struct Site {
    base: String,
    http: Client,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Site {
    async fn start(metrics_token: Option<&str>) -> Site {
        let (store, dir) = crate::common::sqlite_store().await;
        let mut config = Config {
            worker_id: "metrics-test".into(),
            concurrency: 4,
            lease: Duration::from_secs(6),
            poll: Duration::from_millis(50),
            retry_base: Duration::from_millis(100),
            ..Config::default()
        };
        config.access.env_token = Some(API_TOKEN.to_string());
        let hub = Hub::new(store, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut web = dth_web::WebConfig::new(&base.parse().unwrap());
        if let Some(t) = metrics_token {
            web = web.with_metrics_token(dth_web::metrics::MetricsToken::new(t).unwrap());
        }
        let stop = CancellationToken::new();
        tokio::spawn(dth_web::serve(
            Arc::clone(&hub),
            web,
            listener,
            stop.clone(),
        ));
        tokio::spawn(Arc::clone(&hub).run_scheduler(stop.clone()));
        tokio::spawn(Arc::clone(&hub).run_workers(stop.clone()));
        Site {
            base,
            http: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            stop,
            _dir: dir,
        }
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(API_TOKEN);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// `GET /metrics` with this bearer token (none: anonymous); the status and the body.
    async fn scrape_as(&self, token: Option<&str>) -> (StatusCode, header::HeaderMap, String) {
        let mut rb = self.http.get(format!("{}/metrics", self.base));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    }

    async fn scrape(&self) -> Parsed {
        let (status, headers, text) = self.scrape_as(None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4"),
            "{headers:?}"
        );
        Parsed::parse(&text)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn side(peer: &S3Peer, url: &str, bucket: &str) -> Value {
    json!({
        "provider": "other", "region": peer.region(), "endpoint_url": url, "bucket": bucket,
        "prefix": "",
        "credentials": {"kind": "static", "access_key_id": peer.access_key(),
                        "secret_access_key": peer.secret_key(), "session_token": null},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_follow_a_real_run_and_parse() {
    let (src, dst) = tokio::join!(
        S3Peer::start(PeerKind::S3sFs),
        S3Peer::start(PeerKind::S3sFs)
    );
    src.create_bucket("src").await;
    dst.create_bucket("dst").await;
    // 24 objects of 1..24 KiB; one of them the proxy refuses (403: dead at once).
    let client = src.client();
    let mut sizes = 0u64;
    for i in 0..24usize {
        let body: Vec<u8> = (0..(i + 1) * 1024).map(|b| (b * 7 + i) as u8).collect();
        sizes += body.len() as u64;
        let key = if i == 5 {
            "denied/o05".to_string()
        } else {
            format!("d{}/o{i:02}", i % 3)
        };
        client
            .put_object()
            .bucket("src")
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
    }
    // Slow GETs keep the run going long enough to scrape it; two corrupted bodies fail their
    // attempts' verification (no in-engine retry: `retries` 0), so those items are retried.
    let proxy = FaultProxy::start(
        &src.endpoint_url(),
        Faults {
            corrupt_get_bodies: 2,
            deny_path_containing: Some("denied/".into()),
            delay_object_gets: Duration::from_millis(150),
            ..Faults::default()
        },
    )
    .await;
    let site = Site::start(None).await;
    let spec = json!({
        "name": "metrics", "kind": "s3",
        "source": side(&src, &proxy.endpoint_url(), "src"),
        "destination": side(&dst, &dst.endpoint_url(), "dst"),
        "schedule": "once", "max_attempts": 5,
        "options": {"transfers": 2, "retries": 0, "server_side_copy": false},
    });
    let task = site
        .api(reqwest::Method::POST, "/api/v1/tasks", Some(spec))
        .await;
    let task_id = task["id"].as_str().unwrap().to_string();
    let task_label = [("task", task_id.as_str())];

    // During the run: the store's gauges show the task's items, the queue depth is there, and
    // the copied counter never goes back.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen_during = 0;
    let mut last_copied = 0.0;
    let run_id = loop {
        assert!(Instant::now() < deadline, "the run did not end in time");
        let detail = site
            .api(
                reqwest::Method::GET,
                &format!("/api/v1/tasks/{task_id}"),
                None,
            )
            .await;
        let run = &detail["latest_run"];
        let status = run["status"].as_str().unwrap_or("");
        let m = site.scrape().await;
        let copied = m.sum("dth_copied_objects_total", &task_label);
        assert!(copied >= last_copied, "{copied} < {last_copied}");
        last_copied = copied;
        if status == "TRANSFERRING" {
            let items = m.sum("dth_items", &task_label);
            if items > 0.0 {
                seen_during += 1;
                assert!(items <= 24.0, "{items}");
                assert_eq!(m.family_type("dth_items"), Some("gauge"));
                assert_eq!(m.family_type("dth_queue_items"), Some("gauge"));
                for state in ["ready", "delayed", "leased"] {
                    assert_eq!(
                        m.samples("dth_queue_items", &[("state", state)]).len(),
                        1,
                        "{state}"
                    );
                }
            }
        }
        if matches!(status, "DONE" | "FAILED") {
            break run["id"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(seen_during > 0, "no scrape saw the run transferring");

    // After the run: the counters equal the run's counters, the gauges have let the task go.
    let run = site
        .api(
            reqwest::Method::GET,
            &format!("/api/v1/runs/{run_id}"),
            None,
        )
        .await;
    assert_eq!(run["status"], "FAILED", "{run}");
    let c = &run["counters"];
    let (copied, copied_bytes, dead) = (
        c["copied"].as_u64().unwrap(),
        c["copied_bytes"].as_u64().unwrap(),
        c["dead"].as_u64().unwrap(),
    );
    assert_eq!((copied, dead), (23, 1), "{run}");
    assert_eq!(copied_bytes, sizes - 6 * 1024, "{run}");
    assert_eq!(proxy.stats().corrupted, 2);

    let m = site.scrape().await;
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v: Vec<(&str, &str)> = vec![("task", task_id.as_str())];
        v.extend_from_slice(extra);
        v
    };
    assert_eq!(m.family_type("dth_copied_objects"), Some("counter"));
    assert_eq!(
        m.sum("dth_copied_objects_total", &with(&[("kind", "object")])),
        copied as f64
    );
    assert_eq!(
        m.sum("dth_copied_bytes_total", &with(&[("kind", "object")])),
        copied_bytes as f64
    );
    assert_eq!(
        m.sum(
            "dth_items_acked_total",
            &with(&[("kind", "object"), ("outcome", "done")])
        ),
        copied as f64
    );
    assert_eq!(
        m.sum("dth_item_retries_total", &with(&[("cause", "verify")])),
        2.0
    );
    assert_eq!(
        m.sum(
            "dth_items_dead_total",
            &with(&[("kind", "object"), ("cause", "access")])
        ),
        dead as f64
    );
    // One run ended, FAILED, as a histogram with buckets.
    assert_eq!(m.family_type("dth_run_duration_seconds"), Some("histogram"));
    assert_eq!(
        m.sum(
            "dth_run_duration_seconds_count",
            &with(&[("status", "FAILED")])
        ),
        1.0
    );
    let inf = m.samples(
        "dth_run_duration_seconds_bucket",
        &with(&[("status", "FAILED"), ("le", "+Inf")]),
    );
    assert_eq!(inf.len(), 1);
    assert_eq!(inf[0].value, 1.0);
    // No active run: no item gauge of the task, an empty queue.
    assert!(m.samples("dth_items", &task_label).is_empty());
    for state in ["ready", "delayed", "leased"] {
        assert_eq!(
            m.sum("dth_queue_items", &[("state", state)]),
            0.0,
            "{state}"
        );
    }
    // The store calls the workers made were timed.
    assert_eq!(
        m.family_type("dth_store_call_duration_seconds"),
        Some("histogram")
    );
    for call in [
        "claim",
        "ack",
        "retry_later",
        "insert_items",
        "finish_run_if_drained",
    ] {
        assert!(
            m.sum("dth_store_call_duration_seconds_count", &[("call", call)]) >= 1.0,
            "{call}"
        );
    }
    // HTTP requests by route template, never by raw path.
    assert_eq!(
        m.family_type("dth_http_request_duration_seconds"),
        Some("histogram")
    );
    let _ = site
        .http
        .get(format!("{}/no/such/path/{run_id}", site.base))
        .send()
        .await
        .unwrap();
    let m = site.scrape().await;
    assert!(
        m.sum(
            "dth_http_requests_total",
            &[
                ("route", "/api/v1/runs/{id}"),
                ("method", "GET"),
                ("status", "200")
            ]
        ) >= 1.0
    );
    assert!(
        m.sum(
            "dth_http_requests_total",
            &[
                ("route", "/api/v1/tasks/{id}"),
                ("method", "GET"),
                ("status", "200")
            ]
        ) >= 1.0
    );
    assert_eq!(
        m.sum(
            "dth_http_requests_total",
            &[
                ("route", "/api/v1/tasks"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "dth_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(m.sum("dth_http_requests_total", &[("route", "/metrics")]) >= 1.0);
    assert!(
        m.sum(
            "dth_http_request_duration_seconds_count",
            &[("route", "/api/v1/runs/{id}")]
        ) >= 1.0
    );
    for s in m.samples("dth_http_requests_total", &[]) {
        let route = &s.labels["route"];
        let run = run_id.to_string();
        assert!(
            route == "unmatched"
                || route.starts_with('/')
                    && !route.split('/').any(|seg| seg == run || seg == task_id),
            "a raw path as a label: {route}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_is_required_when_set() {
    let site = Site::start(Some(METRICS_TOKEN)).await;
    for token in [None, Some("wrong-token"), Some(API_TOKEN)] {
        let (status, headers, body) = site.scrape_as(token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(!body.contains(METRICS_TOKEN));
    }
    let (status, _, text) = site.scrape_as(Some(METRICS_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let m = Parsed::parse(&text);
    assert_eq!(
        m.sum(
            "dth_http_requests_total",
            &[("route", "/metrics"), ("status", "401")]
        ),
        3.0
    );
    assert_eq!(m.family_type("dth_queue_items"), Some("gauge"));
    // The metrics token is no API token, and the API is unchanged.
    let resp = site
        .http
        .get(format!("{}/api/v1/tasks", site.base))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    site.api(reqwest::Method::GET, "/api/v1/tasks", None).await;
}
