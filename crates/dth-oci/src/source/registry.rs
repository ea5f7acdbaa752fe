//! A v2 registry as a source.

use async_trait::async_trait;

use super::ImageSource;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::reference::Digest;
use crate::registry::{BlobStream, ManifestHead, RegistryClient};

/// Reads from any v2 registry (Docker Hub, Quay, GCR/GAR, GHCR, Harbor, the CNCF registry…).
#[derive(Debug, Clone)]
pub struct RegistrySource {
    client: RegistryClient,
}

impl RegistrySource {
    /// Wraps a connected client.
    pub fn new(client: RegistryClient) -> RegistrySource {
        RegistrySource { client }
    }
}

#[async_trait]
impl ImageSource for RegistrySource {
    fn describe(&self) -> String {
        format!("docker://{}", self.client.host())
    }

    async fn repositories(&self) -> Result<Vec<String>> {
        if !self.client.profile().catalog {
            return Err(Error::invalid(format!(
                "{} does not list its repositories (no _catalog): name them with docker://HOST/REPO or --images-from",
                self.client.host()
            )));
        }
        self.client.catalog().await
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
