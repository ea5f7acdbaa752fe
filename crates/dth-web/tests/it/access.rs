//! The access layer through the real HTTP server on a real SQLite store: the first admin and the
//! forced password change, the password policy, throttling and locks, every route against every
//! role and an anonymous caller, CSRF and origin checks, session fixation, token roles, expiry and
//! revocation, the last admin, and the audit rows of it all.

use std::sync::Arc;
use std::time::Duration;

use dth_model::Role;
use dth_runtime::access::AccessConfig;
use dth_runtime::{Config, Hub};
use dth_store::{NewToken, Store};
use reqwest::{Client, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const NEW_PASSWORD: &str = "Tr0ub4dor&3-horse";

/// A hub on a free port over a SQLite file, with its first admin's temporary password.
struct Site {
    base: String,
    http: Client,
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    admin_password: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

/// What one caller sends: a session cookie with its CSRF token, or a bearer token.
#[derive(Clone, Default)]
struct Cred {
    cookie: Option<String>,
    csrf: Option<String>,
    token: Option<String>,
}

impl Site {
    async fn start(access: AccessConfig) -> Site {
        let (store, dir) = crate::common::sqlite_store().await;
        let config = Config {
            access,
            ..Config::default()
        };
        let hub = Hub::new(store.clone(), config);
        let admin_password = hub.ensure_admin("admin@localhost").await.unwrap().unwrap();
        assert_eq!(hub.ensure_admin("admin@localhost").await.unwrap(), None);
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
            store,
            admin_password,
            shutdown,
            _dir: dir,
        }
    }

    /// Sends a request as `cred` (with the site's Origin); the status, headers and JSON body.
    async fn call(
        &self,
        cred: &Cred,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, header::HeaderMap, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("origin", &self.base);
        if let Some(c) = &cred.cookie {
            rb = rb.header(header::COOKIE, format!("dth_session={c}"));
        }
        if let Some(t) = &cred.csrf {
            rb = rb.header("x-csrf-token", t);
        }
        if let Some(t) = &cred.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, value)
    }

    /// Signs in; the session's cookie and CSRF token, or the failed status and body.
    async fn sign_in(&self, email: &str, password: &str) -> Result<Cred, (StatusCode, Value)> {
        let (status, headers, body) = self
            .call(
                &Cred::default(),
                Method::POST,
                "/api/v1/session",
                Some(json!({"email": email, "password": password})),
            )
            .await;
        if status != StatusCode::OK {
            return Err((status, body));
        }
        Ok(session_of(&headers, &body))
    }

    /// Signs in with a temporary password and sets [`NEW_PASSWORD`].
    async fn first_sign_in(&self, email: &str, temporary: &str) -> Cred {
        let cred = self.sign_in(email, temporary).await.unwrap();
        let (status, headers, body) = self
            .call(
                &cred,
                Method::PUT,
                "/api/v1/me/password",
                Some(json!({"current_password": temporary, "new_password": NEW_PASSWORD})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        session_of(&headers, &body)
    }

    /// Invites a user as `admin` and signs them in for the first time.
    async fn user(&self, admin: &Cred, email: &str, role: Role) -> (String, Cred) {
        let (status, _, body) = self
            .call(
                admin,
                Method::POST,
                "/api/v1/users",
                Some(json!({"email": email, "name": email, "role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["user"]["id"].as_str().unwrap().to_string();
        let temporary = body["temporary_password"].as_str().unwrap();
        (id, self.first_sign_in(email, temporary).await)
    }

    /// A token of `cred`'s user with `role`.
    async fn token(&self, cred: &Cred, role: Role) -> Cred {
        let (status, _, body) = self
            .call(
                cred,
                Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": format!("{role}-token"), "role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Cred {
            token: Some(body["token"].as_str().unwrap().to_string()),
            ..Cred::default()
        }
    }

    async fn admin(&self) -> Cred {
        self.first_sign_in("admin@localhost", &self.admin_password.clone())
            .await
    }

    async fn audit_kinds(&self, admin: &Cred) -> Vec<Value> {
        let (status, _, body) = self
            .call(admin, Method::GET, "/api/v1/audit?limit=1000", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["events"].as_array().unwrap().clone()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The session cookie and CSRF token of a sign-in answer.
fn session_of(headers: &header::HeaderMap, body: &Value) -> Cred {
    let set = headers
        .get(header::SET_COOKIE)
        .expect("a Set-Cookie")
        .to_str()
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    let value = set
        .strip_prefix("dth_session=")
        .and_then(|v| v.split(';').next())
        .unwrap();
    Cred {
        cookie: Some(value.to_string()),
        csrf: Some(body["csrf_token"].as_str().unwrap().to_string()),
        token: None,
    }
}

#[tokio::test]
async fn first_admin_must_set_a_new_password_that_meets_the_policy() {
    let site = Site::start(AccessConfig::default()).await;
    // The portal sends a stranger to its sign-in page.
    let home = site
        .http
        .get(format!("{}/", site.base))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(home.headers()[header::LOCATION], "/signin?next=%2F");
    let page = site
        .http
        .get(format!("{}/signin", site.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    for part in [
        "<label for=\"email\">Email</label>",
        "action=\"/signin\"",
        "autocomplete=\"current-password\"",
    ] {
        assert!(html.contains(part), "{part} in the sign-in page");
    }
    let temporary = site.admin_password.clone();
    assert_eq!(temporary.len(), 23);
    let cred = site.sign_in("ADMIN@localhost", &temporary).await.unwrap();
    let (status, _, me) = site.call(&cred, Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["must_change_password"], true);
    assert_eq!(me["role"], "admin");
    let (status, _, body) = site.call(&cred, Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("set a new password first"),
        "{body}"
    );
    // The policy names what is missing.
    let (status, _, body) = site
        .call(
            &cred,
            Method::PUT,
            "/api/v1/me/password",
            Some(json!({"current_password": temporary, "new_password": "password"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "new_password: the password needs an upper-case letter, a digit, a symbol"
    );
    let (status, _, _) = site
        .call(
            &cred,
            Method::PUT,
            "/api/v1/me/password",
            Some(json!({"current_password": "wrong", "new_password": NEW_PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fresh = site.first_sign_in("admin@localhost", &temporary).await;
    // The old session ended; the new one works and may do everything.
    let (status, _, _) = site.call(&cred, Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = site.call(&fresh, Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(site.sign_in("admin@localhost", &temporary).await.is_err());
    assert!(site.sign_in("admin@localhost", NEW_PASSWORD).await.is_ok());
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_then_locked_until_an_admin_unlocks() {
    let site = Site::start(AccessConfig {
        throttle_after: 50,
        lock_after: 3,
        ..AccessConfig::default()
    })
    .await;
    let admin = site.admin().await;
    let (id, _) = site.user(&admin, "bob@example.com", Role::Viewer).await;
    for _ in 0..3 {
        let (status, _) = site.sign_in("bob@example.com", "nope").await.err().unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = site
        .sign_in("bob@example.com", NEW_PASSWORD)
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("locked"), "{body}");
    let (status, _, user) = site
        .call(
            &admin,
            Method::POST,
            &format!("/api/v1/users/{id}/unlock"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["locked"], false);
    site.sign_in("bob@example.com", NEW_PASSWORD).await.unwrap();

    // Throttling: after two failures from this address, the next attempt must wait, whichever
    // account it names and whether or not its password is right.
    let site = Site::start(AccessConfig {
        throttle_after: 2,
        ..AccessConfig::default()
    })
    .await;
    let temporary = site.admin_password.clone();
    for who in ["admin@localhost", "nobody@example.com"] {
        let (status, _) = site.sign_in(who, "nope").await.err().unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (_, headers, body) = site
        .call(
            &Cred::default(),
            Method::POST,
            "/api/v1/session",
            Some(json!({"email": "admin@localhost", "password": temporary})),
        )
        .await;
    assert_eq!(body["error"], "too many failed sign-ins; try again in 1 s");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    let kinds = site.hub.store().list_events(None, 100).await.unwrap();
    assert!(kinds.iter().any(|e| e.kind == "session.throttled"));
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    /// Anyone, signed in or not.
    Anyone,
    /// A signed-in session (cookie), any role.
    Session,
    /// At least this role.
    Role(Role),
    /// The task's webhook token: every session and API token is refused.
    WebhookToken,
}

/// The rule of every route; a route missing here fails the test.
fn rule(method: &str, path: &str) -> Need {
    use Need::*;
    match (method, path) {
        ("get", "/openapi.json" | "/auth/providers") | ("post", "/session") => Anyone,
        // The task's own webhook token, never a session or an API token.
        ("post", "/tasks/{id}/events") => WebhookToken,
        ("get" | "delete", "/session") => Session,
        ("get", "/me") | ("put", "/me/password" | "/me/language") => Role(dth_model::Role::Viewer),
        (_, p) if p.starts_with("/users") || p == "/audit" => Role(dth_model::Role::Admin),
        (_, p) if p.starts_with("/tokens") => Role(dth_model::Role::Viewer),
        ("get", p) if p.starts_with("/tasks") || p.starts_with("/runs") => {
            Role(dth_model::Role::Viewer)
        }
        ("post" | "delete" | "patch", p)
            if p.starts_with("/tasks") || p.starts_with("/runs") || p == "/plan" =>
        {
            Role(dth_model::Role::Operator)
        }
        ("get", "/settings/prices" | "/settings/retention") => Role(dth_model::Role::Viewer),
        (_, p) if p.starts_with("/settings") => Role(dth_model::Role::Admin),
        ("get", "/secrets") => Role(dth_model::Role::Viewer),
        (_, p) if p.starts_with("/secrets") => Role(dth_model::Role::Operator),
        _ => panic!("route {method} {path} has no rule in this test's table: add one"),
    }
}

#[tokio::test]
async fn every_route_answers_each_role_and_anonymous_by_the_table() {
    let site = Site::start(AccessConfig::default()).await;
    let admin = site.admin().await;
    let (_, viewer) = site.user(&admin, "viewer@example.com", Role::Viewer).await;
    let (_, operator) = site.user(&admin, "op@example.com", Role::Operator).await;
    let callers: Vec<(&str, Option<Role>, Cred)> = vec![
        ("anonymous", None, Cred::default()),
        ("viewer session", Some(Role::Viewer), viewer.clone()),
        ("operator session", Some(Role::Operator), operator.clone()),
        ("admin session", Some(Role::Admin), admin.clone()),
        (
            "viewer token",
            Some(Role::Viewer),
            site.token(&viewer, Role::Viewer).await,
        ),
        // An admin's token limited to viewer acts as a viewer.
        (
            "admin's viewer token",
            Some(Role::Viewer),
            site.token(&admin, Role::Viewer).await,
        ),
        (
            "operator token",
            Some(Role::Operator),
            site.token(&operator, Role::Operator).await,
        ),
        (
            "admin token",
            Some(Role::Admin),
            site.token(&admin, Role::Admin).await,
        ),
    ];
    let mut checked = 0;
    for (method, path) in dth_web::api::ROUTES {
        // Sign-out would end the sessions the table goes on with; it is checked on its own below.
        if (*method, *path) == ("delete", "/session") {
            continue;
        }
        let need = rule(method, path);
        let concrete = path
            .replace("{id}", "999")
            .replace("{name}", "no-such-secret");
        let m: Method = method.to_uppercase().parse().unwrap();
        let body = matches!(*method, "post" | "put" | "patch").then(|| json!({}));
        for (who, role, cred) in &callers {
            let (status, _, answer) = site
                .call(cred, m.clone(), &format!("/api/v1{concrete}"), body.clone())
                .await;
            let is_token = cred.token.is_some();
            let denied = match (need, role) {
                (Need::Anyone, _) => None,
                (Need::WebhookToken, _) => Some(StatusCode::UNAUTHORIZED),
                (_, None) => Some(StatusCode::UNAUTHORIZED),
                (Need::Session, Some(_)) if is_token => Some(StatusCode::UNAUTHORIZED),
                (Need::Session, Some(_)) => None,
                (Need::Role(r), Some(have)) if *have < r => Some(StatusCode::FORBIDDEN),
                (Need::Role(_), Some(_)) => None,
            };
            match denied {
                Some(want) => assert_eq!(status, want, "{who}: {method} {path}: {answer}"),
                None => assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{who} may {method} {path}, got {status}: {answer}"
                ),
            }
            checked += 1;
        }
    }
    assert!(checked >= 8 * 25, "{checked}");
    // Sign-out ends the session at once.
    let (status, headers, _) = site
        .call(&viewer, Method::DELETE, "/api/v1/session", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _, _) = site.call(&viewer, Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cookie_changes_need_the_csrf_token_and_the_hubs_origin() {
    let site = Site::start(AccessConfig::default()).await;
    let admin = site.admin().await;
    let spec = json!({
        "name": "t", "kind": "s3",
        "source": {"provider": "minio", "endpoint_url": "http://127.0.0.1:9", "bucket": "src-bucket",
                   "prefix": "", "credentials": {"kind": "anonymous"}},
        "destination": {"provider": "minio", "endpoint_url": "http://127.0.0.1:9", "bucket": "dst-bucket",
                        "prefix": "", "credentials": {"kind": "anonymous"}},
        "schedule": "once"
    });
    let no_token = Cred {
        csrf: None,
        ..admin.clone()
    };
    let (status, _, body) = site
        .call(&no_token, Method::POST, "/api/v1/tasks", Some(spec.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"].as_str().unwrap().contains("X-CSRF-Token"),
        "{body}"
    );
    let wrong = Cred {
        csrf: Some("0".repeat(48)),
        ..admin.clone()
    };
    let (status, _, _) = site
        .call(&wrong, Method::POST, "/api/v1/tasks", Some(spec.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another site's page posting with the victim's cookie and even the right token: refused.
    let resp = site
        .http
        .post(format!("{}/api/v1/tasks", site.base))
        .header("origin", "https://evil.example")
        .header(
            header::COOKIE,
            format!("dth_session={}", admin.cookie.clone().unwrap()),
        )
        .header("x-csrf-token", admin.csrf.clone().unwrap())
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(site.hub.store().list_tasks().await.unwrap().is_empty());
    // Reads need no token; bearer requests need neither token nor origin.
    let (status, _, _) = site
        .call(&no_token, Method::GET, "/api/v1/tasks", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let token = site.token(&admin, Role::Operator).await;
    let resp = site
        .http
        .post(format!("{}/api/v1/tasks", site.base))
        .bearer_auth(token.token.unwrap())
        .json(&spec)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    // A sign-in posted from another site is refused too.
    let resp = site
        .http
        .post(format!("{}/api/v1/session", site.base))
        .header("origin", "https://evil.example")
        .json(&json!({"email": "admin@localhost", "password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_session_id_planted_before_sign_in_is_never_used() {
    let site = Site::start(AccessConfig::default()).await;
    site.admin().await;
    let planted = "a".repeat(48);
    let resp = site
        .http
        .post(format!("{}/api/v1/session", site.base))
        .header(header::COOKIE, format!("dth_session={planted}"))
        .json(&json!({"email": "admin@localhost", "password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.unwrap();
    let first = session_of(&headers, &body);
    assert_ne!(first.cookie.as_deref(), Some(planted.as_str()));
    let planted = Cred {
        cookie: Some(planted),
        ..Cred::default()
    };
    let (status, _, _) = site.call(&planted, Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Every sign-in gets a new id.
    let second = site.sign_in("admin@localhost", NEW_PASSWORD).await.unwrap();
    assert_ne!(first.cookie, second.cookie);
    assert_ne!(first.csrf, second.csrf);
}

#[tokio::test]
async fn tokens_are_capped_by_their_user_expire_and_are_revoked() {
    let site = Site::start(AccessConfig::default()).await;
    let admin = site.admin().await;
    let (viewer_id, viewer) = site.user(&admin, "v@example.com", Role::Viewer).await;
    let (status, _, body) = site
        .call(
            &viewer,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "x", "role": "admin"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, created) = site
        .call(
            &viewer,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "ci", "expires_in_days": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = created["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("dth_") && secret.len() > 40);
    assert_eq!(created["info"]["role"], "viewer");
    let token = Cred {
        token: Some(secret.clone()),
        ..Cred::default()
    };
    let (status, _, _) = site.call(&token, Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, list) = site
        .call(&viewer, Method::GET, "/api/v1/tokens", None)
        .await;
    let listed = &list.as_array().unwrap()[0];
    assert!(listed["last_used_at"].is_i64(), "{list}");
    assert!(!list.to_string().contains(&secret));
    // Only admins list everyone's tokens.
    let (status, _, _) = site
        .call(&viewer, Method::GET, "/api/v1/tokens?all=true", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Revoked: refused at once.
    let id = created["info"]["id"].as_str().unwrap();
    let (status, _, _) = site
        .call(
            &viewer,
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = site.call(&token, Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Expired: refused.
    let expired = NewToken {
        name: "old".into(),
        user_id: Some(viewer_id.clone()),
        role: Role::Viewer,
        expires_at: Some(dth_store::now_ms() - 1),
    };
    site.store
        .add_token(&expired, "dth_expired_token_0123456789")
        .await
        .unwrap();
    let old = Cred {
        token: Some("dth_expired_token_0123456789".into()),
        ..Cred::default()
    };
    let (status, _, _) = site.call(&old, Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A disabled user's tokens and sessions stop working.
    let fresh = site.token(&viewer, Role::Viewer).await;
    let (status, _, _) = site
        .call(
            &admin,
            Method::PATCH,
            &format!("/api/v1/users/{viewer_id}"),
            Some(json!({"state": "disabled"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for cred in [&fresh, &viewer] {
        let (status, _, _) = site.call(cred, Method::GET, "/api/v1/tasks", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = site
        .sign_in("v@example.com", NEW_PASSWORD)
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn the_last_admin_stays_and_every_change_is_audited() {
    let site = Site::start(AccessConfig::default()).await;
    let admin = site.admin().await;
    let (_, me) = (
        0,
        site.call(&admin, Method::GET, "/api/v1/me", None).await.2,
    );
    let admin_id = me["id"].as_str().unwrap().to_string();
    for change in [json!({"role": "operator"}), json!({"state": "disabled"})] {
        let (status, _, body) = site
            .call(
                &admin,
                Method::PATCH,
                &format!("/api/v1/users/{admin_id}"),
                Some(change),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
    let (status, _, _) = site
        .call(
            &admin,
            Method::DELETE,
            &format!("/api/v1/users/{admin_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (other_id, _) = site.user(&admin, "second@example.com", Role::Admin).await;
    let (status, _, body) = site
        .call(
            &admin,
            Method::PATCH,
            &format!("/api/v1/users/{other_id}"),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(
        (status, body["role"].clone()),
        (StatusCode::OK, json!("viewer"))
    );
    let (status, _, reset) = site
        .call(
            &admin,
            Method::POST,
            &format!("/api/v1/users/{other_id}/reset-password"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reset["user"]["must_change_password"], true);
    let (status, _, _) = site
        .call(
            &admin,
            Method::PUT,
            "/api/v1/secrets/aws-prod",
            Some(json!({"access_key_id": "AKIA1", "secret_access_key": "SECRET-VALUE-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let token = site.token(&admin, Role::Operator).await;
    let _ = site.sign_in("admin@localhost", "wrong").await;
    let (status, _, _) = site
        .call(
            &admin,
            Method::DELETE,
            &format!("/api/v1/users/{other_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = site.call(&token, Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(status, StatusCode::OK);

    let events = site.audit_kinds(&admin).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in [
        "user.created",
        "session.created",
        "user.password_changed",
        "user.updated",
        "user.password_reset",
        "secret.stored",
        "token.created",
        "session.failed",
        "user.deleted",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let stored = events
        .iter()
        .find(|e| e["kind"] == "secret.stored")
        .unwrap();
    assert_eq!(stored["actor"], "user:admin@localhost");
    assert_eq!(stored["target"], "aws-prod");
    assert_eq!(stored["client"], "127.0.0.1");
    let failed = events
        .iter()
        .find(|e| e["kind"] == "session.failed")
        .unwrap();
    assert_eq!(failed["target"], "admin@localhost");
    // Filters and pages.
    let (_, _, page) = site
        .call(
            &admin,
            Method::GET,
            "/api/v1/audit?kind=user.&limit=2",
            None,
        )
        .await;
    let page_events = page["events"].as_array().unwrap();
    assert_eq!(page_events.len(), 2);
    assert!(
        page_events
            .iter()
            .all(|e| e["kind"].as_str().unwrap().starts_with("user."))
    );
    let before = page["next_before"].as_i64().unwrap();
    let (_, _, next) = site
        .call(
            &admin,
            Method::GET,
            &format!("/api/v1/audit?kind=user.&before={before}"),
            None,
        )
        .await;
    assert!(
        next["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["id"].as_i64().unwrap() < before)
    );
    // No password, token or secret value in the audit log.
    let all = serde_json::to_string(&events).unwrap();
    for secret in [
        NEW_PASSWORD,
        "SECRET-VALUE-1",
        token.token.as_deref().unwrap(),
        &site.admin_password,
    ] {
        assert!(!all.contains(secret), "a secret in the audit log");
    }
}
