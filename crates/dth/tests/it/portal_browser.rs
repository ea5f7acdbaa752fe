//! The portal in a real browser: each test starts the real `dth serve` (fresh data directory, a
//! free 127.0.0.1 port) and the peers its scenario needs (s3s-fs, docker-registry, oidc-provider),
//! then runs one Python scenario of `crates/dth/tests/browser/` with Playwright driving Debian's
//! headless Chromium (`.tools/browser`, from `scripts/install-peers`). The scenario gets the
//! addresses, the admin's temporary password and the peers' credentials in its environment, runs
//! axe-core on the pages it visits and saves screenshots into `target/screenshots/`; a non-zero
//! exit fails the test with its output and the end of the hub's log. Afterwards the data is checked
//! at the destination independently: objects byte for byte with the AWS SDK, images with skopeo.
//!
//! The tests skip (saying why) only when `DTH_TOOLS_DIR` is not set; `scripts/test` sets it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dth_testkit::{
    FaultProxy, Faults, OidcAccount, OidcClientConfig, OidcProvider, PeerKind, Registry, S3Peer,
};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{contents, put};
use crate::image_common::{assert_same_image_as, push_fixture, standard_fixture};

/// How long one scenario may run before it is killed (each takes well under a minute).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);
/// How much of the hub's log a failure shows.
const LOG_TAIL: usize = 6000;
const MIB: usize = 1024 * 1024;

/// The browser tools installed by `scripts/install-peers`, or `None` (with the reason printed)
/// when `DTH_TOOLS_DIR` is not set.
fn browser_tools() -> Option<PathBuf> {
    match std::env::var_os("DTH_TOOLS_DIR") {
        Some(dir) if !dir.is_empty() => {
            let tools = PathBuf::from(dir).join("browser");
            assert!(
                tools.join("bin/python").is_file()
                    && tools.join("node_modules/axe-core/axe.min.js").is_file(),
                "{} lacks playwright or axe-core; run scripts/install-peers",
                tools.display()
            );
            Some(tools)
        }
        _ => {
            eprintln!(
                "skipped: DTH_TOOLS_DIR is not set (scripts/test sets it after \
                 scripts/install-peers installs Chromium, Playwright and axe-core)"
            );
            None
        }
    }
}

/// A free 127.0.0.1 port (bound, then let go), for a hub whose address a peer must know first.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A `dth serve` process with its own data directory, killed when dropped.
struct Hub {
    url: String,
    /// The first admin's temporary password, as printed on stdout.
    temporary_password: String,
    log: Arc<Mutex<String>>,
    _child: Child,
    _data: TempDir,
}

impl Hub {
    /// Starts `dth serve --listen 127.0.0.1:0` with fast retries.
    async fn start() -> Hub {
        Hub::start_with("127.0.0.1:0", &[], &[]).await
    }

    /// Starts `dth serve --listen LISTEN` with extra arguments and environment, and waits for the
    /// temporary password (stdout) and the address (stderr).
    async fn start_with(listen: &str, args: &[&str], envs: &[(&str, &str)]) -> Hub {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dth"));
        cmd.args([
            "serve",
            "--listen",
            listen,
            "--retry-delay",
            "1",
            "--data-dir",
        ])
        .arg(data.path())
        .args(args)
        .env("DTH_LOG", "info,sqlx=warn")
        .env_remove("DTH_API_TOKEN")
        .env_remove("DTH_MASTER_KEY")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start dth serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
            .await
            .expect("the temporary password within 60 s")
            .unwrap()
            .unwrap_or_else(|| panic!("dth serve printed nothing on stdout"));
        let temporary_password = first
            .strip_prefix("dth: temporary password (shown once): ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_string();
        let log = Arc::new(Mutex::new(String::new()));
        let url = loop {
            let line = tokio::time::timeout(Duration::from_secs(60), stderr.next_line())
                .await
                .expect("dth serve's address within 60 s")
                .unwrap()
                .unwrap_or_else(|| panic!("dth serve exited: {}", log.lock().unwrap()));
            keep(&log, &line);
            if let Some(rest) = line.split("hub on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                keep(&sink, &line);
            }
        });
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        Hub {
            url,
            temporary_password,
            log,
            _child: child,
            _data: data,
        }
    }

    /// The end of what the hub printed on stderr.
    fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        let start = log.len().saturating_sub(LOG_TAIL);
        let start = (start..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(log.len());
        log[start..].to_string()
    }
}

/// Appends a log line, keeping the buffer bounded.
fn keep(log: &Mutex<String>, line: &str) {
    let mut log = log.lock().unwrap();
    if log.len() > 4 * LOG_TAIL {
        let cut = log.len() - 2 * LOG_TAIL;
        let cut = (cut..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(log.len());
        log.replace_range(..cut, "");
    }
    log.push_str(line);
    log.push('\n');
}

/// Runs `crates/dth/tests/browser/<name>.py` against `hub` with `envs` besides the common ones;
/// panics with its output and the hub's log when it fails.
async fn run_scenario(tools: &std::path::Path, hub: &Hub, name: &str, envs: &[(&str, String)]) {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser"));
    let screenshots = dth_testkit::workspace_root().join("target/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut cmd = Command::new(tools.join("bin/python"));
    cmd.arg(dir.join(format!("{name}.py")))
        .current_dir(&dir)
        .env("DTH_URL", &hub.url)
        .env("DTH_ADMIN_EMAIL", "admin@localhost")
        .env("DTH_ADMIN_PASSWORD", &hub.temporary_password)
        .env("DTH_SCREENSHOTS", &screenshots)
        .env("DTH_AXE", tools.join("node_modules/axe-core/axe.min.js"))
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = tokio::time::timeout(SCENARIO_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{name}.py ran over {SCENARIO_TIMEOUT:?}; the hub's log ends:\n{}",
                hub.log_tail()
            )
        })
        .expect("run the scenario with .tools/browser/bin/python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{name}.py took {:.1?}:\n{stdout}", started.elapsed());
    assert!(
        out.status.success(),
        "{name}.py failed ({}):\n{stdout}\n{stderr}\n--- the hub's log ends:\n{}",
        out.status,
        hub.log_tail()
    );
}

/// The variables of an S3 peer for a scenario.
fn s3_env(prefix: &str, peer: &S3Peer, endpoint: &str) -> Vec<(String, String)> {
    vec![
        (format!("{prefix}_ENDPOINT"), endpoint.to_string()),
        (format!("{prefix}_REGION"), peer.region().to_string()),
        (
            format!("{prefix}_ACCESS_KEY"),
            peer.access_key().to_string(),
        ),
        (
            format!("{prefix}_SECRET_KEY"),
            peer.secret_key().to_string(),
        ),
    ]
}

fn borrowed(envs: &[(String, String)]) -> Vec<(&str, String)> {
    envs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

#[tokio::test]
async fn first_signin_with_the_forced_password_change() {
    let Some(tools) = browser_tools() else { return };
    let hub = Hub::start().await;
    run_scenario(&tools, &hub, "first_signin", &[]).await;
}

/// Objects of several sizes (one above the 16 MiB multipart threshold), keys with spaces and
/// non-ASCII characters.
fn seeded_objects() -> BTreeMap<String, Vec<u8>> {
    [
        ("empty", 0),
        ("one byte", 1),
        ("docs/read me.txt", 4096),
        ("数据/报告 2024.csv", 70_000),
        ("ünïcödé/café ☕.bin", 300_000),
        ("media/clip one.mp4", 3 * MIB + 17),
        ("large/over the multipart threshold.bin", 17 * MIB + 5),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (k, len))| (k.to_string(), crate::common::bytes(i as u64 + 40, len)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_task_through_the_wizard_copies_every_object() {
    let Some(tools) = browser_tools() else { return };
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("photos").await;
    peer.create_bucket("photos-copy").await;
    let want = seeded_objects();
    let client = peer.client();
    for (k, v) in &want {
        put(&client, "photos", k, v.clone()).await;
    }
    // Object reads are held a while, so the detail page sees the counters move: long enough that
    // the page shows the run before it ends even when the whole suite loads the machine (3 s was
    // not: the page took longer than that to show its counters once).
    let slow = FaultProxy::start(
        &peer.endpoint_url(),
        Faults {
            delay_object_gets: Duration::from_secs(8),
            ..Faults::default()
        },
    )
    .await;
    let hub = Hub::start().await;
    // The destination at the peer itself: another endpoint than the source's, so objects are
    // read and written (not copied server-side).
    let mut envs = s3_env("DTH_S3", &peer, &slow.endpoint_url());
    envs.extend([
        ("DTH_S3_DST_ENDPOINT".into(), peer.endpoint_url()),
        ("DTH_SRC_BUCKET".into(), "photos".into()),
        ("DTH_DST_BUCKET".into(), "photos-copy".into()),
        ("DTH_OBJECT_COUNT".into(), want.len().to_string()),
    ]);
    run_scenario(&tools, &hub, "object_task", &borrowed(&envs)).await;
    let got = contents(&client, "photos-copy").await;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, v) in &want {
        assert!(got[k] == *v, "{k:?} differs at the destination");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_task_through_the_wizard_copies_every_image() {
    let Some(tools) = browser_tools() else { return };
    let src = Registry::start().await;
    let dst = Registry::start_with_basic_auth("mirror", "mirror-Pa55word").await;
    let fixture = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(fixture.path());
    push_fixture(&layout, &images, &src).await;
    let hub = Hub::start().await;
    let envs = [
        ("DTH_SRC_REGISTRY", src.host()),
        ("DTH_DST_REGISTRY", dst.host()),
        ("DTH_DST_REGISTRY_USER", "mirror".to_string()),
        ("DTH_DST_REGISTRY_PASSWORD", "mirror-Pa55word".to_string()),
    ];
    run_scenario(&tools, &hub, "image_task", &envs).await;
    for image in ["app-a:1.0", "app-a:latest", "app-b:2.0", "team/app-c:3.1"] {
        assert_same_image_as(&src, image, &dst, &format!("mirror/{image}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_items_retried_after_the_secret_is_fixed() {
    let Some(tools) = browser_tools() else { return };
    let src = Registry::start_with_basic_auth("reader", "reader-Pa55word").await;
    let dst = Registry::start().await;
    let fixture = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(fixture.path());
    push_fixture(&layout, &images, &src).await;
    let hub = Hub::start().await;
    let envs = [
        ("DTH_SRC_REGISTRY", src.host()),
        ("DTH_SRC_REGISTRY_USER", "reader".to_string()),
        ("DTH_SRC_REGISTRY_PASSWORD", "reader-Pa55word".to_string()),
        ("DTH_DST_REGISTRY", dst.host()),
    ];
    run_scenario(&tools, &hub, "dead_items_retry", &envs).await;
    for image in ["app-a:1.0", "team/app-c:3.1"] {
        assert_same_image_as(&src, image, &dst, image).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_clone_and_delete_from_the_task_list() {
    let Some(tools) = browser_tools() else { return };
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let hub = Hub::start().await;
    let envs = s3_env("DTH_S3", &peer, &peer.endpoint_url());
    run_scenario(&tools, &hub, "stop_clone_delete", &borrowed(&envs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_controls_and_forged_posts_are_refused() {
    let Some(tools) = browser_tools() else { return };
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    let hub = Hub::start().await;
    let envs = s3_env("DTH_S3", &peer, &peer.endpoint_url());
    run_scenario(&tools, &hub, "viewer", &borrowed(&envs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_through_the_providers_forms() {
    let Some(tools) = browser_tools() else { return };
    let port = free_port();
    let provider = OidcProvider::start(
        &[OidcClientConfig {
            client_id: "dth-hub".into(),
            client_secret: "dth-hub-secret-7c2e1a".into(),
            redirect_uri: format!("http://127.0.0.1:{port}/auth/oidc/callback"),
        }],
        &[OidcAccount {
            login: "alice".into(),
            email: "alice@example.com".into(),
            email_verified: true,
            name: "Alice Example".into(),
            groups: vec!["dth-operators".into()],
        }],
    )
    .await;
    let hub = Hub::start_with(
        &format!("127.0.0.1:{port}"),
        &[
            "--oidc-issuer",
            provider.issuer(),
            "--oidc-client-id",
            "dth-hub",
            "--oidc-name",
            "Test SSO",
            "--oidc-scopes",
            "openid email profile groups",
            "--oidc-role-map",
            "dth-operators=operator",
        ],
        &[("DTH_OIDC_CLIENT_SECRET", "dth-hub-secret-7c2e1a")],
    )
    .await;
    let envs = [
        ("DTH_OIDC_ISSUER", provider.issuer().to_string()),
        ("DTH_OIDC_LOGIN", "alice".to_string()),
    ];
    run_scenario(&tools, &hub, "oidc_signin", &envs).await;
}

#[tokio::test]
async fn admin_pages_read_as_an_admin() {
    let Some(tools) = browser_tools() else { return };
    let hub = Hub::start().await;
    run_scenario(&tools, &hub, "admin_pages", &[]).await;
}

#[tokio::test]
async fn language_switched_to_chinese_and_back() {
    let Some(tools) = browser_tools() else { return };
    let hub = Hub::start().await;
    run_scenario(&tools, &hub, "language", &[]).await;
}
