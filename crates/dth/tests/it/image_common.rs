//! Helpers for the image tests: fixtures pushed with skopeo into a real docker-registry, `dth
//! image sync` runs, and independent checks with skopeo.

use std::collections::BTreeSet;
use std::path::Path;

use dth_testkit::{
    OciLayout, Registry, Written, inspect_raw, pull_to_layout, push_layout, random_bytes,
    sha256_digest,
};

use crate::common::{Run, dth};

/// One image in a fixture: repository, tags, and what it is.
pub struct FixtureImage {
    pub repo: &'static str,
    pub tags: Vec<&'static str>,
    pub manifest: Written,
}

/// A layout holding: a shared base layer; `app-a` single-arch with two tags on one digest;
/// `app-b` multi-arch (amd64 + arm64) sharing the base; `team/app-c` single-arch sharing the base.
pub fn standard_fixture(dir: &Path) -> (OciLayout, Vec<FixtureImage>) {
    let mut l = OciLayout::create(dir);
    let base = l.layer(&random_bytes(1, 3 << 20));
    let a_top = l.layer(&random_bytes(2, 300_000));
    let a = l.image(&[base.clone(), a_top], "amd64", "a");
    let b_amd = l.layer(&random_bytes(3, 500_000));
    let b_arm = l.layer(&random_bytes(4, 400_000));
    let b1 = l.image(&[base.clone(), b_amd], "amd64", "b-amd64");
    let b2 = l.image(&[base.clone(), b_arm], "arm64", "b-arm64");
    let b = l.index(&[(b1, "amd64"), (b2, "arm64")]);
    let c_top = l.layer(&random_bytes(5, 100_000));
    let c = l.image(&[base, c_top], "amd64", "c");
    l.tag(&a, "a");
    l.tag(&b, "b");
    l.tag(&c, "c");
    let images = vec![
        FixtureImage {
            repo: "app-a",
            tags: vec!["1.0", "latest"],
            manifest: a,
        },
        FixtureImage {
            repo: "app-b",
            tags: vec!["2.0"],
            manifest: b,
        },
        FixtureImage {
            repo: "team/app-c",
            tags: vec!["3.1"],
            manifest: c,
        },
    ];
    (l, images)
}

/// Pushes every fixture image under each of its tags.
pub async fn push_fixture(layout: &OciLayout, images: &[FixtureImage], registry: &Registry) {
    let names = ["a", "b", "c", "d", "e", "f"];
    for (i, img) in images.iter().enumerate() {
        for tag in &img.tags {
            push_layout(
                layout.dir(),
                names[i],
                registry,
                &format!("{}:{tag}", img.repo),
            )
            .await;
        }
    }
}

/// `dth image sync` with TLS verification off (plain HTTP loopback registries) and `--json`.
pub async fn image_sync(src: &str, dst: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let args = [
        &[
            "image",
            "sync",
            src,
            dst,
            "--json",
            "--src-tls-verify=false",
            "--dst-tls-verify=false",
        ][..],
        extra,
    ]
    .concat();
    dth(&args, env).await
}

/// Checks with skopeo (not our client) that `image` holds the same manifest bytes on both
/// registries, and that every blob at the destination hashes to its name and matches the
/// source's set of blobs.
pub async fn assert_same_image(src: &Registry, dst: &Registry, image: &str) {
    assert_same_image_as(src, image, dst, image).await;
}

/// Like [`assert_same_image`] for an image named differently at the destination.
pub async fn assert_same_image_as(src: &Registry, image: &str, dst: &Registry, dst_image: &str) {
    let a = inspect_raw(src, image).await;
    let b = inspect_raw(dst, dst_image).await;
    assert_eq!(
        sha256_digest(&a),
        sha256_digest(&b),
        "manifest of {image} differs"
    );
    assert_eq!(a, b);
    let ta = tempfile::tempdir().unwrap();
    let tb = tempfile::tempdir().unwrap();
    pull_to_layout(src, image, ta.path()).await;
    pull_to_layout(dst, dst_image, tb.path()).await;
    let blobs_a = verified_blobs(ta.path());
    let blobs_b = verified_blobs(tb.path());
    assert_eq!(blobs_a, blobs_b, "blobs of {image} differ");
}

/// Every blob file's name, after checking its bytes hash to it.
pub fn verified_blobs(layout: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let name = format!("sha256:{}", e.file_name().to_string_lossy());
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(
            sha256_digest(&bytes),
            name,
            "blob {} is corrupt",
            e.path().display()
        );
        out.insert(name);
    }
    out
}
