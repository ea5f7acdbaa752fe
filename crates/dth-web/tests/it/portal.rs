//! The portal's pages over HTTP as a browser meets them (no JavaScript): a hub over a SQLite file
//! with its HTTP surface on 127.0.0.1, the first admin's temporary password from the hub, and a
//! cookie session made through the sign-in form. Checks the redirects to sign-in, the sign-in
//! form and its errors, the forced password change, the overview and the task list (filters,
//! search, pages), the language, and that state-changing posts need the session's CSRF token and
//! a role that allows them.

use std::sync::Arc;

use dth_model::{Actor, Role};
use dth_runtime::{Config, Hub};
use dth_store::Store;
use reqwest::header::{ACCEPT_LANGUAGE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, StatusCode, redirect};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "Zebra-Crossing-42!";

struct Portal {
    base: String,
    http: Client,
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    stop: CancellationToken,
    admin_password: String,
    _dir: tempfile::TempDir,
}

/// A browser's session: its cookie and the CSRF token its pages carry.
struct Session {
    cookie: String,
    csrf: String,
}

impl Portal {
    /// A hub without scheduler or workers: tasks stay as they are made.
    async fn start() -> Portal {
        let (store, dir) = crate::common::sqlite_store().await;
        let hub = Hub::new(store.clone(), Config::default());
        let admin_password = hub.ensure_admin("admin@localhost").await.unwrap().unwrap();
        let stop = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let web = dth_web::WebConfig::new(&format!("http://{addr}").parse().unwrap());
        tokio::spawn(dth_web::serve(
            Arc::clone(&hub),
            web,
            listener,
            stop.clone(),
        ));
        Portal {
            base: format!("http://{addr}"),
            http: Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .unwrap(),
            hub,
            store,
            stop,
            admin_password,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Posts the sign-in form; the answer as it came.
    async fn sign_in_form(&self, email: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/signin"))
            .header("origin", &self.base)
            .form(&[("email", email), ("password", password), ("next", "/tasks")])
            .send()
            .await
            .unwrap()
    }

    /// Signs in through the form and reads the CSRF token from the page it leads to.
    async fn session(&self, email: &str, password: &str) -> Session {
        let resp = self.sign_in_form(email, password).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let cookie = cookie_of(&resp);
        // The password page opens to anyone signed in, a temporary password too.
        let page = self.get(&cookie, "/password").await;
        Session {
            csrf: csrf_of(&page),
            cookie,
        }
    }

    /// Posts the password change form.
    async fn change_password(
        &self,
        s: &Session,
        current: &str,
        new: &str,
        again: &str,
    ) -> reqwest::Response {
        let form = [
            ("current_password", current),
            ("new_password", new),
            ("confirm_password", again),
            ("next", "/tasks"),
        ];
        self.post(s, "/password", &form).await
    }

    async fn get_response(&self, cookie: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header(COOKIE, format!("dth_session={cookie}"))
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, cookie: &str, path: &str) -> String {
        let resp = self.get_response(cookie, path).await;
        assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
        // minijinja writes `/` as `&#x2f;` in text; the rest of the escaping stays as it is.
        resp.text().await.unwrap().replace("&#x2f;", "/")
    }

    /// A form post of the session, as htmx sends it (CSRF header, Origin, HX-Request).
    async fn post(&self, s: &Session, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header(COOKIE, format!("dth_session={}", s.cookie))
            .header("x-csrf-token", &s.csrf)
            .header("origin", &self.base)
            .header("hx-request", "true")
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// An admin's session with the temporary password replaced.
    async fn admin(&self) -> Session {
        let s = self.session("admin@localhost", &self.admin_password).await;
        let resp = self
            .change_password(&s, &self.admin_password, PASSWORD, PASSWORD)
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let cookie = cookie_of(&resp);
        let page = self.get(&cookie, "/").await;
        Session {
            csrf: csrf_of(&page),
            cookie,
        }
    }

    /// A task made through the hub, named `name`, of `kind` (`s3` or `image`).
    async fn task(&self, name: &str, kind: &str) -> String {
        let spec = match kind {
            "s3" => json!({
                "name": name, "kind": "s3",
                "source": {"provider": "minio", "endpoint_url": "http://127.0.0.1:9", "bucket": "src-bucket",
                           "prefix": "", "credentials": {"kind": "anonymous"}},
                "destination": {"provider": "aws", "region": "cn-north-1", "bucket": "dst-bucket",
                                "prefix": "in/", "credentials": {"kind": "anonymous"}},
                "schedule": {"every-seconds": 3600},
            }),
            _ => json!({
                "name": name, "kind": "image",
                "source": {"location": "docker://127.0.0.1:9/app"},
                "destination": {"location": "docker://127.0.0.1:9"},
                "schedule": "once",
            }),
        };
        self.hub
            .create_task(&Actor::system(), &spec)
            .await
            .unwrap()
            .id
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn cookie_of(resp: &reqwest::Response) -> String {
    let set = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .find_map(|v| v.to_str().ok()?.strip_prefix("dth_session="))
        .expect("a session cookie");
    set.split(';').next().unwrap().to_string()
}

/// The CSRF token of a page's `hx-headers`.
fn csrf_of(page: &str) -> String {
    let at = page.find("X-CSRF-Token").expect("a CSRF token in the page");
    let rest = &page[at..];
    let start = rest
        .find(": &quot;")
        .map(|i| i + 8)
        .or_else(|| rest.find(": \"").map(|i| i + 3));
    let rest = &rest[start.expect("a token value")..];
    let end = rest.find(['&', '"']).unwrap();
    rest[..end].to_string()
}

#[tokio::test]
async fn sign_in_and_the_forced_password_change() {
    let p = Portal::start().await;
    // Every page sends a stranger to sign in, and back afterwards.
    for path in ["/", "/tasks", "/overview/active", "/password"] {
        let resp = p.http.get(p.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
        let to = resp.headers()[LOCATION].to_str().unwrap().to_string();
        assert!(to.starts_with("/signin?next="), "{path}: {to}");
    }
    let page = p.http.get(p.url("/signin")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<label for=\"email\">Email</label>"),
        "{html}"
    );
    assert!(
        !html.contains("Sign in with"),
        "no OIDC provider is configured"
    );

    // A wrong password: the form again, with the reason, and no cookie.
    let resp = p.sign_in_form("admin@localhost", "not-the-password").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    let html = resp.text().await.unwrap();
    assert!(html.contains("Wrong email or password."), "{html}");
    assert!(html.contains("value=\"admin@localhost\""));
    assert!(
        !html.contains("not-the-password"),
        "a password is never sent back"
    );

    // Another site's form cannot sign anyone in.
    let resp = p
        .http
        .post(p.url("/signin"))
        .header("origin", "https://evil.example")
        .form(&[
            ("email", "admin@localhost"),
            ("password", p.admin_password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get(SET_COOKIE).is_none());

    // The temporary password leads to the password change, and only there.
    let resp = p.sign_in_form("admin@localhost", &p.admin_password).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/password?next=%2Ftasks");
    let cookie = cookie_of(&resp);
    let resp = p.get_response(&cookie, "/tasks").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/password");
    let page = p.get(&cookie, "/password?next=/tasks").await;
    assert!(page.contains("Your password is temporary"), "{page}");
    let s = Session {
        csrf: csrf_of(&page),
        cookie,
    };
    let temporary = p.admin_password.clone();
    let resp = p.change_password(&s, &temporary, "weak", "weak").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("at least 8 characters"),
        "the policy's message: {html}"
    );
    let resp = p
        .change_password(&s, &temporary, PASSWORD, "Zebra-Crossing-43!")
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("The two new passwords differ.")
    );
    let resp = p.change_password(&s, &temporary, PASSWORD, PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["hx-redirect"], "/tasks");
    let cookie = cookie_of(&resp);
    assert_ne!(cookie, s.cookie, "the session goes on under a new id");
    p.get(&cookie, "/tasks").await;

    // Signed in, the sign-in page goes on; `next` never leads off the hub.
    let resp = p
        .get_response(&cookie, "/signin?next=//evil.example/")
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/");

    // Sign-out ends the session.
    let page = p.get(&cookie, "/").await;
    let s = Session {
        csrf: csrf_of(&page),
        cookie,
    };
    let resp = p.post(&s, "/signout", &[]).await;
    assert_eq!(resp.headers()["hx-redirect"], "/signin");
    assert_eq!(
        p.get_response(&s.cookie, "/").await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn overview_and_task_list() {
    let p = Portal::start().await;
    let s = p.admin().await;
    for i in 0..30 {
        p.task(&format!("photos {i:02}"), "s3").await;
    }
    let image = p.task("app images <b>", "image").await;

    let overview = p.get(&s.cookie, "/").await;
    assert!(overview.contains("31 tasks"), "{overview}");
    assert!(overview.contains("Moved in the last 24 hours"));
    assert!(overview.contains("New object task"), "an admin may create");
    let active = p.get(&s.cookie, "/overview/active").await;
    assert!(active.contains("Nothing is running now."), "{active}");

    // Pages of 25, newest first; the names are escaped.
    let first = p.get(&s.cookie, "/tasks").await;
    assert!(first.contains("1–25 of 31"), "{first}");
    assert!(first.contains("app images &lt;b&gt;") && !first.contains("app images <b>"));
    assert!(first.contains("minio s3://src-bucket/") && first.contains("aws s3://dst-bucket/in/"));
    assert!(first.contains("Every 1 h"));
    let second = p.get(&s.cookie, "/tasks?page=2").await;
    assert!(second.contains("26–31 of 31"), "{second}");
    assert!(second.contains("photos 00"));
    let images = p.get(&s.cookie, "/tasks?kind=image").await;
    assert!(
        images.contains("1–1 of 1") && images.contains("Images"),
        "{images}"
    );
    let search = p.get(&s.cookie, "/tasks?q=PHOTOS%201").await;
    assert!(search.contains("1–10 of 10"), "{search}");
    let none = p.get(&s.cookie, "/tasks?status=ERROR").await;
    assert!(none.contains("No task matches these filters."));

    // The actions: stop, then delete, each answered with a refresh or the list.
    let resp = p.post(&s, &format!("/tasks/{image}/stop"), &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["hx-refresh"], "true");
    assert_eq!(
        p.store
            .get_task(&image)
            .await
            .unwrap()
            .unwrap()
            .status
            .name(),
        "STOPPED"
    );
    let resp = p.post(&s, &format!("/tasks/{image}/clone"), &[]).await;
    let to = resp.headers()["hx-redirect"].to_str().unwrap().to_string();
    assert!(to.starts_with("/tasks/") && !to.ends_with(&image), "{to}");
    let resp = p.post(&s, &format!("/tasks/{image}/delete"), &[]).await;
    assert_eq!(resp.headers()["hx-redirect"], "/tasks");
    assert!(p.store.get_task(&image).await.unwrap().is_none());
    let resp = p.post(&s, "/tasks/no-such-task/start", &[]).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await.unwrap().contains("Error 404"));
}

#[tokio::test]
async fn posts_need_the_csrf_token_and_the_role() {
    let p = Portal::start().await;
    let admin = p.admin().await;
    let task = p.task("keep me", "s3").await;
    let viewer = p
        .hub
        .invite_user(
            &Actor::system(),
            "viewer@example.com",
            "Vi Ewer",
            Role::Viewer,
        )
        .await
        .unwrap();
    let s = p.session("viewer@example.com", &viewer.secret).await;
    let resp = p
        .change_password(&s, &viewer.secret, PASSWORD, PASSWORD)
        .await;
    let cookie = cookie_of(&resp);
    let page = p.get(&cookie, "/tasks").await;
    let s = Session {
        csrf: csrf_of(&page),
        cookie,
    };
    // A viewer sees the task but none of the controls.
    assert!(page.contains("keep me"));
    for control in [
        "New object task",
        ">Stop<",
        ">Delete<",
        ">Clone<",
        "/delete\"",
    ] {
        assert!(!page.contains(control), "a viewer sees {control:?}");
    }
    assert!(
        !page.contains("href=\"/users\""),
        "admin pages are not linked"
    );
    // A forged post from the viewer's session: refused by the hub, nothing changes.
    for action in ["stop", "delete", "clone", "start"] {
        let resp = p.post(&s, &format!("/tasks/{task}/{action}"), &[]).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{action}");
        assert!(
            resp.text()
                .await
                .unwrap()
                .contains("this needs the operator role")
        );
    }
    assert_eq!(p.store.list_tasks().await.unwrap().len(), 1);
    // Without the CSRF token, or from another site, even the admin is refused before any handler.
    let no_token = p
        .http
        .post(p.url(&format!("/tasks/{task}/delete")))
        .header(COOKIE, format!("dth_session={}", admin.cookie))
        .header("origin", &p.base)
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    let foreign = p
        .http
        .post(p.url(&format!("/tasks/{task}/delete")))
        .header(COOKIE, format!("dth_session={}", admin.cookie))
        .header("x-csrf-token", &admin.csrf)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert!(p.store.get_task(&task).await.unwrap().is_some());
}

#[tokio::test]
async fn the_language_follows_the_browser() {
    let p = Portal::start().await;
    let zh = p
        .http
        .get(p.url("/signin"))
        .header(ACCEPT_LANGUAGE, "zh-CN,zh;q=0.9,en;q=0.8")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        zh.contains("<html lang=\"zh-CN\">") && zh.contains("登录"),
        "{zh}"
    );
    let en = p
        .http
        .get(p.url("/signin?lang=en"))
        .header(ACCEPT_LANGUAGE, "zh-CN")
        .send()
        .await
        .unwrap();
    assert!(en.text().await.unwrap().contains("<html lang=\"en\">"));
    let s = p.admin().await;
    let page = p
        .http
        .get(p.url("/tasks"))
        .header(COOKIE, format!("dth_session={}", s.cookie))
        .header(ACCEPT_LANGUAGE, "zh-CN")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<html lang=\"zh-CN\">") && page.contains("新建对象任务"),
        "{page}"
    );
    let css = p
        .http
        .get(p.url("/static/portal.css?v=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    let missing = p.http.get(p.url("/static/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}
