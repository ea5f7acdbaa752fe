//! Smoke test of every peer and of the fault proxy in front of it, and of the OpenID Connect
//! provider (a whole authorization code flow with PKCE).
//!
//! Needs the peers from `scripts/install-peers` (see `dth_testkit::tools_dir`).

use aws_sdk_s3::Client;
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use dth_testkit::{FaultProxy, Faults, PeerKind, S3Peer};

const BUCKET: &str = "smoke";
/// Spaces, plus and percent signs must reach the peer exactly as the client encoded them.
const KEY: &str = "dir/a b+c%d.txt";

fn without_retries(client: Client) -> Client {
    Client::from_conf(
        client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build(),
    )
}

async fn get_body(client: &Client, key: &str) -> Result<Vec<u8>, String> {
    let out = client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("GetObject: {}", DisplayErrorContext(&e)))?;
    let body = out
        .body
        .collect()
        .await
        .map_err(|e| format!("GetObject body: {}", DisplayErrorContext(&e)))?;
    Ok(body.into_bytes().to_vec())
}

async fn put(client: &Client, key: &str, body: &[u8]) {
    client
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutObject {key}: {}", DisplayErrorContext(&e)));
}

async fn smoke(kind: PeerKind) {
    let peer = S3Peer::start(kind).await;
    assert_eq!(peer.kind(), kind);
    assert!(peer.endpoint_url().starts_with("http://127.0.0.1:"));
    assert_eq!(peer.region(), "us-east-1");
    assert_eq!(peer.data_dir().is_some(), kind != PeerKind::Moto);

    // Directly.
    peer.create_bucket(BUCKET).await;
    let direct = peer.client();
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    put(&direct, KEY, &body).await;
    assert_eq!(
        get_body(&direct, KEY).await.unwrap(),
        body,
        "{kind}: direct GET"
    );
    if let Some(dir) = peer.data_dir() {
        let file = dir.join(BUCKET).join(KEY);
        assert_eq!(
            std::fs::read(&file).ok(),
            Some(body.clone()),
            "{kind}: {file:?}"
        );
    }
    if kind == PeerKind::S3sFs {
        // Open multipart uploads show as `.upload-*.json` files in the data root.
        let dir = peer.data_dir().unwrap();
        let open_uploads = || {
            std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(".upload-") && n.ends_with(".json"))
                .count()
        };
        let upload = direct
            .create_multipart_upload()
            .bucket(BUCKET)
            .key("mpu")
            .send()
            .await
            .unwrap();
        assert_eq!(open_uploads(), 1);
        direct
            .abort_multipart_upload()
            .bucket(BUCKET)
            .key("mpu")
            .upload_id(upload.upload_id().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(open_uploads(), 0);
    }
    if kind != PeerKind::Moto {
        // s3s-fs and rclone check signatures (moto accepts anything).
        let wrong = Credentials::new(peer.access_key(), "wrong-secret", None, None, "test");
        let config = direct
            .config()
            .to_builder()
            .credentials_provider(wrong)
            .build();
        let err = Client::from_conf(config)
            .list_objects_v2()
            .bucket(BUCKET)
            .send()
            .await
            .expect_err("wrong secret must be refused");
        let code = err.as_service_error().and_then(|e| e.meta().code());
        assert_eq!(code, Some("SignatureDoesNotMatch"), "{kind}");
    }

    // Through a proxy without faults: the Host header reaches the peer unchanged, so the
    // signature the client made for the proxy's address validates.
    let proxy = FaultProxy::start(&peer.endpoint_url(), Faults::default()).await;
    let proxied = without_retries(peer.client_for(&proxy.endpoint_url()));
    put(&proxied, "via-proxy", b"through the proxy").await;
    assert_eq!(
        get_body(&proxied, "via-proxy").await.unwrap(),
        b"through the proxy",
        "{kind}: GET via proxy"
    );
    assert_eq!(
        get_body(&proxied, KEY).await.unwrap(),
        body,
        "{kind}: GET via proxy"
    );
    let listing = proxied
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{kind}: list via proxy: {}", DisplayErrorContext(&e)));
    let mut keys: Vec<_> = listing.contents().iter().filter_map(|o| o.key()).collect();
    keys.sort();
    assert_eq!(keys, [KEY, "via-proxy"], "{kind}: listing via proxy");
    let got_head = proxied
        .head_object()
        .bucket(BUCKET)
        .key(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(got_head.content_length(), Some(body.len() as i64));
    let clean = proxy.stats();
    assert_eq!(clean.faults(), 0);
    assert!(clean.requests >= 4, "{kind}: {clean:?}");

    // Half the requests fail with 503 SlowDown.
    proxy.set_faults(Faults {
        fail_ratio: 0.5,
        seed: 42,
        ..Faults::default()
    });
    let (mut ok, mut slow_down) = (0u64, 0u64);
    for _ in 0..40 {
        match proxied.head_object().bucket(BUCKET).key(KEY).send().await {
            Ok(_) => ok += 1,
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 503 => slow_down += 1,
            Err(e) => panic!("{kind}: unexpected HEAD error {}", DisplayErrorContext(&e)),
        }
    }
    let after_failures = proxy.stats();
    assert!(ok > 5 && slow_down > 5, "{kind}: ok {ok}, 503 {slow_down}");
    assert_eq!(
        after_failures.failed, slow_down,
        "{kind}: {after_failures:?}"
    );
    assert_eq!(after_failures.requests, clean.requests + 40);
    // A GetObject 503 carries the S3 error code.
    let err = loop {
        match proxied.get_object().bucket(BUCKET).key(KEY).send().await {
            Ok(_) => continue,
            Err(e) => break e.into_service_error(),
        }
    };
    assert_eq!(err.meta().code(), Some("SlowDown"), "{kind}: {err:?}");

    // 1 MiB uploads through failures succeed with retries (the proxy reads a refused body first).
    proxy.set_faults(Faults {
        fail_ratio: 0.3,
        seed: 7,
        ..Faults::default()
    });
    let retrying = Client::from_conf(
        proxied
            .config()
            .to_builder()
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(10)
                    .with_initial_backoff(std::time::Duration::from_millis(5)),
            )
            .build(),
    );
    let big: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let failed_before = proxy.stats().failed;
    for i in 0..3 {
        put(&retrying, &format!("big-{i}"), &big).await;
    }
    assert!(
        proxy.stats().failed > failed_before,
        "{kind}: some PUTs refused"
    );
    proxy.set_faults(Faults::default());
    assert_eq!(
        get_body(&proxied, "big-2").await.unwrap(),
        big,
        "{kind}: big object"
    );

    // The first object GET body is corrupted, the next is intact.
    proxy.set_faults(Faults {
        corrupt_get_bodies: 1,
        ..Faults::default()
    });
    // Listings are not touched.
    proxied
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let corrupted = get_body(&proxied, KEY).await.unwrap();
    assert_eq!(corrupted.len(), body.len(), "{kind}: same length");
    assert_ne!(corrupted, body, "{kind}: body corrupted");
    let differing = corrupted.iter().zip(&body).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 1, "{kind}: one byte flipped");
    assert_eq!(
        get_body(&proxied, KEY).await.unwrap(),
        body,
        "{kind}: then intact"
    );

    // The first object GET body is truncated: the client sees an error, not short data.
    proxy.set_faults(Faults {
        truncate_get_bodies: 1,
        ..Faults::default()
    });
    let truncated = get_body(&proxied, KEY).await;
    let err = truncated.expect_err("truncated GET must fail");
    assert!(
        err.contains("GetObject body"),
        "{kind}: fails reading the body: {err}"
    );
    assert_eq!(
        get_body(&proxied, KEY).await.unwrap(),
        body,
        "{kind}: then intact"
    );

    let stats = proxy.stats();
    assert_eq!(
        (stats.corrupted, stats.truncated),
        (1, 1),
        "{kind}: {stats:?}"
    );
    assert_eq!(stats.faults(), stats.failed + 2);
}

#[tokio::test]
async fn s3s_fs() {
    smoke(PeerKind::S3sFs).await;
}

#[tokio::test]
async fn moto() {
    smoke(PeerKind::Moto).await;
}

#[tokio::test]
async fn rclone_serve_s3() {
    smoke(PeerKind::RcloneServe).await;
}

#[tokio::test]
async fn peers_stop_on_drop() {
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    let addr = format!("127.0.0.1:{}", peer.port());
    let data = peer.data_dir().unwrap().to_path_buf();
    assert!(std::net::TcpStream::connect(&addr).is_ok());
    drop(peer);
    assert!(std::net::TcpStream::connect(&addr).is_err(), "port closed");
    assert!(!data.exists(), "data removed");
}

mod oidc {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use dth_testkit::{OidcAccount, OidcClientConfig, OidcProvider};
    use rand::Rng;
    use reqwest::Url;
    use serde_json::Value;
    use sha2::{Digest, Sha256};

    const REDIRECT_URI: &str = "http://127.0.0.1:9/auth/oidc/callback";

    fn client() -> OidcClientConfig {
        OidcClientConfig {
            client_id: "dth-hub".into(),
            client_secret: "dth-hub-secret".into(),
            redirect_uri: REDIRECT_URI.into(),
        }
    }

    fn alice() -> OidcAccount {
        OidcAccount {
            login: "alice".into(),
            email: "alice@example.org".into(),
            email_verified: false,
            name: "Alice Liddell".into(),
            groups: vec!["dth-admins".into(), "ops".into()],
        }
    }

    fn random_token() -> String {
        let bytes: [u8; 32] = rand::thread_rng().r#gen();
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    async fn discovery(provider: &OidcProvider) -> Value {
        let response = http().get(provider.discovery_url()).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    struct Flow {
        state: String,
        nonce: String,
        verifier: String,
    }

    impl Flow {
        fn new() -> Flow {
            Flow {
                state: random_token(),
                nonce: random_token(),
                verifier: random_token(),
            }
        }

        /// The URL the hub would redirect the user to.
        fn authorize_url(&self, doc: &Value, client: &OidcClientConfig) -> String {
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()));
            let mut url = Url::parse(doc["authorization_endpoint"].as_str().unwrap()).unwrap();
            url.query_pairs_mut()
                .append_pair("response_type", "code")
                .append_pair("client_id", &client.client_id)
                .append_pair("redirect_uri", &client.redirect_uri)
                .append_pair("scope", "openid email profile groups")
                .append_pair("state", &self.state)
                .append_pair("nonce", &self.nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            url.into()
        }
    }

    /// Signs `login` in and returns the code from the redirect, checking `state` and `iss`.
    async fn code_for(provider: &OidcProvider, flow: &Flow, login: &str) -> String {
        let doc = discovery(provider).await;
        let location = provider
            .sign_in(&flow.authorize_url(&doc, &client()), login)
            .await;
        assert!(
            location.starts_with(&format!("{REDIRECT_URI}?")),
            "{location}"
        );
        let params: Vec<(String, String)> = Url::parse(&location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name} in {location}"))
        };
        assert_eq!(param("state"), flow.state);
        assert_eq!(param("iss"), provider.issuer());
        param("code")
    }

    /// POSTs the code to the token endpoint, the secret in the Authorization header (`basic`) or in
    /// the form (`client_secret_post`).
    async fn exchange(
        doc: &Value,
        code: &str,
        verifier: &str,
        basic: bool,
    ) -> (reqwest::StatusCode, Value) {
        let client = client();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ];
        let mut request = http().post(doc["token_endpoint"].as_str().unwrap());
        if basic {
            request = request.basic_auth(&client.client_id, Some(&client.client_secret));
        } else {
            form.push(("client_id", &client.client_id));
            form.push(("client_secret", &client.client_secret));
        }
        let response = request.form(&form).send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    fn id_token_claims(tokens: &Value) -> Value {
        let id_token = tokens["id_token"].as_str().expect("an id_token");
        let payload = id_token.split('.').nth(1).expect("a JWT");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn oidc_provider_code_flow_with_pkce() {
        let provider = OidcProvider::start(&[client()], &[alice()]).await;
        assert!(provider.issuer().starts_with("http://127.0.0.1:"));
        let doc = discovery(&provider).await;
        assert_eq!(doc["issuer"], provider.issuer());
        let methods = doc["code_challenge_methods_supported"].as_array().unwrap();
        assert!(methods.iter().any(|m| m == "S256"), "{doc}");
        for scope in ["openid", "email", "profile", "groups"] {
            assert!(
                doc["scopes_supported"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s == scope),
                "{scope}: {doc}"
            );
        }

        let flow = Flow::new();
        let code = code_for(&provider, &flow, "alice").await;

        // PKCE: a wrong verifier is refused. oidc-provider checks it before it consumes the
        // code, so the code still works afterwards.
        let wrong = Flow::new().verifier;
        let (status, error) = exchange(&doc, &code, &wrong, true).await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"], "invalid_grant", "{error}");

        let (status, tokens) = exchange(&doc, &code, &flow.verifier, true).await;
        assert_eq!(status, 200, "{tokens}");
        assert_eq!(tokens["token_type"], "Bearer");
        let claims = id_token_claims(&tokens);
        assert_eq!(claims["iss"], provider.issuer(), "{claims}");
        assert_eq!(claims["aud"], "dth-hub", "{claims}");
        assert_eq!(claims["sub"], "alice", "{claims}");
        assert_eq!(claims["nonce"], flow.nonce.as_str(), "{claims}");
        assert_eq!(claims["email"], "alice@example.org", "{claims}");
        assert_eq!(claims["email_verified"], false, "{claims}");
        assert_eq!(claims["name"], "Alice Liddell", "{claims}");
        assert_eq!(
            claims["groups"],
            serde_json::json!(["dth-admins", "ops"]),
            "{claims}"
        );

        // Codes are single-use, whichever way the client authenticates.
        let (status, error) = exchange(&doc, &code, &flow.verifier, false).await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"], "invalid_grant", "{error}");
    }

    #[tokio::test]
    async fn oidc_provider_signs_in_unknown_logins_with_defaults() {
        let provider = OidcProvider::start(&[client()], &[alice()]).await;
        let doc = discovery(&provider).await;
        let flow = Flow::new();
        let code = code_for(&provider, &flow, "bob@example.org").await;
        let (status, tokens) = exchange(&doc, &code, &flow.verifier, false).await;
        assert_eq!(status, 200, "{tokens}");
        let claims = id_token_claims(&tokens);
        assert_eq!(claims["sub"], "bob@example.org", "{claims}");
        assert_eq!(claims["email"], "bob@example.org", "{claims}");
        assert_eq!(claims["email_verified"], true, "{claims}");
        assert_eq!(claims["name"], "bob@example.org", "{claims}");
        assert_eq!(claims["groups"], serde_json::json!([]), "{claims}");
        assert_eq!(claims["nonce"], flow.nonce.as_str(), "{claims}");
    }

    #[tokio::test]
    async fn oidc_provider_stops_on_drop() {
        let provider = OidcProvider::start(&[client()], &[]).await;
        let addr = format!("127.0.0.1:{}", provider.port());
        assert!(std::net::TcpStream::connect(&addr).is_ok());
        drop(provider);
        assert!(std::net::TcpStream::connect(&addr).is_err(), "port closed");
    }
}
