//! The API a portal needs, end to end in one process: a hub with its scheduler and workers over a
//! SQLite file, its HTTP API on 127.0.0.1, and a real S3 server (s3s-fs) on both sides. A plan
//! is compared with the run that follows it, the progress stream and samples with the run's
//! counters, a report with the run's items; edits and clones are run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use dth_runtime::{Config, Hub};
use dth_store::Store;
use dth_testkit::{PeerKind, S3Peer};
use futures::StreamExt;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "tok-portal-api";
const MIB: usize = 1024 * 1024;

struct Hubs {
    base: String,
    http: Client,
    store: Arc<dyn Store>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Hubs {
    async fn start() -> Hubs {
        Hubs::start_with(|_| {}).await
    }

    /// A hub whose configuration `tune` changes first.
    async fn start_with(tune: impl FnOnce(&mut Config)) -> Hubs {
        let (store, dir) = crate::common::sqlite_store().await;
        let mut config = crate::common::quick_config("portal-api", TOKEN);
        tune(&mut config);
        let hub = Hub::new(store.clone(), config);
        let stop = CancellationToken::new();
        tokio::spawn(Arc::clone(&hub).run_scheduler(stop.clone()));
        tokio::spawn(Arc::clone(&hub).run_workers(stop.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut web = dth_web::WebConfig::new(&format!("http://{addr}").parse().unwrap());
        web.progress_every = Duration::from_millis(200);
        tokio::spawn(dth_web::serve(hub, web, listener, stop.clone()));
        Hubs {
            base: format!("http://{addr}"),
            http: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            store,
            stop,
            _dir: dir,
        }
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut rb = self.req(method, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// Waits until the task's newest run is `n`th and ended; returns it with its counters.
    async fn ended_run(&self, task: &str, n: usize) -> Value {
        let t0 = Instant::now();
        loop {
            let runs = self
                .ok(Method::GET, &format!("/api/v1/tasks/{task}/runs"), None)
                .await;
            let runs = runs.as_array().unwrap();
            if runs.len() >= n && runs[runs.len() - n]["ended_at"].is_number() {
                let id = runs[runs.len() - n]["id"].as_i64().unwrap();
                return self
                    .ok(Method::GET, &format!("/api/v1/runs/{id}"), None)
                    .await;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "run {n} of {task} did not end: {runs:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Hubs {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn endpoint(peer: &S3Peer, bucket: &str) -> Value {
    json!({
        "provider": "other", "region": peer.region(), "endpoint_url": peer.endpoint_url(),
        "bucket": bucket, "prefix": "",
        "credentials": {"kind": "static", "access_key_id": peer.access_key(),
                        "secret_access_key": peer.secret_key(), "session_token": null},
    })
}

fn body(key: &str, size: usize) -> Vec<u8> {
    key.bytes().cycle().take(size).collect()
}

async fn put(peer: &S3Peer, bucket: &str, key: &str, size: usize) {
    peer.client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body(key, size)))
        .send()
        .await
        .unwrap();
}

async fn exists(peer: &S3Peer, bucket: &str, key: &str) -> bool {
    peer.client()
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

/// Reads a progress stream to its end: the `progress` payloads and the `end` payload.
async fn read_progress(resp: reqwest::Response) -> (Vec<Value>, Value) {
    let mut buf = String::new();
    let mut progress = Vec::new();
    let mut bytes = resp.bytes_stream();
    while let Some(chunk) = bytes.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = "message";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            match event {
                "progress" => progress.push(serde_json::from_str(&data).unwrap()),
                "end" => return (progress, serde_json::from_str(&data).unwrap()),
                "message" if data.is_empty() => {} // keep-alive
                other => panic!("unexpected event {other}: {data}"),
            }
        }
    }
    panic!("the stream ended without an end event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_run_progress_report_edit_clone() {
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    // 12 to copy (one of them multipart: 9 MiB in 5 MiB parts), 3 up to date, 2 to delete.
    let mut want_copy = 0u64;
    for i in 0..11 {
        let size = 1000 + i * 37;
        put(&peer, "src", &format!("docs/{i:02}.txt"), size).await;
        want_copy += size as u64;
    }
    put(&peer, "src", "big.bin", 9 * MIB).await;
    want_copy += 9 * MIB as u64;
    for key in ["same/a", "same/b", "same/c"] {
        put(&peer, "src", key, 500).await;
        put(&peer, "dst", key, 500).await;
    }
    put(&peer, "dst", "gone/x", 70).await;
    put(&peer, "dst", "gone/y", 30).await;

    let hub = Hubs::start().await;
    let spec = json!({
        "name": "portal api",
        "description": "the plan, then the run",
        "kind": "s3",
        "source": endpoint(&peer, "src"),
        "destination": endpoint(&peer, "dst"),
        "schedule": "once",
        "options": {"part_size": 5 * MIB, "multipart_threshold": 8 * MIB, "delete": true,
                    "server_side_copy": false, "compare": "size-etag"},
    });

    // The plan, first with the shipped prices (this peer is `other`: free), then with a table.
    let plan = hub
        .ok(Method::POST, "/api/v1/plan", Some(spec.clone()))
        .await;
    let objects = &plan["objects"];
    assert_eq!(objects["copy"], 12, "{plan}");
    assert_eq!(objects["copy_bytes"], want_copy);
    assert_eq!(objects["skip"], 3);
    assert_eq!(objects["skip_bytes"], 1500);
    assert_eq!(objects["delete"], 2);
    assert_eq!(objects["delete_bytes"], 100);
    assert_eq!(objects["multipart"], 1);
    let requests = &plan["requests"];
    assert_eq!(requests["source_get"], 11 + 2);
    assert_eq!(requests["destination_put"], 11 + 2 + 2);
    assert_eq!(requests["destination_delete"], 2);
    assert_eq!(plan["egress_bytes"], want_copy);
    assert_eq!(plan["cost"]["totals"]["USD"], 0.0);
    assert!(hub.store.list_tasks().await.unwrap().is_empty());
    assert!(hub.store.list_secrets().await.unwrap().is_empty());

    let table = json!({"prices": [{
        "provider": "other", "region": "*", "currency": "EUR", "put_per_1000": 5.0,
        "get_per_1000": 0.4, "list_per_1000": 5.0, "egress_internet_per_gb": 90.0,
        "egress_region_per_gb": 20.0,
    }]});
    let (status, bad) = hub
        .call(
            Method::PUT,
            "/api/v1/settings/prices",
            Some(json!({"prices": [{"provider": "aws"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    hub.ok(Method::PUT, "/api/v1/settings/prices", Some(table.clone()))
        .await;
    assert_eq!(
        hub.ok(Method::GET, "/api/v1/settings/prices", None).await,
        table
    );
    let priced = hub
        .ok(Method::POST, "/api/v1/plan", Some(spec.clone()))
        .await;
    let r = &priced["requests"];
    let n = |v: &Value| v.as_f64().unwrap();
    let want = n(&r["source_list"]) * 5.0 / 1000.0
        + n(&r["source_get"]) * 0.4 / 1000.0
        + want_copy as f64 / 1e9 * 90.0
        + n(&r["destination_list"]) * 5.0 / 1000.0
        + n(&r["destination_put"]) * 5.0 / 1000.0;
    let total = n(&priced["cost"]["totals"]["EUR"]);
    assert!((total - want).abs() < 1e-9, "{total} != {want}: {priced}");
    assert!(priced["cost"]["totals"].get("USD").is_none());

    // The run, watched from its creation.
    let task = hub
        .ok(Method::POST, "/api/v1/tasks", Some(spec.clone()))
        .await;
    let id = task["id"].as_str().unwrap().to_string();
    let stream = hub
        .req(Method::GET, &format!("/api/v1/tasks/{id}/progress"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (updates, end) = read_progress(stream).await;
    let run = hub.ended_run(&id, 1).await;
    assert_eq!(run["status"], "DONE", "{run}");
    let counters = &run["counters"];
    assert_eq!(counters["copied"], objects["copy"], "plan vs run: {run}");
    assert_eq!(counters["copied_bytes"], objects["copy_bytes"]);
    assert_eq!(counters["skipped"], objects["skip"]);
    assert_eq!(counters["deleted"], objects["delete"]);
    assert_eq!(run["trigger"], "user");
    assert_eq!(run["started_by"], "env-token");
    let last = updates.last().expect("at least one progress event");
    assert_eq!(
        &last["counters"], counters,
        "the stream ends on the run's counters"
    );
    assert_eq!(last["status"], "DONE");
    assert_eq!(end["status"], "DONE");
    assert!(last["eta_seconds"].is_null());
    assert!(!exists(&peer, "dst", "gone/x").await);

    // The samples cover the run: one at its start, one at its end with the final counts.
    let run_id = run["id"].as_i64().unwrap();
    let samples = hub
        .ok(Method::GET, &format!("/api/v1/runs/{run_id}/samples"), None)
        .await;
    let samples = samples.as_array().unwrap();
    assert!(samples.len() >= 2, "{samples:?}");
    assert!(samples[0]["at"].as_i64() <= run["started_at"].as_i64().map(|t| t + 1000));
    let final_sample = samples.last().unwrap();
    assert_eq!(final_sample["at"], run["ended_at"]);
    assert_eq!(final_sample["bytes_done"], counters["copied_bytes"]);
    assert_eq!(final_sample["items_done"], 12 + 3 + 2);
    let ats: Vec<i64> = samples.iter().map(|s| s["at"].as_i64().unwrap()).collect();
    assert!(ats.windows(2).all(|w| w[0] < w[1]));

    // Items by prefix and state, and the report equal to the items.
    let page = hub
        .ok(
            Method::GET,
            &format!("/api/v1/runs/{run_id}/items?prefix=docs/&state=done&limit=5"),
            None,
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    assert!(page["next_after"].is_number());
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["key"].as_str().unwrap().starts_with("docs/"))
    );
    let items = hub
        .ok(
            Method::GET,
            &format!("/api/v1/runs/{run_id}/items?limit=1000"),
            None,
        )
        .await;
    let mut want_lines: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for i in items["items"].as_array().unwrap() {
        if i["kind"] == "part" {
            continue;
        }
        let action = match (i["state"].as_str().unwrap(), i["kind"].as_str().unwrap()) {
            ("done", "delete") => "deleted",
            ("done", _) => "copied",
            (s, _) => panic!("unexpected state {s}"),
        };
        want_lines.insert(
            i["key"].as_str().unwrap().into(),
            (action.into(), i["size"].as_u64().unwrap()),
        );
    }
    let csv_text = hub
        .req(Method::GET, &format!("/api/v1/runs/{run_id}/report"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "key",
            "kind",
            "action",
            "size",
            "verification",
            "attempts",
            "error",
            "dst_etag"
        ]
    );
    let got: BTreeMap<String, (String, u64)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), (r[2].to_string(), r[3].parse().unwrap()))
        })
        .collect();
    assert_eq!(got, want_lines);
    let jsonl = hub
        .req(
            Method::GET,
            &format!("/api/v1/runs/{run_id}/report?format=jsonl"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let got: BTreeMap<String, (String, u64)> = jsonl
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["key"].as_str().unwrap().into(),
                (
                    v["action"].as_str().unwrap().into(),
                    v["size"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(got, want_lines);
    let (status, _) = hub
        .call(
            Method::GET,
            &format!("/api/v1/runs/{run_id}/report?format=xml"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // An edit: a schedule and an option; the next run (by the schedule) uses both.
    put(&peer, "src", "new/a.txt", 10).await;
    put(&peer, "src", "new/b.log", 10).await;
    let (status, refused) = hub
        .call(
            Method::PATCH,
            &format!("/api/v1/tasks/{id}"),
            Some(json!({"source": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused["error"].as_str().unwrap().starts_with("source:"));
    let (status, refused) = hub
        .call(
            Method::PATCH,
            &format!("/api/v1/tasks/{id}"),
            Some(json!({"schedule": {"cron": "not a cron"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let edited = hub
        .ok(
            Method::PATCH,
            &format!("/api/v1/tasks/{id}"),
            Some(
                json!({"name": "portal api (edited)", "schedule": {"every-seconds": 1},
                        "options": {"exclude": ["*.log"]}}),
            ),
        )
        .await;
    assert_eq!(edited["name"], "portal api (edited)");
    assert_eq!(edited["spec"]["options"]["part_size"], 5 * MIB, "merged");
    assert_eq!(edited["spec"]["description"], "the plan, then the run");
    hub.ok(Method::POST, &format!("/api/v1/tasks/{id}/start"), None)
        .await;
    let second = hub.ended_run(&id, 2).await;
    assert_eq!(second["status"], "DONE", "{second}");
    assert_eq!(second["counters"]["copied"], 1, "{second}");
    assert!(exists(&peer, "dst", "new/a.txt").await);
    assert!(
        !exists(&peer, "dst", "new/b.log").await,
        "the edited exclude"
    );
    let third = hub.ended_run(&id, 3).await;
    assert_eq!(third["trigger"], "schedule", "the edited schedule fired");
    assert!(third["started_by"].is_null());
    hub.ok(Method::POST, &format!("/api/v1/tasks/{id}/stop"), None)
        .await;

    // A clone runs like its original, and keeps working when the original is gone.
    let (status, clone) = hub
        .call(
            Method::POST,
            &format!("/api/v1/tasks/{id}/clone"),
            Some(json!({"name": "the clone"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{clone}");
    let clone_id = clone["id"].as_str().unwrap().to_string();
    assert_eq!(clone["spec"]["options"]["exclude"], json!(["*.log"]));
    assert_ne!(
        clone["spec"]["source"]["credentials"]["name"],
        edited["spec"]["source"]["credentials"]["name"]
    );
    hub.ok(Method::DELETE, &format!("/api/v1/tasks/{id}"), None)
        .await;
    let cloned_run = hub.ended_run(&clone_id, 1).await;
    assert_eq!(cloned_run["status"], "DONE", "{cloned_run}");
    assert_eq!(
        cloned_run["counters"]["found"], third["counters"]["found"],
        "{cloned_run}"
    );
    assert_eq!(cloned_run["counters"]["copied"], 0);
}

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_item_report_streams_in_constant_memory() {
    const ITEMS: usize = 1_000_000;
    let hub = Hubs::start().await;
    let task = hub
        .store
        .create_task(dth_store::NewTask {
            name: "big".into(),
            kind: "s3".into(),
            spec: json!({}),
            next_run_at: None,
            run_requested_by: None,
        })
        .await
        .unwrap();
    let run = hub
        .store
        .create_run(&task.id, dth_model::Trigger::User, None, 3)
        .await
        .unwrap();
    let t0 = Instant::now();
    for start in (0..ITEMS).step_by(50_000) {
        let batch: Vec<dth_store::NewItem> = (start..start + 50_000)
            .map(|i| dth_store::NewItem {
                kind: dth_model::ItemKind::Object,
                key: format!("data/2026/12/01/object-{i:07}.parquet"),
                size: i as u64,
                etag: None,
                part_number: None,
                payload: json!({}),
            })
            .collect();
        hub.store.insert_items(run.id, &batch).await.unwrap();
    }
    eprintln!("inserted {ITEMS} items in {:?}", t0.elapsed());
    // Ended, so the sampler leaves it alone.
    hub.store
        .set_run_status(run.id, dth_model::RunStatus::Stopped, None)
        .await
        .unwrap();
    let before = rss();
    let t0 = Instant::now();
    // A debug build streams it in about a minute on a shared machine.
    let resp = Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
        .get(format!("{}/api/v1/runs/{}/report", hub.base, run.id))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (mut lines, mut bytes, mut peak) = (0usize, 0usize, before);
    let mut last_key = String::new();
    let mut tail = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len();
        tail.extend_from_slice(&chunk);
        if let Some(cut) = tail.iter().rposition(|b| *b == b'\n') {
            let done: Vec<u8> = tail.drain(..=cut).collect();
            let text = std::str::from_utf8(&done).unwrap();
            let was = lines / 100_000;
            lines += text.lines().count();
            if lines / 100_000 != was {
                eprintln!("{lines} lines after {:?}", t0.elapsed());
            }
            if let Some(l) = text.lines().last() {
                last_key = l.split(',').next().unwrap().to_string();
            }
        }
        peak = peak.max(rss());
    }
    let grown = peak.saturating_sub(before);
    eprintln!(
        "report: {lines} lines, {} MiB, peak RSS +{} MiB",
        bytes / MIB,
        grown / MIB as u64
    );
    assert!(tail.is_empty());
    assert_eq!(lines, ITEMS + 1, "a header and one line per item");
    assert_eq!(
        last_key,
        format!("data/2026/12/01/object-{:07}.parquet", ITEMS - 1)
    );
    assert!(bytes > 50 * MIB, "{bytes}");
    assert!(
        grown < 64 * MIB as u64,
        "the report grew this process by {} MiB for a {} MiB report",
        grown / MIB as u64,
        bytes / MIB
    );
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_mail_goes_through_a_real_smtp_server_and_docs_are_served() {
    // Python's own SMTP server (the standard library's smtpd), printing what it receives.
    let port = free_port();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut smtp = std::process::Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-u",
            "-m",
            "smtpd",
            "-n",
            "-c",
            "DebuggingServer",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(out.reopen().unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m smtpd");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "smtpd did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hub = Hubs::start_with(|c| {
        c.smtp = Some(dth_runtime::SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            starttls: false,
            username: None,
            password: None,
            from: "dth@example.com".into(),
        })
    })
    .await;
    let (status, bad) = hub
        .call(
            Method::POST,
            "/api/v1/settings/smtp/test",
            Some(json!({"to": "not an address"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let sent = hub
        .ok(
            Method::POST,
            "/api/v1/settings/smtp/test",
            Some(json!({"to": "ops@example.com"})),
        )
        .await;
    assert_eq!(sent["sent"], true, "{sent}");
    let t0 = Instant::now();
    loop {
        let got = std::fs::read_to_string(out.path()).unwrap();
        if got.contains("[dth] test mail") && got.contains("ops@example.com") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no mail: {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    smtp.kill().unwrap();
    smtp.wait().unwrap();
    // The server gone: the test mail says why it failed, and the call itself succeeds.
    let failed = hub
        .ok(
            Method::POST,
            "/api/v1/settings/smtp/test",
            Some(json!({"to": "ops@example.com"})),
        )
        .await;
    assert_eq!(failed["sent"], false, "{failed}");
    assert!(failed["message"].as_str().unwrap().contains("127.0.0.1"));

    // The rendered API docs, with their files from the binary.
    let page = hub
        .http
        .get(format!("{}/api/docs/", hub.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        let resp = hub
            .http
            .get(format!("{}/api/docs/{asset}", hub.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
        let text = resp.text().await.unwrap();
        assert!(
            !text.contains("https://unpkg.com"),
            "{asset} loads from a CDN"
        );
        if asset == "swagger-initializer.js" {
            assert!(text.contains("/api/v1/openapi.json"), "{text}");
        }
    }
}
