//! Local sources: an OCI layout directory and a docker archive (written by skopeo), copied into a
//! real registry and checked with skopeo.

use dth_testkit::{Registry, inspect_raw, random_bytes, sha256_digest, skopeo};

use crate::image_common::*;

#[tokio::test]
async fn oci_layout_one_tag_and_all_tags() {
    let dst = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(dir.path());
    let d = dir.path().to_str().unwrap();

    let run = image_sync(
        &format!("oci:{d}:b"),
        &format!("docker://{}/local/b:2.0", dst.host()),
        &[],
        &[],
    )
    .await;
    assert_eq!((run.code, run.n("copied")), (0, 1), "{}", run.stderr);
    let raw = inspect_raw(&dst, "local/b:2.0").await;
    assert_eq!(sha256_digest(&raw), images[1].manifest.digest);
    let on_disk = std::fs::read(
        layout
            .dir()
            .join("blobs/sha256")
            .join(&images[1].manifest.digest[7..]),
    )
    .unwrap();
    assert_eq!(raw, on_disk);
    let t = tempfile::tempdir().unwrap();
    dth_testkit::pull_to_layout(&dst, "local/b:2.0", t.path()).await;
    let pulled = verified_blobs(t.path());
    assert!(
        pulled.len() >= 7,
        "index, 2 manifests, 2 configs, 3 layers: {pulled:?}"
    );

    // Every tag of the layout into one repository.
    let run = image_sync(
        &format!("oci:{d}"),
        &format!("docker://{}/local/all", dst.host()),
        &[],
        &[],
    )
    .await;
    assert_eq!((run.code, run.n("copied")), (0, 3), "{}", run.stderr);
    for (tag, img) in ["a", "b", "c"].iter().zip(&images) {
        assert_eq!(
            sha256_digest(&inspect_raw(&dst, &format!("local/all:{tag}")).await),
            img.manifest.digest
        );
    }
    // Without a destination repository the images have no name: a clear error.
    let run = image_sync(
        &format!("oci:{d}"),
        &format!("docker://{}", dst.host()),
        &[],
        &[],
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("without a repository name"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn docker_archive_from_skopeo() {
    let dst = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = standard_fixture(dir.path());
    let archive = dir.path().join("app.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{}:a", layout.dir().display()),
        &format!("docker-archive:{}:team/app:1.0", archive.display()),
    ])
    .await;
    let run = image_sync(
        &format!("docker-archive:{}", archive.display()),
        &format!("docker://{}", dst.host()),
        &[],
        &[],
    )
    .await;
    assert_eq!((run.code, run.n("copied")), (0, 1), "{}", run.stderr);

    // skopeo wrote uncompressed layers into the archive: at the destination each layer is
    // exactly the fixture's layer content, and the config lists those digests as its diff_ids.
    let manifest: serde_json::Value =
        serde_json::from_slice(&inspect_raw(&dst, "team/app:1.0").await).unwrap();
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        layers,
        vec![
            sha256_digest(&random_bytes(1, 3 << 20)),
            sha256_digest(&random_bytes(2, 300_000))
        ]
    );
    let config: serde_json::Value = serde_json::from_slice(
        &skopeo(&[
            "inspect",
            "--config",
            "--tls-verify=false",
            &format!("docker://{}/team/app:1.0", dst.host()),
        ])
        .await,
    )
    .unwrap();
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert_eq!(diff_ids, layers);
    let t = tempfile::tempdir().unwrap();
    dth_testkit::pull_to_layout(&dst, "team/app:1.0", t.path()).await;
    verified_blobs(t.path());
    // Again: unchanged.
    let again = image_sync(
        &format!("docker-archive:{}", archive.display()),
        &format!("docker://{}", dst.host()),
        &[],
        &[],
    )
    .await;
    assert_eq!(
        (again.code, again.n("unchanged")),
        (0, 1),
        "{}",
        again.stderr
    );
}
