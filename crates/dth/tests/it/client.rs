//! `dth login`, `dth task`, `dth secret`, `dth user`, `dth token` and `dth logout` against a real
//! `dth serve` that copies between two s3s-fs peers: the first sign-in with the forced password
//! change, the stored login (mode 0600), a task that copies objects (checked byte for byte at the
//! destination), users and tokens, `--json` output, the one-line errors (unreachable, 401, 403,
//! 404, 409), and that the token appears in no output except `dth token create`'s.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dth_testkit::{PeerKind, S3Peer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::common;

const NEW_PASSWORD: &str = "Kestrel-Harbour-77!";
const ENV_TOKEN: &str = "dth-client-test-env-token-0123";

/// One `dth` invocation as the test saw it.
struct Out {
    args: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {}", self.args, self.stdout))
    }

    #[track_caller]
    fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "{} failed:\n{}\n{}",
            self.args, self.stdout, self.stderr
        );
        self
    }

    /// Fails with exactly one `dth: …` line on stderr, which must contain `want`.
    #[track_caller]
    fn fails_with(&self, want: &str) {
        assert_ne!(self.code, 0, "{} should fail: {}", self.args, self.stdout);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: one error line: {}",
            self.args,
            self.stderr
        );
        assert!(
            lines[0].starts_with("dth: ") && lines[0].contains(want),
            "{}: {:?} does not contain {want:?}",
            self.args,
            lines[0]
        );
    }
}

/// Runs the CLI with a private home and config directory, recording every output.
struct Cli {
    home: PathBuf,
    transcript: Vec<Out>,
}

impl Cli {
    async fn run(&mut self, args: &[&str], stdin: &str, envs: &[(&str, &str)]) -> &Out {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dth"));
        cmd.args(args)
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env_remove("DTH_SERVER")
            .env_remove("DTH_TOKEN")
            .env_remove("DTH_API_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("run dth");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("dth {args:?} did not end"))
            .unwrap();
        self.transcript.push(Out {
            args: format!("dth {}", args.join(" ")),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
        self.transcript.last().unwrap()
    }

    fn config_path(&self) -> PathBuf {
        self.home.join(".config/dth/client.json")
    }
}

/// Starts `dth serve` with workers; returns it with its URL and the first admin's temporary password.
async fn serve(data: &Path) -> (tokio::process::Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--retry-delay", "1"])
        .arg("--data-dir")
        .arg(data)
        .env("DTH_API_TOKEN", ENV_TOKEN)
        .env("DTH_MASTER_KEY", crate::hub::new_key())
        .env("DTH_LOG", "warn")
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start dth serve");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut url = None;
    while url.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(60), stderr.next_line())
            .await
            .expect("dth serve starts within 60 s")
            .unwrap()
            .expect("dth serve exited");
        if let Some(rest) = line.split("hub on ").nth(1) {
            url = Some(rest.split_whitespace().next().unwrap().to_string());
        }
    }
    let first = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .expect("the temporary password")
        .unwrap()
        .unwrap();
    let temporary = first
        .strip_prefix("dth: temporary password (shown once): ")
        .unwrap_or_else(|| panic!("unexpected line: {first}"))
        .to_string();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            eprintln!("[dth serve] {line}");
        }
    });
    (child, url.unwrap(), temporary)
}

/// `dth task plan`, `report`, `watch`, `edit` and `clone` against the hub.
async fn plan_report_watch_edit_clone(
    cli: &mut Cli,
    id: &str,
    run_id: i64,
    spec_file: &str,
    objects: &[(String, Vec<u8>)],
) {
    let plan = cli
        .run(&["task", "plan", spec_file, "--json"], "", &[])
        .await
        .ok()
        .json();
    assert_eq!(plan["kind"], "s3", "{plan}");
    let human = cli.run(&["task", "plan", spec_file], "", &[]).await.ok();
    assert!(human.stdout.contains("to copy"), "{}", human.stdout);

    let file = cli.home.join("report.jsonl");
    let run = run_id.to_string();
    cli.run(
        &[
            "task",
            "report",
            &run,
            "--format",
            "jsonl",
            "-o",
            file.to_str().unwrap(),
        ],
        "",
        &[],
    )
    .await
    .ok();
    let text = std::fs::read_to_string(&file).unwrap();
    for (k, _) in objects {
        assert!(text.contains(k.as_str()), "{k} not in the report: {text}");
    }
    let csv = cli.run(&["task", "report", &run], "", &[]).await.ok();
    assert!(csv.stdout.contains(objects[0].0.as_str()), "{}", csv.stdout);

    cli.run(&["task", "start", id], "", &[]).await.ok();
    let watch = cli.run(&["task", "watch", id], "", &[]).await.ok();
    assert!(watch.stdout.contains("ended DONE"), "{}", watch.stdout);

    let copy = cli
        .run(
            &["task", "clone", id, "--name", "cli-copy-2", "--json"],
            "",
            &[],
        )
        .await
        .ok()
        .json();
    let copy_id = copy["id"].as_str().unwrap().to_string();
    assert_ne!(copy_id, id);
    let patch = cli.home.join("patch.json");
    std::fs::write(&patch, json!({"name": "cli-copy-3"}).to_string()).unwrap();
    cli.run(
        &["task", "edit", &copy_id, patch.to_str().unwrap()],
        "",
        &[],
    )
    .await
    .ok();
    cli.run(&["task", "show", "cli-copy-3"], "", &[]).await.ok();
    cli.run(&["task", "delete", &copy_id, "--yes"], "", &[])
        .await
        .ok();
}

#[tokio::test]
async fn the_cli_drives_a_hub_and_never_prints_its_token() {
    let t0 = Instant::now();
    let src = S3Peer::start(PeerKind::S3sFs).await;
    let dst = S3Peer::start(PeerKind::S3sFs).await;
    src.create_bucket("src").await;
    dst.create_bucket("dst").await;
    let objects: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| {
            (
                format!("data/o{i}.bin"),
                common::bytes(i, 1000 + 777 * i as usize),
            )
        })
        .collect();
    for (k, b) in &objects {
        common::put(&src.client(), "src", k, b.clone()).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_hub, url, temporary) = serve(&dir.path().join("data")).await;
    let mut cli = Cli {
        home: dir.path().join("home"),
        transcript: Vec::new(),
    };
    std::fs::create_dir_all(&cli.home).unwrap();

    // Before any login: no hub known.
    cli.run(&["task", "list"], "", &[])
        .await
        .fails_with("run dth login --server URL");

    // The first sign-in sets a new password (second line of stdin), then stores a token.
    let login = cli
        .run(
            &[
                "login",
                "--server",
                &url,
                "--email",
                "admin@localhost",
                "--password-stdin",
            ],
            &format!("{temporary}\n{NEW_PASSWORD}\n"),
            &[],
        )
        .await;
    login.ok();
    assert!(
        login.stderr.contains("temporary password"),
        "{}",
        login.stderr
    );
    assert!(login.stderr.contains("signed in to"), "{}", login.stderr);
    let config_path = cli.config_path();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", config_path.display());
    }
    let stored: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    assert_eq!(stored["server"], url.trim_end_matches('/'));
    let first_token = stored["token"].as_str().unwrap().to_string();
    assert!(first_token.len() >= 20);
    // A second login (no change needed now) replaces the token and revokes the first one.
    cli.run(
        &[
            "login",
            "--server",
            &url,
            "--email",
            "admin@localhost",
            "--password-stdin",
        ],
        &format!("{NEW_PASSWORD}\n"),
        &[],
    )
    .await
    .ok();
    let stored: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    let token = stored["token"].as_str().unwrap().to_string();
    assert_ne!(token, first_token);
    let tokens = cli
        .run(&["token", "list", "--json"], "", &[])
        .await
        .ok()
        .json();
    let cli_tokens: Vec<&Value> = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"].as_str().unwrap().starts_with("dth-cli@"))
        .collect();
    assert_eq!(
        cli_tokens.len(),
        1,
        "the first login's token is revoked: {tokens}"
    );
    cli.run(&["task", "list"], "", &[("DTH_TOKEN", &first_token)])
        .await
        .fails_with("not signed in or token expired/revoked: run dth login");

    // Secrets: an access key with the secret key on stdin, and one as JSON on stdin.
    cli.run(
        &[
            "secret",
            "put",
            "src-key",
            "--access-key-id",
            src.access_key(),
            "--secret-access-key-stdin",
        ],
        &format!("{}\n", src.secret_key()),
        &[],
    )
    .await
    .ok();
    cli.run(
        &["secret", "put", "dst-key", "--file", "-"],
        &json!({"access_key_id": dst.access_key(), "secret_access_key": dst.secret_key()})
            .to_string(),
        &[],
    )
    .await
    .ok();
    let secrets = cli
        .run(&["secret", "list", "--json"], "", &[])
        .await
        .ok()
        .json();
    let names: Vec<&str> = secrets
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{secrets}");
    assert!(names.contains(&"src-key") && names.contains(&"dst-key"));
    let table = cli.run(&["secret", "list"], "", &[]).await.ok();
    assert!(table.stdout.starts_with("NAME"), "{}", table.stdout);

    // A task between the two peers, created from a file, followed until its run is done.
    let side = |peer: &S3Peer, bucket: &str, secret: &str| {
        json!({"provider": "other", "region": peer.region(), "endpoint_url": peer.endpoint_url(),
               "bucket": bucket, "prefix": "", "credentials": {"kind": "secret", "name": secret}})
    };
    let spec = json!({
        "name": "cli-copy", "kind": "s3", "schedule": "once",
        "source": side(&src, "src", "src-key"), "destination": side(&dst, "dst", "dst-key"),
    });
    let spec_file = dir.path().join("task.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let spec_arg = spec_file.to_str().unwrap();
    let created = cli
        .run(&["task", "create", spec_arg, "--json"], "", &[])
        .await
        .ok()
        .json();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["name"], "cli-copy");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = cli
            .run(&["task", "show", &id, "--json"], "", &[])
            .await
            .ok()
            .json();
        if shown["latest_run"]["status"] == "DONE" {
            assert_eq!(shown["latest_run"]["counters"]["copied"], 5, "{shown}");
            break;
        }
        assert!(Instant::now() < deadline, "the run did not end: {shown}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (k, b) in &objects {
        assert_eq!(&common::get(&dst.client(), "dst", k).await, b, "{k}");
    }
    let list = cli.run(&["task", "list"], "", &[]).await.ok();
    assert!(list.stdout.starts_with("ID"), "{}", list.stdout);
    assert!(list.stdout.contains(&id) && list.stdout.contains("cli-copy"));
    let list = cli
        .run(&["task", "list", "--json"], "", &[])
        .await
        .ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    // By name and by id prefix.
    let show = cli.run(&["task", "show", "cli-copy"], "", &[]).await.ok();
    assert!(show.stdout.contains("DONE"), "{}", show.stdout);
    assert!(show.stdout.contains("secret src-key"), "{}", show.stdout);
    assert!(show.stdout.contains("5 ("), "copied 5: {}", show.stdout);
    let stop = cli.run(&["task", "stop", &id[..8]], "", &[]).await.ok();
    assert!(stop.stdout.starts_with("stopped task"), "{}", stop.stdout);
    let start = cli.run(&["task", "start", &id], "", &[]).await.ok();
    assert!(start.stdout.starts_with("started task"), "{}", start.stdout);
    let runs = cli
        .run(&["task", "runs", &id, "--json"], "", &[])
        .await
        .ok()
        .json();
    assert!(!runs.as_array().unwrap().is_empty());
    let run_id = runs[runs.as_array().unwrap().len() - 1]["id"]
        .as_i64()
        .unwrap();
    let items = cli
        .run(&["task", "items", &run_id.to_string(), "--json"], "", &[])
        .await
        .ok()
        .json();
    assert_eq!(items["items"].as_array().unwrap().len(), 5, "{items}");
    let retried = cli
        .run(&["task", "retry", &run_id.to_string()], "", &[])
        .await
        .ok();
    assert!(
        retried.stdout.contains("queued 0 dead item(s)"),
        "{}",
        retried.stdout
    );
    plan_report_watch_edit_clone(&mut cli, &id, run_id, spec_arg, &objects).await;

    // Errors a person meets.
    cli.run(
        &["task", "show", "00000000-0000-0000-0000-000000000000"],
        "",
        &[],
    )
    .await
    .fails_with("not found");
    cli.run(&["secret", "delete", "src-key"], "", &[])
        .await
        .fails_with("dth: conflict: ");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, json!({"name": "x", "kind": "ftp"}).to_string()).unwrap();
    cli.run(&["task", "create", bad.to_str().unwrap()], "", &[])
        .await
        .fails_with("the hub refused the request: ");
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{free}");
    cli.run(&["task", "list", "--server", &nowhere], "", &[])
        .await
        .fails_with(&format!(
            "cannot reach the hub at {nowhere}: connection refused"
        ));

    // Users: invite, list, change role, disable.
    let added = cli
        .run(
            &["user", "add", "viewer@example.com", "--role", "viewer"],
            "",
            &[],
        )
        .await
        .ok();
    assert!(
        added.stdout.contains("temporary password (shown once): "),
        "{}",
        added.stdout
    );
    let users = cli.run(&["user", "list"], "", &[]).await.ok();
    assert!(
        users.stdout.contains("viewer@example.com") && users.stdout.contains("temporary password")
    );
    let role = cli
        .run(&["user", "role", "viewer@example.com", "operator"], "", &[])
        .await
        .ok();
    assert!(role.stdout.contains("role operator"), "{}", role.stdout);
    cli.run(&["user", "disable", "viewer@example.com"], "", &[])
        .await
        .ok();
    let users = cli
        .run(&["user", "list", "--json"], "", &[])
        .await
        .ok()
        .json();
    let viewer = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "viewer@example.com")
        .unwrap();
    assert_eq!(viewer["role"], "operator");
    assert_eq!(viewer["state"], "disabled");

    // Tokens: a viewer token may read but not create tasks; revoked, it is refused.
    let created = cli
        .run(
            &[
                "token",
                "create",
                "ro",
                "--role",
                "viewer",
                "--expires-days",
                "1",
            ],
            "",
            &[],
        )
        .await
        .ok();
    let ro = created.stdout.trim().to_string();
    assert_eq!(
        created.stdout.lines().count(),
        1,
        "the token alone on stdout"
    );
    assert!(created.stderr.contains("shown this once"));
    let listed = cli.run(&["token", "list"], "", &[]).await.ok();
    assert!(listed.stdout.contains("ro") && listed.stdout.contains("viewer"));
    let as_viewer = [("DTH_TOKEN", ro.as_str())];
    cli.run(&["task", "list"], "", &as_viewer).await.ok();
    cli.run(&["task", "create", spec_arg], "", &as_viewer)
        .await
        .fails_with("permission denied: this needs the operator role; you are viewer");
    cli.run(&["token", "revoke", "ro"], "", &[]).await.ok();
    cli.run(&["task", "list"], "", &as_viewer)
        .await
        .fails_with("not signed in or token expired/revoked: run dth login");

    // Delete the task (no terminal: no question), then its secrets.
    let deleted = cli
        .run(&["task", "delete", &id, "--yes"], "", &[])
        .await
        .ok();
    assert!(deleted.stdout.contains("deleted task"));
    let list = cli
        .run(&["task", "list", "--json"], "", &[])
        .await
        .ok()
        .json();
    assert_eq!(list, json!([]));
    cli.run(&["secret", "delete", "src-key"], "", &[])
        .await
        .ok();
    cli.run(&["secret", "delete", "dst-key"], "", &[])
        .await
        .ok();
    cli.run(&["secret", "delete", "dst-key"], "", &[])
        .await
        .fails_with("not found");

    // Logout revokes the stored token and removes the file.
    cli.run(&["logout"], "", &[]).await.ok();
    assert!(!config_path.exists());
    cli.run(
        &["task", "list", "--server", &url],
        "",
        &[("DTH_TOKEN", &token)],
    )
    .await
    .fails_with("not signed in or token expired/revoked");

    // The stored tokens appear in no output; the viewer token only in `dth token create`'s; no
    // password or secret key anywhere.
    for out in &cli.transcript {
        let text = format!("{}\n{}", out.stdout, out.stderr);
        for (what, secret) in [
            ("the login's token", token.as_str()),
            ("the first login's token", first_token.as_str()),
            ("the new password", NEW_PASSWORD),
            ("the temporary password", temporary.as_str()),
            ("a secret key", src.secret_key()),
        ] {
            assert!(
                !text.contains(secret),
                "{what} in the output of {}",
                out.args
            );
        }
        if out.args != "dth token create ro --role viewer --expires-days 1" {
            assert!(
                !text.contains(&ro),
                "the viewer token in the output of {}",
                out.args
            );
        }
    }
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t0.elapsed()
    );
}
