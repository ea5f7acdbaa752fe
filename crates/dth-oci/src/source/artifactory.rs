//! JFrog Artifactory as a source. Artifactory serves each Docker repository's v2 API under
//! `/artifactory/api/docker/<repo-key>/v2/…` and lists its Docker repositories with
//! `GET /artifactory/api/repositories?packageType=docker`. Repositories are named
//! `<repo-key>/<image>` here, which is also Artifactory's repository-path layout for `docker push`.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::ImageSource;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::profile::{Profile, RegistryKind};
use crate::reference::Digest;
use crate::registry::{BlobStream, ClientConfig, ManifestHead, RegistryClient};

/// Reads every Docker repository of an Artifactory (or one).
#[derive(Debug)]
pub struct ArtifactorySource {
    host: String,
    /// repo key → client of `/artifactory/api/docker/<key>`
    clients: BTreeMap<String, RegistryClient>,
}

/// The base URL of the Artifactory host: `https://host`, or `http://` for a loopback host
/// without TLS verification.
fn base(config: &ClientConfig) -> String {
    match &config.endpoint {
        Some(u) => u.as_str().trim_end_matches('/').to_string(),
        None => format!("https://{}", config.host),
    }
}

/// The v2 API base of one Docker repository.
pub fn repo_api_base(base: &str, key: &str) -> String {
    format!(
        "{}/artifactory/api/docker/{key}",
        base.trim_end_matches('/')
    )
}

impl ArtifactorySource {
    /// Lists the Docker repositories (or takes `repo_key`) and connects a client to each.
    pub async fn connect(
        config: ClientConfig,
        repo_key: Option<String>,
    ) -> Result<ArtifactorySource> {
        let base = base(&config);
        let keys = match repo_key {
            Some(k) => vec![k],
            None => {
                let probe = RegistryClient::connect(ClientConfig {
                    endpoint: Some(parse_url(&repo_api_base(&base, "_"))?),
                    ..config.clone()
                })
                .await;
                let probe = match probe {
                    Ok(p) => p,
                    Err(e) => return Err(e),
                };
                let url = parse_url(&format!(
                    "{base}/artifactory/api/repositories?packageType=docker"
                ))?;
                let list = probe.get_json(url).await?;
                list.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.get("key").and_then(|k| k.as_str()).map(str::to_string))
                    .collect()
            }
        };
        let mut clients = BTreeMap::new();
        for key in keys {
            let client = RegistryClient::connect(ClientConfig {
                endpoint: Some(parse_url(&repo_api_base(&base, &key))?),
                profile: Some(Profile::of(RegistryKind::Artifactory)),
                ..config.clone()
            })
            .await?;
            clients.insert(key, client);
        }
        Ok(ArtifactorySource {
            host: config.host,
            clients,
        })
    }

    fn split<'a>(&self, repo: &'a str) -> Result<(&RegistryClient, &'a str)> {
        let (key, image) = repo.split_once('/').ok_or_else(|| {
            Error::invalid(format!("{repo:?}: want <artifactory-repo-key>/<image>"))
        })?;
        let client = self.clients.get(key).ok_or_else(|| {
            Error::invalid(format!("{}: no Docker repository {key:?}", self.host))
        })?;
        Ok((client, image))
    }
}

fn parse_url(s: &str) -> Result<url::Url> {
    url::Url::parse(s).map_err(|e| Error::invalid(format!("bad URL {s}: {e}")))
}

#[async_trait]
impl ImageSource for ArtifactorySource {
    fn describe(&self) -> String {
        format!("artifactory://{}", self.host)
    }
    async fn repositories(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (key, client) in &self.clients {
            out.extend(
                client
                    .catalog()
                    .await?
                    .into_iter()
                    .map(|r| format!("{key}/{r}")),
            );
        }
        Ok(out)
    }
    async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        let (c, image) = self.split(repo)?;
        c.tags(image).await
    }
    async fn resolve(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        let (c, image) = self.split(repo)?;
        c.head_manifest(image, reference).await
    }
    async fn manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        let (c, image) = self.split(repo)?;
        c.get_manifest(image, reference).await
    }
    async fn blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream> {
        let (c, image) = self.split(repo)?;
        c.get_blob(image, digest).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_bases() {
        assert_eq!(
            repo_api_base("https://acme.jfrog.io/", "docker-local"),
            "https://acme.jfrog.io/artifactory/api/docker/docker-local"
        );
    }
}
