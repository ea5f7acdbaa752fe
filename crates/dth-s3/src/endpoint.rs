//! One side of a transfer, connected: an S3 client configured from an [`EndpointSpec`] and its provider's
//! [`Profile`], plus the bucket and prefix it works under.
//!
//! Request-level retries live here: the SDK's standard retry mode (exponential backoff with jitter, on 5xx,
//! 429/SlowDown, timeouts and connection errors) bounded by `retries` attempts and a 20 s backoff cap. The
//! SDK's shared retry quota is replaced by an unlimited one, so a long sync against a flaky server does not
//! stop retrying after a few hundred faults; the count bound still holds per request.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::{RetryConfig, RetryPartition, TokenBucket};
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use dth_model::{Credentials, EndpointSpec};

use crate::error::{Error, Result, Side};
use crate::profile::Profile;

/// A connected endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    side: Side,
    spec: EndpointSpec,
    profile: &'static Profile,
    client: Client,
    label: String,
    /// The region and endpoint URL in effect (after defaults), for [`Endpoint::same_service`].
    region: String,
    endpoint_url: Option<String>,
}

impl Endpoint {
    /// Builds the client for one side. Does no request; see [`Endpoint::check`].
    pub async fn connect(side: Side, spec: &EndpointSpec, retries: u32) -> Result<Self> {
        let profile = Profile::for_provider(spec.provider);
        if spec.endpoint_url.is_none() && profile.needs_endpoint {
            let p = side.flag_prefix();
            return Err(Error::Config {
                side,
                message: format!(
                    "provider {} has no public endpoint: give --{p}-endpoint http://HOST:PORT",
                    spec.provider
                ),
            });
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        match &spec.region {
            Some(r) => loader = loader.region(Region::new(r.clone())),
            None if !profile.region_from_aws_config => {
                loader = loader.region(Region::new(profile.default_region))
            }
            None => {}
        }
        loader = with_credentials(loader, &spec.credentials)
            .map_err(|message| Error::Config { side, message })?;
        let shared = loader.load().await;
        let region = shared
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| profile.default_region.to_string());
        let endpoint_url = match &spec.endpoint_url {
            Some(u) => Some(normalize_url(side, u)?),
            None => profile.endpoint_for(&region),
        };
        let partition = match side {
            Side::Source => "dth-source",
            Side::Destination => "dth-destination",
        };
        let mut conf = aws_sdk_s3::config::Builder::from(&shared)
            .region(Region::new(region.clone()))
            .force_path_style(profile.path_style)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(retries.saturating_add(1))
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .retry_partition(
                RetryPartition::custom(partition)
                    .token_bucket(TokenBucket::unlimited())
                    .build(),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            );
        if profile.checksum_when_required {
            conf = conf
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        if let Some(url) = &endpoint_url {
            conf = conf.endpoint_url(url);
        }
        let label = match &endpoint_url {
            Some(u) => format!("endpoint {u}"),
            None => format!("{} {region}", spec.provider),
        };
        Ok(Endpoint {
            side,
            spec: spec.clone(),
            profile,
            client: Client::from_conf(conf.build()),
            label,
            region,
            endpoint_url,
        })
    }

    /// Checks that the bucket exists and the credentials may list it, with one small request.
    pub async fn check(&self) -> Result<()> {
        let prefix = (!self.spec.prefix.is_empty()).then(|| self.spec.prefix.clone());
        let payer = self
            .spec
            .requester_pays
            .then_some(aws_sdk_s3::types::RequestPayer::Requester);
        let bucket = &self.spec.bucket;
        if self.profile.list_v1 {
            let req = self.client.list_objects().bucket(bucket).max_keys(1);
            req.set_prefix(prefix)
                .set_request_payer(payer)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.error("ListObjects", None, e))
        } else {
            let req = self.client.list_objects_v2().bucket(bucket).max_keys(1);
            req.set_prefix(prefix)
                .set_request_payer(payer)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.error("ListObjectsV2", None, e))
        }
    }

    /// Which side this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The provider's quirks.
    pub fn profile(&self) -> &'static Profile {
        self.profile
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.spec.bucket
    }

    /// The spec this endpoint was built from.
    pub fn spec(&self) -> &EndpointSpec {
        &self.spec
    }

    /// The full key of a relative key.
    pub fn full_key(&self, rel: &str) -> String {
        let mut k = String::with_capacity(self.spec.prefix.len() + rel.len());
        k.push_str(&self.spec.prefix);
        k.push_str(rel);
        k
    }

    /// `s3://bucket/full-key` for messages.
    pub fn target(&self, rel: Option<&str>) -> String {
        match rel {
            Some(r) => format!("s3://{}/{}", self.spec.bucket, self.full_key(r)),
            None => format!("s3://{}", self.spec.bucket),
        }
    }

    /// Whether `other` is the same service reached with the same credentials, so that the destination can
    /// copy from this source server-side.
    pub fn same_service(&self, other: &Endpoint) -> bool {
        self.spec.provider == other.spec.provider
            && self.endpoint_url == other.endpoint_url
            && self.region == other.region
            && self.spec.credentials == other.spec.credentials
            && !matches!(self.spec.credentials, Credentials::Anonymous)
    }

    /// Wraps an SDK error with this endpoint's context.
    pub(crate) fn error<E, R>(
        &self,
        op: &'static str,
        rel: Option<&str>,
        err: aws_sdk_s3::error::SdkError<E, R>,
    ) -> Error
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + crate::error::HasStatus,
    {
        Error::request(op, self.side, self.target(rel), &self.label, err)
    }
}

/// Sets how a client of any AWS service (S3, SQS) authenticates; the message says what is wrong.
pub(crate) fn with_credentials(
    loader: aws_config::ConfigLoader,
    credentials: &Credentials,
) -> std::result::Result<aws_config::ConfigLoader, String> {
    Ok(match credentials {
        Credentials::DefaultChain => loader,
        Credentials::Profile { name } => loader.profile_name(name),
        Credentials::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            if access_key_id.is_empty() || secret_access_key.is_empty() {
                return Err("an access key needs both the key id and the secret key".into());
            }
            loader.credentials_provider(aws_credential_types::Credentials::new(
                access_key_id,
                secret_access_key,
                session_token.clone(),
                None,
                "dth",
            ))
        }
        Credentials::Anonymous => loader.no_credentials(),
        Credentials::Secret { name } => {
            return Err(format!(
                "the credentials are the hub secret {name:?}, which only the hub can read"
            ));
        }
    })
}

fn normalize_url(side: Side, url: &str) -> Result<String> {
    let url = url.trim_end_matches('/');
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    if !(with_scheme.starts_with("http://") || with_scheme.starts_with("https://"))
        || with_scheme.split("://").nth(1).is_none_or(str::is_empty)
    {
        return Err(Error::Config {
            side,
            message: format!(
                "endpoint URL {url:?} must be http://HOST[:PORT] or https://HOST[:PORT]"
            ),
        });
    }
    Ok(with_scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_endpoint_urls() {
        assert_eq!(
            normalize_url(Side::Source, "oss-cn-beijing.aliyuncs.com").unwrap(),
            "https://oss-cn-beijing.aliyuncs.com"
        );
        assert_eq!(
            normalize_url(Side::Source, "http://127.0.0.1:9000/").unwrap(),
            "http://127.0.0.1:9000"
        );
        let e = normalize_url(Side::Destination, "ftp://x").unwrap_err();
        assert!(e.to_string().starts_with("destination endpoint:"), "{e}");
    }
}
