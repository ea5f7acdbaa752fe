//! `dth serve` as a newcomer meets it: the first start prints the admin's temporary password once,
//! the admin signs in, sets a password, invites a user, creates a token and stores a secret; then
//! every response and every line the process printed are searched for the passwords, tokens and
//! secret values of the run. Each may appear only where it is shown once by design.

use std::process::Stdio;
use std::time::Duration;

use reqwest::{Client, Method, header};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

const NEW_PASSWORD: &str = "Zebra-Crossing-42!";
const SECRET_KEY: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
const REGISTRY_PASSWORD: &str = "registry-Pa55word-xyz";

/// Every answer of the run, as text.
#[derive(Default)]
struct Transcript {
    answers: Vec<(String, String)>,
}

impl Transcript {
    async fn call(
        &mut self,
        http: &Client,
        base: &str,
        (cookie, csrf): (&str, &str),
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, header::HeaderMap, Value) {
        let mut rb = http
            .request(method.clone(), format!("{base}{path}"))
            .header("origin", base);
        if !cookie.is_empty() {
            rb = rb
                .header(header::COOKIE, format!("dth_session={cookie}"))
                .header("x-csrf-token", csrf);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        self.answers
            .push((format!("{method} {path}"), text.clone()));
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }
}

fn cookie_of(headers: &header::HeaderMap) -> String {
    let set = headers[header::SET_COOKIE].to_str().unwrap();
    set.strip_prefix("dth_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_newcomer_signs_in_and_no_secret_leaks_into_answers_or_logs() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dth"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-workers",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("DTH_LOG", "debug,sqlx=info,hyper=info,h2=info")
        .env_remove("DTH_API_TOKEN")
        .env_remove("DTH_MASTER_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start dth serve");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let first = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
        .await
        .expect("the temporary password within 60 s")
        .unwrap()
        .unwrap();
    let temporary = first
        .strip_prefix("dth: temporary password (shown once): ")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_string();
    // The address comes on stderr; read until it shows.
    let mut err_log = String::new();
    let base = loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(60), stderr.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "dth serve exited: {err_log}");
        err_log.push_str(&line);
        if let Some(rest) = line.split("hub on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };

    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut t = Transcript::default();
    let none = ("", "");
    let (status, headers, body) = t
        .call(
            &http,
            &base,
            none,
            Method::POST,
            "/api/v1/session",
            Some(json!({"email": "admin@localhost", "password": temporary})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["must_change_password"], true);
    let (cookie, csrf) = (
        cookie_of(&headers),
        body["csrf_token"].as_str().unwrap().to_string(),
    );
    let (status, headers, body) = t
        .call(
            &http,
            &base,
            (&cookie, &csrf),
            Method::PUT,
            "/api/v1/me/password",
            Some(json!({"current_password": temporary, "new_password": NEW_PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (cookie, csrf) = (
        cookie_of(&headers),
        body["csrf_token"].as_str().unwrap().to_string(),
    );
    let me = (cookie.as_str(), csrf.as_str());
    let (status, _, invited) = t
        .call(
            &http,
            &base,
            me,
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "ops@example.com", "name": "Ops", "role": "operator"})),
        )
        .await;
    assert_eq!(status, 201, "{invited}");
    let invite_password = invited["temporary_password"].as_str().unwrap().to_string();
    let (status, _, created) = t
        .call(
            &http,
            &base,
            me,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(status, 201);
    let token = created["token"].as_str().unwrap().to_string();
    for (name, value) in [
        (
            "aws",
            json!({"access_key_id": "AKIAEXAMPLE", "secret_access_key": SECRET_KEY}),
        ),
        (
            "harbor",
            json!({"username": "robot", "password": REGISTRY_PASSWORD}),
        ),
    ] {
        let (status, _, body) = t
            .call(
                &http,
                &base,
                me,
                Method::PUT,
                &format!("/api/v1/secrets/{name}"),
                Some(value),
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }
    // A wrong password, a bad secret body naming the field, and reads of everything.
    let (status, _, _) = t
        .call(
            &http,
            &base,
            none,
            Method::POST,
            "/api/v1/session",
            Some(json!({"email": "admin@localhost", "password": format!("{NEW_PASSWORD}x")})),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _, body) = t
        .call(
            &http,
            &base,
            me,
            Method::PUT,
            "/api/v1/secrets/bad",
            Some(json!({"access_key_id": "A", "secret_access_key": "", "extra": SECRET_KEY})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    for path in [
        "/api/v1/secrets",
        "/api/v1/users",
        "/api/v1/tokens",
        "/api/v1/me",
        "/api/v1/session",
        "/api/v1/audit",
        "/api/v1/openapi.json",
    ] {
        let (status, _, _) = t.call(&http, &base, me, Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}");
    }
    let bearer = http
        .get(format!("{base}/api/v1/tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);

    child.start_kill().unwrap();
    let _ = child.wait().await;
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).await.unwrap();
    err_log.push_str(&rest);
    let mut out_log = first.clone();
    while let Ok(Some(line)) = stdout.next_line().await {
        out_log.push_str(&line);
    }
    assert!(err_log.contains("sign in at"), "{err_log}");
    assert!(
        err_log.lines().count() > 10,
        "the debug log is too short to mean anything"
    );

    // Where each secret may appear: nowhere, or only in the one answer that shows it.
    for (what, secret, shown_in) in [
        ("the new password", NEW_PASSWORD, None),
        ("a secret access key", SECRET_KEY, None),
        ("a registry password", REGISTRY_PASSWORD, None),
        ("the API token", token.as_str(), Some("POST /api/v1/tokens")),
        (
            "the invitation's password",
            invite_password.as_str(),
            Some("POST /api/v1/users"),
        ),
        ("the session cookie", cookie.as_str(), None),
    ] {
        assert!(!err_log.contains(secret), "{what} in the log");
        let places: Vec<&str> = t
            .answers
            .iter()
            .filter(|(_, text)| text.contains(secret))
            .map(|(call, _)| call.as_str())
            .collect();
        assert_eq!(
            places,
            shown_in.into_iter().collect::<Vec<_>>(),
            "{what} in answers"
        );
        assert!(!out_log.contains(secret), "{what} on stdout");
    }
    // The first password is printed once, on stdout, and nowhere else.
    assert_eq!(out_log.matches(temporary.as_str()).count(), 1);
    assert!(
        !err_log.contains(&temporary),
        "the temporary password in the log"
    );
    assert!(t.answers.iter().all(|(_, a)| !a.contains(&temporary)));
}
