//! S3 event notifications, read: the JSON AWS sends to SQS or SNS, MinIO posts to a webhook (with
//! its top-level `EventName` and `Key`), and Ceph RGW pushes (`size` may be a string, keys are not
//! URL-encoded), reduced to what a copy needs — bucket, key, created (size, ETag) or removed, and
//! the `sequencer` that orders events of one key.

use percent_encoding::percent_decode_str;
use serde_json::Value;

/// A change of one object, from one notification record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// The bucket.
    pub bucket: String,
    /// The object's full key, decoded.
    pub key: String,
    /// What happened.
    pub change: Change,
    /// The notification's `sequencer`: of two events of one key the greater is the later
    /// (compare with [`dth_model::sequencer_cmp`]). Absent on some servers.
    pub sequencer: Option<String>,
}

/// What happened to an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Written (`ObjectCreated:*`).
    Created {
        /// Its size.
        size: u64,
        /// Its ETag, without quotes.
        etag: Option<String>,
    },
    /// Deleted, a delete marker made, or expired (`ObjectRemoved:*`, `LifecycleExpiration:*`).
    Removed,
}

/// Reads one notification message. The S3 test event, and events that change no object's content
/// (tags, ACLs, restores), give nothing. A body that is not a notification is an error saying why.
pub fn parse_notification(body: &str) -> Result<Vec<ObjectEvent>, String> {
    let doc: Value =
        serde_json::from_str(body).map_err(|e| format!("the message is not JSON: {e}"))?;
    parse_value(&doc)
}

fn parse_value(doc: &Value) -> Result<Vec<ObjectEvent>, String> {
    let Some(obj) = doc.as_object() else {
        return Err("the message is not a JSON object".into());
    };
    // SNS delivers the notification as a string in `Message`.
    if obj.get("Type").and_then(Value::as_str) == Some("Notification")
        && let Some(inner) = obj.get("Message").and_then(Value::as_str)
    {
        return parse_notification(inner).map_err(|e| format!("SNS message: {e}"));
    }
    if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let Some(records) = obj.get("Records") else {
        return Err("no Records: not an S3 event notification".into());
    };
    let records = records
        .as_array()
        .ok_or("Records is not a list".to_string())?;
    let mut out = Vec::with_capacity(records.len());
    for (i, rec) in records.iter().enumerate() {
        if let Some(ev) = parse_record(rec).map_err(|e| format!("record {i}: {e}"))? {
            out.push(ev);
        }
    }
    Ok(out)
}

fn parse_record(rec: &Value) -> Result<Option<ObjectEvent>, String> {
    let name = rec
        .get("eventName")
        .and_then(Value::as_str)
        .ok_or("no eventName")?;
    let name = name.strip_prefix("s3:").unwrap_or(name);
    let removed = name.starts_with("ObjectRemoved:") || name.starts_with("LifecycleExpiration:");
    if !removed && !name.starts_with("ObjectCreated:") {
        return Ok(None);
    }
    let s3 = rec.get("s3").ok_or("no s3 section")?;
    let bucket = s3
        .pointer("/bucket/name")
        .and_then(Value::as_str)
        .ok_or("no s3.bucket.name")?;
    let object = s3.get("object").ok_or("no s3.object")?;
    let raw_key = object
        .get("key")
        .and_then(Value::as_str)
        .ok_or("no s3.object.key")?;
    // AWS and MinIO URL-encode keys as in a form (`+` is a space); Ceph sends them as they are.
    let key = if rec.get("eventSource").and_then(Value::as_str) == Some("ceph:s3") {
        raw_key.to_string()
    } else {
        decode_key(raw_key)?
    };
    if key.is_empty() {
        return Err("s3.object.key is empty".into());
    }
    let change = if removed {
        Change::Removed
    } else {
        let size = match object.get("size") {
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or(format!("s3.object.size {n} is not a size"))?,
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map_err(|_| format!("s3.object.size {s:?} is not a size"))?,
            Some(Value::Null) | None => 0,
            Some(other) => return Err(format!("s3.object.size {other} is not a size")),
        };
        let etag = object
            .get("eTag")
            .and_then(Value::as_str)
            .map(|e| e.trim_matches('"').to_string())
            .filter(|e| !e.is_empty());
        Change::Created { size, etag }
    };
    let sequencer = object
        .get("sequencer")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(Some(ObjectEvent {
        bucket: bucket.to_string(),
        key,
        change,
        sequencer,
    }))
}

fn decode_key(raw: &str) -> Result<String, String> {
    let plus = raw.replace('+', " ");
    percent_decode_str(&plus)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| format!("s3.object.key {raw:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_records_decode_keys_and_skip_the_test_event() {
        let body = r#"{"Records":[
          {"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
           "eventTime":"2026-12-01T10:00:00.000Z","eventName":"ObjectCreated:Put",
           "s3":{"bucket":{"name":"src"},"object":{"key":"photos/a+b%2Bc%E4%B8%AD.jpg",
           "size":1024,"eTag":"d41d8cd98f00b204e9800998ecf8427e","sequencer":"0055AED6DCD90281E5"}}},
          {"eventName":"ObjectRemoved:DeleteMarkerCreated","eventSource":"aws:s3",
           "s3":{"bucket":{"name":"src"},"object":{"key":"old.txt","sequencer":"0055AED6DCD90281E6"}}},
          {"eventName":"ObjectTagging:Put","eventSource":"aws:s3",
           "s3":{"bucket":{"name":"src"},"object":{"key":"x"}}}]}"#;
        let evs = parse_notification(body).unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].key, "photos/a b+c中.jpg");
        assert_eq!(
            evs[0].change,
            Change::Created {
                size: 1024,
                etag: Some("d41d8cd98f00b204e9800998ecf8427e".into())
            }
        );
        assert_eq!(evs[1].change, Change::Removed);
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-12-01T10:00:00Z",
                       "Bucket":"src","RequestId":"1","HostId":"2"}"#;
        assert!(parse_notification(test).unwrap().is_empty());
    }

    #[test]
    fn minio_ceph_and_sns_shapes_are_read() {
        let minio = r#"{"EventName":"s3:ObjectCreated:Put","Key":"src/dir/file%20name.bin",
          "Records":[{"eventVersion":"2.0","eventSource":"minio:s3","eventName":"s3:ObjectCreated:Put",
          "s3":{"s3SchemaVersion":"1.0","bucket":{"name":"src"},
          "object":{"key":"dir%2Ffile+name.bin","size":7,"eTag":"\"abc\"","sequencer":"1797A6E5A1B0B1D2"}}}]}"#;
        let evs = parse_notification(minio).unwrap();
        assert_eq!(evs[0].key, "dir/file name.bin");
        assert_eq!(
            evs[0].change,
            Change::Created {
                size: 7,
                etag: Some("abc".into())
            }
        );
        let ceph = r#"{"Records":[{"eventVersion":"2.2","eventSource":"ceph:s3",
          "eventName":"ObjectCreated:CompleteMultipartUpload",
          "s3":{"bucket":{"name":"src"},"object":{"key":"a+b.txt","size":"123","eTag":"e","sequencer":"F7E3"}}},
          {"eventVersion":"2.2","eventSource":"ceph:s3","eventName":"s3:ObjectRemoved:Delete",
          "s3":{"bucket":{"name":"src"},"object":{"key":"gone","size":"0"}}}]}"#;
        let evs = parse_notification(ceph).unwrap();
        assert_eq!(evs[0].key, "a+b.txt");
        assert!(matches!(evs[0].change, Change::Created { size: 123, .. }));
        assert_eq!(evs[1].change, Change::Removed);
        let sns = serde_json::json!({"Type": "Notification", "Message": ceph}).to_string();
        assert_eq!(parse_notification(&sns).unwrap().len(), 2);
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        for (body, says) in [
            ("not json", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"hello":1}"#, "no Records"),
            (
                r#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#,
                "record 0: no s3 section",
            ),
            (
                r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":"big"}}}]}"#,
                "is not a size",
            ),
            (
                r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%FF"}}}]}"#,
                "UTF-8",
            ),
        ] {
            let e = parse_notification(body).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
    }
}
