//! Registry authentication: anonymous, Basic, and the Bearer token flow (parse
//! `WWW-Authenticate`, ask the realm for a token covering several scopes, cache tokens per scope
//! set until they expire, fetch again after a 401). Credentials come from flags, the environment,
//! a Docker `config.json`, or ECR's GetAuthorizationToken, and never appear in `Debug` output,
//! logs or errors.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};

/// A user name and a secret. `Debug` prints the user only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name (`AWS` for ECR).
    pub username: String,
    password: String,
}

impl Credentials {
    /// Credentials from a user name and password (or token).
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Parses `USER:PASSWORD` (the password may hold `:`).
    pub fn parse(s: &str) -> Result<Credentials> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials::new(u, p)),
            _ => Err(Error::invalid("credentials must be USER:PASSWORD")),
        }
    }

    /// The secret (for building an `Authorization` header).
    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.username, self.password))
        )
    }

    /// Reads the entry for `host` from a Docker `config.json` (`auths.<host>.auth`, base64 of
    /// `user:password`, or `username`/`password` fields). Docker Hub is looked up under its
    /// historical `https://index.docker.io/v1/` key too. `Ok(None)` when the file has no entry.
    pub fn from_auth_file(path: &Path, host: &str) -> Result<Option<Credentials>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!("{}: not a Docker config.json: {e}", path.display()))
        })?;
        let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
            return Ok(None);
        };
        let mut keys = vec![
            host.to_string(),
            format!("https://{host}"),
            format!("http://{host}"),
        ];
        if host == crate::reference::DOCKER_HUB || host == crate::reference::DOCKER_HUB_API {
            keys.push("https://index.docker.io/v1/".into());
            keys.push("index.docker.io".into());
            keys.push("docker.io".into());
        }
        for key in keys {
            let Some(entry) = auths.get(&key).or_else(|| auths.get(&format!("{key}/"))) else {
                continue;
            };
            if let Some(auth) = entry.get("auth").and_then(|a| a.as_str())
                && !auth.is_empty()
            {
                let decoded = STANDARD.decode(auth).map_err(|_| {
                    Error::invalid(format!(
                        "{}: the auth entry for {host} is not base64",
                        path.display()
                    ))
                })?;
                let decoded = String::from_utf8(decoded).map_err(|_| {
                    Error::invalid(format!(
                        "{}: the auth entry for {host} is not UTF-8",
                        path.display()
                    ))
                })?;
                return Credentials::parse(&decoded).map(Some).map_err(|_| {
                    Error::invalid(format!(
                        "{}: the auth entry for {host} is not user:password",
                        path.display()
                    ))
                });
            }
            if let (Some(u), Some(p)) = (
                entry.get("username").and_then(|v| v.as_str()),
                entry.get("password").and_then(|v| v.as_str()),
            ) {
                return Ok(Some(Credentials::new(u, p)));
            }
        }
        Ok(None)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="…"`.
    Basic,
    /// `Bearer realm="…",service="…",scope="…"`.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter to pass back.
        service: Option<String>,
        /// The scope the registry asked for, if any.
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses one `WWW-Authenticate` value; `None` for schemes we do not speak.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header
            .split_once(char::is_whitespace)
            .unwrap_or((header, ""));
        let params = parse_params(rest);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            }),
            _ => None,
        }
    }
}

/// `key="value", key2=value2` (quoted values may hold commas and escaped quotes).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string();
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

/// A token and when to stop using it.
#[derive(Clone)]
struct Token {
    value: String,
    expires: Instant,
}

/// Per-registry auth state: the challenge learnt from the registry and cached tokens.
pub(crate) struct AuthState {
    pub(crate) registry: String,
    credentials: Mutex<Option<Credentials>>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, Token>>,
    /// One token request at a time, so concurrent requests for the same scopes share one token.
    fetching: tokio::sync::Mutex<()>,
}

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthState")
            .field("registry", &self.registry)
            .field("credentials", &self.credentials())
            .field("challenge", &self.challenge.lock().ok().map(|c| c.clone()))
            .finish_non_exhaustive()
    }
}

/// Token lifetime when the token server does not say (the distribution spec's default is 60 s).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

impl AuthState {
    pub(crate) fn new(registry: String, credentials: Option<Credentials>) -> AuthState {
        AuthState {
            registry,
            credentials: Mutex::new(credentials),
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Records the challenge of a 401 answer (the `scope` it names is per request, so the realm
    /// and service are what we keep).
    pub(crate) fn set_challenge(&self, c: Challenge) {
        *self.challenge.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
    }

    /// The credentials in use.
    pub(crate) fn credentials(&self) -> Option<Credentials> {
        self.credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the credentials (ECR tokens are refreshed before they expire) and drops cached
    /// tokens made with the old ones.
    pub(crate) fn set_credentials(&self, c: Option<Credentials>) {
        *self.credentials.lock().unwrap_or_else(|e| e.into_inner()) = c;
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn challenge(&self) -> Option<Challenge> {
        self.challenge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn cached(&self, key: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(key)
            .filter(|t| t.expires > Instant::now())
            .map(|t| format!("Bearer {}", t.value))
    }

    /// Forgets the token for these scopes (after a 401 with it).
    pub(crate) fn invalidate(&self, scopes: &[String]) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&scopes.join(" "));
    }

    /// The `Authorization` header for a request needing `scopes`, fetching a token if needed.
    pub(crate) async fn header(
        &self,
        http: &reqwest::Client,
        scopes: &[String],
        timeout: Duration,
    ) -> Result<Option<String>> {
        match self.challenge() {
            None => Ok(None),
            Some(Challenge::Basic) => {
                Ok(self.credentials().as_ref().map(Credentials::basic_header))
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = scopes.join(" ");
                if let Some(h) = self.cached(&key) {
                    return Ok(Some(h));
                }
                let _one_at_a_time = self.fetching.lock().await;
                if let Some(h) = self.cached(&key) {
                    return Ok(Some(h));
                }
                let token = self
                    .fetch_token(http, &realm, service.as_deref(), scopes, timeout)
                    .await?;
                let header = format!("Bearer {}", token.value);
                self.tokens
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, token);
                Ok(Some(header))
            }
        }
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        timeout: Duration,
    ) -> Result<Token> {
        let mut url = url::Url::parse(realm).map_err(|e| Error::Auth {
            registry: self.registry.clone(),
            what: "token realm".into(),
            detail: format!("bad realm {realm:?}: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let mut req = http.get(url.clone()).timeout(timeout);
        let credentials = self.credentials();
        if let Some(c) = &credentials {
            req = req.basic_auth(&c.username, Some(c.password()));
        }
        let what = format!("token for {}", scopes.join(" "));
        let resp = req.send().await.map_err(|e| Error::Auth {
            registry: self.registry.clone(),
            what: what.clone(),
            detail: e.without_url().to_string(),
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Error::Auth {
                registry: self.registry.clone(),
                what,
                detail: format!(
                    "token server {} answered {status}{}",
                    url.origin().ascii_serialization(),
                    if credentials.is_none() {
                        " (no credentials given)"
                    } else {
                        ""
                    }
                ),
            });
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| Error::Auth {
            registry: self.registry.clone(),
            what: what.clone(),
            detail: format!("unreadable token answer: {}", e.without_url()),
        })?;
        let value = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Auth {
                registry: self.registry.clone(),
                what: what.clone(),
                detail: "token answer has no token".into(),
            })?
            .to_string();
        let lifetime = body
            .get("expires_in")
            .and_then(|v| v.as_u64())
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        // Renew 10 % early so a token never expires in flight.
        let expires = Instant::now() + lifetime.mul_f64(0.9);
        Ok(Token { value, expires })
    }
}

/// The scope for pulling from or pushing to a repository.
pub fn scope(repository: &str, push: bool) -> String {
    format!(
        "repository:{repository}:{}",
        if push { "pull,push" } else { "pull" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            Challenge::parse("Basic realm=\"Registry Realm\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse("bearer realm=https://r.example/token, service=r"),
            Some(Challenge::Bearer {
                realm: "https://r.example/token".into(),
                service: Some("r".into()),
                scope: None
            })
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None);
    }

    #[test]
    fn credentials_never_print_the_secret() {
        let c = Credentials::parse("user:pa:ss").unwrap();
        assert_eq!(c.password(), "pa:ss");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("user") && !shown.contains("pa:ss"),
            "{shown}"
        );
        assert!(Credentials::parse("nocolon").is_err());
    }

    #[test]
    fn auth_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"username":"hub","password":"pw"}}}}}}"#,
                STANDARD.encode("alice:s3cret")
            ),
        )
        .unwrap();
        let c = Credentials::from_auth_file(&path, "127.0.0.1:5000")
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password()), ("alice", "s3cret"));
        let c = Credentials::from_auth_file(&path, "docker.io")
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "hub");
        assert!(
            Credentials::from_auth_file(&path, "other:1")
                .unwrap()
                .is_none()
        );
    }
}
