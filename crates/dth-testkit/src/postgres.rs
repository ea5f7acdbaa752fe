//! A real PostgreSQL server for tests: `initdb` into a temporary directory, `postgres` on a free
//! `127.0.0.1` port with trust authentication, killed when dropped (or when the test process dies).
//!
//! The binaries come from Debian's `postgresql` package (`scripts/install-peers` installs it): found
//! in `PATH` or `/usr/lib/postgresql/*/bin` (highest version). PostgreSQL refuses to run as root, so
//! when the tests run as root the server runs as the `postgres` user (or `nobody`), owning its
//! temporary directory.

use crate::peer::free_port;
use crate::peer::log_tail;
use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long [`PgServer::start`] waits for the server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at starting when the port was taken between picking and binding it.
const START_ATTEMPTS: usize = 3;

/// A running PostgreSQL server owned by one test. Dropping it stops the server and deletes its data.
pub struct PgServer {
    port: u16,
    bin: PathBuf,
    log_path: PathBuf,
    child: Child,
    // Dropped after `Drop::drop` has stopped the child.
    _temp: TempDir,
}

impl fmt::Debug for PgServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgServer")
            .field("url", &self.url())
            .field("bin", &self.bin)
            .field("log_path", &self.log_path)
            .finish()
    }
}

impl PgServer {
    /// Creates a cluster (`initdb -A trust -U postgres`, once per machine, then copied) in a fresh
    /// temporary directory (under `/dev/shm` where it exists), starts `postgres` on a free port with `fsync=off` and
    /// `max_connections=200`, and waits until it accepts connections.
    ///
    /// # Panics
    /// When the binaries are missing (run `scripts/install-peers`), `initdb` fails, or the server
    /// exits or does not get ready within 60 s; the message quotes the end of its log.
    pub fn start() -> PgServer {
        let bin = pg_bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL: initdb not found in PATH or /usr/lib/postgresql/*/bin; run \
                 scripts/install-peers (it installs Debian's postgresql package)"
            )
        });
        let temp = new_temp_dir();
        let run_as = run_as_user();
        if let Some((uid, gid)) = run_as {
            chown(temp.path(), uid, gid);
        }
        let data = temp.path().join("data");
        copy_cluster(&cluster_template(&bin, run_as), &data);

        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let log_path = temp.path().join(format!("postgres-{attempt}.log"));
            let log = File::create(&log_path).expect("create postgres log file");
            let mut cmd = Command::new(bin.join("postgres"));
            cmd.arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(temp.path())
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
                .current_dir(temp.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log file handle"))
                .stderr(log);
            let mut child = spawn_tied_to_process(cmd, run_as).unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL: cannot run {}: {e}",
                    bin.join("postgres").display()
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
                        "PostgreSQL: postgres exited with {status} before accepting connections on \
                         port {port}; its log ends:\n{tail}"
                    );
                }
                if is_ready(&data, port) {
                    return PgServer {
                        port,
                        bin,
                        log_path,
                        child,
                        _temp: temp,
                    };
                }
                if Instant::now() >= deadline {
                    stop(&mut child);
                    panic!(
                        "PostgreSQL: postgres did not accept connections on 127.0.0.1:{port} within \
                         {START_TIMEOUT:?}; its log ends:\n{}",
                        log_tail(&log_path)
                    );
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        unreachable!("the last start attempt panics or returns")
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` (trust authentication, no password).
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `name` on this server.
    pub fn url_for(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log, for debugging a failing test.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Creates database `name` (letters, digits and `_`) and returns its URL.
    ///
    /// # Panics
    /// When the name is invalid or `psql` fails (e.g. the database exists).
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "PostgreSQL: database name {name:?} must be letters, digits and _"
        );
        self.psql(&format!("CREATE DATABASE \"{name}\""));
        self.url_for(name)
    }

    /// Runs one SQL command with `psql` against database `postgres` and returns its output
    /// (unaligned, tuples only).
    ///
    /// # Panics
    /// When `psql` is missing or the command fails.
    pub fn psql(&self, sql: &str) -> String {
        let psql = [self.bin.join("psql"), PathBuf::from("psql")]
            .into_iter()
            .find(|p| p.is_file() || p.as_os_str() == "psql")
            .unwrap_or_else(|| PathBuf::from("psql"));
        let out = Command::new(&psql)
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("PostgreSQL: cannot run {}: {e}", psql.display()));
        if !out.status.success() {
            panic!(
                "PostgreSQL: psql {sql:?} failed with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A cluster made by `initdb` once per machine (PostgreSQL version and user), reused by every
/// server: copying it takes a fraction of initdb's time. Made in a scratch directory and renamed into
/// place, so concurrent test processes never see half of one.
fn cluster_template(bin: &Path, run_as: Option<(u32, u32)>) -> PathBuf {
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pg".into());
    // SAFETY: geteuid cannot fail.
    let uid = run_as.map_or_else(|| unsafe { libc::geteuid() }, |(uid, _)| uid);
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let template = base.join(format!("dth-testkit-pg-template-{version}-{uid}"));
    if template.join("PG_VERSION").is_file() {
        return template;
    }
    let scratch = tempfile::Builder::new()
        .prefix("dth-pg-initdb-")
        .tempdir_in(&base)
        .expect("create temporary directory");
    if let Some((uid, gid)) = run_as {
        chown(scratch.path(), uid, gid);
    }
    let data = scratch.path().join("data");
    let initdb_log = scratch.path().join("initdb.log");
    let log = File::create(&initdb_log).expect("create initdb log file");
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.args([
        "-A",
        "trust",
        "-U",
        "postgres",
        "-N",
        "-E",
        "UTF8",
        "--locale=C",
        "-D",
    ])
    .arg(&data)
    .current_dir(scratch.path())
    .stdin(Stdio::null())
    .stdout(log.try_clone().expect("clone log file handle"))
    .stderr(log);
    let status = spawn_tied_to_process(cmd, run_as)
        .and_then(|mut c| c.wait())
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL: cannot run {}: {e}",
                bin.join("initdb").display()
            )
        });
    if !status.success() {
        panic!(
            "PostgreSQL: initdb exited with {status}; its log ends:\n{}",
            log_tail(&initdb_log)
        );
    }
    // Another process may have won the race: then its template is used and ours dropped.
    if std::fs::rename(&data, &template).is_err() && !template.join("PG_VERSION").is_file() {
        panic!(
            "PostgreSQL: cannot move the initdb cluster to {}",
            template.display()
        );
    }
    template
}

/// Copies a cluster directory, keeping owners and modes (`cp -a`).
fn copy_cluster(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap_or_else(|e| panic!("PostgreSQL: cannot run cp: {e}"));
    assert!(
        status.success(),
        "PostgreSQL: cp -a {} {} failed with {status}",
        from.display(),
        to.display()
    );
}

/// Immediate shutdown (SIGQUIT: the postmaster stops its children and removes its shared memory),
/// then SIGKILL if it takes more than 5 s.
fn stop(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: plain kill(2) of our own child.
        unsafe {
            libc::kill(pid, libc::SIGQUIT);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The postmaster writes `ready` into line 8 of `postmaster.pid` once it accepts connections.
fn is_ready(data: &Path, port: u16) -> bool {
    let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
    pid_file.lines().nth(7).map(str::trim) == Some("ready")
        && TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The directory of `initdb`, `postgres` and `psql`.
fn pg_bin_dir() -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("initdb"))
            .find(|p| p.is_file())
    });
    if let Some(initdb) = in_path {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent()
            && dir.join("postgres").is_file()
        {
            return Some(dir.to_path_buf());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// When running as root: the uid and gid of `postgres` (Debian's package creates it), else
/// `nobody`, since PostgreSQL refuses to run as root.
fn run_as_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    static LOOKUP: Mutex<()> = Mutex::new(());
    let _guard = LOOKUP.lock().unwrap_or_else(|e| e.into_inner());
    for name in ["postgres", "nobody"] {
        let c_name = CString::new(name).expect("user name without NUL");
        // SAFETY: getpwnam returns a pointer to static storage or NULL; read at once under a lock.
        let pw = unsafe { libc::getpwnam(c_name.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: non-null result of getpwnam.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            if uid != 0 {
                return Some((uid, gid));
            }
        }
    }
    panic!(
        "PostgreSQL: running as root and neither a postgres nor a nobody user exists to run it as"
    )
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("PostgreSQL: cannot chown {}: {e}", path.display()));
}

fn new_temp_dir() -> TempDir {
    let shm = Path::new("/dev/shm");
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("dth-pg-");
        b
    };
    if shm.is_dir()
        && let Ok(dir) = builder.tempdir_in(shm)
    {
        return dir;
    }
    builder.tempdir().expect("create temporary directory")
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` (as `run_as` when given) so that it is killed (SIGKILL) when this test process dies.
///
/// Linux delivers `PR_SET_PDEATHSIG` when the *thread* that forked the child exits, so children are
/// forked from one helper thread that lives as long as the process. The death signal is set after
/// the switch of user (std's `uid`/`gid` run before `pre_exec`), which would otherwise clear it.
fn spawn_tied_to_process(mut cmd: Command, run_as: Option<(u32, u32)>) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("dth-testkit-pg-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the PostgreSQL spawner thread");
        Mutex::new(tx)
    });

    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
        cmd.env("HOME", "/tmp").env_remove("PGDATA");
    }
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
        .map_err(|_| io::Error::other("PostgreSQL spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("PostgreSQL spawner thread is gone"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_creates_databases() {
        let pg = PgServer::start();
        assert_eq!(pg.psql("SELECT 40 + 2").trim(), "42");
        let url = pg.create_database("dth_testkit_db");
        assert!(url.ends_with("/dth_testkit_db"), "{url}");
        let names = pg.psql("SELECT datname FROM pg_database ORDER BY datname");
        assert!(names.lines().any(|l| l == "dth_testkit_db"), "{names}");
        let log = pg.log_path().to_path_buf();
        drop(pg);
        assert!(!log.exists(), "the data directory is removed on drop");
    }
}
