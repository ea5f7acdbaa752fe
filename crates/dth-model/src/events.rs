//! Where an object task hears of changes in its source bucket as they happen: an SQS queue that
//! receives the bucket's S3 event notifications, or the hub's webhook that MinIO, Ceph RGW or any
//! client posts S3 event JSON to.

use serde::{Deserialize, Serialize};

use crate::{Credentials, ParseError};

/// How events of the source bucket reach the hub (`source.events` of an object task).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum EventSource {
    /// An SQS queue the bucket's notifications (`s3:ObjectCreated:*`, `s3:ObjectRemoved:*`) go to,
    /// directly or through SNS. The hub long-polls it and deletes each message once its items are
    /// stored.
    Sqs {
        /// The queue's URL, `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`.
        queue_url: String,
        /// The queue's region; absent: read from an AWS queue URL, else `us-east-1`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// How to authenticate to SQS; absent: the source bucket's credentials.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credentials: Option<Credentials>,
    },
    /// `POST /api/v1/tasks/{id}/events` with the task's webhook token (bearer, basic password, or
    /// an HMAC-SHA256 of the body in `X-Dth-Signature`).
    Webhook,
}

impl EventSource {
    /// Checks the queue URL; the message names the field.
    pub fn validate(&self) -> Result<(), ParseError> {
        let EventSource::Sqs {
            queue_url,
            region,
            credentials,
        } = self
        else {
            return Ok(());
        };
        if matches!(credentials, Some(Credentials::Static { .. })) {
            return Err(ParseError::BadValue {
                what: "source.events.credentials",
                value: "static".into(),
                reason: "store the queue's key as a hub secret and give \
                         {\"kind\": \"secret\", \"name\": …}, or leave it out to use the source's"
                    .into(),
            });
        }
        let bad = |reason: &str| ParseError::BadValue {
            what: "source.events.queue_url",
            value: queue_url.clone(),
            reason: reason.into(),
        };
        let rest = queue_url
            .strip_prefix("https://")
            .or_else(|| queue_url.strip_prefix("http://"))
            .ok_or_else(|| bad("an SQS queue URL starts with https://"))?;
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("an SQS queue URL is https://HOST/ACCOUNT/QUEUE"))?;
        if host.is_empty() || path.split('/').filter(|s| !s.is_empty()).count() < 2 {
            return Err(bad("an SQS queue URL is https://HOST/ACCOUNT/QUEUE"));
        }
        if region.as_ref().is_some_and(|r| r.trim().is_empty()) {
            return Err(ParseError::BadValue {
                what: "source.events.region",
                value: String::new(),
                reason: "give a region name or leave it out".into(),
            });
        }
        Ok(())
    }

    /// The queue's region: the one given, else the one in an AWS queue URL
    /// (`sqs.REGION.amazonaws.com[.cn]`), else `us-east-1`.
    pub fn sqs_region(&self) -> Option<String> {
        let EventSource::Sqs {
            queue_url, region, ..
        } = self
        else {
            return None;
        };
        if let Some(r) = region {
            return Some(r.clone());
        }
        let host = queue_url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_default();
        let from_url = host
            .strip_prefix("sqs.")
            .and_then(|h| h.split('.').next())
            .filter(|r| !r.is_empty());
        Some(from_url.unwrap_or("us-east-1").to_string())
    }

    /// The queue's service endpoint (scheme and host of the queue URL).
    pub fn sqs_endpoint(&self) -> Option<String> {
        let EventSource::Sqs { queue_url, .. } = self else {
            return None;
        };
        let (scheme, rest) = queue_url.split_once("://")?;
        let host = rest.split('/').next()?;
        Some(format!("{scheme}://{host}"))
    }
}

/// Orders two sequencers of one key as S3 says: the shorter padded with zeros on the right, then
/// compared as text (they are hexadecimal, upper or lower case).
pub fn sequencer_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let width = a.len().max(b.len());
    let pad = |s: &str| format!("{:0<width$}", s.to_ascii_uppercase());
    pad(a).cmp(&pad(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqs(url: &str) -> EventSource {
        EventSource::Sqs {
            queue_url: url.into(),
            region: None,
            credentials: None,
        }
    }

    #[test]
    fn queue_urls_are_checked_and_give_region_and_endpoint() {
        let q = sqs("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/uploads");
        q.validate().unwrap();
        assert_eq!(q.sqs_region().as_deref(), Some("cn-north-1"));
        assert_eq!(
            q.sqs_endpoint().as_deref(),
            Some("https://sqs.cn-north-1.amazonaws.com.cn")
        );
        let local = sqs("http://127.0.0.1:5000/123456789012/q");
        local.validate().unwrap();
        assert_eq!(local.sqs_region().as_deref(), Some("us-east-1"));
        for bad in ["sqs://x/1/q", "https://sqs.x.amazonaws.com/q", "uploads"] {
            let e = sqs(bad).validate().unwrap_err().to_string();
            assert!(e.contains("source.events.queue_url"), "{e}");
        }
        let json = serde_json::json!({"kind": "sqs", "queue_url": "https://h/1/q", "extra": 1});
        assert!(serde_json::from_value::<EventSource>(json).is_err());
        let keyed = EventSource::Sqs {
            queue_url: "https://h/1/q".into(),
            region: None,
            credentials: Some(Credentials::Static {
                access_key_id: "AKIA".into(),
                secret_access_key: "s3cr3t".into(),
                session_token: None,
            }),
        };
        let e = keyed.validate().unwrap_err().to_string();
        assert!(
            e.contains("source.events.credentials") && !e.contains("s3cr3t"),
            "{e}"
        );
        let hook: EventSource =
            serde_json::from_value(serde_json::json!({"kind": "webhook"})).unwrap();
        assert_eq!(hook, EventSource::Webhook);
    }

    #[test]
    fn sequencers_compare_padded_on_the_right() {
        use std::cmp::Ordering::*;
        assert_eq!(
            sequencer_cmp("0055AED6DCD90281E5", "0055AED6DCD90281E6"),
            Less
        );
        assert_eq!(
            sequencer_cmp("0055AED6DCD90281E5", "0055aed6dcd90281e5"),
            Equal
        );
        assert_eq!(
            sequencer_cmp("0055AED6DCD90281E5", "0055AED6DCD90281E500"),
            Equal
        );
        assert_eq!(sequencer_cmp("0056", "0055AED6DCD90281E5"), Greater);
    }
}
