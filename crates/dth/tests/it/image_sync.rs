//! `dth image sync` between two real docker-registry instances; results checked with skopeo.

use dth_testkit::{Registry, inspect_raw, skopeo_try};

use crate::image_common::*;

#[tokio::test]
async fn whole_registry_copy_is_exact_then_warm_resync_only_heads() {
    let (src, dst) = (Registry::start().await, Registry::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(dir.path());
    push_fixture(&layout, &images, &src).await;

    let mark = dst.mark();
    let run = image_sync(
        &format!("docker://{}", src.host()),
        &format!("docker://{}", dst.host()),
        &[],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.n("images"), 4);
    assert_eq!(run.n("copied"), 4);
    for img in &images {
        for tag in &img.tags {
            assert_same_image(&src, &dst, &format!("{}:{tag}", img.repo)).await;
        }
        // The pushed digest is the fixture's: skopeo kept the OCI manifest bytes, so did we.
        let raw = inspect_raw(&dst, &format!("{}:{}", img.repo, img.tags[0])).await;
        assert_eq!(dth_testkit::sha256_digest(&raw), img.manifest.digest);
    }
    // Each distinct blob crossed at most once: the shared base layer was uploaded once and
    // mounted into the other repositories.
    let log = mark.since().await;
    let mut uploaded = std::collections::BTreeMap::<String, u32>::new();
    for l in log
        .iter()
        .filter(|l| l.method == "PUT" && l.path.contains("/blobs/uploads/"))
    {
        let digest = l
            .path
            .split("digest=")
            .nth(1)
            .unwrap_or_default()
            .split('&')
            .next()
            .unwrap()
            .to_string();
        *uploaded.entry(digest).or_default() += 1;
    }
    assert!(
        uploaded.values().all(|n| *n == 1),
        "a blob was uploaded twice: {uploaded:?}"
    );
    let mounts = log
        .iter()
        .filter(|l| l.method == "POST" && l.path.contains("mount=") && l.status == 201)
        .count();
    assert!(
        mounts >= 2,
        "the shared base layer should be mounted into the other repositories ({mounts} mounts)"
    );
    assert_eq!(
        run.summary()["blobs_mounted"].as_u64().unwrap() as usize,
        mounts
    );

    // Warm: nothing changed, one HEAD per tag at the destination, no manifest GET anywhere.
    let (src_mark, dst_mark) = (src.mark(), dst.mark());
    let warm = image_sync(
        &format!("docker://{}", src.host()),
        &format!("docker://{}", dst.host()),
        &[],
        &[],
    )
    .await;
    assert_eq!(warm.code, 0, "{}", warm.stderr);
    assert_eq!((warm.n("unchanged"), warm.n("copied")), (4, 0));
    let dst_log = dst_mark.since().await;
    let heads = dst_log
        .iter()
        .filter(|l| l.method == "HEAD" && l.is_manifest())
        .count();
    assert_eq!(heads, 4, "{dst_log:?}");
    assert!(
        dst_log
            .iter()
            .all(|l| l.method == "HEAD" || l.path == "/v2/"),
        "{dst_log:?}"
    );
    let src_log = src_mark.since().await;
    assert!(
        !src_log.iter().any(|l| l.method == "GET" && l.is_manifest()),
        "{src_log:?}"
    );
    assert!(!src_log.iter().any(|l| l.is_blob()), "{src_log:?}");

    // One new tag at the source: only it is copied, and it costs no blob upload (all present).
    dth_testkit::push_layout(layout.dir(), "c", &src, "team/app-c:3.2").await;
    let dst_mark = dst.mark();
    let inc = image_sync(
        &format!("docker://{}", src.host()),
        &format!("docker://{}", dst.host()),
        &["-v"],
        &[],
    )
    .await;
    assert_eq!(inc.code, 0, "{}", inc.stderr);
    assert_eq!((inc.n("copied"), inc.n("unchanged")), (1, 4));
    assert!(
        inc.stdout.contains("copied\tteam/app-c:3.2"),
        "{}",
        inc.stdout
    );
    assert!(
        !dst_mark
            .since()
            .await
            .iter()
            .any(|l| l.method == "PUT" && l.is_blob())
    );
    assert_same_image(&src, &dst, "team/app-c:3.2").await;
}

#[tokio::test]
async fn one_repository_renamed_with_filters_and_platforms() {
    let (src, dst) = (Registry::start().await, Registry::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(dir.path());
    push_fixture(&layout, &images, &src).await;
    for tag in ["1.1", "1.2", "v2.0", "dev"] {
        dth_testkit::push_layout(layout.dir(), "a", &src, &format!("app-a:{tag}")).await;
    }
    // Every tag of app-a in semver range, newest two, into mirror/a.
    let run = image_sync(
        &format!("docker://{}/app-a", src.host()),
        &format!("docker://{}/mirror/a", dst.host()),
        &[
            "--tag-filter",
            "semver:>=1.1",
            "--exclude-tag",
            "v2*",
            "--keep-latest",
            "2",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut tags: Vec<String> = serde_json::from_slice::<serde_json::Value>(
        &dth_testkit::skopeo(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/mirror/a", dst.host()),
        ])
        .await,
    )
    .unwrap()["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, ["1.1", "1.2"]);
    assert_same_image_as(&src, "app-a:1.2", &dst, "mirror/a:1.2").await;

    // One platform of the multi-arch image: a rewritten index with only arm64.
    let run = image_sync(
        &format!("docker://{}/app-b:2.0", src.host()),
        &format!("docker://{}/b-arm:2.0", dst.host()),
        &["--platform", "linux/arm64"],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let index: serde_json::Value =
        serde_json::from_slice(&inspect_raw(&dst, "b-arm:2.0").await).unwrap();
    let children = index["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0]["platform"]["architecture"], "arm64");
    let child = children[0]["digest"].as_str().unwrap();
    let at_src = inspect_raw(&src, &format!("app-b@{child}")).await;
    assert_eq!(inspect_raw(&dst, &format!("b-arm@{child}")).await, at_src);
    // The amd64 child was not copied.
    let full: serde_json::Value =
        serde_json::from_slice(&inspect_raw(&src, "app-b:2.0").await).unwrap();
    let amd = full["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == "amd64")
        .unwrap();
    let target = format!(
        "docker://{}/b-arm@{}",
        dst.host(),
        amd["digest"].as_str().unwrap()
    );
    assert!(
        skopeo_try(&["inspect", "--raw", "--tls-verify=false", &target])
            .await
            .is_err()
    );
    // Re-sync with the same platform is a no-op.
    let again = image_sync(
        &format!("docker://{}/app-b:2.0", src.host()),
        &format!("docker://{}/b-arm:2.0", dst.host()),
        &["--platform", "linux/arm64"],
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

#[tokio::test]
async fn images_from_file_dry_run_and_chunked_uploads() {
    let (src, dst) = (Registry::start().await, Registry::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(dir.path());
    push_fixture(&layout, &images, &src).await;
    let list = dir.path().join("images.txt");
    std::fs::write(
        &list,
        format!(
            "# wanted\n{}/app-a:1.0\napp-b:2.0\n\nteam/app-c:ALL_TAGS\n",
            src.host()
        ),
    )
    .unwrap();

    let mark = dst.mark();
    let dry = image_sync(
        &format!("docker://{}", src.host()),
        &format!("docker://{}/mirror", dst.host()),
        &["--images-from", list.to_str().unwrap(), "--dry-run"],
        &[],
    )
    .await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.n("would_copy"), 3);
    assert!(
        dry.stdout
            .contains("would-copy\tapp-a:1.0\tmirror/app-a:1.0"),
        "{}",
        dry.stdout
    );
    assert!(
        mark.since()
            .await
            .iter()
            .all(|l| l.method == "HEAD" || l.method == "GET"),
        "a dry run wrote"
    );

    let run = image_sync(
        &format!("docker://{}", src.host()),
        &format!("docker://{}/mirror", dst.host()),
        &[
            "--images-from",
            list.to_str().unwrap(),
            "--dst-upload",
            "chunked:1M",
        ],
        &[],
    )
    .await;
    assert_eq!((run.code, run.n("copied")), (0, 3), "{}", run.stderr);
    let patches = mark
        .since()
        .await
        .iter()
        .filter(|l| l.method == "PATCH")
        .count();
    assert!(
        patches >= 4,
        "the 3 MiB base layer alone takes 4 chunks ({patches} PATCHes)"
    );
    for (s, d) in [
        ("app-a:1.0", "mirror/app-a:1.0"),
        ("app-b:2.0", "mirror/app-b:2.0"),
        ("team/app-c:3.1", "mirror/team/app-c:3.1"),
    ] {
        assert_eq!(inspect_raw(&src, s).await, inspect_raw(&dst, d).await);
    }
    let t = tempfile::tempdir().unwrap();
    dth_testkit::pull_to_layout(&dst, "mirror/app-b:2.0", t.path()).await;
    verified_blobs(t.path());
}

#[tokio::test]
async fn basic_auth_on_both_sides() {
    let src = Registry::start_with_basic_auth("alice", "s3cret-src").await;
    let dst = Registry::start_with_basic_auth("bob", "s3cret-dst").await;
    let dir = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(dir.path());
    push_fixture(&layout, &images[..1], &src).await;
    let (s, d) = (
        format!("docker://{}/app-a:1.0", src.host()),
        format!("docker://{}/app-a:1.0", dst.host()),
    );

    // No credentials for the destination: a clear auth error, no secret in it.
    let run = image_sync(&s, &d, &["--src-creds", "alice:s3cret-src"], &[]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("authentication failed"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("s3cret"), "{}", run.stderr);
    // Wrong password.
    let run = image_sync(
        &s,
        &d,
        &[
            "--src-creds",
            "alice:wrong",
            "--dst-creds",
            "bob:s3cret-dst",
        ],
        &[],
    )
    .await;
    assert_ne!(run.code, 0);
    assert!(
        !run.stderr.contains("wrong") && !run.stderr.contains("s3cret"),
        "{}",
        run.stderr
    );

    // Flags for one side, environment for the other, an auth file for a third run.
    let run = image_sync(
        &s,
        &d,
        &["--src-creds", "alice:s3cret-src"],
        &[
            ("DTH_DST_REGISTRY_USER", "bob"),
            ("DTH_DST_REGISTRY_PASSWORD", "s3cret-dst"),
        ],
    )
    .await;
    assert_eq!((run.code, run.n("copied")), (0, 1), "{}", run.stderr);
    assert_eq!(
        inspect_raw(&src, "app-a:1.0").await,
        inspect_raw(&dst, "app-a:1.0").await
    );

    let auth = dir.path().join("config.json");
    std::fs::write(
        &auth,
        format!(
            r#"{{"auths":{{"{}":{{"username":"alice","password":"s3cret-src"}},"http://{}":{{"username":"bob","password":"s3cret-dst"}}}}}}"#,
            src.host(),
            dst.host(),
        ),
    )
    .unwrap();
    let a = auth.to_str().unwrap();
    let run = image_sync(&s, &d, &["--src-authfile", a, "--dst-authfile", a], &[]).await;
    assert_eq!((run.code, run.n("unchanged")), (0, 1), "{}", run.stderr);
}

#[tokio::test]
async fn bad_input_is_one_clear_line_and_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["image", "sync", "s3://bucket", "docker://127.0.0.1:1"],
            "unknown location",
        ),
        (
            &[
                "image",
                "sync",
                "docker://127.0.0.1:1/App:1",
                "docker://127.0.0.1:1",
            ],
            "not a valid repository name",
        ),
        (
            &["image", "sync", "docker://127.0.0.1:1", "oci:/tmp/x"],
            "must be a registry",
        ),
        (
            &[
                "image",
                "sync",
                "docker://127.0.0.1:1",
                "docker://127.0.0.1:2",
                "--tag-filter",
                "regex:(",
            ],
            "bad regex",
        ),
        (
            &[
                "image",
                "sync",
                "docker://127.0.0.1:1",
                "docker://127.0.0.1:2",
                "--platform",
                "amd64",
            ],
            "OS/ARCH",
        ),
        (
            &[
                "image",
                "sync",
                "ecr://12.us-east-1",
                "docker://127.0.0.1:2",
            ],
            "12-digit",
        ),
        (
            &[
                "image",
                "sync",
                "oci:/nonexistent/dir",
                "docker://127.0.0.1:2",
            ],
            "not an OCI layout",
        ),
        (
            &[
                "image",
                "sync",
                "docker://127.0.0.1:1",
                "docker://127.0.0.1:2",
                "--dst-upload",
                "fast",
            ],
            "monolithic",
        ),
        (
            &[
                "image",
                "sync",
                "docker://127.0.0.1:1",
                "docker://127.0.0.1:2",
                "--images-from",
                "/nonexistent",
            ],
            "no such file",
        ),
    ];
    for (args, want) in cases {
        let run = crate::common::dth(args, &[]).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", run.stderr);
        assert!(lines[0].contains(want), "{args:?}: {}", run.stderr);
    }
}

#[tokio::test]
async fn bearer_token_auth_with_cached_tokens() {
    let src = Registry::start_with_token_auth("carol", "t0ken-pass").await;
    let dst = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(dir.path());
    push_fixture(&layout, &images, &src).await;
    let before = src.tokens_issued().unwrap();
    assert!(before > 0, "skopeo used the token server");

    // Anonymous: the token server refuses, a clear error, exit 2 (listing fails before copying).
    let run = image_sync(
        &format!("docker://{}", src.host()),
        &format!("docker://{}", dst.host()),
        &[],
        &[],
    )
    .await;
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("authentication failed"),
        "{}",
        run.stderr
    );

    let run = image_sync(
        &format!("docker://{}", src.host()),
        &format!("docker://{}", dst.host()),
        &["--src-creds", "carol:t0ken-pass"],
        &[],
    )
    .await;
    assert_eq!((run.code, run.n("copied")), (0, 4), "{}", run.stderr);
    // One token per scope set (catalog, then pull per repository), reused for every request.
    let issued = src.tokens_issued().unwrap() - before;
    let requests = run.summary()["source_requests"]["requests"]
        .as_u64()
        .unwrap();
    assert!(
        issued <= 6 && requests > 3 * issued,
        "{issued} tokens for {requests} requests"
    );
    assert!(!run.stderr.contains("t0ken-pass"));
    for img in &images {
        assert_same_image(&src, &dst, &format!("{}:{}", img.repo, img.tags[0])).await;
    }
}
