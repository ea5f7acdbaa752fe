//! Faults between dth and a real registry: 429 with Retry-After, 503s, corrupted blob bodies,
//! blob downloads redirected to storage that refuses credentials, chunk answers lost mid-upload,
//! and a layer of 200 MiB.

use std::time::Duration;

use base64::Engine as _;
use dth_testkit::{
    OciLayout, Registry, RegistryFaults, RegistryProxy, inspect_raw, random_bytes, sha256_digest,
    skopeo_try,
};

use crate::image_common::*;

#[tokio::test]
async fn throttling_and_503s_still_give_complete_copies() {
    let (src, dst) = (Registry::start().await, Registry::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(dir.path());
    push_fixture(&layout, &images, &src).await;
    let proxy = RegistryProxy::start(
        &src.host(),
        RegistryFaults {
            throttle_every: 6,
            retry_after_secs: 1,
            fail_every: 5,
            ..Default::default()
        },
    )
    .await;
    let dst_proxy = RegistryProxy::start(
        &dst.host(),
        RegistryFaults {
            fail_every: 7,
            ..Default::default()
        },
    )
    .await;
    let run = image_sync(
        &format!("docker://{}", proxy.host()),
        &format!("docker://{}", dst_proxy.host()),
        &[],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.n("copied"), 4);
    let s = proxy.stats();
    assert!(s.throttled >= 2 && s.failed >= 2, "{s:?}");
    assert!(dst_proxy.stats().failed >= 2, "{:?}", dst_proxy.stats());
    let src_requests = &run.summary()["source_requests"];
    assert_eq!(src_requests["throttled"].as_u64().unwrap(), s.throttled);
    assert!(src_requests["retries"].as_u64().unwrap() >= s.throttled + s.failed);
    for img in &images {
        for tag in &img.tags {
            assert_same_image(&src, &dst, &format!("{}:{tag}", img.repo)).await;
        }
    }
}

#[tokio::test]
async fn blob_downloads_redirected_to_storage_never_carry_credentials() {
    let (src, dst) = (
        Registry::start_with_basic_auth("reader", "r3ader-pw").await,
        Registry::start().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(dir.path());
    push_fixture(&layout, &images, &src).await;
    // The storage stands in for a presigned URL: it signs for itself and refuses a request that
    // brings the registry's credentials along.
    let presigned = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("reader:r3ader-pw")
    );
    let storage = RegistryProxy::start(
        &src.host(),
        RegistryFaults {
            storage_authorization: Some(presigned),
            ..Default::default()
        },
    )
    .await;
    let front = RegistryProxy::start(
        &src.host(),
        RegistryFaults {
            redirect_blob_gets_to: Some(storage.host()),
            ..Default::default()
        },
    )
    .await;
    let run = image_sync(
        &format!("docker://{}", front.host()),
        &format!("docker://{}", dst.host()),
        &["--src-creds", "reader:r3ader-pw"],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.n("copied"), 4);
    let (f, st) = (front.stats(), storage.stats());
    assert!(
        f.redirected >= 6,
        "every distinct blob was redirected: {f:?}"
    );
    assert_eq!(st.refused, 0, "credentials followed a redirect: {st:?}");
    assert_eq!(st.requests, f.redirected, "{f:?} {st:?}");
    for img in &images {
        for tag in &img.tags {
            assert_same_image(&src, &dst, &format!("{}:{tag}", img.repo)).await;
        }
    }
}

#[tokio::test]
async fn lost_chunk_answers_start_the_blob_over_in_a_new_session() {
    let (src, dst) = (Registry::start().await, Registry::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(dir.path());
    push_fixture(&layout, &images[..1], &src).await;
    // The registry keeps each chunk but its answer is lost. distribution then refuses the chunk
    // sent again under the old `_state` and cancels the session: the blob must start over in a
    // new session rather than fail the image (or leave a short blob behind).
    let proxy = RegistryProxy::start(
        &dst.host(),
        RegistryFaults {
            lose_patch_answers: 2,
            ..Default::default()
        },
    )
    .await;
    let mark = dst.mark();
    let run = image_sync(
        &format!("docker://{}/app-a:1.0", src.host()),
        &format!("docker://{}/app-a:1.0", proxy.host()),
        &["--dst-upload", "chunked:1M", "--blobs", "1"],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.n("copied"), 1);
    assert_eq!(proxy.stats().lost, 2);
    let log = mark.since().await;
    let sessions = log
        .iter()
        .filter(|l| l.method == "POST" && l.path.contains("/blobs/uploads/"))
        .count();
    assert!(
        sessions > 3,
        "3 blobs, and new sessions after lost answers: {log:?}"
    );
    assert_same_image(&src, &dst, "app-a:1.0").await;
}

#[tokio::test]
async fn a_corrupted_blob_is_caught_and_fetched_again() {
    let (src, dst) = (Registry::start().await, Registry::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(dir.path());
    push_fixture(&layout, &images[..1], &src).await;

    // No retries: the image fails with a digest mismatch and its tag never appears.
    let proxy = RegistryProxy::start(
        &src.host(),
        RegistryFaults {
            corrupt_blob_gets: 1,
            ..Default::default()
        },
    )
    .await;
    let run = image_sync(
        &format!("docker://{}/app-a:1.0", proxy.host()),
        &format!("docker://{}/app-a:1.0", dst.host()),
        &["--retries", "0"],
        &[],
    )
    .await;
    assert_eq!(proxy.stats().corrupted, 1);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.n("failed"), 1);
    assert!(run.stderr.contains("digest mismatch"), "{}", run.stderr);
    let target = format!("docker://{}/app-a:1.0", dst.host());
    assert!(
        skopeo_try(&["inspect", "--raw", "--tls-verify=false", &target])
            .await
            .is_err(),
        "the tag must not exist"
    );
    // No corrupted blob was stored: every blob file the registry holds hashes to its name.
    for entry in walk(&dst.root().join("docker/registry/v2/blobs")) {
        if entry.ends_with("data") {
            let bytes = std::fs::read(&entry).unwrap();
            let name = entry
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert_eq!(
                sha256_digest(&bytes),
                format!("sha256:{name}"),
                "{}",
                entry.display()
            );
        }
    }

    // With retries the corrupted attempt is thrown away and the blob fetched again.
    let proxy = RegistryProxy::start(
        &src.host(),
        RegistryFaults {
            corrupt_blob_gets: 1,
            ..Default::default()
        },
    )
    .await;
    let run = image_sync(
        &format!("docker://{}/app-a:1.0", proxy.host()),
        &format!("docker://{}/app-a:1.0", dst.host()),
        &[],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(proxy.stats().corrupted, 1);
    assert!(run.n("retried") >= 1);
    assert_same_image(&src, &dst, "app-a:1.0").await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_200_mib_layer_streams_through_verified() {
    let (src, dst) = (Registry::start().await, Registry::start().await);
    let dir = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let t0 = std::time::Instant::now();
    let mut l = OciLayout::create(dir.path());
    let big = l.layer(&random_bytes(42, 200 << 20));
    let small = l.layer(&random_bytes(43, 1000));
    let m = l.image(&[big.clone(), small], "amd64", "big");
    l.tag(&m, "big");
    dth_testkit::push_layout(l.dir(), "big", &src, "big:1").await;
    eprintln!("fixture pushed after {:?}", t0.elapsed());
    let started = std::time::Instant::now();
    let run = image_sync(
        &format!("docker://{}/big:1", src.host()),
        &format!("docker://{}/big:1", dst.host()),
        &[],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.n("bytes") > 200 << 20);
    eprintln!("dth copied 200 MiB in {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(120));
    assert_eq!(sha256_digest(&inspect_raw(&dst, "big:1").await), m.digest);
    let t = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    dth_testkit::pull_to_layout(&dst, "big:1", t.path()).await;
    assert!(verified_blobs(t.path()).contains(&big.digest));
}
