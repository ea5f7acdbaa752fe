//! The create-task wizard for objects through the real HTTP server, driven like a browser does
//! (a session cookie from the sign-in form, the CSRF token from the page's `hx-headers`, an
//! `Origin` header, every field of the one form posted at each step) against a real S3 server
//! (s3s-fs) on both sides: a missing bucket is a message next to the bucket field and creates
//! nothing; a key typed in is stored as a secret at once and never appears in any answer; the
//! review's dry run shows the hub's plan; "Create task" makes the task whose spec is what was
//! entered; a viewer gets 403.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use dth_runtime::{Config, Hub};
use dth_testkit::{PeerKind, S3Peer};
use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const NEW_PASSWORD: &str = "Tr0ub4dor&3-horse";

/// A hub on a free port, and every page body it answered (to search for values).
struct Site {
    base: String,
    http: Client,
    hub: Arc<Hub>,
    bodies: std::sync::Mutex<Vec<String>>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

/// A signed-in browser: its session cookie and the page's CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

/// An answer: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: header::HeaderMap,
    body: String,
}

impl Site {
    async fn start() -> Site {
        let (store, dir) = crate::common::sqlite_store().await;
        let hub = Hub::new(store, Config::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let web = dth_web::WebConfig::new(&base.parse().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(dth_web::serve(hub.clone(), web, listener, shutdown.clone()));
        Site {
            http: Client::builder()
                .timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base,
            hub,
            bodies: std::sync::Mutex::new(Vec::new()),
            shutdown,
            _dir: dir,
        }
    }

    /// Sends a request as htmx does (cookie, CSRF token, Origin, `HX-Request`), with a form body
    /// when given; the answer's body is kept for [`Site::assert_never_shown`].
    async fn send(
        &self,
        who: Option<&Browser>,
        method: reqwest::Method,
        path: &str,
        form: Option<&[(String, String)]>,
    ) -> Answer {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("origin", &self.base)
            .header("hx-request", "true");
        if let Some(b) = who {
            rb = rb
                .header(header::COOKIE, format!("dth_session={}", b.cookie))
                .header("x-csrf-token", &b.csrf);
        }
        if let Some(f) = form {
            rb = rb.form(f);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap();
        self.bodies.lock().unwrap().push(body.clone());
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, who: &Browser, path: &str) -> Answer {
        self.send(Some(who), reqwest::Method::GET, path, None).await
    }

    async fn post(&self, who: &Browser, path: &str, form: &[(String, String)]) -> Answer {
        self.send(Some(who), reqwest::Method::POST, path, Some(form))
            .await
    }

    /// Signs in through the form, setting a new password when the one given is temporary.
    async fn sign_in(&self, email: &str, password: &str) -> Browser {
        let form = pairs(&[("email", email), ("password", password), ("next", "/")]);
        let a = self
            .send(None, reqwest::Method::POST, "/signin", Some(&form))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let to = a.headers["hx-redirect"].to_str().unwrap().to_string();
        let mut browser = Browser {
            cookie: session_cookie(&a.headers),
            csrf: String::new(),
        };
        browser.csrf = csrf_of(&self.get(&browser, &to).await.body);
        if to.starts_with("/password") {
            let form = pairs(&[
                ("current_password", password),
                ("new_password", NEW_PASSWORD),
                ("confirm_password", NEW_PASSWORD),
                ("next", "/"),
            ]);
            let a = self.post(&browser, "/password", &form).await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            browser.cookie = session_cookie(&a.headers);
            browser.csrf = csrf_of(&self.get(&browser, "/").await.body);
        }
        browser
    }

    /// Fails when any answer so far holds `value`.
    fn assert_never_shown(&self, value: &str) {
        for body in self.bodies.lock().unwrap().iter() {
            assert!(!body.contains(value), "{value:?} appeared in an answer");
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The session id of a `Set-Cookie`.
fn session_cookie(headers: &header::HeaderMap) -> String {
    let set = headers[header::SET_COOKIE].to_str().unwrap();
    set.strip_prefix("dth_session=")
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_string()
}

/// The CSRF token of a page (its `<body hx-headers>`).
fn csrf_of(html: &str) -> String {
    let at = html
        .find("\"X-CSRF-Token\": \"")
        .expect("a page with hx-headers")
        + 17;
    html[at..].split('"').next().unwrap().to_string()
}

/// The tag of the element with `id` (from `<` to `>`).
fn tag_of<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let start = html[..at].rfind('<').unwrap();
    let end = at + html[at..].find('>').unwrap();
    &html[start..=end]
}

/// The text of `<… data-plan="KEY">TEXT<`.
fn plan_value(html: &str, key: &str) -> String {
    let at = html
        .find(&format!("data-plan=\"{key}\">"))
        .unwrap_or_else(|| panic!("no plan value {key}: {html}"));
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest.find('<').unwrap();
    rest[start..end].trim().to_string()
}

/// The step a wizard page shows.
fn current_step(html: &str) -> String {
    let at = html.find("name=\"at\" value=\"").expect("a wizard page") + 17;
    html[at..].split('"').next().unwrap().to_string()
}

/// Every field of the objects wizard as a browser posts it: source on s3s-fs (`other`), the
/// destination too, `fields` replacing or adding values.
fn objects_form(
    peer: &S3Peer,
    step: &str,
    at: &str,
    fields: &[(&str, &str)],
) -> Vec<(String, String)> {
    let endpoint = peer.endpoint_url();
    let mut form = pairs(&[
        ("at", at),
        ("name", "wizard photos"),
        ("description", "made by the wizard test"),
        ("src_provider", "other"),
        ("src_region", peer.region()),
        ("src_endpoint", &endpoint),
        ("src_bucket", "src"),
        ("src_prefix", "docs"),
        ("src_cred", "secret"),
        ("src_secret", ""),
        ("src_key_id", ""),
        ("src_key_secret", ""),
        ("src_key_token", ""),
        ("dst_provider", "minio"),
        ("dst_region", ""),
        ("dst_endpoint", &endpoint),
        ("dst_bucket", "dst"),
        ("dst_prefix", ""),
        ("dst_cred", "secret"),
        ("dst_secret", ""),
        ("dst_key_id", ""),
        ("dst_key_secret", ""),
        ("dst_key_token", ""),
        ("compare", "size-etag"),
        ("include", ""),
        ("exclude", "*.tmp"),
        ("prefixes", ""),
        ("delete", "1"),
        ("metadata", "1"),
        ("storage_class", ""),
        ("acl", ""),
        ("sse", "none"),
        ("kms_key", ""),
        ("multipart_threshold", "8MiB"),
        ("part_size", "5MiB"),
        ("giant_threshold", "1GiB"),
        ("transfers", "16"),
        ("bwlimit", "20MiB"),
        ("max_attempts", "4"),
        ("sched", "cron"),
        ("every_n", "1"),
        ("every_unit", "h"),
        ("cron", "*/15 * * * *"),
        ("webhooks", "http://127.0.0.1:9/hook"),
        ("emails", "ops@example.com"),
    ]);
    for (k, v) in fields {
        match form.iter_mut().find(|(name, _)| name == k) {
            Some(pair) => pair.1 = v.to_string(),
            None => form.push((k.to_string(), v.to_string())),
        }
    }
    form.push(("step".into(), step.into()));
    form
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_objects_wizard_checks_plans_and_creates_like_a_browser_uses_it() {
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    for (key, size) in [
        ("docs/a.txt", 1000),
        ("docs/b.txt", 2000),
        ("docs/c.tmp", 50),
        ("other/d.txt", 10),
    ] {
        peer.client()
            .put_object()
            .bucket("src")
            .key(key)
            .body(ByteStream::from(vec![b'x'; size]))
            .send()
            .await
            .unwrap();
    }
    peer.client()
        .put_object()
        .bucket("dst")
        .key("stale.txt")
        .body(ByteStream::from(vec![b'y'; 7]))
        .send()
        .await
        .unwrap();

    let site = Site::start().await;
    let temporary = site
        .hub
        .ensure_admin("admin@localhost")
        .await
        .unwrap()
        .unwrap();
    let admin = site.sign_in("admin@localhost", &temporary).await;
    let secret_key = peer.secret_key().to_string();

    // The first step, with the steps list.
    let page = site.get(&admin, "/tasks/new/objects").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<ol class=\"steps\""), "{}", page.body);
    assert!(page.body.contains("aria-current=\"step\">Source</li>"));
    assert_eq!(current_step(&page.body), "source");

    // Next without a source bucket, with a key typed in: the message is next to the bucket
    // field, the key is stored at once as a secret, and nothing is created.
    let form = objects_form(
        &peer,
        "destination",
        "source",
        &[
            ("src_bucket", ""),
            ("src_cred", "key"),
            ("src_key_id", peer.access_key()),
            ("src_key_secret", &secret_key),
        ],
    );
    let a = site.post(&admin, "/tasks/new/objects", &form).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(current_step(&a.body), "source");
    let bucket = tag_of(&a.body, "src_bucket");
    assert!(
        bucket.contains("aria-invalid=\"true\"")
            && bucket.contains("aria-describedby=\"src_bucket-error\""),
        "{bucket}"
    );
    assert!(
        a.body.contains(
            "<p class=\"field-error\" id=\"src_bucket-error\">Enter the bucket name.</p>"
        ),
        "{}",
        a.body
    );
    assert!(site.hub.store().list_tasks().await.unwrap().is_empty());
    let stored: Vec<String> = site
        .hub
        .store()
        .list_secrets()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let secret = stored[0].clone();
    assert!(secret.starts_with("wizard-photos-source-"), "{secret}");
    assert!(
        a.body
            .contains(&format!("<option value=\"{secret}\" selected>")),
        "the side switched to the stored secret"
    );
    assert!(tag_of(&a.body, "src_key_secret").contains("value=\"\""));

    // A destination secret made through the same form, then every step up to the review.
    let form = objects_form(
        &peer,
        "options",
        "destination",
        &[
            ("src_secret", &secret),
            ("dst_cred", "key"),
            ("dst_key_id", peer.access_key()),
            ("dst_key_secret", &secret_key),
        ],
    );
    let a = site.post(&admin, "/tasks/new/objects", &form).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(current_step(&a.body), "options");
    let dst_secret = site
        .hub
        .store()
        .list_secrets()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .find(|n| n.contains("-destination-"))
        .expect("the destination's secret");

    // A bad size on the options step is named there.
    let with_secrets = [
        ("src_secret", secret.as_str()),
        ("dst_secret", dst_secret.as_str()),
    ];
    let mut bad = with_secrets.to_vec();
    bad.push(("part_size", "huge"));
    let a = site
        .post(
            &admin,
            "/tasks/new/objects",
            &objects_form(&peer, "schedule", "options", &bad),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(current_step(&a.body), "options");
    assert!(tag_of(&a.body, "part_size").contains("aria-invalid=\"true\""));

    // The next fire times of the cron field.
    let a = site
        .get(
            &admin,
            "/tasks/new/schedule?sched=cron&cron=*/15+*+*+*+*&every_n=1&every_unit=h",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body.matches("<time datetime=").count(), 5, "{}", a.body);

    let review = objects_form(&peer, "review", "schedule", &with_secrets);
    let a = site.post(&admin, "/tasks/new/objects", &review).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(current_step(&a.body), "review");
    assert!(
        a.body.contains("hx-post=\"/tasks/new/objects/plan\""),
        "{}",
        a.body
    );
    assert!(a.body.contains("Create task"));

    // A review without a description, with the default chain and anonymous access, renders too.
    let mut plain = with_secrets.to_vec();
    plain.extend([
        ("description", ""),
        ("src_cred", "default"),
        ("dst_cred", "anonymous"),
    ]);
    let a = site
        .post(
            &admin,
            "/tasks/new/objects",
            &objects_form(&peer, "review", "schedule", &plain),
        )
        .await;
    assert_eq!(current_step(&a.body), "review", "{}", a.body);
    assert!(a.body.contains("The hub&#x27;s default AWS chain") && a.body.contains("Anonymous"));

    // The images wizard's review of a registry-to-ECR task.
    let mut images = pairs(&[
        ("at", "schedule"),
        ("step", "review"),
        ("name", "mirror"),
        ("src_kind", "registry"),
        ("src_address", "quay.io/team/app"),
        ("src_tls", "1"),
        ("src_cred", "anonymous"),
        ("dst_kind", "ecr"),
        ("dst_account", "123456789012"),
        ("dst_region", "cn-north-1"),
        ("dst_cred", "anonymous"),
        ("images_mode", "all"),
        ("platform", "linux/amd64"),
        ("platform", "linux/arm64"),
        ("concurrency", "4"),
        ("max_attempts", "3"),
        ("sched", "once"),
    ]);
    let a = site.post(&admin, "/tasks/new/images", &images).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(current_step(&a.body), "review", "{}", a.body);
    assert!(
        a.body.contains("ecr:&#x2f;&#x2f;123456789012.cn-north-1"),
        "{}",
        a.body
    );
    assert!(
        a.body.contains("linux&#x2f;amd64, linux&#x2f;arm64"),
        "{}",
        a.body
    );
    // A list of images from a source that names a repository: the engine's message at the list.
    images.extend(pairs(&[("images_mode", "list"), ("images", "team/db:1")]));
    let a = site.post(&admin, "/tasks/new/images", &images).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(current_step(&a.body), "images");
    assert!(tag_of(&a.body, "images").contains("aria-invalid=\"true\""));

    // The review's dry run: the hub's plan, the numbers as POST /api/v1/plan gives them.
    let (spec, _) = expected_spec(&peer, &secret, &dst_secret);
    let want = site
        .http
        .post(format!("{}/api/v1/plan", site.base))
        .header("origin", &site.base)
        .header(header::COOKIE, format!("dth_session={}", admin.cookie))
        .header("x-csrf-token", &admin.csrf)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(want.status(), StatusCode::OK);
    let want: dth_model::Plan = want.json().await.unwrap();
    let objects = want.objects.as_ref().unwrap();
    assert_eq!((objects.copy, objects.skip, objects.delete), (2, 0, 1));
    let a = site.post(&admin, "/tasks/new/objects/plan", &review).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(plan_value(&a.body, "copy"), "2");
    assert_eq!(plan_value(&a.body, "skip"), "0");
    assert_eq!(plan_value(&a.body, "delete"), "1");
    assert_eq!(
        plan_value(&a.body, "source_get"),
        want.requests.source_get.to_string()
    );
    assert_eq!(plan_value(&a.body, "egress_bytes"), "2.93 KiB");
    assert!(a.body.contains("data-plan=\"total-USD\""), "{}", a.body);

    // A bucket that does not exist: the dry run's failure is on the review, clearly.
    let mut missing = with_secrets.to_vec();
    missing.push(("dst_bucket", "no-such-bucket"));
    let a = site
        .post(
            &admin,
            "/tasks/new/objects/plan",
            &objects_form(&peer, "review", "review", &missing),
        )
        .await;
    assert!(a.body.contains("class=\"alert\""), "{}", a.body);
    assert!(a.body.contains("no-such-bucket"), "{}", a.body);

    // Create: the task is what was entered, and the browser goes to its page.
    let create = objects_form(&peer, "create", "review", &with_secrets);
    let a = site.post(&admin, "/tasks/new/objects", &create).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let to = a.headers["hx-redirect"].to_str().unwrap();
    let tasks = site.hub.store().list_tasks().await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(to, format!("/tasks/{}", tasks[0].id));
    let (_, want_spec) = expected_spec(&peer, &secret, &dst_secret);
    let got: dth_model::TaskSpec = serde_json::from_value(tasks[0].spec.clone()).unwrap();
    assert_eq!(got, want_spec);

    site.assert_never_shown(&secret_key);

    // A viewer gets 403 for the wizard's page and its posts, and no create button.
    let viewer = invite_viewer(&site, &admin).await;
    for path in ["/tasks/new/objects", "/tasks/new/images"] {
        let a = site.get(&viewer, path).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            !a.body.contains("Create task")
                && !a.body.contains("<form method=\"post\" action=\"/tasks/new")
        );
    }
    let a = site.post(&viewer, "/tasks/new/objects", &create).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(site.hub.store().list_tasks().await.unwrap().len(), 1);
    site.assert_never_shown(&secret_key);
}

/// The spec the wizard's form above stands for (JSON for the plan, and parsed).
fn expected_spec(peer: &S3Peer, src: &str, dst: &str) -> (Value, dth_model::TaskSpec) {
    let endpoint = peer.endpoint_url();
    let spec = json!({
        "name": "wizard photos",
        "description": "made by the wizard test",
        "kind": "s3",
        "source": {"provider": "other", "region": peer.region(), "endpoint_url": endpoint,
                   "bucket": "src", "prefix": "docs/",
                   "credentials": {"kind": "secret", "name": src}, "requester_pays": false},
        "destination": {"provider": "minio", "region": null, "endpoint_url": endpoint,
                        "bucket": "dst", "prefix": "",
                        "credentials": {"kind": "secret", "name": dst}},
        "options": {"compare": "size-etag", "exclude": ["*.tmp"], "delete": true, "metadata": true,
                    "tags": false, "multipart_threshold": 8 << 20, "part_size": 5 << 20,
                    "transfers": 16, "bwlimit": 20 << 20},
        "giant_threshold": 1u64 << 30,
        "schedule": {"cron": "*/15 * * * *"},
        "alarms": [{"kind": "webhook", "url": "http://127.0.0.1:9/hook"},
                   {"kind": "email", "to": "ops@example.com"}],
        "max_attempts": 4,
    });
    let parsed = dth_model::TaskSpec::from_json(&spec).unwrap();
    (spec, parsed)
}

/// A viewer invited by the admin (through the API with the admin's session), signed in.
async fn invite_viewer(site: &Site, admin: &Browser) -> Browser {
    let resp = site
        .http
        .post(format!("{}/api/v1/users", site.base))
        .header("origin", &site.base)
        .header(header::COOKIE, format!("dth_session={}", admin.cookie))
        .header("x-csrf-token", &admin.csrf)
        .json(&json!({"email": "viewer@example.com", "name": "Viewer", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    let temporary = body["temporary_password"].as_str().unwrap().to_string();
    site.sign_in("viewer@example.com", &temporary).await
}
