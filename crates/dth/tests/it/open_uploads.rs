//! No multipart upload is ever left open: a `dth s3 sync --state FILE` and a hub killed with SIGKILL
//! again and again while multipart objects (20–200 MiB) are in flight end with every object identical
//! and no upload open at the destination, on s3s-fs (which lacks ListMultipartUploads and keeps one
//! `.upload-*.json` file per open upload) and on moto (which lists them).
//!
//! A process killed while its CreateMultipartUpload is on the wire may leave an upload whose id it
//! never saw; only the provider's listing can find that one (moto here, AWS, MinIO, Ceph). On s3s-fs
//! the kills therefore land when the store shows no upload being opened; on moto they land anywhere.

use std::time::{Duration, Instant};

use dth_model::{ItemState, TaskStatus};
use dth_store::MasterKey;
use dth_testkit::{PeerKind, S3Peer};
use tokio::process::Command;

use crate::hub::{
    MIB, Proc, assert_copied, create_task, latest_run, new_key, restartable_serve, seed, spec,
    wait_for_task_end,
};

/// Waits until the destination has an upload open that is not in `before` (the kill lands
/// mid-copy), then `then` more; then, on a peer without ListMultipartUploads, until no item of the
/// store at `db` is opening an upload.
async fn wait_for_kill_point(peer: &S3Peer, db: &str, key: &str, before: &[String], then: u64) {
    let t0 = Instant::now();
    let limit = Duration::from_secs(90);
    while peer
        .open_uploads("dst")
        .await
        .iter()
        .all(|u| before.contains(u))
    {
        assert!(t0.elapsed() < limit, "no new multipart upload was opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(then)).await;
    if peer.data_dir().is_none() {
        return;
    }
    let store = dth_store::open(db, MasterKey::parse(key).unwrap())
        .await
        .unwrap();
    let task = store.list_tasks().await.unwrap().remove(0);
    let run = latest_run(store.as_ref(), &task.id).await.unwrap();
    loop {
        let leased = store
            .list_items(run.id, Some(ItemState::Leased), 0, 10_000)
            .await
            .unwrap();
        if !leased.iter().any(|i| i.payload["opening_upload"] == true) {
            return;
        }
        assert!(t0.elapsed() < limit, "an upload is always being opened");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn killed_state_sync(kind: PeerKind, large: &[usize], bwlimit: &str) {
    let peer = S3Peer::start(kind).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let want = seed(&peer, 20, large).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("sync.db");
    let key = new_key();
    let url = peer.endpoint_url();
    let db = format!("sqlite://{}", state.display());
    let sync = |limit: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dth"));
        cmd.args(["s3", "sync", "s3://src", "s3://dst", "--json"])
            .args(["--src-endpoint", &url, "--dst-endpoint", &url])
            .args(["--no-server-side-copy", "--part-size", "8M"])
            .args(limit.map(|l| ["--bwlimit", l]).into_iter().flatten())
            .arg("--state")
            .arg(&state)
            .env("DTH_SRC_ACCESS_KEY_ID", peer.access_key())
            .env("DTH_SRC_SECRET_ACCESS_KEY", peer.secret_key())
            .env("DTH_DST_ACCESS_KEY_ID", peer.access_key())
            .env("DTH_DST_SECRET_ACCESS_KEY", peer.secret_key())
            .env("DTH_MASTER_KEY", &key)
            .env_remove("AWS_CA_BUNDLE")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    };
    // Killed three times, each while uploads are open, at different depths into the copy.
    for (round, then) in [200u64, 900, 1600].into_iter().enumerate() {
        let before = peer.open_uploads("dst").await;
        let mut child = sync(Some(bwlimit)).spawn().unwrap();
        wait_for_kill_point(&peer, &db, &key, &before, then).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        assert!(
            !peer.open_uploads("dst").await.is_empty(),
            "round {round}: killed with no upload open"
        );
    }
    // Then run to the end: everything copied once, verified, and no upload left open.
    let out = sync(None)
        .stdout(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert_eq!(s["resumed"], true, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    assert_copied(&peer, &want).await;
    assert_eq!(peer.open_uploads("dst").await, Vec::<String>::new());
    // Every object's item is done in one run (the kills cost attempts, not copies).
    let store = dth_store::open(&db, MasterKey::parse(&key).unwrap())
        .await
        .unwrap();
    let run = s["run_id"].as_i64().unwrap();
    let c = store.run_counters(run).await.unwrap();
    assert_eq!(
        (c.found, c.copied + c.skipped, c.dead),
        (want.len() as u64, want.len() as u64, 0),
        "{c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_state_sync_leaves_no_upload_open_on_s3s_fs() {
    killed_state_sync(
        PeerKind::S3sFs,
        &[20 * MIB, 48 * MIB + 7, 96 * MIB, 200 * MIB - 3],
        "60M",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_state_sync_leaves_no_upload_open_on_moto() {
    killed_state_sync(PeerKind::Moto, &[20 * MIB, 33 * MIB + 5, 64 * MIB], "20M").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_hub_leaves_no_upload_open() {
    let key = new_key();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let db = format!("sqlite://{data_dir}/dth.db");
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let want = seed(&peer, 30, &[24 * MIB, 64 * MIB + 11, 150 * MIB]).await;
    let args = restartable_serve(data_dir);
    let mut hub = Proc::spawn(&args, &key).await;
    // Below the giant threshold: plain multipart copies, slowed so the kills land mid-upload.
    let mut task = spec(&peer, "once".into(), 1 << 30);
    task["options"]["bwlimit"] = (40 * MIB).into();
    let id = create_task(hub.url.as_deref().unwrap(), &task).await;
    let mut before = Vec::new();
    for then in [300u64, 1200] {
        wait_for_kill_point(&peer, &db, &key, &before, then).await;
        before = peer.open_uploads("dst").await;
        assert!(!before.is_empty());
        hub.kill();
        hub = Proc::spawn(&args, &key).await;
    }
    let store = dth_store::open(&db, MasterKey::parse(&key).unwrap())
        .await
        .unwrap();
    let status = wait_for_task_end(&store, &id, Duration::from_secs(300)).await;
    assert_eq!(status, TaskStatus::Done);
    let run = latest_run(store.as_ref(), &id).await.unwrap();
    let c = store.run_counters(run.id).await.unwrap();
    assert_eq!((c.copied, c.dead), (want.len() as u64, 0), "{c:?}");
    assert_copied(&peer, &want).await;
    assert_eq!(peer.open_uploads("dst").await, Vec::<String>::new());
    drop(hub);
}
