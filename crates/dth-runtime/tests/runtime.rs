//! The runtime end to end in one process: real S3 peers (s3s-fs), real SQLite files and a real
//! PostgreSQL server, the scheduler and workers running as in `dth serve`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use dth_model::{Actor, ItemState, TaskSpec, TaskStatus};
use dth_runtime::{Config, Hub};
use dth_store::{MasterKey, Store};
use dth_testkit::{FaultProxy, Faults, PeerKind, PgServer, S3Peer};
use md5::{Digest, Md5};
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

const MIB: usize = 1024 * 1024;

async fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let url = format!("sqlite://{}", dir.path().join("dth.db").display());
    dth_store::open(&url, MasterKey::generate()).await.unwrap()
}

fn config(name: &str) -> Config {
    Config {
        worker_id: name.into(),
        concurrency: 16,
        lease: Duration::from_secs(6),
        poll: Duration::from_millis(100),
        retry_base: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(5),
        ..Config::default()
    }
}

/// Starts the scheduler and workers; stops them when the returned token is cancelled.
fn start(hub: &Arc<Hub>) -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(Arc::clone(hub).run_scheduler(stop.clone()));
    tokio::spawn(Arc::clone(hub).run_workers(stop.clone()));
    stop
}

fn endpoint(peer: &S3Peer, url: &str, bucket: &str) -> serde_json::Value {
    serde_json::json!({
        "provider": "other",
        "region": peer.region(),
        "endpoint_url": url,
        "bucket": bucket,
        "prefix": "",
        "credentials": {"kind": "static", "access_key_id": peer.access_key(),
                        "secret_access_key": peer.secret_key(), "session_token": null},
    })
}

fn task(src: serde_json::Value, dst: serde_json::Value, extra: serde_json::Value) -> TaskSpec {
    let mut v = serde_json::json!({
        "name": "test",
        "kind": "s3",
        "source": src,
        "destination": dst,
        "schedule": "once",
        "options": {"part_size": 5 * MIB, "multipart_threshold": 8 * MIB, "retries": 2, "server_side_copy": false},
        "giant_threshold": 16 * MIB,
    });
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    serde_json::from_value(v).unwrap()
}

/// Puts objects and returns (key, md5) of each.
async fn seed(peer: &S3Peer, bucket: &str, objects: &[(String, usize)]) -> Vec<(String, String)> {
    let client = peer.client();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut out = Vec::new();
    for (key, size) in objects {
        let mut body = vec![0u8; *size];
        rng.fill(&mut body[..]);
        out.push((key.clone(), hex::encode(Md5::digest(&body))));
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
    }
    out
}

async fn assert_copied(peer: &S3Peer, bucket: &str, want: &[(String, String)]) {
    let client = peer.client();
    for (key, md5) in want {
        let out = client.get_object().bucket(bucket).key(key).send().await;
        let out = out.unwrap_or_else(|e| panic!("{key} missing at the destination: {e}"));
        let body = out.body.collect().await.unwrap().into_bytes();
        assert_eq!(&hex::encode(Md5::digest(&body)), md5, "{key}");
    }
}

fn orphan_uploads(peer: &S3Peer) -> Vec<String> {
    std::fs::read_dir(peer.data_dir().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload-"))
        .collect()
}

async fn wait_for(store: &dyn Store, id: &str, want: &[TaskStatus], limit: Duration) -> TaskStatus {
    let t0 = Instant::now();
    loop {
        let t = store.get_task(id).await.unwrap().unwrap();
        if want.contains(&t.status) {
            return t.status;
        }
        assert!(
            t0.elapsed() < limit,
            "task still {:?} after {limit:?}: {:?}",
            t.status,
            t.error
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn objects(small: usize, giant: usize) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = (0..small)
        .map(|i| {
            (
                format!("small/{:02}/obj-{i:04}", i % 7),
                1024 + (i * 37) % 20_000,
            )
        })
        .collect();
    for i in 0..giant {
        v.push((format!("giant/g{i}.bin"), 24 * MIB + i * 1000));
    }
    v
}

async fn copies_with_exact_counters(store: Arc<dyn Store>) {
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let want = seed(&peer, "src", &objects(300, 2)).await;
    let hub = Hub::new(Arc::clone(&store), config("w1"));
    let stop = start(&hub);
    let url = peer.endpoint_url();
    let t = create(
        &hub,
        task(
            endpoint(&peer, &url, "src"),
            endpoint(&peer, &url, "dst"),
            serde_json::json!({}),
        ),
    )
    .await
    .unwrap();
    // The stored spec holds no clear secret.
    assert!(!t.spec.to_string().contains(peer.secret_key()));
    let status = wait_for(
        store.as_ref(),
        &t.id,
        &[TaskStatus::Done, TaskStatus::Error],
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(
        status,
        TaskStatus::Done,
        "{:?}",
        store.get_task(&t.id).await.unwrap()
    );
    let run = &store.list_runs(&t.id, 10).await.unwrap()[0];
    let c = store.run_counters(run.id).await.unwrap();
    assert_eq!(
        (c.found, c.copied, c.skipped, c.dead, c.pending),
        (302, 302, 0, 0, 0),
        "{c:?}"
    );
    assert_eq!(
        c.copied_bytes,
        objects(300, 2).iter().map(|o| o.1 as u64).sum::<u64>()
    );
    // Giant objects went through parts, verified.
    let items = store
        .list_items(run.id, Some(ItemState::Done), 0, 1000)
        .await
        .unwrap();
    let giants: Vec<_> = items
        .iter()
        .filter(|i| i.key.starts_with("giant/") && i.kind == dth_model::ItemKind::Object)
        .collect();
    assert_eq!(giants.len(), 2);
    assert!(store.parts(giants[0].id).await.unwrap().len() >= 4);
    assert!(
        items
            .iter()
            .filter(|i| i.kind == dth_model::ItemKind::Object)
            .all(|i| i.verification.is_some()),
        "{items:?}"
    );
    assert_copied(&peer, "dst", &want).await;
    assert!(
        orphan_uploads(&peer).is_empty(),
        "{:?}",
        orphan_uploads(&peer)
    );

    // Run again: everything is up to date.
    hub.start_task(&Actor::system(), &t.id).await.unwrap();
    let t0 = Instant::now();
    loop {
        let runs = store.list_runs(&t.id, 10).await.unwrap();
        if runs.len() == 2 && !runs[0].status.is_active() {
            let c = store.run_counters(runs[0].id).await.unwrap();
            assert_eq!((c.found, c.copied, c.skipped), (302, 0, 302), "{c:?}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "second run did not end: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_copies_small_and_giant_objects_with_exact_counters() {
    let dir = tempfile::tempdir().unwrap();
    copies_with_exact_counters(sqlite(&dir).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_copies_small_and_giant_objects_with_exact_counters() {
    let pg = PgServer::start();
    let url = pg.create_database("runtime");
    copies_with_exact_counters(dth_store::open(&url, MasterKey::generate()).await.unwrap()).await;
}

/// A local HTTP sink that keeps every body POSTed to it.
async fn webhook_sink() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let body = &buf[end + 4..end + 4 + len];
                            if let Ok(v) = serde_json::from_slice(body) {
                                let _ = tx.send(v);
                            }
                            let _ = sock
                                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_raise_a_webhook_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir).await;
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let mut objs: Vec<(String, usize)> = (0..10).map(|i| (format!("open/o{i}"), 2000)).collect();
    objs.extend((0..3).map(|i| (format!("secret/s{i}"), 2000)));
    let want = seed(&peer, "src", &objs).await;
    let proxy = FaultProxy::start(
        &peer.endpoint_url(),
        Faults {
            deny_path_containing: Some("/secret/".into()),
            ..Faults::default()
        },
    )
    .await;
    let (hook, mut bodies) = webhook_sink().await;
    let hub = Hub::new(Arc::clone(&store), config("w1"));
    let stop = start(&hub);
    let t = create(
        &hub,
        task(
            endpoint(&peer, &proxy.endpoint_url(), "src"),
            endpoint(&peer, &peer.endpoint_url(), "dst"),
            serde_json::json!({"alarms": [{"kind": "webhook", "url": hook}], "max_attempts": 2}),
        ),
    )
    .await
    .unwrap();
    let status = wait_for(
        store.as_ref(),
        &t.id,
        &[TaskStatus::Done, TaskStatus::Error],
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(status, TaskStatus::Error);
    let run = &store.list_runs(&t.id, 10).await.unwrap()[0];
    let c = store.run_counters(run.id).await.unwrap();
    assert_eq!((c.found, c.copied, c.dead), (13, 10, 3), "{c:?}");
    let dead = store
        .list_items(run.id, Some(ItemState::Dead), 0, 100)
        .await
        .unwrap();
    assert!(
        dead.iter().all(|i| i.key.starts_with("secret/")
            && i.last_error
                .as_deref()
                .unwrap_or("")
                .contains("AccessDenied")),
        "{dead:?}"
    );
    assert_copied(&peer, "dst", &want[..10]).await;
    let alarm = tokio::time::timeout(Duration::from_secs(20), bodies.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alarm["task_id"], t.id.as_str());
    assert!(
        ["items.dead", "task.error"].contains(&alarm["kind"].as_str().unwrap()),
        "{alarm}"
    );
    assert!(
        alarm["message"].as_str().unwrap().contains("secret/"),
        "{alarm}"
    );
    stop.cancel();
}

/// Runs one task per entry of `transfers` at once in one worker process (concurrency 16), each
/// copying 12 objects from its own bucket through its own proxy that holds every object GET back
/// 300 ms. Checks that every task copies and verifies all its objects, bytes included, and returns
/// per task the most source GETs that were in flight at one time.
async fn gets_in_flight(transfers: &[usize]) -> Vec<u64> {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&dir).await;
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("dst").await;
    let hub = Hub::new(Arc::clone(&store), config("w1"));
    let stop = start(&hub);
    let mut tasks = Vec::new();
    for (n, t) in transfers.iter().enumerate() {
        let src = format!("src{n}");
        peer.create_bucket(&src).await;
        let objs: Vec<(String, usize)> = (0..12)
            .map(|i| (format!("t{n}/o{i:02}"), 3000 + n * 500 + i * 100))
            .collect();
        let want = seed(&peer, &src, &objs).await;
        let slow = Faults {
            delay_object_gets: Duration::from_millis(300),
            ..Faults::default()
        };
        let proxy = FaultProxy::start(&peer.endpoint_url(), slow).await;
        let options = serde_json::json!({"transfers": t, "retries": 2, "server_side_copy": false});
        let spec = task(
            endpoint(&peer, &proxy.endpoint_url(), &src),
            endpoint(&peer, &peer.endpoint_url(), "dst"),
            serde_json::json!({"options": options}),
        );
        let id = create(&hub, spec).await.unwrap().id;
        tasks.push((id, proxy, want));
    }
    let mut most = Vec::new();
    for (id, proxy, want) in &tasks {
        let status = wait_for(
            store.as_ref(),
            id,
            &[TaskStatus::Done, TaskStatus::Error],
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(status, TaskStatus::Done, "{:?}", store.get_task(id).await);
        let run = &store.list_runs(id, 10).await.unwrap()[0];
        let c = store.run_counters(run.id).await.unwrap();
        assert_eq!((c.found, c.copied, c.dead), (12, 12, 0), "{c:?}");
        let items = store.list_items(run.id, None, 0, 100).await.unwrap();
        assert!(items.iter().all(|i| i.verification.is_some()), "{items:?}");
        assert_copied(&peer, "dst", want).await;
        most.push(proxy.stats().max_object_gets_in_flight);
    }
    stop.cancel();
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_bounds_a_tasks_objects_in_flight_per_worker() {
    let most = gets_in_flight(&[2]).await;
    assert!((1..=2).contains(&most[0]), "{most:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_at_its_transfers_leaves_the_other_slots_to_other_tasks() {
    // The first task is created first, so its items are ahead in the queue.
    let most = gets_in_flight(&[2, 8]).await;
    assert!((1..=2).contains(&most[0]), "{most:?}");
    assert!(most[1] > 2, "{most:?}");
}

/// Creates a task as the hub itself.
async fn create(hub: &Hub, spec: TaskSpec) -> Result<dth_store::Task, dth_runtime::Error> {
    let spec = serde_json::to_value(spec).unwrap();
    hub.create_task(&Actor::system(), &spec).await
}
