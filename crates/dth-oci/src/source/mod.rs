//! Where images are read from. Every source answers the same questions through
//! [`ImageSource`]: which repositories and tags it has, what a tag points to, a manifest's bytes,
//! and a blob's bytes. The copier never asks which kind of source it reads.

use async_trait::async_trait;

use crate::error::Result;
use crate::manifest::Manifest;
use crate::reference::Digest;
use crate::registry::{BlobStream, ManifestHead, RegistryClient};

pub mod artifactory;
pub mod docker_archive;
pub mod ecr;
pub mod oci_layout;
pub mod registry;

pub use artifactory::ArtifactorySource;
pub use docker_archive::DockerArchiveSource;
pub use ecr::{Ecr, EcrSource};
pub use oci_layout::OciLayoutSource;
pub use registry::RegistrySource;

/// A place images are read from.
#[async_trait]
pub trait ImageSource: Send + Sync + std::fmt::Debug {
    /// A short description for messages: `docker://host`, `oci:/dir`…
    fn describe(&self) -> String;

    /// Every repository. Local sources whose images carry no repository name answer `[""]`.
    async fn repositories(&self) -> Result<Vec<String>>;

    /// Every tag of a repository.
    async fn tags(&self, repo: &str) -> Result<Vec<String>>;

    /// What a tag (or digest) points to, as cheaply as the source allows (a registry HEAD);
    /// `None` when it does not exist.
    async fn resolve(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>>;

    /// A manifest's exact bytes (verified against `reference` when it is a digest).
    async fn manifest(&self, repo: &str, reference: &str) -> Result<Manifest>;

    /// A blob's bytes. The caller verifies them against the digest.
    async fn blob(&self, repo: &str, digest: &Digest) -> Result<BlobStream>;

    /// The registry client, for sources that are registries (cross-repository mounts within one
    /// registry, request counts).
    fn registry(&self) -> Option<&RegistryClient> {
        None
    }
}
