//! Amazon ECR: the registry API for data (Basic auth with `AWS:<token>` from
//! GetAuthorizationToken, refreshed before its 12 h expiry), and the ECR API for what the
//! registry API lacks: listing repositories and creating missing ones.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata};
use base64::Engine as _;
use tokio_util::sync::CancellationToken;

use super::ImageSource;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::reference::Digest;
use crate::registry::{BlobStream, Credentials, ManifestHead, RegistryClient};

/// ECR tokens last 12 hours; a new one is taken after three quarters of the time left, and at
/// least this often.
pub const TOKEN_REFRESH: Duration = Duration::from_secs(6 * 3600);
/// Soonest refresh, and the wait before trying again after a failed one.
const MIN_REFRESH: Duration = Duration::from_secs(60);

/// A registry login from GetAuthorizationToken.
#[derive(Debug, Clone)]
pub struct EcrToken {
    /// `AWS` and the token.
    pub credentials: Credentials,
    /// When ECR says it expires.
    pub expires_at: Option<SystemTime>,
}

/// How long to wait before taking a new token: three quarters of the time left, between a minute
/// and [`TOKEN_REFRESH`]. An expiry already past (a skewed clock, a test server) means soon.
pub fn refresh_after(expires_at: Option<SystemTime>, now: SystemTime) -> Duration {
    match expires_at.map(|e| e.duration_since(now)) {
        None => TOKEN_REFRESH,
        Some(Err(_)) => MIN_REFRESH,
        Some(Ok(left)) => left.mul_f64(0.75).clamp(MIN_REFRESH, TOKEN_REFRESH),
    }
}

/// Timeout of one ECR API call.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// An ECR API client for one account and region.
#[derive(Debug, Clone)]
pub struct Ecr {
    client: aws_sdk_ecr::Client,
    account: String,
    region: String,
}

impl Ecr {
    /// Builds a client from the default AWS credential chain (env, profile, SSO, IMDS…);
    /// `endpoint_url` points it elsewhere (a test server, a VPC endpoint).
    pub async fn connect(account: &str, region: &str, endpoint_url: Option<&str>) -> Ecr {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(API_TIMEOUT)
                    .connect_timeout(Duration::from_secs(10))
                    .build(),
            )
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(4));
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        Ecr {
            client: aws_sdk_ecr::Client::new(&config),
            account: account.into(),
            region: region.into(),
        }
    }

    fn err<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        op: &str,
        e: aws_sdk_ecr::error::SdkError<E>,
    ) -> Error {
        Error::Ecr {
            operation: op.into(),
            region: self.region.clone(),
            detail: DisplayErrorContext(e).to_string(),
        }
    }

    /// GetAuthorizationToken: Basic credentials for the registry (`AWS` and a 12 h token).
    pub async fn authorization(&self) -> Result<EcrToken> {
        let out = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| self.err("GetAuthorizationToken", e))?;
        let first = out.authorization_data().first();
        let expires_at = first
            .and_then(|d| d.expires_at())
            .and_then(|t| SystemTime::try_from(*t).ok());
        let data = first
            .and_then(|d| d.authorization_token())
            .ok_or_else(|| Error::Ecr {
                operation: "GetAuthorizationToken".into(),
                region: self.region.clone(),
                detail: "no token in the answer".into(),
            })?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| Error::Ecr {
                operation: "GetAuthorizationToken".into(),
                region: self.region.clone(),
                detail: "token is not base64".into(),
            })?;
        let text = String::from_utf8(decoded).map_err(|_| Error::Ecr {
            operation: "GetAuthorizationToken".into(),
            region: self.region.clone(),
            detail: "token is not UTF-8".into(),
        })?;
        let credentials = Credentials::parse(&text).map_err(|_| Error::Ecr {
            operation: "GetAuthorizationToken".into(),
            region: self.region.clone(),
            detail: "token is not USER:PASSWORD".into(),
        })?;
        Ok(EcrToken {
            credentials,
            expires_at,
        })
    }

    /// Keeps `client`'s credentials fresh until `cancel` fires: a new token after three
    /// quarters of the current one's life ([`refresh_after`]); a failed refresh is tried again
    /// every minute while the old token still works.
    pub fn spawn_refresh(
        &self,
        client: RegistryClient,
        current: &EcrToken,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let ecr = self.clone();
        let mut wait = refresh_after(current.expires_at, SystemTime::now());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = match ecr.authorization().await {
                    Ok(t) => {
                        client.set_credentials(Some(t.credentials));
                        tracing::debug!(region = %ecr.region, "ECR token refreshed");
                        refresh_after(t.expires_at, SystemTime::now())
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshing the ECR token failed; keeping the old one and trying again in a minute");
                        MIN_REFRESH
                    }
                };
            }
        })
    }

    /// Every repository name of the account in this region (DescribeRepositories, paginated).
    pub async fn repositories(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token = None;
        for _ in 0..100_000 {
            let page = self
                .client
                .describe_repositories()
                .registry_id(&self.account)
                .set_next_token(token)
                .max_results(1000)
                .send()
                .await
                .map_err(|e| self.err("DescribeRepositories", e))?;
            out.extend(
                page.repositories()
                    .iter()
                    .filter_map(|r| r.repository_name().map(str::to_string)),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    /// Creates `name` when it does not exist (CreateRepository; "already exists" is success).
    /// Returns whether it was created.
    pub async fn ensure_repository(&self, name: &str) -> Result<bool> {
        match self
            .client
            .create_repository()
            .registry_id(&self.account)
            .repository_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_repository_already_exists_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.err("CreateRepository", e)),
        }
    }
}

/// ECR as a source: the registry for data, the ECR API for the repository list.
#[derive(Debug, Clone)]
pub struct EcrSource {
    client: RegistryClient,
    ecr: Ecr,
}

impl EcrSource {
    /// Wraps a registry client (already holding ECR credentials) and the ECR API.
    pub fn new(client: RegistryClient, ecr: Ecr) -> EcrSource {
        EcrSource { client, ecr }
    }
}

#[async_trait]
impl ImageSource for EcrSource {
    fn describe(&self) -> String {
        format!("ecr://{}.{}", self.ecr.account, self.ecr.region)
    }
    async fn repositories(&self) -> Result<Vec<String>> {
        self.ecr.repositories().await
    }
    async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        self.client.tags(repo).await
    }
    async fn resolve(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        self.client.head_manifest(repo, reference).await
    }
    async fn manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        self.client.get_manifest(repo, reference).await
    }
    async fn blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream> {
        self.client.get_blob(repo, digest).await
    }
    fn registry(&self) -> Option<&RegistryClient> {
        Some(&self.client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_well_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let h = |n: u64| Duration::from_secs(n * 3600);
        // A fresh 12 h token: the cap.
        assert_eq!(refresh_after(Some(now + h(12)), now), TOKEN_REFRESH);
        // 4 h left: 3 h.
        assert_eq!(refresh_after(Some(now + h(4)), now), h(3));
        // Almost expired, expired, or unknown.
        assert_eq!(
            refresh_after(Some(now + Duration::from_secs(20)), now),
            MIN_REFRESH
        );
        assert_eq!(refresh_after(Some(now - h(1)), now), MIN_REFRESH);
        assert_eq!(refresh_after(None, now), TOKEN_REFRESH);
    }
}
