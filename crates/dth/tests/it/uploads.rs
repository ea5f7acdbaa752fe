//! `dth s3 uploads list|abort`: the real binary against servers that list open multipart uploads
//! (moto, rclone serve s3) and one that does not (s3s-fs 0.14). Uploads are opened with the AWS SDK
//! directly, and what is left open is read back from the server's own listing.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use dth_testkit::{PeerKind, S3Peer};

use crate::common::{Run, dth};

/// Opens a multipart upload of `key` with one part sent, and returns its id.
async fn open_upload(c: &Client, bucket: &str, key: &str) -> String {
    let id = match c
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(out) => out.upload_id().expect("upload id").to_string(),
        // rclone serve s3 names the answer's root InitiateMultipartUpload, which the SDK cannot parse.
        Err(e) => {
            let body = e
                .raw_response()
                .and_then(|r| r.body().bytes())
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            match body
                .split_once("<UploadId>")
                .and_then(|(_, rest)| rest.split_once("</UploadId>"))
            {
                Some((id, _)) => id.to_string(),
                None => panic!("open {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)),
            }
        }
    };
    c.upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .part_number(1)
        .body(ByteStream::from(vec![7u8; 1024]))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "part of {key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
    id
}

/// What the server itself lists as open: (key, upload id).
async fn server_open(c: &Client, bucket: &str) -> BTreeSet<(String, String)> {
    let out = c
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "list uploads: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
    assert_ne!(out.is_truncated(), Some(true), "more than one page");
    out.uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap().to_string(),
                u.upload_id().unwrap().to_string(),
            )
        })
        .collect()
}

/// Runs `dth s3 uploads ARGS… --dst-endpoint PEER` with the peer's keys in `DTH_DST_*`, and checks
/// that the secret key is in neither output.
async fn uploads(peer: &S3Peer, args: &[&str]) -> Run {
    uploads_with_secret(peer, args, peer.secret_key()).await
}

async fn uploads_with_secret(peer: &S3Peer, args: &[&str], secret: &str) -> Run {
    let endpoint = peer.endpoint_url();
    let mut all = vec!["s3", "uploads"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--dst-endpoint", &endpoint]);
    let run = dth(
        &all,
        &[
            ("DTH_DST_ACCESS_KEY_ID", peer.access_key()),
            ("DTH_DST_SECRET_ACCESS_KEY", secret),
        ],
    )
    .await;
    assert!(
        !run.stdout.contains(secret) && !run.stderr.contains(secret),
        "the secret key was printed by {args:?}:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    run
}

/// The `--json` lines as (key, upload id), with the `result` of each when there is one.
/// The command failed (exit 2) with one line on stderr that contains `needle`.
fn assert_one_line_error(run: &Run, needle: &str) {
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains(needle), "{}", run.stderr);
}

fn json_lines(run: &Run) -> Vec<(String, String, Option<String>)> {
    run.stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{}", run.stderr));
            (
                v["key"].as_str().unwrap().to_string(),
                v["upload_id"].as_str().unwrap().to_string(),
                v["result"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn pairs(lines: &[(String, String, Option<String>)]) -> BTreeSet<(String, String)> {
    lines
        .iter()
        .map(|(k, u, _)| (k.clone(), u.clone()))
        .collect()
}

#[tokio::test]
async fn uploads_list_and_abort_by_prefix_on_moto() {
    let peer = S3Peer::start(PeerKind::Moto).await;
    peer.create_bucket("bkt").await;
    let c = peer.client();
    let mut first = BTreeSet::new();
    for key in ["prefix1/a.bin", "prefix1/a.bin", "prefix1/deep/b.bin"] {
        first.insert((key.to_string(), open_upload(&c, "bkt", key).await));
    }
    let mut others = BTreeSet::new();
    // `s3://bkt/prefix1` is the folder prefix1/, so prefix10/ is not under it.
    for key in ["prefix2/c.bin", "prefix10/d.bin", "top.bin"] {
        others.insert((key.to_string(), open_upload(&c, "bkt", key).await));
    }
    let everything: BTreeSet<_> = first.union(&others).cloned().collect();
    assert_eq!(server_open(&c, "bkt").await, everything);

    let listed = uploads(&peer, &["list", "s3://bkt", "--json"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(pairs(&json_lines(&listed)), everything);
    assert_eq!(json_lines(&listed).len(), 6);

    let table = uploads(&peer, &["list", "s3://bkt/prefix1"]).await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    let mut lines = table.stdout.lines();
    let header = lines.next().unwrap();
    for column in ["KEY", "INITIATED", "AGE", "UPLOAD ID"] {
        assert!(header.contains(column), "{header}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{}", table.stdout);
    for (key, id) in &first {
        assert!(
            rows.iter()
                .any(|r| r.starts_with(key.as_str()) && r.ends_with(id.as_str())),
            "{key} {id} not in\n{}",
            table.stdout
        );
    }
    assert!(
        table
            .stderr
            .contains("3 open uploads under s3://bkt/prefix1/"),
        "{}",
        table.stderr
    );

    let dry = uploads(&peer, &["abort", "s3://bkt/prefix1", "--dry-run", "--json"]).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let would = json_lines(&dry);
    assert_eq!(pairs(&would), first);
    assert!(
        would
            .iter()
            .all(|(_, _, r)| r.as_deref() == Some("would-abort"))
    );
    assert!(
        dry.stderr.contains("would abort 3 uploads"),
        "{}",
        dry.stderr
    );
    assert_eq!(
        server_open(&c, "bkt").await,
        everything,
        "a dry run aborted"
    );

    // moto says every upload started on 2010-11-10: none is a century old, all are a week old.
    let young = uploads(
        &peer,
        &["abort", "s3://bkt/prefix1", "--older-than", "36500d"],
    )
    .await;
    assert_eq!(young.code, 0, "{}", young.stderr);
    assert_eq!(young.stdout, "");
    assert!(
        young.stderr.contains(
            "aborted 0 uploads, 0 already gone, 0 failed; left 3 started less than 36500d ago"
        ),
        "{}",
        young.stderr
    );
    assert_eq!(server_open(&c, "bkt").await, everything);

    let aborted = uploads(&peer, &["abort", "s3://bkt/prefix1", "--older-than", "7d"]).await;
    assert_eq!(aborted.code, 0, "{}", aborted.stderr);
    let rows: Vec<&str> = aborted.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{}", aborted.stdout);
    assert!(
        rows.iter().all(|r| r.starts_with("aborted ")),
        "{}",
        aborted.stdout
    );
    assert!(
        aborted
            .stderr
            .contains("aborted 3 uploads, 0 already gone, 0 failed; left 0"),
        "{}",
        aborted.stderr
    );
    assert_eq!(server_open(&c, "bkt").await, others);

    let again = uploads(&peer, &["list", "s3://bkt", "--json"]).await;
    assert_eq!(pairs(&json_lines(&again)), others);

    let rest = uploads(&peer, &["abort", "s3://bkt"]).await;
    assert_eq!(rest.code, 0, "{}", rest.stderr);
    assert!(rest.stderr.contains("aborted 3 uploads"), "{}", rest.stderr);
    assert_eq!(server_open(&c, "bkt").await, BTreeSet::new());
    let none = uploads(&peer, &["list", "s3://bkt"]).await;
    assert_eq!((none.code, none.stdout.as_str()), (0, ""));
    assert!(
        none.stderr.contains("0 open uploads under s3://bkt/"),
        "{}",
        none.stderr
    );
}

#[tokio::test]
async fn uploads_abort_of_an_upload_already_gone_is_not_an_error() {
    use dth_model::{Credentials, EndpointSpec, Provider, S3Url};
    use dth_s3::uploads::{Aborted, ListedUpload, UploadPages, abort};

    let peer = S3Peer::start(PeerKind::Moto).await;
    peer.create_bucket("bkt").await;
    let id = open_upload(&peer.client(), "bkt", "k.bin").await;
    let mut spec = EndpointSpec::new(Provider::Other, S3Url::parse("s3://bkt").unwrap());
    spec.endpoint_url = Some(peer.endpoint_url());
    spec.credentials = Credentials::Static {
        access_key_id: peer.access_key().into(),
        secret_access_key: peer.secret_key().into(),
        session_token: None,
    };
    let ep = dth_s3::Endpoint::connect(dth_s3::Side::Destination, &spec, 1)
        .await
        .unwrap();
    let mut pages = UploadPages::new(&ep);
    let page = pages.next_page().await.unwrap().unwrap();
    assert_eq!(pages.next_page().await.unwrap(), None);
    assert_eq!(page.len(), 1);
    let upload: &ListedUpload = &page[0];
    assert_eq!(
        (upload.key.as_str(), upload.upload_id.as_str()),
        ("k.bin", id.as_str())
    );
    assert_eq!(upload.storage_class.as_deref(), Some("STANDARD"));
    assert!(upload.initiated.is_some());
    assert_eq!(abort(&ep, upload).await.unwrap(), Aborted::Now);
    assert_eq!(abort(&ep, upload).await.unwrap(), Aborted::AlreadyGone);
}

#[tokio::test]
async fn uploads_older_than_keeps_recent_uploads_on_rclone() {
    let peer = S3Peer::start(PeerKind::RcloneServe).await;
    peer.create_bucket("bkt").await;
    let c = peer.client();
    let id = open_upload(&c, "bkt", "dir/recent.bin").await;
    let open = BTreeSet::from([("dir/recent.bin".to_string(), id)]);

    let kept = uploads(&peer, &["abort", "s3://bkt", "--older-than", "1h"]).await;
    assert_eq!(kept.code, 0, "{}", kept.stderr);
    assert_eq!(kept.stdout, "");
    assert!(
        kept.stderr.contains("left 1 started less than 1h ago"),
        "{}",
        kept.stderr
    );
    assert_eq!(server_open(&c, "bkt").await, open);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let old = uploads(
        &peer,
        &["abort", "s3://bkt", "--older-than", "2s", "--json"],
    )
    .await;
    assert_eq!(old.code, 0, "{}", old.stderr);
    let lines = json_lines(&old);
    assert_eq!(pairs(&lines), open);
    assert_eq!(lines[0].2.as_deref(), Some("aborted"));
    assert_eq!(server_open(&c, "bkt").await, BTreeSet::new());
}

#[tokio::test]
async fn uploads_errors_are_one_clear_line() {
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("bkt").await;

    // s3s-fs 0.14 does not implement ListMultipartUploads: say so, never print an empty list.
    for args in [
        &["list", "s3://bkt"][..],
        &["abort", "s3://bkt/p", "--dry-run"],
    ] {
        let run = uploads(&peer, args).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{args:?}");
        let err = run.stderr.trim_end();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("error: ListMultipartUploads s3://bkt/"),
            "{err}"
        );
        assert!(err.contains("501 NotImplemented"), "{err}");
        assert!(
            err.contains("cannot list its open multipart uploads"),
            "{err}"
        );
        assert!(err.contains("dth s3 sync --state FILE"), "{err}");
    }

    let missing = uploads(&peer, &["list", "s3://no-such-bucket"]).await;
    assert_one_line_error(&missing, "NoSuchBucket");

    let wrong = "not-the-secret-key";
    let denied = uploads_with_secret(&peer, &["list", "s3://bkt"], wrong).await;
    assert_one_line_error(&denied, "check the destination credentials");

    let port = peer.port();
    drop(peer);
    let run = dth(
        &[
            "s3",
            "uploads",
            "list",
            "s3://bkt",
            "--dst-endpoint",
            &format!("http://127.0.0.1:{port}"),
        ],
        &[
            ("DTH_DST_ACCESS_KEY_ID", "k"),
            ("DTH_DST_SECRET_ACCESS_KEY", "s"),
        ],
    )
    .await;
    assert_one_line_error(&run, "cannot connect");
}
