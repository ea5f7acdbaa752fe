use bytes::Bytes;
use dth_oci::Digest;
use dth_oci::manifest::{Manifest, OCI_MANIFEST};
use dth_oci::profile::UploadStrategy;
use dth_oci::registry::{ClientConfig, Credentials, Mount, RegistryClient};
use dth_testkit::{Registry, random_bytes};
use futures::TryStreamExt;

async fn client(reg: &Registry, upload: Option<UploadStrategy>) -> RegistryClient {
    let mut c = ClientConfig::new(reg.host());
    c.tls_verify = false;
    c.upload = upload;
    c.credentials = reg.credentials().map(|(u, p)| Credentials::new(u, p));
    RegistryClient::connect(c).await.unwrap()
}

async fn put_blob(c: &RegistryClient, repo: &str, data: &[u8]) -> Digest {
    let digest = Digest::of(data);
    let loc = c.start_upload(repo).await.unwrap();
    let body = futures::stream::iter(
        data.chunks(64 * 1024)
            .map(|ch| Ok::<_, dth_oci::Error>(Bytes::copy_from_slice(ch)))
            .collect::<Vec<_>>(),
    );
    c.upload_blob(repo, loc, &digest, data.len() as u64, body)
        .await
        .unwrap();
    digest
}

async fn get_blob(c: &RegistryClient, repo: &str, d: &Digest) -> Vec<u8> {
    let b = c.get_blob(repo, d).await.unwrap();
    let chunks: Vec<Bytes> = b.stream.try_collect().await.unwrap();
    chunks.concat()
}

#[tokio::test]
async fn every_upload_strategy_stores_the_exact_bytes() {
    let reg = Registry::start().await;
    for (i, strategy) in [
        UploadStrategy::Monolithic,
        UploadStrategy::SinglePatch,
        UploadStrategy::Chunked(100_000),
    ]
    .into_iter()
    .enumerate()
    {
        let c = client(&reg, Some(strategy)).await;
        let data = random_bytes(i as u64, 350_001);
        let d = put_blob(&c, "up/a", &data).await;
        assert_eq!(
            c.head_blob("up/a", &d).await.unwrap(),
            Some(350_001),
            "{strategy:?}"
        );
        assert_eq!(get_blob(&c, "up/a", &d).await, data, "{strategy:?}");
        let patches = reg
            .access_log()
            .iter()
            .filter(|l| l.method == "PATCH")
            .count();
        match strategy {
            UploadStrategy::Monolithic => assert_eq!(patches, 0),
            UploadStrategy::SinglePatch => assert_eq!(patches, 1),
            UploadStrategy::Chunked(_) => assert_eq!(patches, 1 + 4),
        }
    }
}

#[tokio::test]
async fn wrong_digest_is_refused_and_nothing_is_stored() {
    let reg = Registry::start().await;
    let c = client(&reg, None).await;
    let data = random_bytes(9, 1000);
    let wrong = Digest::of(b"something else");
    let loc = c.start_upload("x").await.unwrap();
    let body = futures::stream::iter(vec![Ok::<_, dth_oci::Error>(Bytes::from(data))]);
    let e = c
        .upload_blob("x", loc, &wrong, 1000, body)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("400") || e.to_string().contains("DIGEST_INVALID"),
        "{e}"
    );
    assert_eq!(c.head_blob("x", &wrong).await.unwrap(), None);
}

#[tokio::test]
async fn mounts_manifests_tags_and_catalog() {
    let reg = Registry::start_with_basic_auth("u", "p4ss").await;
    let c = client(&reg, None).await;
    let layer = random_bytes(1, 10_000);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let dl = put_blob(&c, "team/one", &layer).await;
    let dc = put_blob(&c, "team/one", config).await;

    // 201: mounted from the repository that has it.
    assert!(matches!(
        c.mount_blob("team/two", &dl, "team/one").await.unwrap(),
        Mount::Mounted
    ));
    assert!(matches!(
        c.mount_blob("team/two", &dc, "team/one").await.unwrap(),
        Mount::Mounted
    ));
    // 202: the source repository lacks it; the session opened can take the upload.
    let other = random_bytes(2, 5000);
    let d_other = Digest::of(&other);
    let Mount::Upload(loc) = c
        .mount_blob("team/two", &d_other, "team/one")
        .await
        .unwrap()
    else {
        panic!("mount of a missing blob must fall back to an upload session")
    };
    let body = futures::stream::iter(vec![Ok::<_, dth_oci::Error>(Bytes::from(other.clone()))]);
    c.upload_blob("team/two", loc, &d_other, 5000, body)
        .await
        .unwrap();
    assert_eq!(get_blob(&c, "team/two", &d_other).await, other);

    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": dc.as_str(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": dl.as_str(), "size": layer.len()}],
    });
    let m = Manifest::new(
        Bytes::from(serde_json::to_vec(&manifest).unwrap()),
        Some(OCI_MANIFEST.into()),
        "t".into(),
    )
    .unwrap();
    for tag in ["1", "2", "latest"] {
        c.put_manifest("team/two", tag, &m).await.unwrap();
    }
    let head = c.head_manifest("team/two", "2").await.unwrap().unwrap();
    assert_eq!(head.digest, m.digest);
    assert_eq!(head.media_type, OCI_MANIFEST);
    let got = c.get_manifest("team/two", m.digest.as_str()).await.unwrap();
    assert_eq!(got.bytes, m.bytes);
    assert!(c.head_manifest("team/two", "nope").await.unwrap().is_none());
    let e = c.get_manifest("team/two", "nope").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let mut tags = c.tags("team/two").await.unwrap();
    tags.sort();
    assert_eq!(tags, ["1", "2", "latest"]);
    let mut repos = c.catalog().await.unwrap();
    repos.sort();
    assert_eq!(repos, ["team/one", "team/two"]);
    let counts = c.stats();
    assert_eq!(counts.mounts, 2);

    // Wrong password: an auth error naming the registry, without the secret.
    let mut bad = ClientConfig::new(reg.host());
    bad.tls_verify = false;
    bad.credentials = Some(Credentials::new("u", "wrong-secret"));
    let bad = RegistryClient::connect(bad).await.unwrap();
    let e = bad.tags("team/two").await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&reg.host()) && text.contains("401") && !text.contains("wrong-secret"),
        "{text}"
    );
    assert!(!format!("{bad:?}").contains("wrong-secret"));
}
