//! Image tasks on the hub: `dth serve` copies images between two real docker-registry instances,
//! one item per image, each checked with skopeo; a second run only HEADs; a missing image is
//! dead-lettered on its own while the others are copied.

use std::sync::Arc;
use std::time::Duration;

use dth_model::{ItemKind, ItemState, TaskStatus};
use dth_store::{MasterKey, Store};
use dth_testkit::Registry;
use tempfile::TempDir;

use crate::hub::{Proc, TOKEN, create_task, latest_run, new_key, wait_for_task_end, wait_until};
use crate::image_common::{assert_same_image_as, push_fixture, standard_fixture};

const PASSWORD: &str = "hub-s3cret-pw";

/// `dth serve` on SQLite in a temporary data directory, retrying after 1 s, and its store.
struct SqliteHub {
    url: String,
    store: Arc<dyn Store>,
    _proc: Proc,
    _data: TempDir,
}

impl SqliteHub {
    async fn start() -> SqliteHub {
        let key = new_key();
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().to_str().unwrap();
        let args = [
            "serve",
            "--data-dir",
            dir,
            "--listen",
            "127.0.0.1:0",
            "--retry-delay",
            "1",
        ];
        let proc = Proc::spawn(&args, &key).await;
        let store = dth_store::open(
            &format!("sqlite://{dir}/dth.db"),
            MasterKey::parse(&key).unwrap(),
        )
        .await
        .unwrap();
        SqliteHub {
            url: proc.url.clone().unwrap(),
            store,
            _proc: proc,
            _data: data,
        }
    }
}

/// `POST /api/v1/plan` of a spec.
async fn plan_of(url: &str, spec: &serde_json::Value) -> serde_json::Value {
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/plan"))
        .bearer_auth(TOKEN)
        .json(spec)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(status.is_success(), "plan: {status} {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn image_task_copies_each_image_as_an_item() {
    let src = Registry::start().await;
    let dst = Registry::start_with_basic_auth("mirror", PASSWORD).await;
    let fixture = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(fixture.path());
    push_fixture(&layout, &images, &src).await;

    let hub = SqliteHub::start().await;
    let (url, store) = (hub.url.clone(), Arc::clone(&hub.store));
    let spec = serde_json::json!({
        "name": "mirror images", "kind": "image", "schedule": "once",
        "source": {"location": format!("docker://{}", src.host()), "tls_verify": false},
        "destination": {
            "location": format!("docker://{}/mirror", dst.host()), "tls_verify": false,
            "credentials": {"kind": "basic", "username": "mirror", "password": PASSWORD},
        },
        "images": ["app-a:ALL_TAGS", "app-b:2.0", "team/app-c:3.1", "missing/app:1.0"],
    });
    // The plan before the task: four images to copy, one that cannot be checked; then the run.
    let plan = plan_of(&url, &spec).await;
    let planned = &plan["images"];
    assert_eq!(planned["copy"], 4, "{plan}");
    assert_eq!(planned["up_to_date"], 0);
    assert_eq!(planned["unchecked"], 1);
    assert!(
        planned["errors"][0]
            .as_str()
            .unwrap()
            .contains("missing/app")
    );
    assert!(planned["blobs"].as_u64().unwrap() >= 2, "{plan}");
    assert!(planned["bytes"].as_u64().unwrap() > 0);
    assert_eq!(plan["egress_bytes"], planned["bytes"]);
    let id = create_task(&url, &spec).await;

    // The missing image dead-letters on its own (a 404 is not retried); the task ends in ERROR.
    assert_eq!(
        wait_for_task_end(&store, &id, Duration::from_secs(180)).await,
        TaskStatus::Error
    );
    let task = store.get_task(&id).await.unwrap().unwrap();
    assert!(
        !task.spec.to_string().contains(PASSWORD),
        "the stored spec holds the password: {}",
        task.spec
    );
    let run = latest_run(store.as_ref(), &id).await.unwrap();
    let c = store.run_counters(run.id).await.unwrap();
    assert_eq!(
        (c.found, c.copied, c.dead, c.pending),
        (5, 4, 1, 0),
        "{c:?}"
    );
    let items = store.list_items(run.id, None, 0, 100).await.unwrap();
    assert_eq!(items.len(), 5, "{items:?}");
    for i in &items {
        assert_eq!(i.kind, ItemKind::Image);
        if i.key == "missing/app:1.0" {
            assert_eq!(i.state, ItemState::Dead, "{i:?}");
            let err = i.last_error.as_deref().unwrap_or_default();
            assert!(err.contains("404"), "{err}");
            assert!(!err.contains(PASSWORD));
        } else {
            assert_eq!(i.state, ItemState::Done, "{i:?}");
            assert_eq!(i.verification.as_deref(), Some("digest"));
            let want = images
                .iter()
                .find(|f| i.key.starts_with(&format!("{}:", f.repo)))
                .unwrap();
            assert_eq!(i.dst_etag.as_deref(), Some(want.manifest.digest.as_str()));
        }
    }
    for img in &images {
        for tag in &img.tags {
            let name = format!("{}:{tag}", img.repo);
            assert_same_image_as(&src, &name, &dst, &format!("mirror/{name}")).await;
        }
    }

    assert_eq!(c.copied, planned["copy"].as_u64().unwrap(), "plan vs run");
    // Planned again: everything is up to date, as the second run then finds.
    let again = plan_of(&url, &spec).await;
    assert_eq!(again["images"]["copy"], 0, "{again}");
    assert_eq!(again["images"]["up_to_date"], 4);
    assert_eq!(again["images"]["bytes"], 0);

    // Run it again: every image is up to date after one HEAD per tag at the destination.
    let mark = dst.mark();
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/tasks/{id}/start"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let s = Arc::clone(&store);
    let first = run.id;
    let id2 = id.clone();
    wait_until("a second run to end", Duration::from_secs(120), || {
        let s = Arc::clone(&s);
        let id = id2.clone();
        async move {
            match latest_run(s.as_ref(), &id).await {
                Some(r) => r.id != first && !r.status.is_active(),
                None => false,
            }
        }
    })
    .await;
    let second = latest_run(store.as_ref(), &id).await.unwrap();
    let c = store.run_counters(second.id).await.unwrap();
    assert_eq!(
        (c.found, c.copied, c.skipped, c.dead),
        (5, 0, 4, 1),
        "{c:?}"
    );
    assert_eq!(c.skipped, again["images"]["up_to_date"].as_u64().unwrap());
    let log = mark.since().await;
    let writes: Vec<_> = log
        .iter()
        .filter(|l| l.method != "HEAD" && l.path != "/v2/")
        .collect();
    assert!(
        writes.is_empty(),
        "an up-to-date run only HEADs: {writes:?}"
    );
    // One HEAD per tag at the destination: the four present ones, and at most one for the
    // missing image (whose source answers 404).
    let heads: Vec<&str> = log
        .iter()
        .filter(|l| l.method == "HEAD" && l.is_manifest())
        .map(|l| l.path.as_str())
        .collect();
    let distinct: std::collections::BTreeSet<&str> = heads.iter().copied().collect();
    assert_eq!(distinct.len(), heads.len(), "a tag HEADed twice: {heads:?}");
    for img in &images {
        for tag in &img.tags {
            let path = format!("/v2/mirror/{}/manifests/{tag}", img.repo);
            assert!(
                distinct.contains(path.as_str()),
                "{path} not checked: {heads:?}"
            );
        }
    }
    assert!(heads.len() <= 5, "{heads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrected_secret_is_used_by_the_next_run() {
    let src = Registry::start().await;
    let dst = Registry::start_with_basic_auth("mirror", PASSWORD).await;
    let fixture = tempfile::tempdir().unwrap();
    let (layout, images) = standard_fixture(fixture.path());
    push_fixture(&layout, &images[..1], &src).await;

    let hub = SqliteHub::start().await;
    let (url, store) = (hub.url.clone(), Arc::clone(&hub.store));
    let http = reqwest::Client::new();
    let put_secret = |password: &'static str| {
        let req = http
            .put(format!("{url}/api/v1/secrets/mirror-login"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"username": "mirror", "password": password}));
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
        }
    };
    put_secret("a-wrong-password").await;
    let spec = serde_json::json!({
        "name": "rotated", "kind": "image", "schedule": "once",
        "source": {"location": format!("docker://{}/app-a", src.host()), "tls_verify": false},
        "destination": {
            "location": format!("docker://{}/app-a", dst.host()), "tls_verify": false,
            "credentials": {"kind": "secret", "name": "mirror-login"},
        },
    });
    let id = create_task(&url, &spec).await;

    // Refused credentials are not retried: the run fails on its own, naming the registry.
    assert_eq!(
        wait_for_task_end(&store, &id, Duration::from_secs(180)).await,
        TaskStatus::Error
    );
    let first = latest_run(store.as_ref(), &id).await.unwrap();
    let c = store.run_counters(first.id).await.unwrap();
    assert_eq!((c.copied, c.dead), (0, 2), "{c:?}");
    let items = store.list_items(first.id, None, 0, 10).await.unwrap();
    for i in &items {
        let err = i.last_error.as_deref().unwrap_or_default();
        assert!(err.contains("authentication failed"), "{err}");
        assert!(!err.contains("a-wrong-password"), "{err}");
    }

    // The secret is corrected; the next run reads it again and copies.
    put_secret(PASSWORD).await;
    let resp = http
        .post(format!("{url}/api/v1/tasks/{id}/start"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let s = Arc::clone(&store);
    let id2 = id.clone();
    wait_until("the second run to end", Duration::from_secs(120), || {
        let s = Arc::clone(&s);
        let id = id2.clone();
        async move {
            match latest_run(s.as_ref(), &id).await {
                Some(r) => r.id != first.id && !r.status.is_active(),
                None => false,
            }
        }
    })
    .await;
    let second = latest_run(store.as_ref(), &id).await.unwrap();
    let c = store.run_counters(second.id).await.unwrap();
    assert_eq!((c.copied, c.dead), (2, 0), "{c:?}");
    for tag in &images[0].tags {
        assert_same_image_as(&src, &format!("app-a:{tag}"), &dst, &format!("app-a:{tag}")).await;
    }
}
