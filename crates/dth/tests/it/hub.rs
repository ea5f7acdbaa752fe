//! `dth serve` and `dth worker` as processes: workers on PostgreSQL killed with SIGKILL mid-run, a hub
//! restarted mid-run, and two hubs sharing one schedule. State is read back from the store itself and
//! the data from the S3 peer.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use dth_model::{ItemKind, ItemState, TaskStatus};
use dth_store::{MasterKey, Store};
use dth_testkit::{PeerKind, PgServer, S3Peer};
use futures::StreamExt;
use md5::{Digest, Md5};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) const MIB: usize = 1024 * 1024;
pub(crate) const TOKEN: &str = "dth-test-token-0123456789";

/// A `dth` process, killed when dropped.
pub(crate) struct Proc {
    child: Child,
    /// For `serve`: the API's base URL.
    pub(crate) url: Option<String>,
}

impl Proc {
    pub(crate) async fn spawn(args: &[&str], key: &str) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dth"))
            .args(args)
            .env("DTH_MASTER_KEY", key)
            .env("DTH_API_TOKEN", TOKEN)
            .env("DTH_LOG", "warn,dth_runtime=info")
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start dth");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut url = None;
        if args[0] == "serve" {
            let deadline = Instant::now() + Duration::from_secs(60);
            while url.is_none() {
                assert!(Instant::now() < deadline, "dth serve did not start");
                let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                    .await
                    .expect("dth serve output")
                    .unwrap()
                    .unwrap_or_else(|| panic!("dth serve exited"));
                if let Some(rest) = line.split("hub on ").nth(1) {
                    url = Some(rest.split_whitespace().next().unwrap().to_string());
                }
            }
        }
        // Keep draining stderr so the process never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("ERROR") || line.contains("WARN") {
                    eprintln!("[dth] {line}");
                }
            }
        });
        Proc { child, url }
    }

    pub(crate) fn kill(&mut self) {
        self.child.start_kill().unwrap();
    }

    fn terminate(&self) {
        let pid = self.child.id().unwrap() as i32;
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// `dth serve` on SQLite in `data_dir` for tests that kill and restart it: short leases and retry
/// delays, so a restarted hub takes the dead one's items within seconds.
pub(crate) fn restartable_serve(data_dir: &str) -> [&str; 11] {
    [
        "serve",
        "--data-dir",
        data_dir,
        "--listen",
        "127.0.0.1:0",
        "--lease",
        "3",
        "--retry-delay",
        "1",
        "--concurrency",
        "4",
    ]
}

pub(crate) fn new_key() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

pub(crate) fn spec(peer: &S3Peer, schedule: serde_json::Value, giant: usize) -> serde_json::Value {
    let side = |bucket: &str| {
        serde_json::json!({
            "provider": "other", "region": peer.region(), "endpoint_url": peer.endpoint_url(),
            "bucket": bucket, "prefix": "",
            "credentials": {"kind": "static", "access_key_id": peer.access_key(),
                            "secret_access_key": peer.secret_key(), "session_token": null},
        })
    };
    serde_json::json!({
        "name": "hub-test", "kind": "s3", "source": side("src"), "destination": side("dst"),
        "schedule": schedule, "max_attempts": 10, "giant_threshold": giant,
        "options": {"part_size": 16 * MIB, "multipart_threshold": 16 * MIB, "server_side_copy": false},
    })
}

pub(crate) async fn create_task(url: &str, spec: &serde_json::Value) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/tasks"))
        .bearer_auth(TOKEN)
        .json(spec)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {body}"))
        .to_string()
}

/// Puts `n` small objects and the given large ones; returns each key with its MD5.
pub(crate) async fn seed(peer: &S3Peer, n: usize, large: &[usize]) -> Vec<(String, String, usize)> {
    let client = peer.client();
    let mut objs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for i in 0..n {
        let mut b = vec![0u8; 512 + rng.gen_range(0..4096)];
        rng.fill(&mut b[..]);
        objs.push((format!("s/{:02}/o{i:05}", i % 17), b));
    }
    let mut out: Vec<(String, String, usize)> = objs
        .iter()
        .map(|(k, b)| (k.clone(), hex::encode(Md5::digest(b)), b.len()))
        .collect();
    futures::stream::iter(objs)
        .for_each_concurrent(32, |(k, b)| {
            let client = client.clone();
            async move {
                client
                    .put_object()
                    .bucket("src")
                    .key(k)
                    .body(ByteStream::from(b))
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await;
    for (i, size) in large.iter().enumerate() {
        let mut b = vec![0u8; *size];
        rng.fill(&mut b[..]);
        let key = format!("big/b{i}.bin");
        out.push((key.clone(), hex::encode(Md5::digest(&b)), *size));
        client
            .put_object()
            .bucket("src")
            .key(&key)
            .body(ByteStream::from(b))
            .send()
            .await
            .unwrap();
    }
    out
}

pub(crate) async fn assert_copied(peer: &S3Peer, want: &[(String, String, usize)]) {
    let client = peer.client();
    futures::stream::iter(want)
        .for_each_concurrent(16, |(key, md5, _)| {
            let client = client.clone();
            async move {
                let out = client.get_object().bucket("dst").key(key).send().await;
                let mut body = out.unwrap_or_else(|e| panic!("{key} missing: {e}")).body;
                let mut h = Md5::new();
                while let Some(chunk) = body.try_next().await.unwrap() {
                    h.update(&chunk);
                }
                assert_eq!(&hex::encode(h.finalize()), md5, "{key}");
            }
        })
        .await;
}

pub(crate) async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until a task is DONE or in ERROR; returns which.
pub(crate) async fn wait_for_task_end(
    store: &Arc<dyn Store>,
    id: &str,
    limit: Duration,
) -> TaskStatus {
    wait_until("the task to end", limit, || {
        let s = Arc::clone(store);
        let id = id.to_string();
        async move {
            matches!(
                task_status(s.as_ref(), &id).await,
                TaskStatus::Done | TaskStatus::Error
            )
        }
    })
    .await;
    task_status(store.as_ref(), id).await
}

pub(crate) async fn task_status(store: &dyn Store, id: &str) -> TaskStatus {
    store.get_task(id).await.unwrap().unwrap().status
}

pub(crate) async fn latest_run(store: &dyn Store, id: &str) -> Option<dth_store::Run> {
    store.list_runs(id, 1).await.unwrap().into_iter().next()
}

/// Checks the run: every object done and verified, counters exact, parts unique per giant object.
async fn assert_run(store: &dyn Store, run: i64, objects: u64) {
    let c = store.run_counters(run).await.unwrap();
    assert_eq!(
        (c.found, c.copied, c.dead, c.pending, c.cancelled),
        (objects, objects, 0, 0, 0),
        "{c:?}"
    );
    let mut after = 0;
    let mut seen = std::collections::HashSet::new();
    loop {
        let items = store.list_items(run, None, after, 1000).await.unwrap();
        let Some(last) = items.last() else { break };
        after = last.id;
        for i in &items {
            assert_eq!(i.state, ItemState::Done, "{i:?}");
            if i.kind == ItemKind::Object {
                assert!(i.verification.is_some(), "{i:?}");
                assert!(seen.insert(i.key.clone()), "duplicate item for {}", i.key);
            }
        }
    }
    assert_eq!(seen.len() as u64, objects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_on_postgres_survive_sigkill() {
    let pg = PgServer::start();
    let db = pg.create_database("hub");
    let key = new_key();
    let store = dth_store::open(&db, MasterKey::parse(&key).unwrap())
        .await
        .unwrap();
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let want = seed(&peer, 2000, &[300 * MIB, 300 * MIB + 12_345, 300 * MIB - 1]).await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let hub = Proc::spawn(
        &[
            "serve",
            "--store",
            &db,
            "--data-dir",
            data_dir,
            "--listen",
            "127.0.0.1:0",
            "--no-workers",
        ],
        &key,
    )
    .await;
    let id = create_task(
        hub.url.as_deref().unwrap(),
        &spec(&peer, "once".into(), 64 * MIB),
    )
    .await;
    let worker = |name: &'static str| {
        let (db, key) = (db.clone(), key.clone());
        async move {
            Proc::spawn(
                &[
                    "worker",
                    "--store",
                    &db,
                    "--data-dir",
                    data_dir,
                    "--worker-id",
                    name,
                    "--lease",
                    "10",
                    "--retry-delay",
                    "1",
                    "--concurrency",
                    "8",
                ],
                &key,
            )
            .await
        }
    };
    let mut w1 = worker("w1").await;
    let mut w2 = worker("w2").await;
    let _w3 = worker("w3").await;
    let s = Arc::clone(&store);
    let run = {
        let t0 = Instant::now();
        loop {
            if let Some(r) = latest_run(store.as_ref(), &id).await {
                break r.id;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "no run started");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    // Kill one worker while small objects are copied…
    wait_until("500 objects copied", Duration::from_secs(240), || {
        let s = Arc::clone(&s);
        async move { s.run_counters(run).await.unwrap().copied >= 500 }
    })
    .await;
    w1.kill();
    let _w4 = worker("w4").await;
    // …and another while parts of giant objects are in flight.
    wait_until("parts in flight", Duration::from_secs(240), || {
        let s = Arc::clone(&s);
        async move {
            let items = s
                .list_items(run, Some(ItemState::Done), 0, 100_000)
                .await
                .unwrap();
            items.iter().filter(|i| i.kind == ItemKind::Part).count() >= 6
        }
    })
    .await;
    w2.kill();
    let _w5 = worker("w5").await;
    wait_for_task_end(&store, &id, Duration::from_secs(600)).await;
    let t = store.get_task(&id).await.unwrap().unwrap();
    assert_eq!(t.status, TaskStatus::Done, "{t:?}");
    assert_run(store.as_ref(), run, want.len() as u64).await;
    assert_copied(&peer, &want).await;
    assert_eq!(peer.open_uploads("dst").await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_hub_resumes_its_run() {
    let key = new_key();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let db = format!("sqlite://{}/dth.db", data_dir);
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let want = seed(&peer, 1500, &[]).await;
    let args = restartable_serve(data_dir);
    let mut hub = Proc::spawn(&args, &key).await;
    let id = create_task(
        hub.url.as_deref().unwrap(),
        &spec(&peer, "once".into(), 1 << 30),
    )
    .await;
    let store = dth_store::open(&db, MasterKey::parse(&key).unwrap())
        .await
        .unwrap();
    let s = Arc::clone(&store);
    let id2 = id.clone();
    wait_until("100 objects copied", Duration::from_secs(120), || {
        let s = Arc::clone(&s);
        let id = id2.clone();
        async move {
            match latest_run(s.as_ref(), &id).await {
                Some(r) => s.run_counters(r.id).await.unwrap().copied >= 100,
                None => false,
            }
        }
    })
    .await;
    hub.kill();
    let _ = hub.child.wait().await;
    let before = store
        .run_counters(latest_run(store.as_ref(), &id).await.unwrap().id)
        .await
        .unwrap();
    assert!(
        before.copied < 1500,
        "finished before the restart: {before:?}"
    );
    let _hub = Proc::spawn(&args, &key).await;
    wait_for_task_end(&store, &id, Duration::from_secs(300)).await;
    assert_eq!(task_status(store.as_ref(), &id).await, TaskStatus::Done);
    let runs = store.list_runs(&id, 10).await.unwrap();
    assert_eq!(
        runs.len(),
        1,
        "the restart must resume the run, not start another: {runs:?}"
    );
    assert_run(store.as_ref(), runs[0].id, 1500).await;
    assert_copied(&peer, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hubs_fire_a_schedule_once() {
    let pg = PgServer::start();
    let db = pg.create_database("hubs");
    let key = new_key();
    let store = dth_store::open(&db, MasterKey::parse(&key).unwrap())
        .await
        .unwrap();
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let want = seed(&peer, 50, &[]).await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let args = [
        "serve",
        "--store",
        &db,
        "--data-dir",
        data_dir,
        "--listen",
        "127.0.0.1:0",
    ];
    let a = Proc::spawn(&args, &key).await;
    let b = Proc::spawn(&args, &key).await;
    // Both hubs are up; a schedule every 4 s fires in one of them only.
    let id = create_task(
        b.url.as_deref().unwrap(),
        &spec(&peer, serde_json::json!({"every-seconds": 4}), 1 << 30),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let runs = store.list_runs(&id, 100).await.unwrap();
    assert!(
        (2..=4).contains(&runs.len()),
        "expected one run per 4 s firing, got {}: {runs:?}",
        runs.len()
    );
    let mut started: Vec<i64> = runs.iter().map(|r| r.started_at).collect();
    started.sort();
    for w in started.windows(2) {
        assert!(w[1] - w[0] >= 3000, "two runs fired together: {started:?}");
    }
    a.terminate();
    b.terminate();
    assert_copied(&peer, &want).await;
    assert!(runs.iter().filter(|r| r.status.is_active()).count() <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interrupted_sync_with_state_file_resumes() {
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let want = seed(&peer, 600, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("sync.db");
    let key = new_key();
    let url = peer.endpoint_url();
    let args = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dth"));
        cmd.args([
            "s3",
            "sync",
            "s3://src",
            "s3://dst",
            "--json",
            "--no-server-side-copy",
        ])
        .args([
            "--src-endpoint",
            &url,
            "--dst-endpoint",
            &url,
            "--bwlimit",
            "150K",
        ])
        .arg("--state")
        .arg(&state)
        .env("DTH_SRC_ACCESS_KEY_ID", peer.access_key())
        .env("DTH_SRC_SECRET_ACCESS_KEY", peer.secret_key())
        .env("DTH_DST_ACCESS_KEY_ID", peer.access_key())
        .env("DTH_DST_SECRET_ACCESS_KEY", peer.secret_key())
        .env("DTH_MASTER_KEY", &key)
        .env_remove("AWS_CA_BUNDLE")
        .kill_on_drop(true);
        cmd
    };
    // First invocation, slowed down, interrupted after some objects.
    let first = args().stdout(Stdio::piped()).spawn().unwrap();
    let db = format!("sqlite://{}", state.display());
    let t0 = Instant::now();
    let store = loop {
        if state.exists()
            && let Ok(s) = dth_store::open(&db, MasterKey::parse(&key).unwrap()).await
        {
            let tasks = s.list_tasks().await.unwrap();
            if let Some(t) = tasks.first()
                && let Some(r) = latest_run(s.as_ref(), &t.id).await
                && s.run_counters(r.id).await.unwrap().copied >= 100
            {
                break s;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no progress recorded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    unsafe {
        libc::kill(first.id().unwrap() as i32, libc::SIGINT);
    }
    let out = first.wait_with_output().await.unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(130), "{s}");
    assert!(s["copied"].as_u64().unwrap() < 600, "{s}");
    // Second invocation: the same run goes on, and ends with every object copied once.
    let out = args().output().await.unwrap();
    let s2: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{s2}");
    assert_eq!(s2["resumed"], true, "{s2}");
    assert_eq!(s2["run_id"], s["run_id"], "{s2}");
    assert_eq!(s2["copied"], 600, "{s2}");
    assert_eq!(s2["failed"], 0, "{s2}");
    assert_run(store.as_ref(), s2["run_id"].as_i64().unwrap(), 600).await;
    assert_copied(&peer, &want).await;
    // A third run is a fresh, incremental one: nothing to copy.
    let out = args().output().await.unwrap();
    let s3: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            s3["copied"].as_u64(),
            s3["skipped"].as_u64(),
            s3["resumed"].as_bool()
        ),
        (Some(0), Some(600), Some(false)),
        "{s3}"
    );
}
