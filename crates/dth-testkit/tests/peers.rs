//! Smoke test of every peer and of the fault proxy in front of it.
//!
//! Needs the peers from `scripts/install-peers` (see `dth_testkit::tools_dir`).

use aws_sdk_s3::Client;
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use dth_testkit::{FaultProxy, Faults, PeerKind, S3Peer};

const BUCKET: &str = "smoke";
/// Spaces, plus and percent signs must reach the peer exactly as the client encoded them.
const KEY: &str = "dir/a b+c%d.txt";

fn without_retries(client: Client) -> Client {
    Client::from_conf(
        client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build(),
    )
}

async fn get_body(client: &Client, key: &str) -> Result<Vec<u8>, String> {
    let out = client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("GetObject: {}", DisplayErrorContext(&e)))?;
    let body = out
        .body
        .collect()
        .await
        .map_err(|e| format!("GetObject body: {}", DisplayErrorContext(&e)))?;
    Ok(body.into_bytes().to_vec())
}

async fn put(client: &Client, key: &str, body: &[u8]) {
    client
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutObject {key}: {}", DisplayErrorContext(&e)));
}

async fn smoke(kind: PeerKind) {
    let peer = S3Peer::start(kind).await;
    assert_eq!(peer.kind(), kind);
    assert!(peer.endpoint_url().starts_with("http://127.0.0.1:"));
    assert_eq!(peer.region(), "us-east-1");
    assert_eq!(peer.data_dir().is_some(), kind != PeerKind::Moto);

    // Directly.
    peer.create_bucket(BUCKET).await;
    let direct = peer.client();
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    put(&direct, KEY, &body).await;
    assert_eq!(
        get_body(&direct, KEY).await.unwrap(),
        body,
        "{kind}: direct GET"
    );
    if let Some(dir) = peer.data_dir() {
        let file = dir.join(BUCKET).join(KEY);
        assert_eq!(
            std::fs::read(&file).ok(),
            Some(body.clone()),
            "{kind}: {file:?}"
        );
    }
    if kind == PeerKind::S3sFs {
        // Open multipart uploads show as `.upload-*.json` files in the data root.
        let dir = peer.data_dir().unwrap();
        let open_uploads = || {
            std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(".upload-") && n.ends_with(".json"))
                .count()
        };
        let upload = direct
            .create_multipart_upload()
            .bucket(BUCKET)
            .key("mpu")
            .send()
            .await
            .unwrap();
        assert_eq!(open_uploads(), 1);
        direct
            .abort_multipart_upload()
            .bucket(BUCKET)
            .key("mpu")
            .upload_id(upload.upload_id().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(open_uploads(), 0);
    }
    if kind != PeerKind::Moto {
        // s3s-fs and rclone check signatures (moto accepts anything).
        let wrong = Credentials::new(peer.access_key(), "wrong-secret", None, None, "test");
        let config = direct
            .config()
            .to_builder()
            .credentials_provider(wrong)
            .build();
        let err = Client::from_conf(config)
            .list_objects_v2()
            .bucket(BUCKET)
            .send()
            .await
            .expect_err("wrong secret must be refused");
        let code = err.as_service_error().and_then(|e| e.meta().code());
        assert_eq!(code, Some("SignatureDoesNotMatch"), "{kind}");
    }

    // Through a proxy without faults: the Host header reaches the peer unchanged, so the
    // signature the client made for the proxy's address validates.
    let proxy = FaultProxy::start(&peer.endpoint_url(), Faults::default()).await;
    let proxied = without_retries(peer.client_for(&proxy.endpoint_url()));
    put(&proxied, "via-proxy", b"through the proxy").await;
    assert_eq!(
        get_body(&proxied, "via-proxy").await.unwrap(),
        b"through the proxy",
        "{kind}: GET via proxy"
    );
    assert_eq!(
        get_body(&proxied, KEY).await.unwrap(),
        body,
        "{kind}: GET via proxy"
    );
    let listing = proxied
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{kind}: list via proxy: {}", DisplayErrorContext(&e)));
    let mut keys: Vec<_> = listing.contents().iter().filter_map(|o| o.key()).collect();
    keys.sort();
    assert_eq!(keys, [KEY, "via-proxy"], "{kind}: listing via proxy");
    let got_head = proxied
        .head_object()
        .bucket(BUCKET)
        .key(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(got_head.content_length(), Some(body.len() as i64));
    let clean = proxy.stats();
    assert_eq!(clean.faults(), 0);
    assert!(clean.requests >= 4, "{kind}: {clean:?}");

    // Half the requests fail with 503 SlowDown.
    proxy.set_faults(Faults {
        fail_ratio: 0.5,
        seed: 42,
        ..Faults::default()
    });
    let (mut ok, mut slow_down) = (0u64, 0u64);
    for _ in 0..40 {
        match proxied.head_object().bucket(BUCKET).key(KEY).send().await {
            Ok(_) => ok += 1,
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 503 => slow_down += 1,
            Err(e) => panic!("{kind}: unexpected HEAD error {}", DisplayErrorContext(&e)),
        }
    }
    let after_failures = proxy.stats();
    assert!(ok > 5 && slow_down > 5, "{kind}: ok {ok}, 503 {slow_down}");
    assert_eq!(
        after_failures.failed, slow_down,
        "{kind}: {after_failures:?}"
    );
    assert_eq!(after_failures.requests, clean.requests + 40);
    // A GetObject 503 carries the S3 error code.
    let err = loop {
        match proxied.get_object().bucket(BUCKET).key(KEY).send().await {
            Ok(_) => continue,
            Err(e) => break e.into_service_error(),
        }
    };
    assert_eq!(err.meta().code(), Some("SlowDown"), "{kind}: {err:?}");

    // 1 MiB uploads through failures succeed with retries (the proxy reads a refused body first).
    proxy.set_faults(Faults {
        fail_ratio: 0.3,
        seed: 7,
        ..Faults::default()
    });
    let retrying = Client::from_conf(
        proxied
            .config()
            .to_builder()
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(10)
                    .with_initial_backoff(std::time::Duration::from_millis(5)),
            )
            .build(),
    );
    let big: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let failed_before = proxy.stats().failed;
    for i in 0..3 {
        put(&retrying, &format!("big-{i}"), &big).await;
    }
    assert!(
        proxy.stats().failed > failed_before,
        "{kind}: some PUTs refused"
    );
    proxy.set_faults(Faults::default());
    assert_eq!(
        get_body(&proxied, "big-2").await.unwrap(),
        big,
        "{kind}: big object"
    );

    // The first object GET body is corrupted, the next is intact.
    proxy.set_faults(Faults {
        corrupt_get_bodies: 1,
        ..Faults::default()
    });
    // Listings are not touched.
    proxied
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let corrupted = get_body(&proxied, KEY).await.unwrap();
    assert_eq!(corrupted.len(), body.len(), "{kind}: same length");
    assert_ne!(corrupted, body, "{kind}: body corrupted");
    let differing = corrupted.iter().zip(&body).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 1, "{kind}: one byte flipped");
    assert_eq!(
        get_body(&proxied, KEY).await.unwrap(),
        body,
        "{kind}: then intact"
    );

    // The first object GET body is truncated: the client sees an error, not short data.
    proxy.set_faults(Faults {
        truncate_get_bodies: 1,
        ..Faults::default()
    });
    let truncated = get_body(&proxied, KEY).await;
    let err = truncated.expect_err("truncated GET must fail");
    assert!(
        err.contains("GetObject body"),
        "{kind}: fails reading the body: {err}"
    );
    assert_eq!(
        get_body(&proxied, KEY).await.unwrap(),
        body,
        "{kind}: then intact"
    );

    let stats = proxy.stats();
    assert_eq!(
        (stats.corrupted, stats.truncated),
        (1, 1),
        "{kind}: {stats:?}"
    );
    assert_eq!(stats.faults(), stats.failed + 2);
}

#[tokio::test]
async fn s3s_fs() {
    smoke(PeerKind::S3sFs).await;
}

#[tokio::test]
async fn moto() {
    smoke(PeerKind::Moto).await;
}

#[tokio::test]
async fn rclone_serve_s3() {
    smoke(PeerKind::RcloneServe).await;
}

#[tokio::test]
async fn peers_stop_on_drop() {
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    let addr = format!("127.0.0.1:{}", peer.port());
    let data = peer.data_dir().unwrap().to_path_buf();
    assert!(std::net::TcpStream::connect(&addr).is_ok());
    drop(peer);
    assert!(std::net::TcpStream::connect(&addr).is_err(), "port closed");
    assert!(!data.exists(), "data removed");
}
