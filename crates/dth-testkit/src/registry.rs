//! Container registry peers: the Debian `docker-registry` (CNCF distribution 2.8) on a free
//! 127.0.0.1 port with a temporary filesystem root, optional htpasswd Basic auth, and its access
//! log captured for counting requests; a fault proxy for registries (429 with `Retry-After`, 503,
//! corrupted blob bodies, added latency); OCI layout fixtures written from test code; and `skopeo`
//! helpers to push fixtures and to check results independently of our client.

use crate::peer::free_port;
use crate::peer::spawn_tied_to_process;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The registry binary (Debian package `docker-registry`).
pub const REGISTRY_BIN: &str = "docker-registry";

/// A running `docker-registry`, owned by one test. Dropping it kills it and deletes its data.
pub struct Registry {
    port: u16,
    log_path: PathBuf,
    root: PathBuf,
    credentials: Option<(String, String)>,
    token: Option<TokenServer>,
    child: Child,
    _temp: TempDir,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host())
            .field("basic_auth", &self.credentials.as_ref().map(|(u, _)| u))
            .field("log", &self.log_path)
            .finish()
    }
}

/// One line of the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    /// `GET`, `HEAD`…
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Status code.
    pub status: u16,
}

impl AccessLine {
    /// `GET`/`HEAD` of `/v2/<name>/manifests/<ref>`, `PUT` of one...
    pub fn is_manifest(&self) -> bool {
        self.path.contains("/manifests/")
    }
    /// A request under `/blobs/` (uploads included).
    pub fn is_blob(&self) -> bool {
        self.path.contains("/blobs/")
    }
}

impl Registry {
    /// Starts an open registry (no auth).
    pub async fn start() -> Registry {
        Self::start_inner(None, false).await
    }

    /// Starts a registry requiring Basic auth with this user and password (htpasswd, bcrypt).
    pub async fn start_with_basic_auth(user: &str, password: &str) -> Registry {
        Self::start_inner(Some((user.to_string(), password.to_string())), false).await
    }

    /// Starts a registry requiring Bearer tokens from a token server of its own (RS256 JWTs
    /// signed with a fresh self-signed certificate, made with `openssl`), which hands them out
    /// for this user and password (Basic auth on the token request).
    pub async fn start_with_token_auth(user: &str, password: &str) -> Registry {
        Self::start_inner(Some((user.to_string(), password.to_string())), true).await
    }

    /// Tokens the token server issued (`None` without token auth).
    pub fn tokens_issued(&self) -> Option<u64> {
        self.token
            .as_ref()
            .map(|t| t.shared.issued.load(Ordering::SeqCst))
    }

    async fn start_inner(credentials: Option<(String, String)>, token_auth: bool) -> Registry {
        let bin = which(REGISTRY_BIN).unwrap_or_else(|| {
            panic!("{REGISTRY_BIN} not found on PATH: run scripts/install-peers (Debian package docker-registry)")
        });
        let temp = new_temp_dir();
        let root = temp.path().join("root");
        std::fs::create_dir_all(&root).expect("registry root");
        let mut token = None;
        let auth = match &credentials {
            None => String::new(),
            Some((user, password)) if token_auth => {
                let server = TokenServer::start(temp.path(), user, password).await;
                let text = format!(
                    "auth:\n  token:\n    realm: http://{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    server.addr,
                    temp.path().join("token-cert.pem").display()
                );
                token = Some(server);
                text
            }
            Some((user, password)) => {
                let htpasswd = temp.path().join("htpasswd");
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("htpasswd not found: run scripts/install-peers (Debian package apache2-utils)");
                assert!(
                    out.status.success(),
                    "htpasswd failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                std::fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: dth-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
        };
        for attempt in 1..=3 {
            let port = free_port();
            let config = temp.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\n\
                     http:\n  addr: 127.0.0.1:{port}\n  secret: dth-test-secret\n{auth}",
                    root.display()
                ),
            )
            .expect("write registry config");
            let log_path = temp.path().join(format!("registry-{attempt}.log"));
            let log = File::create(&log_path).expect("registry log");
            let mut cmd = Command::new(&bin);
            cmd.arg("serve")
                .arg(&config)
                .current_dir(temp.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .env_remove("AWS_CA_BUNDLE");
            let mut child = spawn_tied_to_process(cmd)
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if text.contains("address already in use") && attempt < 3 {
                        break;
                    }
                    panic!("{REGISTRY_BIN} exited with {status}; its log:\n{text}");
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Registry {
                        port,
                        log_path,
                        root,
                        credentials,
                        token,
                        child,
                        _temp: temp,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("{REGISTRY_BIN} did not listen on 127.0.0.1:{port} within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `(user, password)` when Basic auth is on.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The storage root (`docker/registry/v2/…`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The combined app and access log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Every access-log line so far.
    pub fn access_log(&self) -> Vec<AccessLine> {
        parse_access_log(&std::fs::read_to_string(&self.log_path).unwrap_or_default())
    }

    /// Access-log lines from now on: call [`LogMark::since`] later.
    pub fn mark(&self) -> LogMark {
        LogMark {
            path: self.log_path.clone(),
            offset: std::fs::metadata(&self.log_path)
                .map(|m| m.len())
                .unwrap_or(0),
        }
    }

    /// The `--creds` argument for skopeo, when Basic auth is on.
    pub fn skopeo_creds(&self) -> Option<String> {
        self.credentials.as_ref().map(|(u, p)| format!("{u}:{p}"))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A position in a registry's log.
#[derive(Debug, Clone)]
pub struct LogMark {
    path: PathBuf,
    offset: u64,
}

impl LogMark {
    /// Access-log lines written since the mark (waits briefly for the log to be flushed).
    pub async fn since(&self) -> Vec<AccessLine> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        let tail = bytes.get(self.offset as usize..).unwrap_or_default();
        parse_access_log(&String::from_utf8_lossy(tail))
    }
}

/// Parses combined-format access lines: `… "METHOD PATH HTTP/1.1" STATUS …`.
pub fn parse_access_log(text: &str) -> Vec<AccessLine> {
    text.lines()
        .filter_map(|line| {
            let start = line.find("\"")?;
            let rest = &line[start + 1..];
            let end = rest.find('"')?;
            let mut req = rest[..end].split(' ');
            let (method, path, proto) = (req.next()?, req.next()?, req.next()?);
            if !proto.starts_with("HTTP/") {
                return None;
            }
            let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
            Some(AccessLine {
                method: method.to_string(),
                path: path.to_string(),
                status,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// OCI layout fixtures

/// OCI media types used by fixtures.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A blob or manifest written into a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// `sha256:…`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

/// Writes an OCI image layout directory from test code.
#[derive(Debug)]
pub struct OciLayout {
    dir: PathBuf,
    index: Vec<serde_json::Value>,
    /// compressed layer digest → digest of its uncompressed content (the config's diff_id)
    diff_ids: std::collections::HashMap<String, String>,
}

/// `sha256:<hex>` of bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl OciLayout {
    /// Creates `dir` (and `oci-layout`, `blobs/sha256/`).
    pub fn create(dir: &Path) -> OciLayout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("layout dirs");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        OciLayout {
            dir: dir.to_path_buf(),
            index: Vec::new(),
            diff_ids: std::collections::HashMap::new(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a blob.
    pub fn blob(&mut self, bytes: &[u8], media_type: &str) -> Written {
        let digest = sha256_digest(bytes);
        let path = self.dir.join("blobs/sha256").join(&digest[7..]);
        if !path.exists() {
            std::fs::write(&path, bytes).expect("write blob");
        }
        Written {
            digest,
            size: bytes.len() as u64,
            media_type: media_type.to_string(),
        }
    }

    /// A layer: `content` wrapped as a (stored, uncompressed-deflate) gzip stream, so tools that
    /// sniff compression see gzip and copy it unchanged.
    pub fn layer(&mut self, content: &[u8]) -> Written {
        let gz = gzip_stored(content);
        let w = self.blob(&gz, OCI_LAYER_GZIP);
        self.diff_ids
            .insert(w.digest.clone(), sha256_digest(content));
        w
    }

    /// An image manifest for `layers` on `os/arch`, with a config naming `label`
    /// (different labels give different configs).
    pub fn image(&mut self, layers: &[Written], arch: &str, label: &str) -> Written {
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Labels": {"dth.test": label}},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| self.diff_ids.get(&l.digest).cloned().unwrap_or_else(|| l.digest.clone())).collect::<Vec<_>>()},
        });
        let config = self.blob(
            &serde_json::to_vec(&config).expect("json"),
            "application/vnd.oci.image.config.v1+json",
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(&config),
            "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
        });
        self.blob(&serde_json::to_vec(&manifest).expect("json"), OCI_MANIFEST)
    }

    /// An index of `(manifest, arch)` children (os linux).
    pub fn index(&mut self, children: &[(Written, &str)]) -> Written {
        let manifests: Vec<_> = children
            .iter()
            .map(|(m, arch)| {
                let mut d = descriptor(m);
                d["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
                d
            })
            .collect();
        let index =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        self.blob(&serde_json::to_vec(&index).expect("json"), OCI_INDEX)
    }

    /// Names `m` in `index.json` (`org.opencontainers.image.ref.name`) and writes the index.
    pub fn tag(&mut self, m: &Written, name: &str) {
        let mut d = descriptor(m);
        d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
        self.index.push(d);
        let index = serde_json::json!({"schemaVersion": 2, "manifests": self.index});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("index.json");
    }
}

fn descriptor(w: &Written) -> serde_json::Value {
    serde_json::json!({"mediaType": w.media_type, "digest": w.digest, "size": w.size})
}

/// A valid gzip stream of `data` using stored (uncompressed) deflate blocks.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    static TABLE: OnceLock<[u32; 256]> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, b| {
        table[((c ^ *b as u32) & 0xff) as usize] ^ (c >> 8)
    })
}

/// Deterministic pseudo-random bytes (xorshift), fast enough for hundreds of MiB.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------------------------
// skopeo

/// Runs `skopeo` with `args` (TLS verification off for both sides, `AWS_CA_BUNDLE` unset);
/// panics with its stderr when it fails.
pub async fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = skopeo_try(args).await;
    match out {
        Ok(o) => o,
        Err(e) => panic!("skopeo {}: {e}", args.join(" ")),
    }
}

/// Like [`skopeo`] but returns the failure.
pub async fn skopeo_try(args: &[&str]) -> Result<Vec<u8>, String> {
    let out = tokio::process::Command::new("skopeo")
        .args(args)
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .await
        .map_err(|e| {
            format!("skopeo not found ({e}): run scripts/install-peers (Debian package skopeo)")
        })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `skopeo copy --all` from an OCI layout tag into a registry (`repo:tag`).
pub async fn push_layout(layout: &Path, tag: &str, registry: &Registry, image: &str) {
    let src = format!("oci:{}:{tag}", layout.display());
    let dst = format!("docker://{}/{image}", registry.host());
    let mut args = vec!["copy", "--all", "--quiet", "--dest-tls-verify=false"];
    let creds = registry.skopeo_creds();
    if let Some(c) = &creds {
        args.push("--dest-creds");
        args.push(c);
    }
    args.push(&src);
    args.push(&dst);
    skopeo(&args).await;
}

/// `skopeo inspect --raw docker://HOST/IMAGE`: the manifest bytes as stored.
pub async fn inspect_raw(registry: &Registry, image: &str) -> Vec<u8> {
    let target = format!("docker://{}/{image}", registry.host());
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    let creds = registry.skopeo_creds();
    if let Some(c) = &creds {
        args.push("--creds");
        args.push(c);
    }
    args.push(&target);
    skopeo(&args).await
}

/// `skopeo copy --all` of a registry image back into a fresh OCI layout in `dir` (tag `t`), to
/// read every blob independently of our client.
pub async fn pull_to_layout(registry: &Registry, image: &str, dir: &Path) {
    let src = format!("docker://{}/{image}", registry.host());
    let dst = format!("oci:{}:t", dir.display());
    let mut args = vec!["copy", "--all", "--quiet", "--src-tls-verify=false"];
    let creds = registry.skopeo_creds();
    if let Some(c) = &creds {
        args.push("--src-creds");
        args.push(c);
    }
    args.push(&src);
    args.push(&dst);
    skopeo(&args).await;
}

// ---------------------------------------------------------------------------------------------
// Fault proxy for registries

/// Faults a [`RegistryProxy`] injects.
#[derive(Debug, Clone, Default)]
pub struct RegistryFaults {
    /// Every Nth request (1-based; 0 = never) is answered `429` with `Retry-After`.
    pub throttle_every: u64,
    /// `Retry-After` seconds sent with injected 429s.
    pub retry_after_secs: u64,
    /// Every Nth request (0 = never) is answered `503` (counted after throttling).
    pub fail_every: u64,
    /// The next N successful `GET …/blobs/sha256:…` answers get one byte flipped mid-body.
    pub corrupt_blob_gets: u64,
    /// Delay added before forwarding each request.
    pub delay: Duration,
    /// The next N `PATCH` requests reach the registry, but their answers are replaced by a `503`:
    /// the registry kept the chunk and the client does not know it.
    pub lose_patch_answers: u64,
    /// `GET …/blobs/sha256:…` is answered `307` to the same path and query on this host
    /// (`127.0.0.1:PORT`), as registries send blob downloads to their storage.
    pub redirect_blob_gets_to: Option<String>,
    /// Be the storage a registry redirects to: a request carrying `Authorization` is refused with
    /// `400` (as S3 refuses a presigned URL with a second auth mechanism); the others are
    /// forwarded with this `Authorization` value, standing in for the presigned signature.
    pub storage_authorization: Option<String>,
}

/// What a [`RegistryProxy`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryProxyStats {
    /// Requests received.
    pub requests: u64,
    /// 429s injected.
    pub throttled: u64,
    /// 503s injected.
    pub failed: u64,
    /// Blob bodies corrupted.
    pub corrupted: u64,
    /// `PATCH` answers replaced by a 503 after the registry took the chunk.
    pub lost: u64,
    /// Blob GETs redirected.
    pub redirected: u64,
    /// Storage requests refused because they carried `Authorization`.
    pub refused: u64,
}

/// An HTTP/1.1 reverse proxy on a free 127.0.0.1 port in front of a registry. It forwards the
/// `Host` header unchanged, so upload `Location`s point back at the proxy.
pub struct RegistryProxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    task: JoinHandle<()>,
}

struct ProxyShared {
    upstream: String,
    client: Client<HttpConnector, Incoming>,
    faults: Mutex<RegistryFaults>,
    corrupt_left: AtomicU64,
    lose_left: AtomicU64,
    requests: AtomicU64,
    throttled: AtomicU64,
    failed: AtomicU64,
    corrupted: AtomicU64,
    lost: AtomicU64,
    redirected: AtomicU64,
    refused: AtomicU64,
}

type ProxyBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

impl RegistryProxy {
    /// Starts a proxy in front of `upstream` (`127.0.0.1:PORT`).
    pub async fn start(upstream: &str, faults: RegistryFaults) -> RegistryProxy {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let shared = Arc::new(ProxyShared {
            upstream: upstream.to_string(),
            client,
            corrupt_left: AtomicU64::new(faults.corrupt_blob_gets),
            lose_left: AtomicU64::new(faults.lose_patch_answers),
            faults: Mutex::new(faults),
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            corrupted: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            redirected: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let task = tokio::spawn(crate::peer::serve_http1(
            listener,
            shared.clone(),
            proxy_handle,
        ));
        RegistryProxy { addr, shared, task }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Counters so far.
    pub fn stats(&self) -> RegistryProxyStats {
        let s = &self.shared;
        RegistryProxyStats {
            requests: s.requests.load(Ordering::SeqCst),
            throttled: s.throttled.load(Ordering::SeqCst),
            failed: s.failed.load(Ordering::SeqCst),
            corrupted: s.corrupted.load(Ordering::SeqCst),
            lost: s.lost.load(Ordering::SeqCst),
            redirected: s.redirected.load(Ordering::SeqCst),
            refused: s.refused.load(Ordering::SeqCst),
        }
    }
}

impl Drop for RegistryProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn proxy_full(bytes: Bytes, status: StatusCode) -> Response<ProxyBody> {
    let mut r = Response::new(Full::new(bytes).map_err(|n| match n {}).boxed());
    *r.status_mut() = status;
    r
}

async fn proxy_handle(
    s: Arc<ProxyShared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, std::convert::Infallible> {
    let n = s.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let faults = s.faults.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if !faults.delay.is_zero() {
        tokio::time::sleep(faults.delay).await;
    }
    if faults.throttle_every > 0 && n.is_multiple_of(faults.throttle_every) {
        s.throttled.fetch_add(1, Ordering::SeqCst);
        let _ = req.into_body().collect().await;
        let mut r = proxy_full(
            Bytes::from_static(br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"injected"}]}"#),
            StatusCode::TOO_MANY_REQUESTS,
        );
        r.headers_mut().insert(
            "retry-after",
            faults.retry_after_secs.to_string().parse().expect("header"),
        );
        r.headers_mut()
            .insert("content-type", "application/json".parse().expect("header"));
        return Ok(r);
    }
    if faults.fail_every > 0 && n % faults.fail_every == faults.fail_every / 2 {
        s.failed.fetch_add(1, Ordering::SeqCst);
        let _ = req.into_body().collect().await;
        return Ok(proxy_full(
            Bytes::from_static(b"injected"),
            StatusCode::SERVICE_UNAVAILABLE,
        ));
    }
    let blob_get = req.method() == http::Method::GET && req.uri().path().contains("/blobs/sha256:");
    let patch = req.method() == http::Method::PATCH;
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    if let (true, Some(storage)) = (blob_get, &faults.redirect_blob_gets_to) {
        s.redirected.fetch_add(1, Ordering::SeqCst);
        let mut r = proxy_full(Bytes::new(), StatusCode::TEMPORARY_REDIRECT);
        let to = format!("http://{storage}{pq}");
        r.headers_mut()
            .insert("location", to.parse().expect("header"));
        return Ok(r);
    }
    if let Some(auth) = &faults.storage_authorization {
        if parts.headers.contains_key(http::header::AUTHORIZATION) {
            s.refused.fetch_add(1, Ordering::SeqCst);
            return Ok(proxy_full(
                Bytes::from_static(b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>"),
                StatusCode::BAD_REQUEST,
            ));
        }
        parts
            .headers
            .insert(http::header::AUTHORIZATION, auth.parse().expect("header"));
    }
    parts.uri = match format!("http://{}{pq}", s.upstream).parse::<Uri>() {
        Ok(u) => u,
        Err(e) => {
            return Ok(proxy_full(
                Bytes::from(e.to_string()),
                StatusCode::BAD_GATEWAY,
            ));
        }
    };
    parts.headers.remove(http::header::CONNECTION);
    let resp = match s.client.request(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(proxy_full(
                Bytes::from(e.to_string()),
                StatusCode::BAD_GATEWAY,
            ));
        }
    };
    if patch
        && resp.status().is_success()
        && s.lose_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
            .is_ok()
    {
        s.lost.fetch_add(1, Ordering::SeqCst);
        let _ = resp.into_body().collect().await;
        return Ok(proxy_full(
            Bytes::from_static(b"injected: answer lost"),
            StatusCode::SERVICE_UNAVAILABLE,
        ));
    }
    let corrupt = blob_get
        && resp.status().is_success()
        && s.corrupt_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
            .is_ok();
    if !corrupt {
        return Ok(resp.map(|b| {
            b.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                .boxed()
        }));
    }
    let (parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return Ok(proxy_full(
                Bytes::from(e.to_string()),
                StatusCode::BAD_GATEWAY,
            ));
        }
    };
    let mut data = bytes.to_vec();
    if !data.is_empty() {
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        s.corrupted.fetch_add(1, Ordering::SeqCst);
    }
    Ok(Response::from_parts(
        parts,
        Full::new(Bytes::from(data)).map_err(|n| match n {}).boxed(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Token server

const TOKEN_SERVICE: &str = "dth-test-registry";
const TOKEN_ISSUER: &str = "dth-test-issuer";

/// A Docker token server: `GET /token?service=&scope=…` with Basic auth answers an RS256 JWT
/// whose `x5c` header carries the certificate the registry trusts (`rootcertbundle`).
struct TokenServer {
    addr: SocketAddr,
    shared: Arc<TokenShared>,
    task: JoinHandle<()>,
}

struct TokenShared {
    basic: String,
    key: PathBuf,
    x5c: String,
    issued: AtomicU64,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenServer {
    async fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=dth-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl not found");
        assert!(
            out.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .expect("openssl x509");
        assert!(
            der.status.success(),
            "openssl x509: {}",
            String::from_utf8_lossy(&der.stderr)
        );
        let shared = Arc::new(TokenShared {
            basic: format!(
                "Basic {}",
                b64(format!("{user}:{password}").as_bytes(), false)
            ),
            key,
            x5c: b64(&der.stdout, false),
            issued: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind token server");
        let addr = listener.local_addr().expect("token server address");
        let task = tokio::spawn(crate::peer::serve_http1(
            listener,
            shared.clone(),
            token_handle,
        ));
        TokenServer { addr, shared, task }
    }
}

async fn token_handle(
    s: Arc<TokenShared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, std::convert::Infallible> {
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == s.basic);
    if !authorized {
        return Ok(proxy_full(
            Bytes::from_static(b"{\"details\":\"bad credentials\"}"),
            StatusCode::UNAUTHORIZED,
        ));
    }
    let query = req.uri().query().unwrap_or("");
    let mut access = Vec::new();
    for pair in query.split('&') {
        let Some(("scope", v)) = pair.split_once('=') else {
            continue;
        };
        let v = percent_decode(v);
        for one in v.split(' ') {
            let Some((kind, rest)) = one.split_once(':') else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            access.push(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let n = s.issued.fetch_add(1, Ordering::SeqCst);
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [s.x5c]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": "dth-test", "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("t{n}"), "access": access,
    });
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(&header).unwrap_or_default(), true),
        b64(&serde_json::to_vec(&claims).unwrap_or_default(), true)
    );
    let signed = async {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&s.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take()?.write_all(input.as_bytes()).await.ok()?;
        let out = child.wait_with_output().await.ok()?;
        out.status.success().then_some(out.stdout)
    }
    .await;
    let Some(sig) = signed else {
        return Ok(proxy_full(
            Bytes::from_static(b"signing failed"),
            StatusCode::INTERNAL_SERVER_ERROR,
        ));
    };
    let jwt = format!("{input}.{}", b64(&sig, true));
    let body = serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": 300});
    let mut r = proxy_full(
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        StatusCode::OK,
    );
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    Ok(r)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Base64 (standard with padding, or URL-safe without).
fn b64(data: &[u8], url: bool) -> String {
    let table: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        let chars = [n >> 18, n >> 12, n >> 6, n].map(|x| table[(x & 63) as usize] as char);
        out.push(chars[0]);
        out.push(chars[1]);
        if chunk.len() > 1 {
            out.push(chars[2]);
        } else if !url {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(chars[3]);
        } else if !url {
            out.push('=');
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// process helpers

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

fn new_temp_dir() -> TempDir {
    let mut b = tempfile::Builder::new();
    b.prefix("dth-registry-");
    if Path::new("/dev/shm").is_dir()
        && let Ok(d) = b.tempdir_in("/dev/shm")
    {
        return d;
    }
    b.tempdir().expect("temp dir")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines() {
        let log = "time=\"x\" level=info msg=\"response completed\"\n127.0.0.1 - - [25/Nov/2026:13:50:00 +0000] \"HEAD /v2/app/manifests/1 HTTP/1.1\" 200 0 \"\" \"dth/0.1.0\"\n";
        assert_eq!(
            parse_access_log(log),
            vec![AccessLine {
                method: "HEAD".into(),
                path: "/v2/app/manifests/1".into(),
                status: 200
            }]
        );
    }

    #[test]
    fn base64_and_percent_decoding() {
        assert_eq!(b64(b"user:pass", false), "dXNlcjpwYXNz");
        assert_eq!(b64(b"ab", false), "YWI=");
        assert_eq!(b64(&[0xfb, 0xff], true), "-_8");
        assert_eq!(
            percent_decode("repository%3Aa%2Fb%3Apull%2Cpush+x%"),
            "repository:a/b:pull,push x%"
        );
    }

    #[test]
    fn gzip_stream_has_gzip_magic_and_trailer() {
        let data = random_bytes(1, 200_000);
        let gz = gzip_stored(&data);
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        assert_eq!(
            u32::from_le_bytes(gz[gz.len() - 4..].try_into().unwrap()),
            200_000
        );
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
