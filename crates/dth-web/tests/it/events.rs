//! S3 events end to end: a hub (scheduler, workers, API) over SQLite in this process, with
//! (1) its webhook taking MinIO-, Ceph- and AWS-shaped notifications for a real S3 server
//! (s3s-fs), and (2) its SQS poller reading the notifications moto (in server mode) delivers from
//! a real bucket notification configuration to a real queue. Each copy is checked byte for byte.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use dth_runtime::Hub;
use dth_testkit::{PeerKind, S3Peer};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "tok-events";

struct Site {
    base: String,
    http: Client,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Site {
    async fn start() -> Site {
        let (store, dir) = crate::common::sqlite_store().await;
        let hub = Hub::new(store, crate::common::quick_config("events", TOKEN));
        let stop = CancellationToken::new();
        tokio::spawn(Arc::clone(&hub).run_scheduler(stop.clone()));
        tokio::spawn(Arc::clone(&hub).run_workers(stop.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let web = dth_web::WebConfig::new(&format!("http://{addr}").parse().unwrap());
        tokio::spawn(dth_web::serve(hub, web, listener, stop.clone()));
        Site {
            base: format!("http://{addr}"),
            http: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            stop,
            _dir: dir,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        answer(rb.send().await.unwrap()).await
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// Posts a notification to a task's webhook with `auth` applied.
    async fn hook(
        &self,
        task: &str,
        body: &str,
        auth: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> (StatusCode, Value) {
        let rb = self
            .http
            .post(format!("{}/api/v1/tasks/{task}/events", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        answer(auth(rb).send().await.unwrap()).await
    }

    /// Waits until the task's runs all ended and the newest is an event run; returns the items of
    /// every event run.
    async fn settled_event_run(&self, task: &str) -> Vec<Value> {
        let t0 = Instant::now();
        loop {
            let runs = self
                .ok(Method::GET, &format!("/api/v1/tasks/{task}/runs"), None)
                .await;
            let runs = runs.as_array().unwrap().clone();
            let newest = runs.iter().max_by_key(|r| r["id"].as_i64());
            if let Some(r) = newest
                && r["trigger"] == "event"
                && runs.iter().all(|r| r["ended_at"].is_number())
            {
                let mut items = Vec::new();
                for run in runs.iter().filter(|r| r["trigger"] == "event") {
                    let id = run["id"].as_i64().unwrap();
                    let page = self
                        .ok(Method::GET, &format!("/api/v1/runs/{id}/items"), None)
                        .await;
                    items.extend(page["items"].as_array().unwrap().iter().cloned());
                }
                return items;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no settled event run: {runs:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn answer(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn side(peer: &S3Peer, bucket: &str) -> Value {
    json!({
        "provider": "other", "endpoint_url": peer.endpoint_url(), "region": "us-east-1",
        "bucket": bucket, "prefix": "",
        "credentials": {"kind": "static", "access_key_id": peer.access_key(),
                        "secret_access_key": peer.secret_key()},
    })
}

async fn put(peer: &S3Peer, bucket: &str, key: &str, body: &[u8]) {
    peer.client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap();
}

async fn get(peer: &S3Peer, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let out = peer
        .client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    Some(out.body.collect().await.unwrap().into_bytes().to_vec())
}

/// Waits until `dst/key` holds `want` (`None`: is gone).
async fn wait_for(peer: &S3Peer, key: &str, want: Option<&[u8]>) {
    let t0 = Instant::now();
    while get(peer, "dst", key).await.as_deref() != want {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "dst/{key} never became {:?}",
            want.map(String::from_utf8_lossy)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn record(event: &str, key: &str, size: Value, seq: Option<&str>, source: &str) -> Value {
    let mut object = json!({"key": key, "size": size, "eTag": "0"});
    if let Some(s) = seq {
        object["sequencer"] = json!(s);
    }
    json!({"eventVersion": "2.1", "eventSource": source, "eventName": event,
           "s3": {"bucket": {"name": "src"}, "object": object}})
}

fn signature(token: &str, body: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_takes_minio_ceph_and_signed_events_and_refuses_the_rest() {
    let peer = S3Peer::start(PeerKind::S3sFs).await;
    peer.create_bucket("src").await;
    peer.create_bucket("dst").await;
    put(&peer, "src", "seed.txt", b"seed").await;
    let site = Site::start().await;
    let mut source = side(&peer, "src");
    source["events"] = json!({"kind": "webhook"});
    let spec = json!({"name": "hooked", "kind": "s3", "source": source,
                      "destination": side(&peer, "dst"), "schedule": "once",
                      "options": {"delete": true}});
    let task = site.ok(Method::POST, "/api/v1/tasks", Some(spec)).await;
    let id = task["id"].as_str().unwrap().to_string();
    wait_for(&peer, "seed.txt", Some(b"seed")).await;
    // No token yet: refused like a wrong one.
    let minio_key = "new file+1.txt";
    put(&peer, "src", minio_key, b"first upload").await;
    let minio = json!({"EventName": "s3:ObjectCreated:Put", "Key": format!("src/{minio_key}"),
        "Records": [record("s3:ObjectCreated:Put", "new+file%2B1.txt", json!(12),
                           Some("1797A6E5A1B0B1D2"), "minio:s3")]})
    .to_string();
    let (status, _) = site
        .hook(&id, &minio, |r| r.bearer_auth("dthw_guess"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let made = site
        .ok(
            Method::POST,
            &format!("/api/v1/tasks/{id}/events/token"),
            None,
        )
        .await;
    let token = made["token"].as_str().unwrap().to_string();
    assert!(
        made["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/v1/tasks/{id}/events"))
    );
    // The webhook token is the task's: it is not among the secrets.
    let secrets = site.ok(Method::GET, "/api/v1/secrets", None).await;
    assert!(!secrets.to_string().contains("webhook"), "{secrets}");

    // MinIO's body with a bearer token (MinIO's auth_token).
    let (status, taken) = site.hook(&id, &minio, |r| r.bearer_auth(&token)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{taken}");
    assert_eq!(taken["added"], 1, "{taken}");
    wait_for(&peer, minio_key, Some(b"first upload")).await;
    // The same delivery again changes nothing.
    let (_, again) = site.hook(&id, &minio, |r| r.bearer_auth(&token)).await;
    assert_eq!(again["stale"], 1, "{again}");

    // Ceph's push with basic auth: sizes as strings, keys as they are.
    put(&peer, "src", "ceph/a+b.txt", b"from ceph").await;
    let ceph = json!({"Records": [record("ObjectCreated:Put", "ceph/a+b.txt", json!("9"),
                                         Some("F7E3"), "ceph:s3")]})
    .to_string();
    let (status, taken) = site
        .hook(&id, &ceph, |r| r.basic_auth("rgw", Some(&token)))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{taken}");
    wait_for(&peer, "ceph/a+b.txt", Some(b"from ceph")).await;

    // A signed AWS-shaped delete, and one for another bucket (ignored).
    peer.client()
        .delete_object()
        .bucket("src")
        .key("seed.txt")
        .send()
        .await
        .unwrap();
    let mut other = record("ObjectRemoved:Delete", "x", Value::Null, None, "aws:s3");
    other["s3"]["bucket"]["name"] = json!("elsewhere");
    let removed = json!({"Records": [
        record("ObjectRemoved:Delete", "seed.txt", Value::Null, None, "aws:s3"), other]})
    .to_string();
    let (status, taken) = site
        .hook(&id, &removed, |r| {
            r.header("x-dth-signature", signature(&token, &removed))
        })
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{taken}");
    assert_eq!(taken["ignored"], 1, "{taken}");
    wait_for(&peer, "seed.txt", None).await;
    // A delete event for an object the source still has (a late delivery) deletes nothing.
    let late = json!({"Records": [record("ObjectRemoved:Delete", "new+file%2B1.txt",
                                          Value::Null, None, "aws:s3")]})
    .to_string();
    let (status, _) = site.hook(&id, &late, |r| r.bearer_auth(&token)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let items = site.settled_event_run(&id).await;
    let late_item = items
        .iter()
        .find(|i| i["kind"] == "delete" && i["key"] == minio_key)
        .unwrap();
    assert_eq!(late_item["state"], "skipped", "{late_item}");
    assert_eq!(late_item["verification"], "source exists", "{late_item}");
    assert_eq!(
        get(&peer, "dst", minio_key).await.as_deref(),
        Some(&b"first upload"[..])
    );
    let copied = items
        .iter()
        .find(|i| i["kind"] == "object" && i["key"] == "ceph/a+b.txt")
        .unwrap();
    assert_eq!(copied["state"], "done", "{copied}");
    assert!(copied["verification"].is_string(), "{copied}");

    // Refused: a bad signature, an API token, no credentials, a body that is not a notification.
    let (status, _) = site
        .hook(&id, &removed, |r| {
            r.header("x-dth-signature", signature("nope", &removed))
        })
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = site.hook(&id, &minio, |r| r.bearer_auth(TOKEN)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = site.hook(&id, &minio, |r| r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!body.to_string().contains(&token));
    let (status, body) = site
        .hook(&id, r#"{"hello": "world"}"#, |r| r.bearer_auth(&token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("no Records"),
        "{body}"
    );
    let (status, _) = site
        .hook("no-such-task", &minio, |r| r.bearer_auth(&token))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A stopped task takes no events.
    site.ok(Method::POST, &format!("/api/v1/tasks/{id}/stop"), None)
        .await;
    let (status, body) = site.hook(&id, &minio, |r| r.bearer_auth(&token)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_notifications_from_moto_are_copied_and_the_queue_drained() {
    let moto = S3Peer::start(PeerKind::Moto).await;
    let dst = S3Peer::start(PeerKind::S3sFs).await;
    moto.create_bucket("src").await;
    dst.create_bucket("dst").await;
    let sqs_conf = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint_url())
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            moto.access_key(),
            moto.secret_key(),
            None,
            None,
            "test",
        ))
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(sqs_conf);
    let queue_url = sqs
        .create_queue()
        .queue_name("uploads")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let notify = NotificationConfiguration::builder()
        .queue_configurations(
            QueueConfiguration::builder()
                .queue_arn("arn:aws:sqs:us-east-1:123456789012:uploads")
                .events(Event::from("s3:ObjectCreated:*"))
                .events(Event::from("s3:ObjectRemoved:*"))
                .build()
                .unwrap(),
        )
        .build();
    moto.client()
        .put_bucket_notification_configuration()
        .bucket("src")
        .notification_configuration(notify)
        .send()
        .await
        .unwrap();
    let site = Site::start().await;
    let mut source = side(&moto, "src");
    // The queue's credentials default to the source's.
    source["events"] = json!({"kind": "sqs", "queue_url": queue_url});
    let mut destination = side(&dst, "dst");
    destination["prefix"] = json!("mirror/");
    let spec = json!({"name": "sqs", "kind": "s3", "source": source, "destination": destination,
                      "schedule": "once", "options": {"delete": true}});
    let task = site.ok(Method::POST, "/api/v1/tasks", Some(spec)).await;
    let id = task["id"].as_str().unwrap().to_string();
    // Messages that are not notifications are set aside and never stop the poller.
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body("hello, not an event")
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("up/{i:02} é+%.bin")).collect();
    for (i, k) in keys.iter().enumerate() {
        put(&moto, "src", k, format!("object {i}").as_bytes()).await;
    }
    for (i, k) in keys.iter().enumerate() {
        let want = format!("object {i}");
        wait_for(&dst, &format!("mirror/{k}"), Some(want.as_bytes())).await;
    }
    moto.client()
        .delete_object()
        .bucket("src")
        .key(&keys[3])
        .send()
        .await
        .unwrap();
    wait_for(&dst, &format!("mirror/{}", keys[3]), None).await;
    let t0 = Instant::now();
    loop {
        let events = site
            .ok(Method::GET, &format!("/api/v1/tasks/{id}/events"), None)
            .await;
        let text = events.to_string();
        if text.contains("events.malformed") {
            assert!(text.contains("hello, not an event"), "{text}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every message was deleted once stored.
    let t0 = Instant::now();
    loop {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        let count = |name: aws_sdk_sqs::types::QueueAttributeName| {
            attrs
                .get(&name)
                .map(|v| v.parse::<u64>().unwrap())
                .unwrap_or(0)
        };
        let left = count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
        if left == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{left} messages left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
