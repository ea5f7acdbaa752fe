//! The HTTP API against a real SQLite store file and a real server on 127.0.0.1, through a real HTTP
//! client. No scheduler or workers run: tasks are created and driven through the API only.

use std::sync::Arc;
use std::time::Duration;

use dth_model::{ItemKind, Trigger};
use dth_runtime::{Config, Hub};
use dth_store::{NewItem, Retry, Store};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "tok-3f9a1c";

/// A hub serving its API on a free port, over a SQLite file in a temp dir.
struct Api {
    base: String,
    http: Client,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Api {
        let (store, dir) = crate::common::sqlite_store().await;
        let mut config = Config::default();
        config.access.env_token = Some(TOKEN.to_string());
        let hub = Hub::new(store.clone(), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let web = dth_web::WebConfig::new(&format!("http://{addr}").parse().unwrap());
        let server = tokio::spawn(dth_web::serve(hub, web, listener, shutdown.clone()));
        Api {
            base: format!("http://{addr}"),
            http: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            store,
            shutdown,
            server,
            _dir: dir,
        }
    }

    /// A request with the admin token.
    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    /// Sends and returns the status and the body as text.
    async fn send(rb: reqwest::RequestBuilder) -> (StatusCode, String) {
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        (status, resp.text().await.unwrap())
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut rb = self.req(method, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let (status, text) = Self::send(rb).await;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
        };
        (status, value)
    }

    async fn tasks(&self) -> Vec<Value> {
        let (status, body) = self.call(Method::GET, "/api/v1/tasks", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array().unwrap().clone()
    }

    /// Creates a valid task; returns its view.
    async fn create_task(&self, name: &str) -> Value {
        let (status, body) = self
            .call(Method::POST, "/api/v1/tasks", Some(spec(name)))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("graceful shutdown within 10 s")
            .unwrap()
            .unwrap();
    }
}

/// A valid object task spec.
fn spec(name: &str) -> Value {
    json!({
        "name": name,
        "kind": "s3",
        "source": {"provider": "aws", "region": "us-east-1", "endpoint_url": null, "bucket": "src-bucket",
                   "prefix": "photos/", "credentials": {"kind": "default-chain"}},
        "destination": {"provider": "minio", "region": null, "endpoint_url": "http://127.0.0.1:9",
                        "bucket": "dst-bucket", "prefix": "", "credentials": {"kind": "anonymous"}},
        "schedule": {"cron": "*/5 * * * *"}
    })
}

fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"))
}

#[tokio::test]
async fn health_and_auth() {
    let api = Api::start().await;
    let resp = api
        .http
        .get(format!("{}/health", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok", "store": "sqlite"}));

    for auth in [
        None,
        Some("Bearer wrong-token"),
        Some("Basic YWRtaW46dG9r"),
        Some("Bearer "),
    ] {
        for path in ["/api/v1/tasks", "/api/v1/secrets", "/api/v1/runs/1"] {
            let mut rb = api.http.get(format!("{}{path}", api.base));
            if let Some(a) = auth {
                rb = rb.header("authorization", a);
            }
            let resp = rb.send().await.unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{path} with {auth:?}"
            );
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
            let body: Value = resp.json().await.unwrap();
            assert!(!error_of(&body).is_empty());
        }
    }
    // A write without a token changes nothing.
    let resp = api
        .http
        .post(format!("{}/api/v1/tasks", api.base))
        .json(&spec("sneaky"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(api.tasks().await.is_empty());

    // With the token.
    let (status, body) = api.call(Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!([]));

    // Unknown routes answer JSON too.
    let (status, body) = api.call(Method::GET, "/api/v1/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&body).contains("/api/v1/nope"));
    api.stop().await;
}

#[tokio::test]
async fn task_lifecycle() {
    let api = Api::start().await;
    let created = api.create_task("photos").await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["name"], "photos");
    assert_eq!(created["kind"], "s3");
    assert_eq!(created["status"], "STARTING");
    assert_eq!(created["spec"]["source"]["bucket"], "src-bucket");
    assert_eq!(created["spec"]["schedule"], json!({"cron": "*/5 * * * *"}));

    let tasks = api.tasks().await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["id"], id.as_str());

    let (status, got) = api
        .call(Method::GET, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["latest_run"], Value::Null);

    // A run (as the scheduler would make it) shows up with its counters.
    let run = api
        .store
        .create_run(&id, Trigger::User, None, 5)
        .await
        .unwrap();
    api.store
        .insert_items(run.id, &[object("a.jpg", 10), object("b.jpg", 20)])
        .await
        .unwrap();
    let (_, got) = api
        .call(Method::GET, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_eq!(got["latest_run"]["id"], run.id);
    assert_eq!(got["latest_run"]["status"], "FINDING");
    assert_eq!(got["latest_run"]["counters"]["pending"], 2);
    assert_eq!(got["latest_run"]["counters"]["found"], 2);
    assert_eq!(got["latest_run"]["counters"]["found_bytes"], 30);

    let (status, runs) = api
        .call(Method::GET, &format!("/api/v1/tasks/{id}/runs"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["trigger"], "user");

    let (status, stopped) = api
        .call(Method::POST, &format!("/api/v1/tasks/{id}/stop"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["status"], "STOPPED");
    assert_eq!(stopped["next_run_at"], Value::Null);
    let (_, run_view) = api
        .call(Method::GET, &format!("/api/v1/runs/{}", run.id), None)
        .await;
    assert_eq!(run_view["status"], "STOPPED");
    assert_eq!(run_view["counters"]["cancelled"], 2);

    let (status, started) = api
        .call(Method::POST, &format!("/api/v1/tasks/{id}/start"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["status"], "STARTING");
    assert!(started["next_run_at"].is_i64());

    let (status, events) = api
        .call(
            Method::GET,
            &format!("/api/v1/tasks/{id}/events?limit=10"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in ["task.created", "task.stopped", "task.started"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "env-token"
                || e["kind"] == "run.stopped"
                || e["actor"].as_str().unwrap().starts_with("api:"))
    );

    let (status, body) = api
        .call(Method::DELETE, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(api.tasks().await.is_empty());
    for (method, path) in [
        (Method::GET, format!("/api/v1/tasks/{id}")),
        (Method::POST, format!("/api/v1/tasks/{id}/start")),
        (Method::POST, format!("/api/v1/tasks/{id}/stop")),
        (Method::DELETE, format!("/api/v1/tasks/{id}")),
        (Method::GET, format!("/api/v1/tasks/{id}/runs")),
        (Method::GET, format!("/api/v1/runs/{}", run.id)),
        (Method::GET, "/api/v1/runs/not-a-number".to_string()),
    ] {
        let (status, body) = api.call(method.clone(), &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        assert!(error_of(&body).contains("not found"), "{body}");
    }
    api.stop().await;
}

fn object(key: &str, size: u64) -> NewItem {
    NewItem {
        kind: ItemKind::Object,
        key: key.into(),
        size,
        etag: Some(format!("\"etag-{key}\"")),
        part_number: None,
        payload: json!({}),
    }
}

/// Sends a raw body to `POST /api/v1/tasks`; expects 400 with `needle` in the message.
async fn rejected(api: &Api, body: &str, needle: &str) {
    let (status, text) = Api::send(
        api.req(Method::POST, "/api/v1/tasks")
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    let msg = error_of(&v);
    eprintln!("{body:.60} → {msg}");
    assert!(
        msg.contains(needle),
        "message {msg:?} does not mention {needle:?}"
    );
    assert!(api.tasks().await.is_empty(), "nothing created by {body}");
}

#[tokio::test]
async fn bad_input_is_400_and_creates_nothing() {
    let api = Api::start().await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut s = spec("bad");
        f(&mut s);
        s.to_string()
    };

    rejected(&api, "{\"name\": \"x\", ", "malformed JSON").await;
    rejected(&api, "{\"name\": \"x\" \"kind\": 1}", "malformed JSON").await;
    rejected(&api, "[1, 2]", "expected struct TaskSpec").await;
    rejected(
        &api,
        &with(&|s| s["source"]["provider"] = json!("dropbox")),
        "source.provider: unknown variant `dropbox`",
    )
    .await;
    rejected(
        &api,
        &with(&|s| s["schedule"] = json!({"cron": "61 * * * *"})),
        "schedule.cron",
    )
    .await;
    rejected(
        &api,
        &with(&|s| s["schedule"] = json!({"cron": "every day"})),
        "schedule.cron",
    )
    .await;
    rejected(
        &api,
        &with(&|s| {
            s["source"].as_object_mut().unwrap().remove("bucket");
        }),
        "source: missing field `bucket`",
    )
    .await;
    rejected(
        &api,
        &with(&|s| s["destination"]["bucket"] = json!("")),
        "destination.bucket",
    )
    .await;
    rejected(
        &api,
        &with(&|s| s["destination"]["bucket"] = json!("no spaces allowed")),
        "destination.bucket",
    )
    .await;
    rejected(&api, &with(&|s| s["colour"] = json!("blue")), "colour").await;
    rejected(
        &api,
        &with(&|s| s["kind"] = json!("ftp")),
        "kind: unknown variant `ftp`",
    )
    .await;
    rejected(
        &api,
        &with(&|s| s["destination"]["credentials"] = json!({"kind": "magic"})),
        "destination.credentials.kind: unknown variant `magic`",
    )
    .await;
    rejected(
        &api,
        &with(&|s| s["alarms"] = json!([{"kind": "webhook", "url": "ftp://x"}])),
        "alarms.url",
    )
    .await;
    rejected(
        &api,
        &with(&|s| s["max_attempts"] = json!("five")),
        "max_attempts",
    )
    .await;
    rejected(&api, &with(&|s| s["name"] = json!("  ")), "name").await;
    rejected(
        &api,
        &with(&|s| s["source"]["credentials"] = json!({"kind": "secret", "name": "missing"})),
        "missing",
    )
    .await;

    // Image tasks: fields named the same way, and what only the image engine checks.
    let image = |f: &dyn Fn(&mut Value)| {
        let mut s = json!({
            "name": "img", "kind": "image",
            "source": {"location": "docker://quay.io/team"},
            "destination": {"location": "docker://127.0.0.1:5000/mirror"},
        });
        f(&mut s);
        s.to_string()
    };
    rejected(
        &api,
        &image(&|s| s["source"]["location"] = json!("ftp://x")),
        "source.location",
    )
    .await;
    rejected(
        &api,
        &image(&|s| s["destination"]["location"] = json!("oci:/tmp/out")),
        "destination.location",
    )
    .await;
    rejected(
        &api,
        &image(&|s| s["destination"]["credentials"] = json!({"kind": "static"})),
        "destination.credentials.kind: unknown variant `static`",
    )
    .await;
    rejected(
        &api,
        &image(&|s| s["tag_filter"] = json!(["regex:("])),
        "tag_filter",
    )
    .await;
    rejected(
        &api,
        &image(&|s| s["images"] = json!(["Not A Name"])),
        "images",
    )
    .await;
    rejected(
        &api,
        &image(&|s| s["concurrency"] = json!(0)),
        "concurrency",
    )
    .await;
    rejected(
        &api,
        &image(&|s| s["source"]["credentials"] = json!({"kind": "secret", "name": "nope"})),
        "source.credentials: secret \"nope\" does not exist",
    )
    .await;

    // Not JSON at all.
    let (status, text) = Api::send(
        api.req(Method::POST, "/api/v1/tasks")
            .header("content-type", "text/plain")
            .body("hello"),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{text}");
    assert!(text.contains("application/json"), "{text}");

    // Too large.
    let big = json!({"name": "x".repeat(2 * 1024 * 1024)}).to_string();
    let (status, _) = Api::send(
        api.req(Method::POST, "/api/v1/tasks")
            .header("content-type", "application/json")
            .body(big),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(api.tasks().await.is_empty());
    api.stop().await;
}

#[tokio::test]
async fn secrets_are_write_only() {
    let api = Api::start().await;
    let secret_value = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
    let token_value = "FQoGZXIvYXdzEXAMPLESESSIONTOKEN";
    let mut bodies = Vec::new();

    let (status, body) = api
        .call(
            Method::PUT,
            "/api/v1/secrets/minio.prod_1",
            Some(
                json!({"access_key_id": "AKIAEXAMPLE", "secret_access_key": secret_value,
                        "session_token": token_value}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    bodies.push(body.to_string());

    let (status, list) = api.call(Method::GET, "/api/v1/secrets", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "minio.prod_1");
    assert!(list[0]["created_at"].is_i64());
    bodies.push(list.to_string());

    // The store holds the value the runtime reads.
    let stored = api.store.secret("minio.prod_1").await.unwrap().unwrap();
    let stored: Value = serde_json::from_slice(&stored.0).unwrap();
    assert_eq!(stored["secret_access_key"], secret_value);
    assert_eq!(stored["access_key_id"], "AKIAEXAMPLE");

    // A registry login, for image tasks.
    let (status, body) = api
        .call(
            Method::PUT,
            "/api/v1/secrets/harbor-robot",
            Some(json!({"username": "robot$sync", "password": token_value})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let stored = api.store.secret("harbor-robot").await.unwrap().unwrap();
    let stored: Value = serde_json::from_slice(&stored.0).unwrap();
    assert_eq!(
        stored,
        json!({"username": "robot$sync", "password": token_value})
    );

    // Bad names and bodies.
    for (path, body, needle) in [
        (
            "/api/v1/secrets/bad%20name",
            json!({"access_key_id": "a", "secret_access_key": "b"}),
            "name",
        ),
        (
            &*format!("/api/v1/secrets/{}", "x".repeat(65)),
            json!({"access_key_id": "a", "secret_access_key": "b"}),
            "name",
        ),
        (
            "/api/v1/secrets/ok",
            json!({"access_key_id": "a"}),
            "secret_access_key",
        ),
        (
            "/api/v1/secrets/ok",
            json!({"access_key_id": "a", "secret_access_key": "b", "extra": 1}),
            "extra",
        ),
        (
            "/api/v1/secrets/ok",
            json!({"access_key_id": "", "secret_access_key": "b"}),
            "access_key_id",
        ),
        (
            "/api/v1/secrets/ok",
            json!({"username": "robot"}),
            "password",
        ),
        (
            "/api/v1/secrets/ok",
            json!({"username": "robot", "password": ""}),
            "password",
        ),
        (
            "/api/v1/secrets/ok",
            json!({"username": "robot", "password": "p", "access_key_id": "a"}),
            "access_key_id",
        ),
    ] {
        let (status, resp) = api.call(Method::PUT, path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {resp}");
        assert!(error_of(&resp).contains(needle), "{resp}");
    }

    // A task referring to the secret shows its name, never the value.
    let mut s = spec("with-secret");
    s["source"]["credentials"] = json!({"kind": "secret", "name": "minio.prod_1"});
    let (status, task) = api.call(Method::POST, "/api/v1/tasks", Some(s)).await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    assert_eq!(
        task["spec"]["source"]["credentials"]["name"],
        "minio.prod_1"
    );
    bodies.push(task.to_string());
    let id = task["id"].as_str().unwrap();
    for path in [
        format!("/api/v1/tasks/{id}"),
        "/api/v1/tasks".into(),
        format!("/api/v1/tasks/{id}/events"),
    ] {
        let (_, text) = Api::send(api.req(Method::GET, &path)).await;
        bodies.push(text);
    }
    let (_, text) = Api::send(api.req(Method::GET, "/api/v1/openapi.json")).await;
    bodies.push(text);

    // In use: refused, naming the task; free once the task is gone.
    let (status, body) = api
        .call(Method::DELETE, "/api/v1/secrets/minio.prod_1", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(error_of(&body).contains(id), "{body}");
    let (status, body) = api
        .call(Method::DELETE, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = api
        .call(Method::DELETE, "/api/v1/secrets/minio.prod_1", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = api
        .call(Method::DELETE, "/api/v1/secrets/minio.prod_1", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    bodies.push(body.to_string());
    let (_, list) = api.call(Method::GET, "/api/v1/secrets", None).await;
    assert_eq!(list[0]["name"], "harbor-robot");
    assert_eq!(list.as_array().unwrap().len(), 1);
    bodies.push(list.to_string());

    for body in &bodies {
        assert!(!body.contains(secret_value), "secret in {body}");
        assert!(!body.contains(token_value), "session token in {body}");
    }
    api.stop().await;
}

#[tokio::test]
async fn static_credentials_never_shown() {
    let api = Api::start().await;
    let secret_value = "static-SECRET-value-9d8c7b";
    let mut s = spec("static");
    s["source"]["credentials"] = json!({"kind": "static", "access_key_id": "AKIASTATIC",
        "secret_access_key": secret_value, "session_token": "static-TOKEN-value"});
    let (status, task) = api.call(Method::POST, "/api/v1/tasks", Some(s)).await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let id = task["id"].as_str().unwrap();
    let mut bodies = vec![task.to_string()];
    for path in [
        format!("/api/v1/tasks/{id}"),
        "/api/v1/tasks".into(),
        format!("/api/v1/tasks/{id}/events"),
        "/api/v1/secrets".into(),
    ] {
        let (status, text) = Api::send(api.req(Method::GET, &path)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        bodies.push(text);
    }
    for (method, path) in [
        (Method::POST, format!("/api/v1/tasks/{id}/stop")),
        (Method::POST, format!("/api/v1/tasks/{id}/start")),
    ] {
        let (_, text) = Api::send(api.req(method, &path)).await;
        bodies.push(text);
    }
    for body in &bodies {
        assert!(!body.contains(secret_value), "secret in {body}");
        assert!(
            !body.contains("static-TOKEN-value"),
            "session token in {body}"
        );
    }
    // The key went into a secret the spec names.
    let cred = &task["spec"]["source"]["credentials"];
    assert_eq!(cred["kind"], "secret", "{cred}");
    let name = cred["name"].as_str().unwrap();
    let (_, list) = api.call(Method::GET, "/api/v1/secrets", None).await;
    assert!(
        list.as_array().unwrap().iter().any(|s| s["name"] == name),
        "{list}"
    );
    api.stop().await;
}

#[tokio::test]
async fn items_pagination_and_retry() {
    let api = Api::start().await;
    let task = api.create_task("items").await;
    let id = task["id"].as_str().unwrap();
    let run = api
        .store
        .create_run(id, Trigger::User, None, 3)
        .await
        .unwrap();
    let items: Vec<NewItem> = (0..25)
        .map(|i| object(&format!("k/{i:03}"), 100 + i))
        .collect();
    assert_eq!(api.store.insert_items(run.id, &items).await.unwrap(), 25);

    // Claim all, dead-letter 12 of them, leave the rest leased.
    let claimed = api
        .store
        .claim("w1", 25, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 25);
    let mut dead_ids: Vec<i64> = claimed.iter().step_by(2).map(|i| i.id).collect();
    dead_ids.truncate(12);
    let retries: Vec<Retry> = dead_ids
        .iter()
        .map(|&id| Retry {
            id,
            error: "403 Forbidden".into(),
            delay: Duration::ZERO,
            permanent: true,
        })
        .collect();
    let done = api.store.retry_later("w1", &retries).await.unwrap();
    assert!(done.iter().all(|r| r.accepted && r.dead));

    // Dead items in pages of 5.
    let mut seen = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let (status, page) = api
            .call(
                Method::GET,
                &format!(
                    "/api/v1/runs/{}/items?state=dead&after={after}&limit=5",
                    run.id
                ),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["state"], "dead");
            assert_eq!(item["last_error"], "403 Forbidden");
            assert_eq!(item["run_id"], run.id);
            seen.push(item["id"].as_i64().unwrap());
        }
        match page["next_after"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
        assert!(pages < 10);
    }
    let mut expected = dead_ids.clone();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);

    // All items, one page; other states.
    let (_, page) = api
        .call(
            Method::GET,
            &format!("/api/v1/runs/{}/items?limit=1000", run.id),
            None,
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 25);
    assert_eq!(page["next_after"], Value::Null);
    assert_eq!(page["items"][0]["key"], "k/000");
    assert_eq!(page["items"][0]["size"], 100);
    let (_, page) = api
        .call(
            Method::GET,
            &format!("/api/v1/runs/{}/items?state=leased", run.id),
            None,
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 13);

    // Bad queries.
    for (query, needle) in [
        ("state=zombie", "zombie"),
        ("limit=1001", "limit"),
        ("limit=0", "limit"),
        ("limit=lots", "limit"),
        ("after=-4", "after"),
    ] {
        let (status, body) = api
            .call(
                Method::GET,
                &format!("/api/v1/runs/{}/items?{query}", run.id),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(error_of(&body).contains(needle), "{query}: {body}");
    }
    let (status, _) = api
        .call(Method::GET, "/api/v1/runs/999999/items", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Counters.
    let (_, view) = api
        .call(Method::GET, &format!("/api/v1/runs/{}", run.id), None)
        .await;
    assert_eq!(view["counters"]["dead"], 12);
    assert_eq!(view["counters"]["pending"], 13);

    // Retry two given dead items, then the rest (body absent).
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/v1/runs/{}/retry", run.id),
            Some(json!({"ids": [dead_ids[0], dead_ids[1]]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"queued": 2}));
    let (status, body) =
        Api::send(api.req(Method::POST, &format!("/api/v1/runs/{}/retry", run.id))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"queued": 10})
    );
    let (_, page) = api
        .call(
            Method::GET,
            &format!("/api/v1/runs/{}/items?state=dead", run.id),
            None,
        )
        .await;
    assert_eq!(page["items"], json!([]));
    let (_, page) = api
        .call(
            Method::GET,
            &format!("/api/v1/runs/{}/items?state=queued", run.id),
            None,
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 12);
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["attempts"] == 0)
    );

    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/v1/runs/{}/retry", run.id),
            Some(json!({"ids": "all"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_of(&body).contains("ids") || error_of(&body).contains("sequence"),
        "{body}"
    );
    let (status, _) = api
        .call(Method::POST, "/api/v1/runs/999999/retry", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, events) = api
        .call(Method::GET, &format!("/api/v1/tasks/{id}/events"), None)
        .await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "items.retried" && e["actor"] == "env-token"),
        "{events}"
    );
    api.stop().await;
}

#[tokio::test]
async fn openapi_lists_the_paths() {
    let api = Api::start().await;
    let resp = api
        .http
        .get(format!("{}/api/v1/openapi.json", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/health", &["get"][..]),
        ("/api/v1/tasks", &["get", "post"]),
        ("/api/v1/tasks/{id}", &["get", "delete"]),
        ("/api/v1/tasks/{id}/start", &["post"]),
        ("/api/v1/tasks/{id}/stop", &["post"]),
        ("/api/v1/tasks/{id}/runs", &["get"]),
        ("/api/v1/tasks/{id}/events", &["get"]),
        ("/api/v1/runs/{id}", &["get"]),
        ("/api/v1/runs/{id}/items", &["get"]),
        ("/api/v1/runs/{id}/retry", &["post"]),
        ("/api/v1/secrets", &["get"]),
        ("/api/v1/secrets/{name}", &["put", "delete"]),
    ] {
        let p = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from {:?}", paths.keys()));
        for m in methods {
            assert!(p.get(*m).is_some(), "{m} {path}");
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "TaskView",
        "TaskDetail",
        "RunDetail",
        "ItemsPage",
        "ErrorBody",
        "SecretValue",
        "AccessKey",
        "RegistryLogin",
    ] {
        assert!(schemas.contains_key(s), "schema {s}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let params = doc["paths"]["/api/v1/runs/{id}/items"]["get"]["parameters"].to_string();
    for p in ["state", "after", "limit"] {
        assert!(params.contains(&format!("\"{p}\"")), "{p} in {params}");
    }
    api.stop().await;
}
