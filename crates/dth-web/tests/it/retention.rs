//! Retention of finished runs' items through the API on a real SQLite store: the setting read by
//! a viewer and refused to them for a change, changed by an admin (audited, checked), and the
//! hub's purge with it: a finished run's items go while its summary stays the same, and an active
//! run (its dead item too) is untouched.

use std::sync::Arc;
use std::time::Duration;

use dth_model::{ItemKind, ItemState, Role, RunStatus, Trigger};
use dth_runtime::{Config, Hub};
use dth_store::{Ack, NewItem, NewTask, NewToken, Retry, Store, now_ms};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ADMIN: &str = "tok-retention-admin";
const VIEWER: &str = "dth_retention_viewer_token_0123456789";
const DAY_MS: i64 = 86_400_000;

/// A hub over a SQLite file with its API on a free port; no scheduler (the test purges).
struct Site {
    base: String,
    http: Client,
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Site {
    async fn start() -> Site {
        let (store, dir) = crate::common::sqlite_store().await;
        let mut config = Config::default();
        config.access.env_token = Some(ADMIN.into());
        let hub = Hub::new(store.clone(), config);
        let viewer = NewToken {
            name: "viewer".into(),
            user_id: None,
            role: Role::Viewer,
            expires_at: None,
        };
        store.add_token(&viewer, VIEWER).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let web = dth_web::WebConfig::new(&base.parse().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(dth_web::serve(hub.clone(), web, listener, shutdown.clone()));
        Site {
            base,
            http: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            hub,
            store,
            shutdown,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.call(ADMIN, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    /// A task with a run in TRANSFERRING of `n` 100-byte objects, all claimed by worker `w`.
    async fn run_of(&self, name: &str, n: usize) -> (i64, Vec<i64>) {
        let s = &*self.store;
        let task = s
            .create_task(NewTask {
                name: name.into(),
                kind: "s3".into(),
                spec: json!({}),
                next_run_at: None,
                run_requested_by: None,
            })
            .await
            .unwrap();
        let run = s
            .create_run(&task.id, Trigger::User, None, 1)
            .await
            .unwrap();
        let items: Vec<NewItem> = (0..n)
            .map(|i| NewItem {
                kind: ItemKind::Object,
                key: format!("{name}/{i}"),
                size: 100,
                etag: None,
                part_number: None,
                payload: json!({}),
            })
            .collect();
        s.insert_items(run.id, &items).await.unwrap();
        s.add_up_to_date(run.id, 7, 700).await.unwrap();
        s.set_run_status(run.id, RunStatus::Transferring, None)
            .await
            .unwrap();
        let claimed = s.claim("w", n, Duration::from_secs(60)).await.unwrap();
        (run.id, claimed.iter().map(|i| i.id).collect())
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn done(id: i64) -> Ack {
    Ack {
        id,
        state: ItemState::Done,
        dst_etag: None,
        verification: Some("md5".into()),
        payload: None,
    }
}

fn dead(id: i64) -> Retry {
    Retry {
        id,
        error: "403 Forbidden".into(),
        delay: Duration::ZERO,
        permanent: true,
    }
}

#[tokio::test]
async fn finished_runs_lose_their_items_after_the_retention_and_keep_their_summary() {
    let site = Site::start().await;
    let s = &*site.store;

    // The default, for a viewer; a change is the admin's.
    let (status, body) = site
        .call(VIEWER, Method::GET, "/api/v1/settings/retention", None)
        .await;
    assert_eq!(
        (status, body.clone()),
        (StatusCode::OK, json!({"purge_items_after_days": 30}))
    );
    let (status, body) = site
        .call(
            VIEWER,
            Method::PUT,
            "/api/v1/settings/retention",
            Some(json!({"purge_items_after_days": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    for wrong in [
        json!({"purge_items_after_days": -1}),
        json!({"purge_items_after_days": 36501}),
        json!({"purge_items_after_days": "7"}),
        json!({"days": 7}),
    ] {
        let (status, body) = site
            .call(
                ADMIN,
                Method::PUT,
                "/api/v1/settings/retention",
                Some(wrong.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{wrong}: {body}");
        assert!(
            body["error"].as_str().unwrap().starts_with("retention: "),
            "{body}"
        );
    }
    let (status, body) = site
        .call(
            ADMIN,
            Method::PUT,
            "/api/v1/settings/retention",
            Some(json!({"purge_items_after_days": 7})),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"purge_items_after_days": 7}))
    );
    assert_eq!(
        site.ok("/api/v1/settings/retention").await,
        json!({"purge_items_after_days": 7})
    );
    let audit = site.ok("/api/v1/audit?kind=settings.retention").await;
    assert_eq!(
        audit["events"][0]["message"], "items of finished runs purged 7 days after the run ended",
        "{audit}"
    );

    // A finished run (3 copied, 1 dead) and an active one (1 dead, 2 still leased).
    let (old, items) = site.run_of("old", 4).await;
    s.ack("w", &[done(items[0]), done(items[1]), done(items[2])])
        .await
        .unwrap();
    s.retry_later("w", &[dead(items[3])]).await.unwrap();
    assert_eq!(
        s.finish_run_if_drained(old).await.unwrap(),
        Some(RunStatus::Failed)
    );
    let (active, active_items) = site.run_of("active", 3).await;
    s.retry_later("w", &[dead(active_items[0])]).await.unwrap();
    let old_before = site.ok(&format!("/api/v1/runs/{old}")).await;
    let active_before = site.ok(&format!("/api/v1/runs/{active}")).await;
    assert_eq!(
        (
            &old_before["counters"]["copied"],
            &old_before["counters"]["dead"],
            &old_before["counters"]["skipped"]
        ),
        (&json!(3), &json!(1), &json!(7))
    );

    // Six days after: nothing is due yet; eight days after: the finished run's items go.
    let now = now_ms();
    let early = site
        .hub
        .purge_expired_items(now + 6 * DAY_MS)
        .await
        .unwrap();
    assert_eq!(early.map(|p| p.items), Some(0));
    let purged = site
        .hub
        .purge_expired_items(now + 8 * DAY_MS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((purged.runs, purged.items), (1, 4));
    let page = site.ok(&format!("/api/v1/runs/{old}/items")).await;
    assert_eq!(page["items"], json!([]), "{page}");
    assert_eq!(
        site.ok(&format!("/api/v1/runs/{old}")).await,
        old_before,
        "the summary of a purged run is unchanged"
    );
    assert_eq!(
        site.ok(&format!("/api/v1/runs/{active}")).await,
        active_before
    );
    let page = site.ok(&format!("/api/v1/runs/{active}/items")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3, "{page}");
    assert_eq!(page["items"][0]["state"], "dead", "{page}");

    // 0 keeps items forever.
    let (status, _) = site
        .call(
            ADMIN,
            Method::PUT,
            "/api/v1/settings/retention",
            Some(json!({"purge_items_after_days": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    s.ack("w", &[done(active_items[1]), done(active_items[2])])
        .await
        .unwrap();
    assert_eq!(
        s.finish_run_if_drained(active).await.unwrap(),
        Some(RunStatus::Failed)
    );
    assert_eq!(
        site.hub
            .purge_expired_items(now + 36_500 * DAY_MS)
            .await
            .unwrap(),
        None
    );
    let page = site.ok(&format!("/api/v1/runs/{active}/items")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3, "{page}");
}
