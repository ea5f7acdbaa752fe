//! The registry client: one per registry, cheap to clone, safe to share between tasks.
//!
//! Every request goes through `RegistryClient::send`: a slot in the (registry, action) rate
//! window, the `Authorization` header for its scopes, a timeout, and bounded retries with jitter
//! for transient answers (idempotent requests only; an upload body that was streamed cannot be
//! sent again, so the copier retries the whole blob). `Authorization` is never forwarded across a
//! redirect to another host: blob GETs often answer 307 to a storage bucket, and reqwest drops
//! the header when the host, port or scheme changes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use url::Url;

use super::auth::{AuthState, Challenge, Credentials, scope};
use super::retry::{Backoff, RateWindow, RetryPolicy, parse_retry_after};
use crate::error::{Error, Result, is_transient_status};
use crate::manifest::{ACCEPT_MANIFESTS, Manifest};
use crate::profile::{Profile, UploadStrategy, api_host};
use crate::reference::Digest;

/// How to reach one registry.
#[derive(Clone)]
pub struct ClientConfig {
    /// `host[:port]` as users name it (`docker.io` for Docker Hub); picks the profile.
    pub host: String,
    /// Where the v2 API really is, when it is not `https://<host>`: `http://127.0.0.1:5000`, or
    /// a base with a path such as `https://acme.jfrog.io/artifactory/api/docker/docker-local`.
    pub endpoint: Option<Url>,
    /// Verify TLS certificates. When false, self-signed certificates are accepted and a
    /// registry that does not speak TLS is reached over plain HTTP.
    pub tls_verify: bool,
    /// Credentials for Basic auth or the token server; `None` is anonymous.
    pub credentials: Option<Credentials>,
    /// Request retries.
    pub retry: RetryPolicy,
    /// Timeout of a request without a large body (and of the headers of one with a body).
    pub timeout: Duration,
    /// Longest silence while a body streams.
    pub read_timeout: Duration,
    /// Overrides the profile's upload strategy.
    pub upload: Option<UploadStrategy>,
    /// Overrides the profile (otherwise detected from `host`).
    pub profile: Option<&'static Profile>,
}

impl ClientConfig {
    /// Defaults for `host`: TLS verified, anonymous, 5 retries, 60 s timeouts.
    pub fn new(host: impl Into<String>) -> ClientConfig {
        ClientConfig {
            host: host.into(),
            endpoint: None,
            tls_verify: true,
            credentials: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            upload: None,
            profile: None,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("host", &self.host)
            .field("endpoint", &self.endpoint.as_ref().map(Url::as_str))
            .field("tls_verify", &self.tls_verify)
            .field("credentials", &self.credentials)
            .field("upload", &self.upload)
            .finish_non_exhaustive()
    }
}

/// Requests sent to one registry, by kind (retries included).
#[derive(Debug, Default)]
pub struct RequestStats {
    /// Every request.
    pub requests: AtomicU64,
    /// `GET /v2/`.
    pub pings: AtomicU64,
    /// `HEAD …/manifests/…`.
    pub manifest_heads: AtomicU64,
    /// `GET …/manifests/…`.
    pub manifest_gets: AtomicU64,
    /// `PUT …/manifests/…`.
    pub manifest_puts: AtomicU64,
    /// `HEAD …/blobs/…`.
    pub blob_heads: AtomicU64,
    /// `GET …/blobs/…`.
    pub blob_gets: AtomicU64,
    /// `POST …/blobs/uploads/` (mounts included), `PATCH` and `PUT` of uploads.
    pub uploads: AtomicU64,
    /// Cross-repository mounts that succeeded (201).
    pub mounts: AtomicU64,
    /// Tag and catalog list pages.
    pub lists: AtomicU64,
    /// Requests sent again after a transient answer or a 401.
    pub retries: AtomicU64,
    /// 429 answers.
    pub throttled: AtomicU64,
}

/// A plain copy of [`RequestStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[allow(missing_docs)]
pub struct RequestCounts {
    pub requests: u64,
    pub pings: u64,
    pub manifest_heads: u64,
    pub manifest_gets: u64,
    pub manifest_puts: u64,
    pub blob_heads: u64,
    pub blob_gets: u64,
    pub uploads: u64,
    pub mounts: u64,
    pub lists: u64,
    pub retries: u64,
    pub throttled: u64,
}

impl RequestStats {
    /// A snapshot.
    pub fn counts(&self) -> RequestCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestCounts {
            requests: l(&self.requests),
            pings: l(&self.pings),
            manifest_heads: l(&self.manifest_heads),
            manifest_gets: l(&self.manifest_gets),
            manifest_puts: l(&self.manifest_puts),
            blob_heads: l(&self.blob_heads),
            blob_gets: l(&self.blob_gets),
            uploads: l(&self.uploads),
            mounts: l(&self.mounts),
            lists: l(&self.lists),
            retries: l(&self.retries),
            throttled: l(&self.throttled),
        }
    }
}

/// Which rate window a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Pull,
    Push,
}

/// What a request is, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ManifestHead,
    ManifestGet,
    ManifestPut,
    BlobHead,
    BlobGet,
    Upload,
    List,
}

/// A request body.
enum Body {
    Empty,
    Bytes(Bytes),
    /// Sent once, never retried.
    Stream(Option<reqwest::Body>),
}

/// What `HEAD …/manifests/<ref>` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`.
    pub digest: Digest,
    /// `Content-Type`.
    pub media_type: String,
    /// `Content-Length`.
    pub size: Option<u64>,
}

/// A blob body being received.
pub struct BlobStream {
    /// `Content-Length`, when sent.
    pub size: Option<u64>,
    /// The bytes.
    pub stream: futures::stream::BoxStream<'static, Result<Bytes>>,
}

/// The answer to a mount attempt.
#[derive(Debug)]
pub enum Mount {
    /// 201: the blob now exists in the target repository.
    Mounted,
    /// 202: the registry did not mount but opened an upload session here instead.
    Upload(Url),
}

/// A client of one registry. Clones share connections, tokens, windows and counters.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    base: String,
    profile: &'static Profile,
    upload: UploadStrategy,
    http: reqwest::Client,
    auth: AuthState,
    retry: RetryPolicy,
    timeout: Duration,
    pull: RateWindow,
    push: RateWindow,
    stats: RequestStats,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("host", &self.inner.host)
            .field("base", &self.inner.base)
            .field("profile", &self.inner.profile.kind)
            .field("auth", &self.inner.auth)
            .finish_non_exhaustive()
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    h == "localhost" || h.starts_with("127.") || h == "[::1]"
}

impl RegistryClient {
    /// Connects: builds the HTTP client and sends `GET /v2/` to learn how the registry wants us to
    /// authenticate (and, with `tls_verify` off, whether it speaks TLS at all).
    pub async fn connect(config: ClientConfig) -> Result<RegistryClient> {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(!config.tls_verify)
            .connect_timeout(Duration::from_secs(15).min(config.timeout))
            .read_timeout(config.read_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .user_agent(concat!("dth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Transport {
                what: format!("HTTP client for {}", config.host),
                source: e.without_url(),
            })?;
        let profile = config
            .profile
            .unwrap_or_else(|| Profile::for_host(&config.host));
        let candidates: Vec<String> = match &config.endpoint {
            Some(u) => vec![u.as_str().trim_end_matches('/').to_string()],
            None => {
                let h = api_host(&config.host);
                if !config.tls_verify && is_loopback(h) {
                    vec![format!("http://{h}"), format!("https://{h}")]
                } else if !config.tls_verify {
                    vec![format!("https://{h}"), format!("http://{h}")]
                } else {
                    vec![format!("https://{h}")]
                }
            }
        };
        let mut last_err = None;
        for base in candidates {
            let client = RegistryClient {
                inner: Arc::new(Inner {
                    host: config.host.clone(),
                    base,
                    profile,
                    upload: config.upload.unwrap_or(profile.upload),
                    http: http.clone(),
                    auth: AuthState::new(config.host.clone(), config.credentials.clone()),
                    retry: config.retry,
                    timeout: config.timeout,
                    pull: RateWindow::new(profile.window),
                    push: RateWindow::new(profile.window),
                    stats: RequestStats::default(),
                }),
            };
            match client.ping().await {
                Ok(()) => return Ok(client),
                Err(e @ Error::Transport { .. }) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| Error::invalid("no endpoint to try")))
    }

    /// `host[:port]` as configured.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The base URL requests go to (`https://host`, or the configured endpoint).
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The registry's profile.
    pub fn profile(&self) -> &'static Profile {
        self.inner.profile
    }

    /// Request counters.
    pub fn stats(&self) -> RequestCounts {
        self.inner.stats.counts()
    }

    /// Replaces the credentials (e.g. a refreshed ECR token).
    pub fn set_credentials(&self, credentials: Option<Credentials>) {
        self.inner.auth.set_credentials(credentials);
    }

    /// The current push window (requests in flight allowed).
    pub fn push_window(&self) -> usize {
        self.inner.push.limit()
    }

    fn url(&self, path: &str) -> Result<Url> {
        Url::parse(&format!("{}{path}", self.inner.base))
            .map_err(|e| Error::invalid(format!("bad URL {}{path}: {e}", self.inner.base)))
    }

    async fn ping(&self) -> Result<()> {
        let url = self.url("/v2/")?;
        self.inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.stats.pings.fetch_add(1, Ordering::Relaxed);
        let mut backoff = Backoff::new(self.inner.retry);
        loop {
            let sent = self
                .inner
                .http
                .get(url.clone())
                .timeout(self.inner.timeout)
                .send()
                .await;
            match sent {
                Err(e) if e.is_connect() || e.is_builder() => {
                    return Err(Error::Transport {
                        what: format!("GET {url}"),
                        source: e.without_url(),
                    });
                }
                Err(e) => match backoff.next(None) {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => {
                        return Err(Error::Transport {
                            what: format!("GET {url}"),
                            source: e.without_url(),
                        });
                    }
                },
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
                    let challenge = r
                        .headers()
                        .get_all(header::WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .find_map(Challenge::parse);
                    match challenge {
                        Some(c) => {
                            self.inner.auth.set_challenge(c);
                            return Ok(());
                        }
                        None => {
                            return Err(Error::Auth {
                                registry: self.inner.host.clone(),
                                what: "GET /v2/".into(),
                                detail: "401 without a Basic or Bearer challenge".into(),
                            });
                        }
                    }
                }
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if is_transient_status(r.status().as_u16()) => {
                    let ra = retry_after(&r);
                    match backoff.next(ra) {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None => return Err(error_from(r, "GET", &url).await),
                    }
                }
                // Some registries (behind proxies) answer 404 on /v2/ but serve the API.
                Ok(r) if r.status() == StatusCode::NOT_FOUND => return Ok(()),
                Ok(r) => return Err(error_from(r, "GET", &url).await),
            }
        }
    }

    /// Sends a request with auth, rate window, timeout and retries. Returns any answer that is
    /// not transient (the caller checks the status); a transient answer after the last retry is
    /// returned as well.
    async fn send(
        &self,
        kind: Kind,
        method: Method,
        url: Url,
        scopes: &[String],
        headers: HeaderMap,
        mut body: Body,
    ) -> Result<reqwest::Response> {
        let inner = &self.inner;
        // Long transfers (a streamed upload body, a blob download) get no total timeout: every
        // read has the client's read timeout instead.
        let stream_body = matches!(body, Body::Stream(_)) || kind == Kind::BlobGet;
        let action = if matches!(kind, Kind::ManifestPut | Kind::Upload) {
            Action::Push
        } else {
            Action::Pull
        };
        let window = match action {
            Action::Pull => &inner.pull,
            Action::Push => &inner.push,
        };
        let mut backoff = Backoff::new(inner.retry);
        let mut auth_retried = false;
        let mut first = true;
        loop {
            if !first {
                inner.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            inner.stats.requests.fetch_add(1, Ordering::Relaxed);
            let counter = match kind {
                Kind::ManifestHead => &inner.stats.manifest_heads,
                Kind::ManifestGet => &inner.stats.manifest_gets,
                Kind::ManifestPut => &inner.stats.manifest_puts,
                Kind::BlobHead => &inner.stats.blob_heads,
                Kind::BlobGet => &inner.stats.blob_gets,
                Kind::Upload => &inner.stats.uploads,
                Kind::List => &inner.stats.lists,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let slot = window.acquire().await;
            let mut rb = inner
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if !stream_body {
                rb = rb.timeout(inner.timeout);
            }
            if let Some(h) = inner
                .auth
                .header(&inner.http, scopes, inner.timeout)
                .await?
            {
                rb = rb.header(header::AUTHORIZATION, h);
            }
            let sendable_again = !matches!(body, Body::Stream(_));
            rb = match &mut body {
                Body::Empty => rb,
                Body::Bytes(b) => rb.body(b.clone()),
                Body::Stream(s) => match s.take() {
                    Some(s) => rb.body(s),
                    None => {
                        return Err(Error::invalid(format!(
                            "{method} {url}: a streamed body cannot be sent twice"
                        )));
                    }
                },
            };
            // Without a streamed body the whole request has `timeout`; with one, every read on
            // the connection (headers included) has the client's read timeout.
            let sent = rb.send().await;
            drop(slot);
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    if sendable_again && let Some(wait) = backoff.next(None) {
                        tracing::debug!(%url, error = %e, ?wait, "request failed; retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(Error::Transport {
                        what: format!("{method} {url}"),
                        source: e.without_url(),
                    });
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !auth_retried && sendable_again {
                let challenge = resp
                    .headers()
                    .get_all(header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(Challenge::parse);
                if let Some(c) = challenge {
                    inner.auth.set_challenge(c);
                    inner.auth.invalidate(scopes);
                    auth_retried = true;
                    continue;
                }
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Ok(resp);
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                inner.stats.throttled.fetch_add(1, Ordering::Relaxed);
                let ra = retry_after(&resp);
                window.throttled(ra);
                if sendable_again && let Some(wait) = backoff.next(ra) {
                    tracing::debug!(%url, ?wait, "429 Too Many Requests; slowing down");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Ok(resp);
            }
            if is_transient_status(status.as_u16()) {
                if sendable_again && let Some(wait) = backoff.next(retry_after(&resp)) {
                    tracing::debug!(%url, %status, ?wait, "transient answer; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Ok(resp);
            }
            window.succeeded();
            return Ok(resp);
        }
    }

    async fn auth_error(
        &self,
        resp: reqwest::Response,
        method: &str,
        url: &Url,
        what: String,
    ) -> Error {
        let status = resp.status();
        let has_creds = self.inner.auth.credentials().is_some();
        let inner = error_from(resp, method, url).await;
        Error::Auth {
            registry: self.inner.host.clone(),
            what,
            detail: format!(
                "{inner}{}",
                if status == StatusCode::UNAUTHORIZED && !has_creds {
                    " (no credentials given: use --*-creds, --*-authfile or DTH_*_REGISTRY_USER/PASSWORD)"
                } else {
                    ""
                }
            ),
        }
    }

    async fn check(
        &self,
        resp: reqwest::Response,
        method: &str,
        url: &Url,
        what: impl FnOnce() -> String,
    ) -> Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            Ok(resp)
        } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            Err(self.auth_error(resp, method, url, what()).await)
        } else {
            Err(error_from(resp, method, url).await)
        }
    }

    /// `HEAD /v2/<repo>/manifests/<reference>`: the digest a tag points to, or `None` when absent.
    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let resp = self
            .send(
                Kind::ManifestHead,
                Method::HEAD,
                url.clone(),
                &[scope(repo, false)],
                accept_manifests(),
                Body::Empty,
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self
            .check(resp, "HEAD", &url, || format!("{repo}:{reference}"))
            .await?;
        let h = resp.headers();
        let Some(digest) = h.get("docker-content-digest").and_then(|v| v.to_str().ok()) else {
            // Without the header we must GET to know the digest.
            return Ok(Some(self.get_manifest(repo, reference).await?.head()));
        };
        Ok(Some(ManifestHead {
            digest: digest.parse()?,
            media_type: h
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            size: h
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        }))
    }

    /// `GET /v2/<repo>/manifests/<reference>`, verified: the bytes must hash to the reference when
    /// it is a digest, and to `Docker-Content-Digest` when the registry sends it.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let mut backoff = Backoff::new(self.inner.retry);
        loop {
            let resp = self
                .send(
                    Kind::ManifestGet,
                    Method::GET,
                    url.clone(),
                    &[scope(repo, false)],
                    accept_manifests(),
                    Body::Empty,
                )
                .await?;
            let resp = self
                .check(resp, "GET", &url, || format!("{repo}:{reference}"))
                .await?;
            let media_type = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
            let announced = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<Digest>().ok());
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => match backoff.next(None) {
                    Some(w) => {
                        tokio::time::sleep(w).await;
                        continue;
                    }
                    None => {
                        return Err(Error::Transport {
                            what: format!("GET {url}"),
                            source: e.without_url(),
                        });
                    }
                },
            };
            let actual = Digest::of(&bytes);
            let expected = reference.parse::<Digest>().ok().or(announced);
            if let Some(expected) = expected
                && expected.algorithm() == "sha256"
                && expected != actual
            {
                // A corrupted transfer: try again, bounded.
                if let Some(w) = backoff.next(None) {
                    tracing::warn!(%url, %expected, %actual, "manifest digest mismatch; fetching again");
                    tokio::time::sleep(w).await;
                    continue;
                }
                return Err(Error::DigestMismatch {
                    what: format!("manifest {}/{repo}:{reference}", self.inner.host),
                    expected,
                    actual: actual.to_string(),
                });
            }
            return Manifest::new(
                bytes,
                media_type,
                format!("{}/{repo}:{reference}", self.inner.host),
            );
        }
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with the exact bytes and media type, so the digest
    /// is preserved; checks the digest the registry answers with.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<()> {
        if manifest.bytes.len() > self.inner.profile.max_manifest {
            return Err(Error::Manifest {
                what: format!("{repo}:{reference}"),
                detail: format!(
                    "{} bytes exceed the registry's manifest limit",
                    manifest.bytes.len()
                ),
            });
        }
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&manifest.media_type)
                .map_err(|_| Error::invalid("bad media type"))?,
        );
        let resp = self
            .send(
                Kind::ManifestPut,
                Method::PUT,
                url.clone(),
                &[scope(repo, true)],
                headers,
                Body::Bytes(manifest.bytes.clone()),
            )
            .await?;
        let resp = self
            .check(resp, "PUT", &url, || format!("push {repo}:{reference}"))
            .await?;
        if let Some(d) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && d != manifest.digest.as_str()
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest pushed to {}/{repo}:{reference}", self.inner.host),
                expected: manifest.digest.clone(),
                actual: d.to_string(),
            });
        }
        Ok(())
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: its size, or `None` when absent.
    pub async fn head_blob(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"))?;
        let resp = self
            .send(
                Kind::BlobHead,
                Method::HEAD,
                url.clone(),
                &[scope(repo, false)],
                HeaderMap::new(),
                Body::Empty,
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self
            .check(resp, "HEAD", &url, || format!("blob {digest} in {repo}"))
            .await?;
        // The header, not `content_length()`: a HEAD answer has no body, so that says 0.
        Ok(Some(
            resp.headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ))
    }

    /// `GET /v2/<repo>/blobs/<digest>` as a stream (redirects followed without `Authorization`).
    /// The caller verifies the digest (see [`crate::verify`]).
    pub async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"))?;
        let resp = self
            .send(
                Kind::BlobGet,
                Method::GET,
                url.clone(),
                &[scope(repo, false)],
                HeaderMap::new(),
                Body::Empty,
            )
            .await?;
        let resp = self
            .check(resp, "GET", &url, || format!("blob {digest} in {repo}"))
            .await?;
        let size = resp.content_length();
        let what = format!("GET {url}");
        let stream = resp
            .bytes_stream()
            .map_err(move |e| Error::Transport {
                what: what.clone(),
                source: e.without_url(),
            })
            .boxed();
        Ok(BlobStream { size, stream })
    }

    /// `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from>`. With `from` = `repo` it asks
    /// whether the blob is already in `repo` and opens an upload if not (not counted as a mount).
    pub async fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<Mount> {
        let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        let cross = from != repo;
        let push = [scope(repo, true), scope(from, false)];
        let resp = self
            .send(
                Kind::Upload,
                Method::POST,
                url.clone(),
                if cross { &push } else { &push[..1] },
                content_length_zero(),
                Body::Empty,
            )
            .await?;
        if resp.status() == StatusCode::CREATED {
            if cross {
                self.inner.stats.mounts.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(Mount::Mounted);
        }
        let resp = self
            .check(resp, "POST", &url, || format!("mount {digest} into {repo}"))
            .await?;
        Ok(Mount::Upload(self.location(&resp, &url)?))
    }

    /// Opens an upload session: `POST /v2/<repo>/blobs/uploads/`.
    pub async fn start_upload(&self, repo: &str) -> Result<Url> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        let resp = self
            .send(
                Kind::Upload,
                Method::POST,
                url.clone(),
                &[scope(repo, true)],
                content_length_zero(),
                Body::Empty,
            )
            .await?;
        let resp = self
            .check(resp, "POST", &url, || format!("upload to {repo}"))
            .await?;
        self.location(&resp, &url)
    }

    fn location(&self, resp: &reqwest::Response, url: &Url) -> Result<Url> {
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Status {
                method: "POST".into(),
                url: url.to_string(),
                status: resp.status().as_u16(),
                code: None,
                message: Some("upload answer without Location".into()),
            })?;
        url.join(loc)
            .map_err(|e| Error::invalid(format!("bad upload Location {loc:?}: {e}")))
    }

    /// Uploads a blob's bytes into an open session and closes it with `?digest=`, using the
    /// registry's upload strategy. The body is streamed once: on failure the caller starts again.
    pub async fn upload_blob(
        &self,
        repo: &str,
        location: Url,
        digest: &Digest,
        size: u64,
        body: impl Stream<Item = Result<Bytes>> + Send + 'static,
    ) -> Result<()> {
        match self.inner.upload {
            UploadStrategy::Monolithic => {
                let url = with_digest(location, digest);
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
                let resp = self
                    .send(
                        Kind::Upload,
                        Method::PUT,
                        url.clone(),
                        &[scope(repo, true)],
                        headers,
                        Body::Stream(Some(reqwest::Body::wrap_stream(body))),
                    )
                    .await?;
                self.check(resp, "PUT", &url, || format!("blob {digest} into {repo}"))
                    .await?;
                Ok(())
            }
            UploadStrategy::SinglePatch => {
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
                let resp = self
                    .send(
                        Kind::Upload,
                        Method::PATCH,
                        location.clone(),
                        &[scope(repo, true)],
                        headers,
                        Body::Stream(Some(reqwest::Body::wrap_stream(body))),
                    )
                    .await?;
                let resp = self
                    .check(resp, "PATCH", &location, || {
                        format!("blob {digest} into {repo}")
                    })
                    .await?;
                let next = self.location(&resp, &location)?;
                self.finish_upload(repo, next, digest).await
            }
            UploadStrategy::Chunked(chunk) => {
                self.upload_chunked(repo, location, digest, chunk.max(1), body)
                    .await
            }
        }
    }

    async fn finish_upload(&self, repo: &str, location: Url, digest: &Digest) -> Result<()> {
        let url = with_digest(location, digest);
        let resp = self
            .send(
                Kind::Upload,
                Method::PUT,
                url.clone(),
                &[scope(repo, true)],
                content_length_zero(),
                Body::Empty,
            )
            .await?;
        self.check(resp, "PUT", &url, || format!("blob {digest} into {repo}"))
            .await?;
        Ok(())
    }

    /// `PATCH` chunks with `Content-Range`; a 416 (or a transient failure) is resumed from the
    /// offset the upload status reports, resending from the chunk we still hold.
    async fn upload_chunked(
        &self,
        repo: &str,
        mut location: Url,
        digest: &Digest,
        chunk: u64,
        body: impl Stream<Item = Result<Bytes>> + Send + 'static,
    ) -> Result<()> {
        let mut body = Box::pin(body);
        let mut buf: Vec<u8> = Vec::new();
        let mut offset: u64 = 0;
        let mut ended = false;
        loop {
            while !ended && (buf.len() as u64) < chunk {
                match body.next().await {
                    Some(b) => buf.extend_from_slice(&b?),
                    None => ended = true,
                }
            }
            if buf.is_empty() {
                break;
            }
            let take = (buf.len() as u64).min(chunk) as usize;
            let piece = Bytes::copy_from_slice(&buf[..take]);
            let mut attempts = 0;
            let sent = loop {
                attempts += 1;
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                let end = offset + piece.len() as u64 - 1;
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("{offset}-{end}")).expect("ascii"),
                );
                let resp = self
                    .send(
                        Kind::Upload,
                        Method::PATCH,
                        location.clone(),
                        &[scope(repo, true)],
                        headers,
                        Body::Bytes(piece.clone()),
                    )
                    .await?;
                if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE && attempts <= 3 {
                    // Ask where the registry is and resend from there.
                    let stored = self.upload_status(repo, &location).await?;
                    if stored > offset && stored <= end + 1 {
                        let done = (stored - offset) as usize;
                        buf.drain(..done);
                        offset = stored;
                        break None;
                    }
                    if stored == offset {
                        continue;
                    }
                    return Err(Error::Status {
                        method: "PATCH".into(),
                        url: location.to_string(),
                        status: 416,
                        code: None,
                        message: Some(format!("registry holds {stored} bytes, we are at {offset}")),
                    });
                }
                let resp = self
                    .check(resp, "PATCH", &location, || {
                        format!("blob {digest} into {repo}")
                    })
                    .await?;
                break Some(self.location(&resp, &location)?);
            };
            if let Some(next) = sent {
                location = next;
                buf.drain(..take);
                offset += take as u64;
            }
        }
        self.finish_upload(repo, location, digest).await
    }

    /// `GET <upload location>`: bytes the registry holds (from `Range: 0-N`).
    async fn upload_status(&self, repo: &str, location: &Url) -> Result<u64> {
        let resp = self
            .send(
                Kind::Upload,
                Method::GET,
                location.clone(),
                &[scope(repo, true)],
                HeaderMap::new(),
                Body::Empty,
            )
            .await?;
        let resp = self
            .check(resp, "GET", location, || format!("upload status in {repo}"))
            .await?;
        Ok(resp
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.rsplit_once('-'))
            .and_then(|(_, end)| end.parse::<u64>().ok())
            .map_or(0, |end| end + 1))
    }

    /// Every tag of a repository (`tags/list`, following `Link` pages).
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        let url = self.url(&format!("/v2/{repo}/tags/list?n=1000"))?;
        self.paged(url, &[scope(repo, false)], "tags").await
    }

    /// Every repository (`_catalog`, following `Link` pages).
    pub async fn catalog(&self) -> Result<Vec<String>> {
        let url = self.url("/v2/_catalog?n=1000")?;
        self.paged(url, &["registry:catalog:*".to_string()], "repositories")
            .await
    }

    async fn paged(&self, mut url: Url, scopes: &[String], field: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for _page in 0..100_000 {
            let resp = self
                .send(
                    Kind::List,
                    Method::GET,
                    url.clone(),
                    scopes,
                    HeaderMap::new(),
                    Body::Empty,
                )
                .await?;
            let resp = self
                .check(resp, "GET", &url, || format!("list {field}"))
                .await?;
            let next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                .map(|l| url.join(&l))
                .transpose()
                .map_err(|e| Error::invalid(format!("bad Link header: {e}")))?;
            let doc: serde_json::Value = resp.json().await.map_err(|e| Error::Transport {
                what: format!("GET {url}"),
                source: e.without_url(),
            })?;
            if let Some(items) = doc.get(field).and_then(|v| v.as_array()) {
                out.extend(items.iter().filter_map(|v| v.as_str().map(str::to_string)));
            }
            match next {
                Some(n) => url = n,
                None => return Ok(out),
            }
        }
        Err(Error::invalid(format!(
            "{}: more than 100000 pages of {field}",
            self.inner.host
        )))
    }

    /// A plain GET relative to the registry's host (for vendor APIs such as Artifactory's),
    /// authenticated with Basic credentials when given; the JSON answer.
    pub async fn get_json(&self, url: Url) -> Result<serde_json::Value> {
        let mut rb = self.inner.http.get(url.clone()).timeout(self.inner.timeout);
        if let Some(c) = &self.inner.auth.credentials() {
            rb = rb.basic_auth(&c.username, Some(c.password()));
        }
        self.inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let resp = rb.send().await.map_err(|e| Error::Transport {
            what: format!("GET {url}"),
            source: e.without_url(),
        })?;
        let resp = self
            .check(resp, "GET", &url, || url.path().to_string())
            .await?;
        resp.json().await.map_err(|e| Error::Transport {
            what: format!("GET {url}"),
            source: e.without_url(),
        })
    }
}

fn accept_manifests() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT_MANIFESTS));
    h
}

fn content_length_zero() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    h
}

fn with_digest(mut url: Url, digest: &Digest) -> Url {
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    url
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().trim_start_matches("rel=").trim_matches('"') == "next")
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

/// Turns an error answer into an [`Error::Status`], with the first OCI error code and message.
async fn error_from(resp: reqwest::Response, method: &str, url: &Url) -> Error {
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(Duration::from_secs(10), resp.bytes())
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    let (code, message) = parse_error_body(&body);
    let mut url = url.clone();
    // Upload locations carry state tokens: keep them out of messages.
    if url.path().contains("/blobs/uploads/") {
        url.set_query(None);
    }
    Error::Status {
        method: method.into(),
        url: url.to_string(),
        status,
        code,
        message,
    }
}

/// The first `{"errors":[{"code":…,"message":…}]}` entry.
pub(crate) fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    let first = doc
        .get("errors")
        .and_then(|e| e.as_array())
        .and_then(|a| a.first());
    let get = |k: &str| {
        first
            .and_then(|e| e.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    (get("code"), get("message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(next_link(r#"<https://x/a>; rel="prev""#), None);
    }

    #[test]
    fn error_bodies() {
        let (c, m) = parse_error_body(
            br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down","detail":{}}]}"#,
        );
        assert_eq!(
            (c.as_deref(), m.as_deref()),
            (Some("TOOMANYREQUESTS"), Some("slow down"))
        );
        assert_eq!(parse_error_body(b"<html>"), (None, None));
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("registry.example:5000"));
    }
}
