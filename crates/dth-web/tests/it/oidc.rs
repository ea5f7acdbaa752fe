//! Sign-in through a real OpenID Connect provider (npm `oidc-provider`, [`OidcProvider`]): the hub
//! on a SQLite store file and a real server on 127.0.0.1, discovery at start-up, the browser played
//! by a client that follows no redirects (so every 303 and `Set-Cookie` is seen) and by
//! [`OidcProvider::sign_in`] at the provider.

use std::sync::Arc;
use std::time::Duration;

use dth_model::Role;
use dth_runtime::access::OidcAccounts;
use dth_runtime::{Config, Hub};
use dth_store::{NewUser, Store};
use dth_testkit::{OidcAccount, OidcClientConfig, OidcProvider};
use dth_web::auth::oidc::{OidcLogin, OidcSettings};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const CLIENT_ID: &str = "dth-hub";
const CLIENT_SECRET: &str = "dth-hub-secret-4b1d9e";

fn account(login: &str, email_verified: bool, groups: &[&str]) -> OidcAccount {
    OidcAccount {
        login: login.to_string(),
        email: format!("{login}@example.com"),
        email_verified,
        name: format!("{login} Example"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn accounts(role_map: &[(&str, Role)], auto_create: bool) -> OidcAccounts {
    OidcAccounts {
        auto_create,
        default_role: Role::Viewer,
        role_map: role_map.iter().map(|(g, r)| (g.to_string(), *r)).collect(),
    }
}

/// A hub with OpenID Connect sign-in through its own provider.
struct Env {
    base: String,
    http: Client,
    store: Arc<dyn Store>,
    provider: OidcProvider,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

/// What `/auth/oidc/login` answered: where the browser goes and the state cookie it holds.
struct Started {
    authorize_url: String,
    state_cookie: String,
}

impl Env {
    async fn start(provider_accounts: &[OidcAccount], oidc: OidcAccounts) -> Env {
        let (store, dir) = crate::common::sqlite_store().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let public_url: url::Url = format!("http://{addr}").parse().unwrap();
        let provider = OidcProvider::start(
            &[OidcClientConfig {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                redirect_uri: format!("http://{addr}/auth/oidc/callback"),
            }],
            provider_accounts,
        )
        .await;
        let login = OidcLogin::discover(
            OidcSettings {
                issuer: provider.issuer().to_string(),
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                name: "Test SSO".into(),
                scopes: ["openid", "email", "profile", "groups"]
                    .map(String::from)
                    .to_vec(),
                roles_claim: Some("groups".into()),
            },
            &public_url,
        )
        .await
        .unwrap();
        let debug = format!("{login:?}");
        assert!(!debug.contains(CLIENT_SECRET), "{debug}");
        assert_eq!(
            login.redirect_uri(),
            format!("http://{addr}/auth/oidc/callback")
        );
        let mut config = Config::default();
        config.access.oidc = Some(oidc);
        let hub = Hub::new(store.clone(), config);
        let web = dth_web::WebConfig::new(&public_url).with_oidc(login);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(dth_web::serve(hub, web, listener, shutdown.clone()));
        Env {
            base: format!("http://{addr}"),
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            store,
            provider,
            shutdown,
            server,
            _dir: dir,
        }
    }

    /// `GET /auth/oidc/login`: a 303 to the provider with the state cookie.
    async fn begin(&self) -> Started {
        let resp = self
            .http
            .get(format!("{}/auth/oidc/login", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let authorize_url = resp.headers()[LOCATION].to_str().unwrap().to_string();
        assert!(
            authorize_url.starts_with(self.provider.issuer()),
            "{authorize_url}"
        );
        let url = url::Url::parse(&authorize_url).unwrap();
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], CLIENT_ID);
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code_challenge_method"], "S256");
        assert!(q["scope"].split(' ').any(|s| s == "openid"), "{q:?}");
        assert!(q.contains_key("state") && q.contains_key("nonce"), "{q:?}");
        let state_cookie = set_cookie(&resp, "dth_oidc_state").expect("state cookie");
        assert_eq!(state_cookie, q["state"]);
        Started {
            authorize_url,
            state_cookie: format!("dth_oidc_state={state_cookie}"),
        }
    }

    /// The whole flow up to the provider's redirect back to the hub: the callback URL.
    async fn at_provider(&self, login: &str) -> (String, Started) {
        let started = self.begin().await;
        let callback = self.provider.sign_in(&started.authorize_url, login).await;
        assert!(
            callback.starts_with(&format!("{}/auth/oidc/callback?", self.base)),
            "{callback}"
        );
        (callback, started)
    }

    /// GETs a callback URL as the browser that started the sign-in.
    async fn callback(&self, url: &str, started: &Started) -> Response {
        self.http
            .get(url)
            .header(COOKIE, &started.state_cookie)
            .send()
            .await
            .unwrap()
    }

    /// `GET /api/v1/me` with a session cookie.
    async fn me(&self, session: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}/api/v1/me", self.base))
            .header(COOKIE, format!("dth_session={session}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    /// Signs `login` in through the whole flow; the session cookie value.
    async fn sign_in(&self, login: &str) -> String {
        let (url, started) = self.at_provider(login).await;
        let resp = self.callback(&url, &started).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(resp.headers()[LOCATION], "/");
        set_cookie(&resp, "dth_session").expect("session cookie")
    }

    async fn emails(&self) -> Vec<String> {
        let mut e: Vec<String> = self
            .store
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.email)
            .collect();
        e.sort();
        e
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

/// The non-empty value of a cookie a response sets, if it sets one.
fn set_cookie(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// An error page: its status, HTML, no session cookie; the page text.
async fn refused(resp: Response, status: StatusCode) -> String {
    assert_eq!(resp.status(), status);
    assert!(
        set_cookie(&resp, "dth_session").is_none(),
        "{:?}",
        resp.headers()
    );
    assert!(
        resp.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        resp.headers()
    );
    resp.text().await.unwrap()
}

/// A URL with one query parameter replaced.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_string()
            } else {
                v.into()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.into()
}

fn param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{url} has no {name}"))
}

#[tokio::test]
async fn oidc_sign_in_creates_the_user_and_sets_the_session_cookie() {
    let env = Env::start(&[account("alice", true, &[])], accounts(&[], true)).await;
    let providers: Value = env
        .http
        .get(format!("{}/api/v1/auth/providers", env.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        providers,
        serde_json::json!({"password": true,
            "oidc": {"name": "Test SSO", "login_url": "/auth/oidc/login"}})
    );

    let (url, started) = env.at_provider("alice").await;
    assert_eq!(param(&url, "iss"), env.provider.issuer());
    let resp = env.callback(&url, &started).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/");
    let cookie = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("dth_session="))
        .expect("session cookie");
    assert!(
        cookie.contains("; Path=/; HttpOnly; SameSite=Lax; Max-Age="),
        "{cookie}"
    );
    let session = set_cookie(&resp, "dth_session").unwrap();
    // The state cookie is cleared.
    assert!(set_cookie(&resp, "dth_oidc_state").is_none());
    let me = env.me(&session).await;
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["name"], "alice Example");
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["oidc_linked"], true);
    assert_eq!(me["has_password"], false);

    // A second sign-in finds the same account.
    let again = env.sign_in("alice").await;
    assert_ne!(again, session);
    assert_eq!(env.me(&again).await["id"], me["id"]);
    assert_eq!(env.emails().await, ["alice@example.com"]);
    env.stop().await;
}

#[tokio::test]
async fn oidc_role_map_follows_the_groups_claim() {
    let env = Env::start(
        &[
            account("alice", true, &["dth-admins", "staff"]),
            account("bob", true, &["staff"]),
        ],
        accounts(&[("dth-admins", Role::Admin)], true),
    )
    .await;
    let alice = env.sign_in("alice").await;
    assert_eq!(env.me(&alice).await["role"], "admin");
    let bob = env.sign_in("bob").await;
    assert_eq!(env.me(&bob).await["role"], "viewer");
    env.stop().await;
}

#[tokio::test]
async fn oidc_callback_with_a_wrong_state_is_refused() {
    let env = Env::start(&[account("alice", true, &[])], accounts(&[], true)).await;
    let (url, started) = env.at_provider("alice").await;
    let forged = with_param(&url, "state", "not-the-state-we-sent");
    let page = refused(
        env.callback(&forged, &started).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(page.contains("unknown to the hub"), "{page}");
    // Without the browser's state cookie (another browser): refused too.
    let resp = env.http.get(&url).send().await.unwrap();
    let page = refused(resp, StatusCode::BAD_REQUEST).await;
    assert!(page.contains("not started in this browser"), "{page}");
    assert!(env.emails().await.is_empty());
    env.stop().await;
}

#[tokio::test]
async fn oidc_replayed_callback_and_code_are_refused() {
    let env = Env::start(&[account("alice", true, &[])], accounts(&[], true)).await;
    let (url, started) = env.at_provider("alice").await;
    let first = env.callback(&url, &started).await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&first, "dth_session").is_some());
    // The same URL again: its state is used up.
    let page = refused(env.callback(&url, &started).await, StatusCode::BAD_REQUEST).await;
    assert!(page.contains("already used"), "{page}");
    // The used code under a new sign-in's state: the provider refuses it at the token endpoint.
    let (url2, started2) = env.at_provider("alice").await;
    let replayed = with_param(&url2, "code", &param(&url, "code"));
    let page = refused(
        env.callback(&replayed, &started2).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(page.contains("refused the authorization code"), "{page}");
    assert!(page.contains("invalid_grant"), "{page}");
    assert!(!page.contains(&param(&url, "code")), "{page}");
    env.stop().await;
}

#[tokio::test]
async fn oidc_unknown_user_is_refused_when_auto_create_is_off() {
    let env = Env::start(
        &[account("mallory", true, &[]), account("carol", true, &[])],
        accounts(&[], false),
    )
    .await;
    let (url, started) = env.at_provider("mallory").await;
    let page = refused(env.callback(&url, &started).await, StatusCode::FORBIDDEN).await;
    assert!(
        page.contains("mallory@example.com has no account on this hub"),
        "{page}"
    );
    assert!(env.emails().await.is_empty());
    // An account an admin made is matched by its verified email and linked.
    env.store
        .create_user(NewUser {
            email: "carol@example.com".into(),
            name: "Carol".into(),
            role: Role::Operator,
            password_hash: None,
            must_change_password: false,
            oidc_subject: None,
        })
        .await
        .unwrap();
    let carol = env.sign_in("carol").await;
    let me = env.me(&carol).await;
    assert_eq!(me["email"], "carol@example.com");
    assert_eq!(me["role"], "operator");
    assert_eq!(me["oidc_linked"], true);
    assert_eq!(env.emails().await, ["carol@example.com"]);
    env.stop().await;
}

#[tokio::test]
async fn oidc_unverified_email_is_refused() {
    let env = Env::start(&[account("eve", false, &[])], accounts(&[], true)).await;
    let (url, started) = env.at_provider("eve").await;
    let page = refused(env.callback(&url, &started).await, StatusCode::FORBIDDEN).await;
    assert!(page.contains("not verified"), "{page}");
    assert!(env.emails().await.is_empty());
    env.stop().await;
}

#[tokio::test]
async fn oidc_provider_errors_are_escaped_pages() {
    let env = Env::start(&[], accounts(&[], true)).await;
    let started = env.begin().await;
    let state = started.state_cookie.trim_start_matches("dth_oidc_state=");
    let url = format!(
        "{}/auth/oidc/callback?error=access_denied&error_description=%3Cscript%3Ex%3C%2Fscript%3E&state={state}",
        env.base
    );
    let page = refused(env.callback(&url, &started).await, StatusCode::FORBIDDEN).await;
    assert!(page.contains("access_denied"), "{page}");
    assert!(page.contains("&lt;script&gt;"), "{page}");
    assert!(!page.contains("<script>"), "{page}");
    // The sign-in is over: its state cannot be used any more.
    let url = format!("{}/auth/oidc/callback?code=abc&state={state}", env.base);
    let page = refused(env.callback(&url, &started).await, StatusCode::BAD_REQUEST).await;
    assert!(page.contains("already used"), "{page}");
    let page = refused(
        env.http
            .get(format!("{}/auth/oidc/callback", env.base))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(page.contains("lacks its code or state"), "{page}");
    env.stop().await;
}

#[tokio::test]
async fn without_a_provider_the_routes_say_so() {
    let (store, _dir) = crate::common::sqlite_store().await;
    let hub = Hub::new(store, Config::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let web = dth_web::WebConfig::new(&format!("http://{addr}").parse().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(dth_web::serve(hub, web, listener, shutdown.clone()));
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let providers: Value = http
        .get(format!("http://{addr}/api/v1/auth/providers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        providers,
        serde_json::json!({"password": true, "oidc": null})
    );
    let resp = http
        .get(format!("http://{addr}/auth/oidc/login"))
        .send()
        .await
        .unwrap();
    let page = refused(resp, StatusCode::NOT_FOUND).await;
    assert!(page.contains("no OpenID Connect provider"), "{page}");
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn discovery_failure_names_the_issuer() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let err = OidcLogin::discover(
        OidcSettings {
            issuer: issuer.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            name: "SSO".into(),
            scopes: vec!["openid".into()],
            roles_claim: None,
        },
        &"http://127.0.0.1:8080".parse().unwrap(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains(&issuer), "{err}");
    assert!(!err.contains(CLIENT_SECRET), "{err}");
}
