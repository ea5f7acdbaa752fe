//! The admin pages through the real HTTP server on a real SQLite store, driven like a browser
//! does: a session cookie from the sign-in form, the CSRF token read from the page's
//! `hx-headers`, an `Origin` header. Secrets are created and replaced through their forms and no
//! answer ever holds a value; the secrets page names the task using a secret; an invitation
//! shows the temporary password once; a viewer gets 403 for the admin pages and a forged post,
//! and sees no controls to change secrets; the language chosen on the profile page is the next
//! page's; a token made on the profile page works on the API.

use std::sync::Arc;
use std::time::Duration;

use dth_runtime::{Config, Hub};
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
#[derive(Clone)]
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
                .timeout(Duration::from_secs(30))
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

    /// Sends a request as htmx does (cookie, CSRF token, Origin, `HX-Request`); a form body when
    /// given. The body is kept for [`Site::assert_never_shown`].
    async fn send(
        &self,
        who: Option<&Browser>,
        method: reqwest::Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
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

    async fn post(&self, who: &Browser, path: &str, form: &[(&str, &str)]) -> Answer {
        self.send(Some(who), reqwest::Method::POST, path, Some(form))
            .await
    }

    /// Signs in through the form (setting a new password when the one given is temporary).
    async fn sign_in(&self, email: &str, password: &str) -> Browser {
        let a = self
            .send(
                None,
                reqwest::Method::POST,
                "/signin",
                Some(&[("email", email), ("password", password), ("next", "/")]),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let cookie = session_cookie(&a.headers);
        let to = a.headers["hx-redirect"].to_str().unwrap().to_string();
        let mut browser = Browser {
            cookie,
            csrf: String::new(),
        };
        let page = self.get(&browser, &to).await;
        browser.csrf = csrf_of(&page.body);
        if to.starts_with("/password") {
            let a = self
                .post(
                    &browser,
                    "/password",
                    &[
                        ("current_password", password),
                        ("new_password", NEW_PASSWORD),
                        ("confirm_password", NEW_PASSWORD),
                        ("next", "/"),
                    ],
                )
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            browser.cookie = session_cookie(&a.headers);
            browser.csrf = csrf_of(&self.get(&browser, "/").await.body);
        }
        browser
    }

    /// Fails when any answer so far holds one of `values`.
    fn assert_never_shown(&self, values: &[&str]) {
        for body in self.bodies.lock().unwrap().iter() {
            for v in values {
                assert!(!body.contains(v), "{v:?} appeared in an answer: {body}");
            }
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
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

/// The text of the `.shown-once` box of a page.
fn shown_once(html: &str) -> Option<String> {
    let at = html.find("class=\"shown-once\"")?;
    let rest = &html[at..];
    let start = rest.find('>')? + 1;
    let end = rest.find("</p>")?;
    Some(rest[start..end].trim().to_string())
}

#[tokio::test]
async fn the_admin_pages_work_like_a_browser_uses_them() {
    let site = Site::start().await;
    let temporary = site
        .hub
        .ensure_admin("admin@localhost")
        .await
        .unwrap()
        .unwrap();
    let admin = site.sign_in("admin@localhost", &temporary).await;

    // A secret created through the form, then its value replaced; the page names it.
    let a = site
        .post(
            &admin,
            "/secrets",
            &[
                ("name", "aws-prod"),
                ("kind", "access_key"),
                ("access_key_id", "AKIAFIRSTKEYID"),
                ("secret_access_key", "first-SECRET-value"),
                ("session_token", ""),
                ("username", ""),
                ("password", ""),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.headers["hx-redirect"], "/secrets/aws-prod");
    // A failed submit keeps the name and kind, and no value.
    let a = site
        .post(
            &admin,
            "/secrets",
            &[
                ("name", "broken"),
                ("kind", "access_key"),
                ("access_key_id", "AKIAFAILEDKEYID"),
                ("secret_access_key", ""),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(
        a.body.contains("secret_access_key: must not be empty"),
        "{}",
        a.body
    );
    assert!(a.body.contains("value=\"broken\""));
    // The same name again is refused: replacing is its own form.
    let a = site
        .post(
            &admin,
            "/secrets",
            &[
                ("name", "aws-prod"),
                ("kind", "access_key"),
                ("access_key_id", "AKIATAKENKEYID"),
                ("secret_access_key", "taken-SECRET-value"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    let a = site
        .post(
            &admin,
            "/secrets/aws-prod",
            &[
                ("kind", "registry_login"),
                ("username", "robot$ci"),
                ("password", "second-SECRET-value"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let page = site.get(&admin, "/secrets/aws-prod?replaced=1").await;
    assert!(page.body.contains("Registry login"), "{}", page.body);
    assert!(page.body.contains("type=\"password\""));
    assert!(page.body.contains("autocomplete=\"new-password\""));

    // A task using it: the list links the task, and deleting the secret is refused by name.
    let spec = json!({
        "name": "photos to OSS", "kind": "image",
        "source": {"location": "docker://127.0.0.1:1/app", "credentials": {"kind": "secret", "name": "aws-prod"}},
        "destination": {"location": "docker://127.0.0.1:2"},
        "schedule": {"cron": "0 3 * * *"}
    });
    let task = site
        .hub
        .create_task(&admin_actor(&site).await, &spec)
        .await
        .unwrap();
    let list = site.get(&admin, "/secrets").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body
            .contains(&format!("<a href=\"/tasks/{}\">photos to OSS</a>", task.id)),
        "{}",
        list.body
    );
    assert!(list.body.contains("action=\"/secrets/aws-prod/delete\""));
    let a = site.post(&admin, "/secrets/aws-prod/delete", &[]).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert!(a.body.contains("is used by task"), "{}", a.body);

    // An invitation shows the temporary password once.
    let a = site
        .post(
            &admin,
            "/users",
            &[
                ("email", "vera@example.com"),
                ("name", "Vera Viewer"),
                ("role", "viewer"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let vera_password = shown_once(&a.body).expect("the temporary password");
    assert!(a.body.contains("data-copy=\"temporary-password\""));
    let users = site.get(&admin, "/users").await;
    assert!(users.body.contains("vera@example.com"));
    assert!(!users.body.contains(&vera_password));
    let vera_id = site
        .hub
        .list_users(&admin_actor(&site).await)
        .await
        .unwrap();
    let vera_id = &vera_id
        .iter()
        .find(|u| u.email == "vera@example.com")
        .unwrap()
        .id;
    let again = site.get(&admin, &format!("/users/{vera_id}")).await;
    assert!(!again.body.contains(&vera_password));
    assert!(shown_once(&again.body).is_none());
    // The last admin stays: the hub's refusal is on the page.
    let admin_id = admin_actor(&site).await.user_id.unwrap();
    let a = site
        .post(
            &admin,
            &format!("/users/{admin_id}/role"),
            &[("role", "viewer")],
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert!(a.body.contains("last admin"), "{}", a.body);

    // A viewer: 403 for the admin pages and a forged post, no controls on /secrets.
    let vera = site.sign_in("vera@example.com", &vera_password).await;
    for path in [
        "/users",
        "/audit",
        "/settings",
        &format!("/users/{vera_id}"),
    ] {
        let a = site.get(&vera, path).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}: {}", a.body);
    }
    let a = site
        .post(
            &vera,
            "/secrets",
            &[
                ("name", "forged"),
                ("kind", "access_key"),
                ("access_key_id", "AKIAFORGED"),
                ("secret_access_key", "forged-SECRET-value"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let a = site.post(&vera, "/settings/prices", &[]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let list = site.get(&vera, "/secrets").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains("aws-prod") && list.body.contains("photos to OSS"));
    for control in ["action=\"/secrets\"", "/delete\"", "#replace"] {
        assert!(!list.body.contains(control), "{control} shown to a viewer");
    }
    let one = site.get(&vera, "/secrets/aws-prod").await;
    assert!(
        !one.body
            .contains("<form method=\"post\" action=\"/secrets/aws-prod")
    );

    // The language: zh-CN from the next page on.
    let a = site
        .post(&vera, "/profile/language", &[("language", "zh-CN")])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.headers["hx-refresh"], "true");
    let profile = site.get(&vera, "/profile").await;
    assert!(profile.body.contains("<html lang=\"zh-CN\">"));
    assert!(profile.body.contains("个人资料"), "{}", profile.body);
    let a = site
        .post(&vera, "/profile/language", &[("language", "")])
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        site.get(&vera, "/profile")
            .await
            .body
            .contains("<html lang=\"en\">")
    );

    // A token made on the profile page works on the API, and no other page shows it.
    let a = site
        .post(
            &vera,
            "/profile/tokens",
            &[("name", "ci"), ("role", "viewer"), ("expires", "30")],
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let token = shown_once(&a.body).expect("the token");
    let tasks = site
        .http
        .get(format!("{}/api/v1/tasks", site.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(tasks.status(), StatusCode::OK);
    let tasks: Value = tasks.json().await.unwrap();
    assert_eq!(tasks[0]["id"], task.id.as_str());
    let profile = site.get(&vera, "/profile").await;
    assert!(profile.body.contains(">ci<") && !profile.body.contains(&token));
    // A role above one's own is refused next to the form.
    let a = site
        .post(
            &vera,
            "/profile/tokens",
            &[("name", "sneaky"), ("role", "admin"), ("expires", "30")],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(a.body.contains("cannot be above yours"));

    // The admin pages render, and the audit log filters by action.
    for path in [
        "/audit?kind=secret.&from=2000-01-01",
        "/settings",
        "/profile",
    ] {
        let a = site.get(&admin, path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
    }
    let audit = site.get(&admin, "/audit?kind=secret.").await;
    assert!(audit.body.contains("secret.stored") && !audit.body.contains("user.created"));
    let none = site.get(&admin, "/audit?kind=secret.&to=2000-01-01").await;
    assert!(!none.body.contains("secret.stored"));

    site.assert_never_shown(&[
        "first-SECRET-value",
        "second-SECRET-value",
        "taken-SECRET-value",
        "forged-SECRET-value",
        "AKIAFIRSTKEYID",
        "AKIAFAILEDKEYID",
        "robot$ci",
    ]);
}

/// The admin as the hub's calls take it (for the setup the pages do not do).
async fn admin_actor(site: &Site) -> dth_model::Actor {
    let user = site
        .hub
        .store()
        .user_by_email("admin@localhost")
        .await
        .unwrap()
        .unwrap();
    dth_model::Actor {
        user_id: Some(user.id),
        email: user.email,
        role: user.role,
        method: dth_model::AuthMethod::Password,
        client: None,
        must_change_password: false,
    }
}
