//! The API against its own OpenAPI document: schemathesis (scripts/install-peers puts it in
//! `.tools/schemathesis`) fuzzes every operation of `/api/v1/openapi.json` with the admin token, in
//! all its phases and with all its checks, on a real `dth serve` over SQLite: no 5xx, no status
//! the document does not list, no response outside its schema, no schema-valid request refused.

use std::time::Instant;

use crate::hub::{Proc, TOKEN, new_key};

#[tokio::test(flavor = "multi_thread")]
async fn api_conforms_to_its_openapi_document() {
    let schemathesis = dth_testkit::tools_dir().join("schemathesis/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing; run scripts/install-peers",
        schemathesis.display()
    );
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let db = format!("sqlite://{data_dir}/dth.db");
    let hub = Proc::spawn(
        &[
            "serve",
            "--store",
            &db,
            "--data-dir",
            data_dir,
            "--listen",
            "127.0.0.1:0",
            "--no-workers",
        ],
        &new_key(),
    )
    .await;
    let url = hub.url.clone().unwrap();
    let started = Instant::now();
    let out = tokio::process::Command::new(&schemathesis)
        .current_dir(data.path())
        .args([
            "--no-color",
            "--config-file",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/schemathesis.toml"),
            "run",
            &format!("{url}/api/v1/openapi.json"),
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            "15",
            "--max-time",
            "150",
            "--workers",
            "2",
            "--request-timeout",
            "10",
            "--generation-deterministic",
            "--seed",
            "1",
            // Signing out needs a session cookie (the token has none) and would end the
            // session schemathesis signs in with if it had one.
            "--exclude-operation-id",
            "session_sign_out",
            // An event stream that stays open while a run is active: nothing to validate
            // against a JSON schema, and each request would wait for the timeout.
            "--exclude-operation-id",
            "tasks_progress",
        ])
        .env("NO_COLOR", "1")
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "schemathesis took {:.0?}:\n{stdout}\n{stderr}",
        started.elapsed()
    );
    assert!(out.status.success(), "schemathesis found failures (above)");
    drop(hub);
}
