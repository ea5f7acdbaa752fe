//! `dth s3 sync` behaviours, each run against every peer.

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use dth_testkit::{PeerKind, S3Peer};

use crate::common::*;

/// Keys that break naive tools. File-backed peers (s3s-fs, rclone) store keys as paths, so they cannot
/// hold `//`, a leading `/` or a key that is also a folder; moto holds anything.
fn hostile_keys(kind: PeerKind) -> Vec<String> {
    let mut keys: Vec<String> = [
        "plain.txt",
        "with space.txt",
        "plus+sign",
        "percent%41%2F%zz",
        "unicode/日本語/é.txt",
        "emoji/😀",
        "quote\"s'and`tick",
        "amp&eq=q?hash#semi;colon:at@",
        "brackets[]{}()<>|\\^~!$*,",
        "tilde~/under_score-dash.",
        "sp ace/and+plus/x",
        "a-b",
        "a.b",
        "a/b",
        "a0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // A 1,024-byte key in path components of < 255 bytes (s3s-fs keeps a metadata file named after the
    // key, which fails past one path component's length).
    let max = if kind == PeerKind::S3sFs { 120 } else { 1024 };
    let mut long = String::new();
    while long.len() < max {
        if !long.is_empty() {
            long.push('/');
        }
        let n = (max - long.len()).min(200);
        long.push_str(&"k".repeat(n));
    }
    long.truncate(max);
    keys.push(long);
    if kind == PeerKind::Moto {
        keys.extend(["double//slash", "/leading", "trailing/", "ctl\u{1}char"].map(String::from));
    }
    keys
}

#[tokio::test]
async fn copies_hostile_keys_byte_exact() {
    for kind in PeerKind::ALL {
        let peer = S3Peer::start(kind).await;
        peer.create_bucket("src").await;
        peer.create_bucket("dst").await;
        let c = peer.client();
        let keys = hostile_keys(kind);
        for (i, k) in keys.iter().enumerate() {
            put(&c, "src", k, bytes(i as u64, 100 + i * 37)).await;
        }
        let run = sync(&peer, "s3://src", "s3://dst", &[]).await;
        assert_eq!(run.code, 0, "{kind}: {}", run.stderr);
        assert_eq!(run.n("copied"), keys.len() as u64, "{kind}");
        let want = contents(&c, "src").await;
        let got = contents(&c, "dst").await;
        assert_eq!(want.len(), keys.len(), "{kind}: seeded keys");
        assert_eq!(got, want, "{kind}: destination differs");
        // Nothing left to do.
        let again = sync(&peer, "s3://src", "s3://dst", &[]).await;
        assert_eq!(
            (again.code, again.n("copied"), again.n("skipped")),
            (0, 0, keys.len() as u64),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn keeps_metadata_and_respects_no_metadata() {
    for kind in PeerKind::ALL {
        let peer = S3Peer::start(kind).await;
        for b in ["src", "dst", "bare"] {
            peer.create_bucket(b).await;
        }
        let c = peer.client();
        c.put_object()
            .bucket("src")
            .key("doc.html")
            .body(ByteStream::from_static(b"<h1>hi</h1>"))
            .content_type("text/html; charset=utf-8")
            .cache_control("max-age=60")
            .content_disposition("attachment; filename=\"doc.html\"")
            .content_language("fr")
            .metadata("owner", "team-a")
            .metadata("run", "42")
            .send()
            .await
            .unwrap();
        let run = sync(&peer, "s3://src", "s3://dst", &[]).await;
        assert_eq!(run.code, 0, "{kind}: {}", run.stderr);
        let src = c
            .head_object()
            .bucket("src")
            .key("doc.html")
            .send()
            .await
            .unwrap();
        let dst = c
            .head_object()
            .bucket("dst")
            .key("doc.html")
            .send()
            .await
            .unwrap();
        assert_eq!(
            dst.content_type(),
            Some("text/html; charset=utf-8"),
            "{kind}"
        );
        assert_eq!(dst.metadata(), src.metadata(), "{kind}");
        assert_eq!(
            dst.metadata().unwrap().get("owner").map(String::as_str),
            Some("team-a"),
            "{kind}"
        );
        // Whatever the peer stores of the other headers, the copy has the same.
        assert_eq!(dst.cache_control(), src.cache_control(), "{kind}");
        assert_eq!(
            dst.content_disposition(),
            src.content_disposition(),
            "{kind}"
        );
        assert_eq!(dst.content_language(), src.content_language(), "{kind}");

        let run = sync(&peer, "s3://src", "s3://bare", &["--no-metadata"]).await;
        assert_eq!(run.code, 0, "{kind}: {}", run.stderr);
        let bare = c
            .head_object()
            .bucket("bare")
            .key("doc.html")
            .send()
            .await
            .unwrap();
        assert!(
            bare.metadata().is_none_or(HashMap::is_empty),
            "{kind}: {:?}",
            bare.metadata()
        );
        assert_ne!(
            bare.content_type(),
            Some("text/html; charset=utf-8"),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn copies_large_objects_in_parallel_parts() {
    for kind in PeerKind::ALL {
        let peer = S3Peer::start(kind).await;
        peer.create_bucket("src").await;
        peer.create_bucket("dst").await;
        let c = peer.client();
        let big = bytes(7, 23 * 1024 * 1024 + 123);
        put(&c, "src", "dir/big.bin", big.clone()).await;
        put(&c, "src", "small", b"x".to_vec()).await;
        let report = tempfile::NamedTempFile::new().unwrap();
        let rp = report.path().to_str().unwrap();
        let run = sync(
            &peer,
            "s3://src",
            "s3://dst",
            &[
                "--multipart-threshold",
                "8M",
                "--part-size",
                "5M",
                "--report",
                rp,
            ],
        )
        .await;
        assert_eq!(run.code, 0, "{kind}: {}", run.stderr);
        assert_eq!(get(&c, "dst", "dir/big.bin").await, big, "{kind}");
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(rp)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let big_line = lines
            .iter()
            .find(|l| l["key"] == "dir/big.bin")
            .expect("report line");
        assert_eq!(big_line["action"], "copy");
        assert!(big_line["verification"].is_string(), "{kind}: {big_line}");
        // No multipart upload may remain open.
        let orphans = peer.open_uploads("dst").await;
        assert!(orphans.is_empty(), "{kind}: orphan uploads {orphans:?}");
    }
}

/// Parts of objects with a plain-MD5 ETag stay in memory until the whole-object hash has read them,
/// so they keep their share of `--max-buffer` until then; with a buffer of two parts shared by four
/// objects of five parts each, the copy must still go on (each object takes memory in part order,
/// so the part every other part waits for always holds its own).
#[tokio::test]
async fn large_objects_share_a_two_part_buffer_without_stalling() {
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let c = peer.client();
    let mut objects = Vec::new();
    for i in 0..4u8 {
        let body = bytes(
            40 + u64::from(i),
            5 * 5 * 1024 * 1024 - 1000 * usize::from(i),
        );
        put(&c, "src", &format!("big-{i}"), body.clone()).await;
        objects.push(body);
    }
    let run = tokio::time::timeout(
        std::time::Duration::from_secs(180),
        sync(
            &peer,
            "s3://src",
            "s3://dst",
            &[
                "--multipart-threshold",
                "8M",
                "--part-size",
                "5M",
                "--max-buffer",
                "10M",
                "--transfers",
                "4",
            ],
        ),
    )
    .await
    .expect("the sync went on within 180 s");
    assert_eq!(run.code, 0, "{}", run.stderr);
    for (i, body) in objects.iter().enumerate() {
        assert_eq!(&get(&c, "dst", &format!("big-{i}")).await, body, "big-{i}");
    }
    let orphans = peer.open_uploads("dst").await;
    assert!(orphans.is_empty(), "orphan uploads {orphans:?}");
}

#[tokio::test]
async fn incremental_changed_delete_and_dry_run() {
    for kind in PeerKind::ALL {
        let peer = S3Peer::start(kind).await;
        peer.create_bucket("src").await;
        peer.create_bucket("dst").await;
        let c = peer.client();
        for i in 0..30u64 {
            put(
                &c,
                "src",
                &format!("p{}/obj{i:02}", i % 3),
                bytes(i, 1000 + i as usize),
            )
            .await;
        }
        // Dry run: counts, no writes.
        let plan = sync(&peer, "s3://src", "s3://dst", &["--dry-run"]).await;
        assert_eq!(plan.code, 0, "{kind}: {}", plan.stderr);
        assert_eq!(plan.summary()["detail"]["planned"], 30, "{kind}");
        assert!(keys(&c, "dst").await.is_empty(), "{kind}: dry run wrote");

        let first = sync(&peer, "s3://src", "s3://dst", &[]).await;
        assert_eq!(
            (first.code, first.n("copied")),
            (0, 30),
            "{kind}: {}",
            first.stderr
        );
        let again = sync(&peer, "s3://src", "s3://dst", &[]).await;
        assert_eq!((again.n("copied"), again.n("skipped")), (0, 30), "{kind}");

        // A changed object (new size) is copied again; an extra destination object stays without --delete.
        put(&c, "src", "p1/obj01", bytes(99, 5000)).await;
        put(&c, "dst", "p2/extra", b"only here".to_vec()).await;
        let changed = sync(&peer, "s3://src", "s3://dst", &[]).await;
        assert_eq!(
            (changed.n("copied"), changed.n("deleted")),
            (1, 0),
            "{kind}"
        );
        assert_eq!(get(&c, "dst", "p1/obj01").await, bytes(99, 5000), "{kind}");
        assert!(keys(&c, "dst").await.contains(&"p2/extra".to_string()));

        // --delete --dry-run plans the delete and keeps the object; --delete removes it.
        let plan = sync(
            &peer,
            "s3://src",
            "s3://dst",
            &["--delete", "--dry-run", "-v"],
        )
        .await;
        assert_eq!(plan.summary()["detail"]["planned_deletes"], 1, "{kind}");
        assert!(
            plan.stdout.contains("delete\tp2/extra"),
            "{kind}: {}",
            plan.stdout
        );
        assert!(keys(&c, "dst").await.contains(&"p2/extra".to_string()));
        let del = sync(&peer, "s3://src", "s3://dst", &["--delete"]).await;
        assert_eq!(
            (del.code, del.n("deleted"), del.n("copied")),
            (0, 1, 0),
            "{kind}"
        );
        assert_eq!(
            contents(&c, "dst").await,
            contents(&c, "src").await,
            "{kind}"
        );
    }
}

#[tokio::test]
async fn filters_prefix_lists_and_prefixes() {
    for kind in PeerKind::ALL {
        let peer = S3Peer::start(kind).await;
        for b in ["src", "inc", "plist", "pfx"] {
            peer.create_bucket(b).await;
        }
        let c = peer.client();
        for k in [
            "a/1.jpg",
            "a/2.png",
            "b/3.jpg",
            "b/tmp/4.jpg",
            "c/5.jpg",
            "top.jpg",
        ] {
            put(&c, "src", k, k.as_bytes().to_vec()).await;
        }
        let run = sync(
            &peer,
            "s3://src",
            "s3://inc",
            &["--include", "*.jpg", "--exclude", "b/tmp/*"],
        )
        .await;
        assert_eq!(run.code, 0, "{kind}: {}", run.stderr);
        let mut got = keys(&c, "inc").await;
        got.sort();
        assert_eq!(got, ["a/1.jpg", "b/3.jpg", "c/5.jpg", "top.jpg"], "{kind}");

        let list = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(list.path(), "a/\nb/tmp/\n").unwrap();
        let run = sync(
            &peer,
            "s3://src",
            "s3://plist",
            &["--prefix-list", list.path().to_str().unwrap()],
        )
        .await;
        assert_eq!(run.code, 0, "{kind}: {}", run.stderr);
        let mut got = keys(&c, "plist").await;
        got.sort();
        assert_eq!(got, ["a/1.jpg", "a/2.png", "b/tmp/4.jpg"], "{kind}");

        // A source prefix maps onto a destination prefix.
        let run = sync(
            &peer,
            "s3://src/b",
            "s3://pfx/copy/of/b",
            &["--list-depth", "0"],
        )
        .await;
        assert_eq!(run.code, 0, "{kind}: {}", run.stderr);
        let mut got = keys(&c, "pfx").await;
        got.sort();
        assert_eq!(got, ["copy/of/b/3.jpg", "copy/of/b/tmp/4.jpg"], "{kind}");
        assert_eq!(get(&c, "pfx", "copy/of/b/3.jpg").await, b"b/3.jpg");
    }
}

#[tokio::test]
async fn server_side_copy_within_one_service() {
    for kind in [PeerKind::Moto, PeerKind::S3sFs] {
        let peer = S3Peer::start(kind).await;
        peer.create_bucket("src").await;
        peer.create_bucket("dst").await;
        let c = peer.client();
        put(&c, "src", "x/one", bytes(1, 4096)).await;
        put(&c, "src", "two", bytes(2, 10)).await;
        let report = tempfile::NamedTempFile::new().unwrap();
        let rp = report.path().to_str().unwrap();
        let run = sync_between((&peer, "s3://src"), (&peer, "s3://dst"), &["--report", rp]).await;
        assert_eq!(run.code, 0, "{kind}: {}", run.stderr);
        assert_eq!(
            contents(&c, "dst").await,
            contents(&c, "src").await,
            "{kind}"
        );
        let report = std::fs::read_to_string(rp).unwrap();
        assert!(
            report.contains("\"verification\":\"server-side-"),
            "{kind}: {report}"
        );
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let c = peer.client();
    put(&c, "src", "k", b"v".to_vec()).await;
    let url = peer.endpoint_url();
    let base = [
        "s3",
        "sync",
        "s3://src",
        "s3://dst",
        "--src-endpoint",
        &url,
        "--dst-endpoint",
        &url,
    ];
    let good = [
        ("DTH_SRC_ACCESS_KEY_ID", peer.access_key()),
        ("DTH_SRC_SECRET_ACCESS_KEY", peer.secret_key()),
        ("DTH_DST_ACCESS_KEY_ID", peer.access_key()),
    ];
    let wrong = [good.as_slice(), &[("DTH_DST_SECRET_ACCESS_KEY", "wrong")]].concat();
    let run = dth(&base, &wrong).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("destination") && run.stderr.contains("credentials"),
        "{}",
        run.stderr
    );

    let right = [
        good.as_slice(),
        &[("DTH_DST_SECRET_ACCESS_KEY", peer.secret_key())],
    ]
    .concat();
    let cases: [(&[&str], &str); 5] = [
        (&["s3", "sync", "src", "s3://dst"], "must start with s3://"),
        (&["--src-provider", "azure"], "unknown provider \"azure\""),
        (&["--compare", "bogus"], "compare mode"),
        (&["--part-size", "1M"], "at least 5M"),
        (&["--bwlimit", "fast"], "--bwlimit"),
    ];
    for (args, want) in cases {
        let full: Vec<&str> = if args[0] == "s3" {
            args.to_vec()
        } else {
            [&base[..], args].concat()
        };
        let run = dth(&full, &right).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{args:?}: {}", run.stderr);
    }
    let missing = dth(
        &[
            "s3",
            "sync",
            "s3://nope",
            "s3://dst",
            "--src-endpoint",
            &url,
            "--dst-endpoint",
            &url,
        ],
        &right,
    )
    .await;
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("source") && missing.stderr.contains("NoSuchBucket"),
        "{}",
        missing.stderr
    );
    assert!(keys(&c, "dst").await.is_empty(), "bad input wrote objects");
}

#[tokio::test]
async fn archived_objects_tags_and_destination_options_on_moto() {
    use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
    let peer = S3Peer::start(PeerKind::Moto).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let c = peer.client();
    c.put_object()
        .bucket("src")
        .key("cold")
        .body(ByteStream::from_static(b"frozen"))
        .storage_class(StorageClass::Glacier)
        .send()
        .await
        .unwrap();
    c.put_object()
        .bucket("src")
        .key("tagged")
        .body(ByteStream::from_static(b"labelled"))
        .tagging("team=a%20b&cost=42")
        .send()
        .await
        .unwrap();
    let run = sync(
        &peer,
        "s3://src",
        "s3://dst",
        &[
            "--tags",
            "--storage-class",
            "STANDARD_IA",
            "--sse",
            "AES256",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.n("copied"), 1);
    assert_eq!(run.summary()["detail"]["skipped_archived"], 1);
    assert_eq!(keys(&c, "dst").await, ["tagged"]);
    let head = c
        .head_object()
        .bucket("dst")
        .key("tagged")
        .send()
        .await
        .unwrap();
    assert_eq!(head.storage_class(), Some(&StorageClass::StandardIa));
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    let tags = c
        .get_object_tagging()
        .bucket("dst")
        .key("tagged")
        .send()
        .await
        .unwrap();
    let mut tags: Vec<_> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        [
            ("cost".to_string(), "42".to_string()),
            ("team".to_string(), "a b".to_string())
        ]
    );
}

#[tokio::test]
async fn bandwidth_limit_paces_the_whole_sync() {
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let c = peer.client();
    for i in 0..6u64 {
        put(&c, "src", &format!("k{i}"), bytes(i, 512 * 1024)).await;
    }
    // 3 MiB at 1 MiB/s with a one-second burst cannot finish in under two seconds.
    let started = std::time::Instant::now();
    let run = sync(&peer, "s3://src", "s3://dst", &["--bwlimit", "1M"]).await;
    let took = started.elapsed();
    assert_eq!((run.code, run.n("copied")), (0, 6), "{}", run.stderr);
    assert!(
        took >= std::time::Duration::from_millis(1900),
        "3 MiB at 1 MiB/s took {took:?}"
    );
    assert_eq!(contents(&c, "dst").await, contents(&c, "src").await);
}
