//! The task page over HTTP, as a browser uses it (session cookie from the sign-in form, the CSRF
//! token from the page's `hx-headers`, an `Origin` header), against a real S3 server (s3s-fs).
//!
//! Dead items come from a wrong source secret: one hub process lists the source with the right
//! key (its scheduler runs the finder), then the secret is overwritten with a wrong one before a
//! second process over the same store (the one serving HTTP) starts its workers, so every copy
//! is refused. The page shows the dead items with their error; once the secret is fixed, a retry
//! of all of them through the page's form brings the run to DONE. The live stream sends the
//! counters as HTML and then `end`; a viewer sees no controls and may not retry; the settings
//! form points at the field a bad value concerns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use dth_model::Role;
use dth_runtime::Hub;
use dth_store::{NewUser, Store};
use dth_testkit::{PeerKind, S3Peer};
use futures::StreamExt;
use reqwest::{Client, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "tok-portal-detail";
const PASSWORD: &str = "Detail-Page-Pa55";
const OBJECTS: usize = 6;

/// A store shared by a finding hub and a working hub; the working one serves HTTP.
struct Hubs {
    base: String,
    http: Client,
    store: Arc<dyn Store>,
    worker: Arc<Hub>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Hubs {
    async fn start() -> Hubs {
        let (store, dir) = crate::common::sqlite_store().await;
        let stop = CancellationToken::new();
        let finder = Hub::new(store.clone(), crate::common::quick_config("finder", TOKEN));
        tokio::spawn(Arc::clone(&finder).run_scheduler(stop.clone()));
        let worker = Hub::new(store.clone(), crate::common::quick_config("worker", TOKEN));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut web = dth_web::WebConfig::new(&format!("http://{addr}").parse().unwrap());
        web.progress_every = Duration::from_millis(200);
        tokio::spawn(dth_web::serve(
            Arc::clone(&worker),
            web,
            listener,
            stop.clone(),
        ));
        for (email, role) in [
            ("op@example.com", Role::Operator),
            ("viewer@example.com", Role::Viewer),
        ] {
            store
                .create_user(NewUser {
                    email: email.into(),
                    name: email.split('@').next().unwrap().into(),
                    role,
                    password_hash: Some(dth_runtime::access::password::hash(PASSWORD)),
                    must_change_password: false,
                    oidc_subject: None,
                })
                .await
                .unwrap();
        }
        Hubs {
            base: format!("http://{addr}"),
            http: Client::builder()
                .timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            store,
            worker,
            stop,
            _dir: dir,
        }
    }

    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Signs in through the form; the session cookie.
    async fn sign_in(&self, email: &str) -> Session<'_> {
        let resp = self
            .http
            .post(format!("{}/signin", self.base))
            .header(header::ORIGIN, &self.base)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!(
                "email={}&password={PASSWORD}&next=%2F",
                email.replace('@', "%40")
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "sign-in of {email}");
        let cookie = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("dth_session="))
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_string();
        let mut s = Session {
            hubs: self,
            cookie,
            csrf: String::new(),
        };
        let (status, page) = s.get("/").await;
        assert_eq!(status, StatusCode::OK);
        s.csrf = csrf_of(&page);
        s
    }

    /// Waits until the task has a run for which `done` holds; returns the run with counters.
    async fn run_where(&self, task: &str, done: impl Fn(&Value) -> bool) -> Value {
        let t0 = Instant::now();
        loop {
            let runs = self
                .api(Method::GET, &format!("/api/v1/tasks/{task}/runs"), None)
                .await;
            if let Some(run) = runs.as_array().unwrap().first() {
                let id = run["id"].as_i64().unwrap();
                let run = self
                    .api(Method::GET, &format!("/api/v1/runs/{id}"), None)
                    .await;
                if done(&run) {
                    return run;
                }
                assert!(t0.elapsed() < Duration::from_secs(60), "{run}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Hubs {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A signed-in browser: its cookie and CSRF token.
struct Session<'a> {
    hubs: &'a Hubs,
    cookie: String,
    csrf: String,
}

impl Session<'_> {
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .hubs
            .http
            .get(format!("{}{path}", self.hubs.base))
            .header(header::COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    /// A form post as htmx sends it (token header, same origin); the status and `Location` or
    /// body.
    async fn post(&self, path: &str, form: &str) -> (StatusCode, String) {
        let resp = self
            .hubs
            .http
            .post(format!("{}{path}", self.hubs.base))
            .header(header::COOKIE, &self.cookie)
            .header(header::ORIGIN, &self.hubs.base)
            .header("x-csrf-token", &self.csrf)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_string());
        let body = resp.text().await.unwrap();
        (status, location.unwrap_or(body))
    }
}

/// The CSRF token of a page's `hx-headers`.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("\"X-CSRF-Token\": \"")
        .expect("hx-headers with the token")
        + 17;
    page[at..].split('"').next().unwrap().to_string()
}

/// Text as the templates escape it.
fn escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

fn side(peer: &S3Peer, bucket: &str, credentials: Value) -> Value {
    json!({
        "provider": "other", "region": peer.region(), "endpoint_url": peer.endpoint_url(),
        "bucket": bucket, "prefix": "", "credentials": credentials,
    })
}

/// The events of an SSE answer up to and with `end`: (name, data) pairs.
async fn read_events(resp: reqwest::Response) -> Vec<(String, String)> {
    let mut buf = String::new();
    let mut events = Vec::new();
    let mut bytes = resp.bytes_stream();
    while let Some(chunk) = bytes.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = String::new();
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
                }
            }
            if event.is_empty() {
                continue; // keep-alive
            }
            let done = event == "end";
            events.push((event, data.join("\n")));
            if done {
                return events;
            }
        }
    }
    panic!("the stream ended without an end event: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_items_shown_retried_after_the_secret_is_fixed_live_and_for_viewers() {
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    for i in 0..OBJECTS {
        peer.client()
            .put_object()
            .bucket("src")
            .key(format!("docs/{i:02}.txt"))
            .body(ByteStream::from(vec![b'a' + i as u8; 1000 + i * 10]))
            .send()
            .await
            .unwrap();
    }
    let hubs = Hubs::start().await;
    let right = json!({"access_key_id": peer.access_key(), "secret_access_key": peer.secret_key()});
    let wrong = json!({"access_key_id": peer.access_key(), "secret_access_key": "not-the-secret"});
    hubs.api(Method::PUT, "/api/v1/secrets/src-key", Some(right.clone()))
        .await;
    let task = hubs
        .api(
            Method::POST,
            "/api/v1/tasks",
            Some(json!({
                "name": "detail page", "kind": "s3",
                "source": side(&peer, "src", json!({"kind": "secret", "name": "src-key"})),
                "destination": side(&peer, "dst", json!({"kind": "static",
                    "access_key_id": peer.access_key(), "secret_access_key": peer.secret_key()})),
                "schedule": "once", "max_attempts": 1,
            })),
        )
        .await;
    let id = task["id"].as_str().unwrap().to_string();
    // Listed with the right key; then the key goes wrong before any worker runs.
    let run = hubs.run_where(&id, |r| r["found_at"].is_number()).await;
    assert_eq!(run["counters"]["found"], OBJECTS as u64, "{run}");
    hubs.api(Method::PUT, "/api/v1/secrets/src-key", Some(wrong))
        .await;
    tokio::spawn(Arc::clone(&hubs.worker).run_workers(hubs.stop.clone()));
    let run = hubs.run_where(&id, |r| r["ended_at"].is_number()).await;
    assert_eq!(run["counters"]["dead"], OBJECTS as u64, "{run}");
    let run_id = run["id"].as_i64().unwrap();

    // The operator's page of dead items: each key with its error, and the retry controls.
    let op = hubs.sign_in("op@example.com").await;
    let (status, page) = op
        .get(&format!("/tasks/{id}?run={run_id}&state=dead"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let dead = hubs
        .api(
            Method::GET,
            &format!("/api/v1/runs/{run_id}/items?state=dead"),
            None,
        )
        .await;
    let dead = dead["items"].as_array().unwrap();
    assert_eq!(dead.len(), OBJECTS);
    for item in dead {
        let key = item["key"].as_str().unwrap();
        let error = item["last_error"].as_str().expect("a dead item's error");
        assert!(page.contains(&escaped(key)), "{key} not on the page");
        assert!(page.contains(&escaped(error)), "{error} not on the page");
        let id = item["id"].as_i64().unwrap();
        assert!(page.contains(&format!("name=\"ids\" value=\"{id}\"")));
    }
    assert!(page.contains(&format!("action=\"/runs/{run_id}/retry\"")));
    assert!(page.contains(&format!("/tasks/{id}/delete")));
    assert!(page.contains(&format!(
        "/api/v1/runs/{run_id}/report?format=csv\" hx-boost=\"false\" download"
    )));
    assert!(!page.contains("secret_access_key") && !page.contains(peer.secret_key()));
    let (status, done_only) = op
        .get(&format!("/tasks/{id}?run={run_id}&state=done"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(done_only.contains("No items match.") && !done_only.contains("name=\"ids\""));

    // The live stream of the ended run: its counters as HTML, then `end`.
    let resp = hubs
        .http
        .get(format!("{}/tasks/{id}/live", hubs.base))
        .header(header::COOKIE, &op.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = read_events(resp).await;
    let progress: Vec<&String> = events
        .iter()
        .filter(|(e, _)| e == "progress")
        .map(|(_, d)| d)
        .collect();
    assert!(!progress.is_empty(), "{events:?}");
    let last = progress.last().unwrap();
    assert!(last.contains(&format!("data-run=\"{run_id}\"")), "{last}");
    assert!(
        last.contains(&format!(
            "data-counter=\"dead\"><div class=\"label\">Failed</div><div class=\"value\">{OBJECTS}</div>"
        )),
        "{last}"
    );
    assert!(
        events
            .iter()
            .any(|(e, d)| e == "chart" && d.contains("<svg"))
    );
    assert_eq!(events.last().unwrap().0, "end");

    // A viewer: the same items, no controls, and a retry refused.
    let viewer = hubs.sign_in("viewer@example.com").await;
    let (status, page) = viewer
        .get(&format!("/tasks/{id}?run={run_id}&state=dead"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&escaped("docs/00.txt")));
    for control in ["/retry", "/stop", "/start", "/delete", "/clone", "/edit"] {
        assert!(!page.contains(control), "a viewer's page has {control}");
    }
    let (status, _) = viewer
        .post(&format!("/runs/{run_id}/retry"), "scope=all")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A retry without a choice is refused; with the secret fixed, all dead items go through.
    let (status, _) = op
        .post(&format!("/runs/{run_id}/retry"), "scope=selected")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    hubs.api(Method::PUT, "/api/v1/secrets/src-key", Some(right))
        .await;
    let (status, location) = op.post(&format!("/runs/{run_id}/retry"), "scope=all").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, format!("/tasks/{id}?run={run_id}#items"));
    let run = hubs
        .run_where(&id, |r| r["status"] == "DONE" && r["ended_at"].is_number())
        .await;
    assert_eq!(run["id"], run_id);
    assert_eq!(run["counters"]["copied"], OBJECTS as u64, "{run}");
    assert_eq!(run["counters"]["dead"], 0, "{run}");
    let listed = peer
        .client()
        .list_objects_v2()
        .bucket("dst")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), OBJECTS);
    let (_, page) = op.get(&format!("/tasks/{id}?run={run_id}")).await;
    assert!(!page.contains("name=\"scope\" value=\"all\""));
    assert!(page.contains("badge done"));

    // Settings: a bad cron expression is shown at its field; a good edit is saved.
    let (status, form) = op.get(&format!("/tasks/{id}/edit")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains("value=\"detail page\""));
    let (status, page) = op
        .post(
            &format!("/tasks/{id}/edit"),
            "name=detail+page&schedule_kind=cron&cron=not+a+cron&compare=size&max_attempts=1",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("id=\"f-cron\" name=\"cron\"") && page.contains("id=\"f-cron-error\""),
        "{page}"
    );
    let (status, location) = op
        .post(
            &format!("/tasks/{id}/edit"),
            "name=renamed&description=nightly+copy&schedule_kind=once&compare=size-etag&transfers=8&max_attempts=3",
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let task = hubs
        .api(Method::GET, &format!("/api/v1/tasks/{id}"), None)
        .await;
    assert_eq!(task["name"], "renamed");
    assert_eq!(task["spec"]["description"], "nightly copy");
    assert_eq!(task["spec"]["max_attempts"], 3);
    assert_eq!(task["spec"]["options"]["compare"], "size-etag");
    assert_eq!(task["spec"]["options"]["transfers"], 8);
    let (status, _) = viewer
        .post(
            &format!("/tasks/{id}/edit"),
            "name=viewer+rename&schedule_kind=once",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        hubs.store.get_task(&id).await.unwrap().unwrap().name,
        "renamed"
    );
}
