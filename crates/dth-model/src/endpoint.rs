//! Endpoints: provider, region, URL, bucket, prefix and credentials of one side of a transfer.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A value given by a user that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The provider name is not one we know.
    #[error("unknown provider {0:?}: expected one of {list}", list = Provider::NAMES.join(", "))]
    UnknownProvider(String),
    /// An `s3://` URL is malformed.
    #[error("malformed S3 URL {url:?}: {reason} (expected s3://BUCKET[/PREFIX])")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Some other option value is malformed.
    #[error("invalid {what} {value:?}: {reason}")]
    BadValue {
        /// The option.
        what: &'static str,
        /// The value as given.
        value: String,
        /// What would be accepted.
        reason: String,
    },
}

/// An S3-compatible storage service. Each has a profile of quirks in `dth-s3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// Amazon S3, any partition (commercial, China `cn-*`, GovCloud `us-gov-*`).
    Aws,
    /// Alibaba Cloud OSS.
    AliyunOss,
    /// Tencent Cloud COS.
    TencentCos,
    /// Qiniu Kodo.
    QiniuKodo,
    /// Google Cloud Storage through its S3 interoperability API (HMAC keys).
    Gcs,
    /// MinIO.
    Minio,
    /// Ceph RADOS Gateway.
    Ceph,
    /// Any other S3-compatible server; gets the cautious profile.
    Other,
}

impl Provider {
    /// Every provider, in the order shown to users.
    pub const ALL: [Provider; 8] = [
        Provider::Aws,
        Provider::AliyunOss,
        Provider::TencentCos,
        Provider::QiniuKodo,
        Provider::Gcs,
        Provider::Minio,
        Provider::Ceph,
        Provider::Other,
    ];
    /// The names accepted by [`FromStr`], in the order of [`Provider::ALL`].
    pub const NAMES: [&'static str; 8] = [
        "aws",
        "aliyun-oss",
        "tencent-cos",
        "qiniu-kodo",
        "gcs",
        "minio",
        "ceph",
        "other",
    ];

    /// The name users type.
    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|p| *p == self).unwrap_or(7)]
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Provider {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let alias = match lower.as_str() {
            "s3" | "amazon" => "aws",
            "oss" | "aliyun" | "alibaba" => "aliyun-oss",
            "cos" | "tencent" => "tencent-cos",
            "kodo" | "qiniu" => "qiniu-kodo",
            "google" => "gcs",
            other => other,
        };
        Self::NAMES
            .iter()
            .position(|n| *n == alias)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| ParseError::UnknownProvider(s.to_string()))
    }
}

/// How one side authenticates.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Credentials {
    /// The default AWS chain: environment, shared config, SSO, web identity, IMDS.
    #[default]
    DefaultChain,
    /// A named profile from the shared AWS config files.
    Profile {
        /// Profile name.
        name: String,
    },
    /// An explicit access key.
    Static {
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: String,
        /// Session token for temporary credentials.
        session_token: Option<String>,
    },
    /// Unsigned requests (public buckets).
    Anonymous,
    /// An access key kept encrypted in the hub's store under this name (hub tasks only).
    Secret {
        /// Secret name.
        name: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::DefaultChain => f.write_str("DefaultChain"),
            Credentials::Profile { name } => f.debug_struct("Profile").field("name", name).finish(),
            Credentials::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"[REDACTED]")
                .finish(),
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Secret { name } => f.debug_struct("Secret").field("name", name).finish(),
        }
    }
}

/// `s3://BUCKET[/PREFIX]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Url {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix: empty, or ending in `/`.
    pub prefix: String,
}

impl S3Url {
    /// Parses `s3://BUCKET[/PREFIX]`. A prefix is a folder: `s3://b/photos` means keys under `photos/`.
    pub fn parse(url: &str) -> Result<Self, ParseError> {
        let bad = |reason| ParseError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("it must start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        validate_bucket(bucket).map_err(bad)?;
        let mut prefix = prefix.to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix,
        })
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Checks a bucket name loosely: providers differ (GCS allows `_` and dots, legacy AWS buckets upper case),
/// so only what no provider accepts is refused.
fn validate_bucket(bucket: &str) -> Result<(), &'static str> {
    if bucket.is_empty() {
        return Err("the bucket name is empty");
    }
    if bucket.len() < 3 || bucket.len() > 255 {
        return Err("a bucket name has 3 to 255 characters");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err("a bucket name has only letters, digits, '-', '.' and '_'");
    }
    Ok(())
}

/// One side of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// Which service; decides the quirks profile.
    pub provider: Provider,
    /// Region; when absent the provider's default (`us-east-1` for AWS and unknown servers).
    pub region: Option<String>,
    /// Endpoint URL; when absent derived from provider and region.
    pub endpoint_url: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix, empty or ending in `/`.
    pub prefix: String,
    /// How to authenticate.
    pub credentials: Credentials,
    /// Send `x-amz-request-payer: requester` (source side).
    #[serde(default)]
    pub requester_pays: bool,
    /// Where the bucket's change events arrive (the source of a hub task only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Box<crate::EventSource>>,
}

impl EndpointSpec {
    /// An endpoint with default region, URL and credentials.
    pub fn new(provider: Provider, url: S3Url) -> Self {
        EndpointSpec {
            provider,
            region: None,
            endpoint_url: None,
            bucket: url.bucket,
            prefix: url.prefix,
            credentials: Credentials::DefaultChain,
            requester_pays: false,
            events: None,
        }
    }

    /// `s3://bucket/prefix` of this endpoint.
    pub fn url(&self) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            S3Url::parse("s3://bkt").unwrap(),
            S3Url {
                bucket: "bkt".into(),
                prefix: "".into()
            }
        );
        assert_eq!(S3Url::parse("s3://bkt/a/b").unwrap().prefix, "a/b/");
        assert_eq!(S3Url::parse("s3://bkt/a/").unwrap().prefix, "a/");
        assert!(S3Url::parse("bkt/a").is_err());
        assert!(S3Url::parse("s3:///a").is_err());
        assert!(S3Url::parse("s3://b k/a").is_err());
    }

    #[test]
    fn parses_providers_and_aliases() {
        for p in Provider::ALL {
            assert_eq!(p.name().parse::<Provider>().unwrap(), p);
        }
        assert_eq!("OSS".parse::<Provider>().unwrap(), Provider::AliyunOss);
        let err = "azure".parse::<Provider>().unwrap_err().to_string();
        assert!(err.contains("unknown provider \"azure\""), "{err}");
        assert!(err.contains("tencent-cos"), "{err}");
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials::Static {
            access_key_id: "AKIA".into(),
            secret_access_key: "very-secret".into(),
            session_token: Some("tok-secret".into()),
        };
        let s = format!("{c:?}");
        assert!(!s.contains("secret") || s.contains("REDACTED"));
        assert!(
            !s.contains("very-secret") && !s.contains("tok-secret"),
            "{s}"
        );
    }
}
