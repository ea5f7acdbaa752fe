//! Faults between dth and a real peer: 503s, corrupted and truncated bodies.

use dth_testkit::{FaultProxy, Faults, PeerKind, S3Peer};

use crate::common::*;

/// Runs `dth` with the source (and destination) reached through `proxy`.
async fn sync_via(peer: &S3Peer, src_url: &str, dst_url: &str, extra: &[&str]) -> Run {
    let args = [
        &[
            "s3",
            "sync",
            "s3://src",
            "s3://dst",
            "--json",
            "--no-server-side-copy",
            "--src-endpoint",
            src_url,
            "--dst-endpoint",
            dst_url,
        ][..],
        extra,
    ]
    .concat();
    let env = [
        ("DTH_SRC_ACCESS_KEY_ID", peer.access_key()),
        ("DTH_SRC_SECRET_ACCESS_KEY", peer.secret_key()),
        ("DTH_DST_ACCESS_KEY_ID", peer.access_key()),
        ("DTH_DST_SECRET_ACCESS_KEY", peer.secret_key()),
    ];
    dth(&args, &env).await
}

#[tokio::test]
async fn ten_percent_503s_still_give_a_complete_verified_copy() {
    for kind in [PeerKind::S3sFs, PeerKind::Moto] {
        let peer = S3Peer::start(kind).await;
        peer.create_bucket("src").await;
        peer.create_bucket("dst").await;
        let c = peer.client();
        for i in 0..200u64 {
            put(&c, "src", &format!("d{}/k{i}", i % 4), bytes(i, 2000)).await;
        }
        put(&c, "src", "big", bytes(500, 12 * 1024 * 1024)).await;
        let faults = Faults {
            fail_ratio: 0.1,
            seed: 7,
            ..Faults::default()
        };
        let sp = FaultProxy::start(&peer.endpoint_url(), faults.clone()).await;
        let dp = FaultProxy::start(&peer.endpoint_url(), faults).await;
        let run = sync_via(
            &peer,
            &sp.endpoint_url(),
            &dp.endpoint_url(),
            &[
                "--multipart-threshold",
                "6M",
                "--part-size",
                "5M",
                "--retries",
                "8",
            ],
        )
        .await;
        assert_eq!(run.code, 0, "{kind}: {}", run.stderr);
        assert_eq!(run.n("copied"), 201, "{kind}");
        assert_eq!(run.n("verified"), 201, "{kind}");
        assert!(
            sp.stats().failed + dp.stats().failed > 20,
            "{kind}: too few faults injected"
        );
        assert_eq!(
            contents(&c, "dst").await,
            contents(&c, "src").await,
            "{kind}"
        );
    }
}

#[tokio::test]
async fn corrupted_and_truncated_bodies_are_caught() {
    for kind in PeerKind::ALL {
        let peer = S3Peer::start(kind).await;
        peer.create_bucket("src").await;
        peer.create_bucket("dst").await;
        let c = peer.client();
        for i in 0..5u64 {
            put(&c, "src", &format!("k{i}"), bytes(i, 50_000)).await;
        }
        // With no retries the corrupted objects fail and are not written.
        let proxy = FaultProxy::start(
            &peer.endpoint_url(),
            Faults {
                corrupt_get_bodies: 2,
                ..Faults::default()
            },
        )
        .await;
        let report = tempfile::NamedTempFile::new().unwrap();
        let rp = report.path().to_str().unwrap();
        let run = sync_via(
            &peer,
            &proxy.endpoint_url(),
            &peer.endpoint_url(),
            &["--retries", "0", "--report", rp],
        )
        .await;
        assert_eq!(proxy.stats().corrupted, 2, "{kind}");
        assert_eq!(run.code, 1, "{kind}: {}", run.stderr);
        assert_eq!((run.n("copied"), run.n("failed")), (3, 2), "{kind}");
        let report = std::fs::read_to_string(rp).unwrap();
        assert_eq!(
            report.matches("verification of").count(),
            2,
            "{kind}: {report}"
        );
        assert_eq!(
            keys(&c, "dst").await.len(),
            3,
            "{kind}: a corrupted object was written"
        );

        // With retries, corrupted and truncated bodies are read again and everything arrives intact.
        proxy.set_faults(Faults {
            corrupt_get_bodies: 1,
            truncate_get_bodies: 1,
            ..Faults::default()
        });
        let run = sync_via(&peer, &proxy.endpoint_url(), &peer.endpoint_url(), &[]).await;
        assert_eq!(run.code, 0, "{kind}: {}", run.stderr);
        assert_eq!(run.n("copied"), 2, "{kind}");
        assert_eq!(
            contents(&c, "dst").await,
            contents(&c, "src").await,
            "{kind}"
        );
    }
}
