//! A real OpenID Connect provider for tests of the hub's sign-in: npm `oidc-provider` (9.13.3,
//! pinned in `crates/dth-testkit/oidc/package-lock.json`) run by `node` on a free `127.0.0.1` port.
//!
//! `scripts/install-peers` installs the package and `provider.mjs` into `.tools/oidc/`;
//! [`OidcProvider::start`] finds them through [`tools_dir`](crate::tools_dir). The provider:
//!
//! - has issuer `http://127.0.0.1:PORT` (plain http; its cookies are not `secure` there);
//! - knows the confidential [`OidcClientConfig`]s given (grant `authorization_code`, response
//!   type `code`, the secret accepted by `client_secret_basic` and `client_secret_post`);
//! - signs in any login on its development login form, with any password: [`OidcAccount`]s
//!   give the claims of known logins, others get `email = name = login`, `email_verified = true`,
//!   no groups;
//! - offers scopes `openid email profile groups` and puts their claims (`email`,
//!   `email_verified`, `name`, `groups`) into the ID token, not only into userinfo;
//! - checks PKCE (`S256` only) whenever the authorization request carries a `code_challenge`,
//!   returns `state` and puts `nonce` in the ID token, and refuses a replayed code
//!   (`400 invalid_grant`).
//!
//! [`OidcProvider::sign_in`] plays the user's browser through the login and consent forms, so a
//! test drives the hub's whole authorization code flow against a real provider.

use crate::peer::{free_port, log_tail, spawn_tied_to_process};
use crate::tools_dir;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::redirect::Policy;
use tempfile::TempDir;

/// How long [`OidcProvider::start`] waits for discovery to answer before it starts again (an idle
/// start takes about 1 s; a start once hung past 30 s under a loaded CI run, for no cause its log
/// showed).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts at starting: when the port was taken between picking and binding it, or a start
/// did not answer within [`START_TIMEOUT`].
const START_ATTEMPTS: usize = 3;
/// Requests [`OidcProvider::sign_in`] makes at most before it gives up (a normal flow takes 6).
const MAX_SIGN_IN_STEPS: usize = 16;
/// The password typed into the development login form (it accepts any).
const DEV_PASSWORD: &str = "dth-test-password";
/// The script `scripts/install-peers` copies to `.tools/oidc/`, to notice a stale copy.
const PROVIDER_SCRIPT: &str = include_str!("../oidc/provider.mjs");

/// A confidential client registered at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcClientConfig {
    /// The `client_id`.
    pub client_id: String,
    /// The `client_secret`, sent by `client_secret_basic` or `client_secret_post`.
    pub client_secret: String,
    /// The one registered `redirect_uri` (exact match, as OpenID Connect requires).
    pub redirect_uri: String,
}

/// The claims of one login. Logins without an account sign in too (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcAccount {
    /// What the user types into the login form; also the `sub` claim.
    pub login: String,
    /// The `email` claim (scope `email`).
    pub email: String,
    /// The `email_verified` claim (scope `email`).
    pub email_verified: bool,
    /// The `name` claim (scope `profile`).
    pub name: String,
    /// The `groups` claim (scope `groups`).
    pub groups: Vec<String>,
}

/// A running OpenID Connect provider owned by one test. Dropping it kills the process.
pub struct OidcProvider {
    port: u16,
    issuer: String,
    redirect_uris: Vec<String>,
    log_path: PathBuf,
    child: Child,
    // Dropped after `Drop::drop` has killed the child.
    _temp: TempDir,
}

impl fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.issuer)
            .field("redirect_uris", &self.redirect_uris)
            .field("log_path", &self.log_path)
            .finish()
    }
}

impl OidcProvider {
    /// Starts the provider (`node` + `provider.mjs` from `DTH_TOOLS_DIR/oidc`) on a free port with
    /// these clients and accounts, and waits until discovery answers with its issuer.
    ///
    /// # Panics
    /// When `node` or the installed provider is missing or stale (run `scripts/install-peers`),
    /// or the provider exits, or three starts do not answer within 20 s each; the message quotes
    /// the end of its log.
    pub async fn start(clients: &[OidcClientConfig], accounts: &[OidcAccount]) -> OidcProvider {
        let dir = tools_dir().join("oidc");
        let script = dir.join("provider.mjs");
        if !dir
            .join("node_modules/oidc-provider/package.json")
            .is_file()
            || !script.is_file()
        {
            panic!(
                "OIDC provider: {} or its node_modules/oidc-provider not found; run \
                 scripts/install-peers (and set DTH_TOOLS_DIR to its .tools directory)",
                script.display()
            );
        }
        if std::fs::read_to_string(&script).ok().as_deref() != Some(PROVIDER_SCRIPT) {
            panic!(
                "OIDC provider: {} differs from crates/dth-testkit/oidc/provider.mjs; run \
                 scripts/install-peers",
                script.display()
            );
        }
        let temp = tempfile::Builder::new()
            .prefix("dth-oidc-")
            .tempdir()
            .expect("create temporary directory");
        let accounts: serde_json::Map<String, serde_json::Value> = accounts
            .iter()
            .map(|a| {
                let claims = serde_json::json!({
                    "email": a.email,
                    "email_verified": a.email_verified,
                    "name": a.name,
                    "groups": a.groups,
                });
                (a.login.clone(), claims)
            })
            .collect();
        let clients_json: Vec<serde_json::Value> = clients
            .iter()
            .map(|c| {
                serde_json::json!({
                    "client_id": c.client_id,
                    "client_secret": c.client_secret,
                    "redirect_uris": [c.redirect_uri],
                })
            })
            .collect();

        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let issuer = format!("http://127.0.0.1:{port}");
            let config_path = temp.path().join(format!("config-{attempt}.json"));
            let config = serde_json::json!({
                "port": port,
                "clients": clients_json,
                "accounts": accounts,
            });
            std::fs::write(&config_path, config.to_string()).expect("write provider config");
            let log_path = temp.path().join(format!("oidc-provider-{attempt}.log"));
            let log = File::create(&log_path).expect("create provider log file");
            let mut cmd = Command::new("node");
            cmd.arg(&script)
                .arg(&config_path)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log file handle"))
                .stderr(log)
                .env_remove("NODE_OPTIONS")
                .env("NODE_ENV", "test");
            let mut child = spawn_tied_to_process(cmd).unwrap_or_else(|e| {
                panic!(
                    "OIDC provider: cannot run node {} ({e}); run scripts/install-peers, which \
                     installs nodejs when node is missing",
                    script.display()
                )
            });

            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let tail = log_tail(&log_path);
                    if tail.contains("in use") && attempt < START_ATTEMPTS {
                        break;
                    }
                    panic!(
                        "OIDC provider: node {} exited with {status} before answering on port \
                         {port}; its log ends:\n{tail}",
                        script.display()
                    );
                }
                if discovery_issuer(&issuer).await.as_deref() == Some(issuer.as_str()) {
                    return OidcProvider {
                        port,
                        issuer,
                        redirect_uris: clients.iter().map(|c| c.redirect_uri.clone()).collect(),
                        log_path,
                        child,
                        _temp: temp,
                    };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    let tail = log_tail(&log_path);
                    if attempt < START_ATTEMPTS {
                        eprintln!(
                            "OIDC provider: discovery did not answer on {issuer} within \
                             {START_TIMEOUT:?}, starting it again on another port; its log \
                             ends:\n{tail}"
                        );
                        break;
                    }
                    panic!(
                        "OIDC provider: discovery did not answer on {issuer} within \
                         {START_TIMEOUT:?} ({START_ATTEMPTS} starts); its log ends:\n{tail}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        unreachable!("the last start attempt panics or returns")
    }

    /// `http://127.0.0.1:PORT`, exactly as `issuer` in discovery and `iss` in tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `<issuer>/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// The port the provider listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The provider's stdout and stderr (warnings, `listening`, errors it rendered).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Plays a browser with a fresh cookie jar: GETs `authorize_url` (the URL the hub redirects a
    /// user to), follows the provider's redirects, submits the development login form with
    /// `login` (any password) and the consent form, and returns the first redirect to a
    /// registered `redirect_uri` (carrying `code`, `state` and `iss`, or `error`), without
    /// requesting it. Only the query response mode (the default for `code`) ends in a redirect.
    ///
    /// # Panics
    /// When the provider answers anything but a redirect or one of its forms (e.g. an error page
    /// for an unknown client or `redirect_uri`); the message quotes the answer and its log.
    pub async fn sign_in(&self, authorize_url: &str, login: &str) -> String {
        let browser = reqwest::Client::builder()
            .redirect(Policy::none())
            .cookie_store(true)
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("build the sign-in HTTP client");
        let mut url = Url::parse(authorize_url)
            .unwrap_or_else(|e| panic!("OIDC sign-in: bad authorize URL {authorize_url:?}: {e}"));
        let mut form: Option<Vec<(String, String)>> = None;
        for _ in 0..MAX_SIGN_IN_STEPS {
            let (method, request) = match form.take() {
                Some(fields) => ("POST", browser.post(url.clone()).form(&fields)),
                None => ("GET", browser.get(url.clone())),
            };
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("OIDC sign-in: {method} {url}: {e}"));
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_else(|| {
                        panic!("OIDC sign-in: {method} {url}: {status} without a Location")
                    });
                let next = url.join(location).unwrap_or_else(|e| {
                    panic!("OIDC sign-in: {method} {url}: bad Location {location:?}: {e}")
                });
                if self.is_redirect_uri(next.as_str()) {
                    return next.into();
                }
                url = next;
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            let dev_form = status
                .is_success()
                .then(|| DevForm::parse(&body))
                .flatten()
                .unwrap_or_else(|| {
                    panic!(
                        "OIDC sign-in: {method} {url}: {status}, not a redirect nor a login or \
                         consent form:\n{}\nthe provider's log ends:\n{}",
                        shorten(&body),
                        log_tail(&self.log_path)
                    )
                });
            let mut fields = dev_form.hidden;
            if dev_form.has_login {
                fields.push(("login".into(), login.into()));
                fields.push(("password".into(), DEV_PASSWORD.into()));
            }
            url = url
                .join(&dev_form.action)
                .unwrap_or_else(|e| panic!("OIDC sign-in: form action {:?}: {e}", dev_form.action));
            form = Some(fields);
        }
        panic!(
            "OIDC sign-in: no redirect to {:?} after {MAX_SIGN_IN_STEPS} requests, last {url}; \
             the provider's log ends:\n{}",
            self.redirect_uris,
            log_tail(&self.log_path)
        )
    }

    /// Whether `url` is one of the clients' redirect URIs plus the authorization response.
    fn is_redirect_uri(&self, url: &str) -> bool {
        self.redirect_uris.iter().any(|uri| {
            url.strip_prefix(uri.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['?', '&', '#']))
        })
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `issuer` from the discovery document at `issuer`, if it answers.
async fn discovery_issuer(issuer: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let response = client
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let doc: serde_json::Value = response.json().await.ok()?;
    doc.get("issuer")?.as_str().map(str::to_string)
}

/// The first `<form>` of an oidc-provider development interaction page.
///
/// Expects the markup of oidc-provider 9.13's `lib/views/login.js` and `interaction.js`:
/// `<form autocomplete="off" action="…/interaction/UID" method="post">` with
/// `<input type="hidden" name="prompt" value="login|consent"/>`, and on the login page
/// `<input … name="login" …>` and `<input … name="password" …>`.
#[derive(Debug, PartialEq, Eq)]
struct DevForm {
    action: String,
    hidden: Vec<(String, String)>,
    has_login: bool,
}

impl DevForm {
    fn parse(html: &str) -> Option<DevForm> {
        let start = html.find("<form")?;
        let form = &html[start..];
        let form = &form[..form.find("</form>").unwrap_or(form.len())];
        let form_tag = &form[..form.find('>')?];
        let action = attribute(form_tag, "action")?;
        let mut hidden = Vec::new();
        let mut has_login = false;
        let mut rest = form;
        while let Some(i) = rest.find("<input") {
            rest = &rest[i + "<input".len()..];
            let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
            let Some(name) = attribute(tag, "name") else {
                continue;
            };
            match attribute(tag, "type").as_deref() {
                Some("hidden") => hidden.push((name, attribute(tag, "value").unwrap_or_default())),
                _ if name == "login" => has_login = true,
                _ => {}
            }
        }
        Some(DevForm {
            action,
            hidden,
            has_login,
        })
    }
}

/// The value of `name="…"` in a tag, HTML entities decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(unescape_html(&tag[start..start + len]))
}

/// Decodes the entities eta (oidc-provider's templates) escapes: `& < > " '`.
fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

fn shorten(body: &str) -> String {
    const MAX: usize = 2000;
    if body.len() <= MAX {
        return body.to_string();
    }
    let mut end = MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &body[..end], body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_dev_login_and_consent_forms() {
        let login = r#"<div><form autocomplete="off" action="http://127.0.0.1:1/interaction/a&amp;b" method="post">
  <input type="hidden" name="prompt" value="login"/>
  <input required type="text" name="login" placeholder="Enter any login" autofocus="on">
  <input required type="password" name="password" placeholder="and password" >
  <button type="submit" class="login login-submit">Sign-in</button>
</form><a href="/x/abort">[ Cancel ]</a><form action="/other"><input type="hidden" name="no" value="1"></form>"#;
        assert_eq!(
            DevForm::parse(login),
            Some(DevForm {
                action: "http://127.0.0.1:1/interaction/a&b".into(),
                hidden: vec![("prompt".into(), "login".into())],
                has_login: true,
            })
        );
        let consent = r#"<form autocomplete="off" action="/interaction/u" method="post">
  <input type="hidden" name="prompt" value="consent"/>
  <button autofocus type="submit" class="login login-submit">Continue</button>
</form>"#;
        assert_eq!(
            DevForm::parse(consent),
            Some(DevForm {
                action: "/interaction/u".into(),
                hidden: vec![("prompt".into(), "consent".into())],
                has_login: false,
            })
        );
        assert_eq!(DevForm::parse("<p>no form</p>"), None);
    }
}
