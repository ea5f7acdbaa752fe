//! An OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) as a source:
//! the "local development environment" path (`skopeo copy … oci:DIR:TAG`, `buildah push`,
//! `docker buildx --output type=oci`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::ImageSource;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::reference::{Digest, ImageEntry, Reference, TagSelector};
use crate::registry::{BlobStream, ManifestHead};

/// The annotation holding an image's name in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Reads images from an OCI layout directory. Images are named by their
/// `org.opencontainers.image.ref.name` annotation: a plain tag (`v1`) belongs to the unnamed
/// repository `""` (the destination must name one), a full name (`team/app:v1`) to its repository.
#[derive(Debug, Clone)]
pub struct OciLayoutSource {
    dir: PathBuf,
    /// repository → tag → (digest, media type, size)
    refs: BTreeMap<String, BTreeMap<String, ManifestHead>>,
}

impl OciLayoutSource {
    /// Opens a layout: checks `oci-layout` and reads `index.json`.
    pub fn open(dir: &Path) -> Result<OciLayoutSource> {
        let layout = dir.join("oci-layout");
        let text = std::fs::read_to_string(&layout).map_err(|e| {
            Error::invalid(format!(
                "{}: not an OCI layout directory (cannot read oci-layout: {e})",
                dir.display()
            ))
        })?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(format!("{}: bad JSON: {e}", layout.display())))?;
        if doc
            .get("imageLayoutVersion")
            .and_then(|v| v.as_str())
            .is_none()
        {
            return Err(Error::invalid(format!(
                "{}: no imageLayoutVersion",
                layout.display()
            )));
        }
        let index_path = dir.join("index.json");
        let index = std::fs::read(&index_path).map_err(|e| Error::io(&index_path, e))?;
        let refs = read_index(&index, &index_path.display().to_string())?;
        Ok(OciLayoutSource {
            dir: dir.to_path_buf(),
            refs,
        })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }
}

/// Reads an `index.json`: every named entry, by repository and tag.
pub(crate) fn read_index(
    bytes: &[u8],
    what: &str,
) -> Result<BTreeMap<String, BTreeMap<String, ManifestHead>>> {
    let doc: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(format!("{what}: bad JSON: {e}")))?;
    let mut refs: BTreeMap<String, BTreeMap<String, ManifestHead>> = BTreeMap::new();
    for entry in doc
        .get("manifests")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
    {
        let Some(name) = entry
            .get("annotations")
            .and_then(|a| a.get(REF_NAME))
            .and_then(|v| v.as_str())
        else {
            continue;
        };
        let digest: Digest = entry
            .get("digest")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::invalid(format!("{what}: entry {name:?} has no digest")))?
            .parse()?;
        let head = ManifestHead {
            digest,
            media_type: entry
                .get("mediaType")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
            size: entry.get("size").and_then(|v| v.as_u64()),
        };
        let (repo, tag) = split_ref_name(name);
        refs.entry(repo).or_default().insert(tag, head);
    }
    Ok(refs)
}

/// `v1` → ("", "v1"); `team/app:v1` → ("team/app", "v1"); `team/app` → ("team/app", "latest").
fn split_ref_name(name: &str) -> (String, String) {
    if !name.contains('/') && !name.contains(':') {
        return (String::new(), name.to_string());
    }
    match ImageEntry::parse(name) {
        Ok(ImageEntry {
            repository,
            tags: TagSelector::One(Reference::Tag(t)),
            ..
        }) => (repository, t),
        _ => (String::new(), name.to_string()),
    }
}

/// A file as a byte stream.
pub(crate) async fn file_stream(path: &Path, offset: u64, len: u64) -> Result<BlobStream> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(path, e))?;
    if offset > 0 {
        f.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| Error::io(path, e))?;
    }
    let shown = path.display().to_string();
    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 << 10)
        .map_err(move |e| Error::io(&shown, e))
        .boxed();
    Ok(BlobStream {
        size: Some(len),
        stream,
    })
}

#[async_trait]
impl ImageSource for OciLayoutSource {
    fn describe(&self) -> String {
        format!("oci:{}", self.dir.display())
    }

    async fn repositories(&self) -> Result<Vec<String>> {
        Ok(self.refs.keys().cloned().collect())
    }

    async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        Ok(self
            .refs
            .get(repo)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn resolve(&self, repo: &str, reference: &str) -> Result<Option<ManifestHead>> {
        if let Some(h) = self.refs.get(repo).and_then(|t| t.get(reference)) {
            return Ok(Some(h.clone()));
        }
        if let Ok(d) = reference.parse::<Digest>()
            && self.blob_path(&d).is_file()
        {
            return Ok(Some(self.manifest(repo, reference).await?.head()));
        }
        Ok(None)
    }

    async fn manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        let head = match reference.parse::<Digest>() {
            Ok(d) => ManifestHead {
                digest: d,
                media_type: String::new(),
                size: None,
            },
            Err(_) => self
                .resolve(repo, reference)
                .await?
                .ok_or_else(|| Error::Status {
                    method: "READ".into(),
                    url: format!("{}:{reference}", self.describe()),
                    status: 404,
                    code: Some("MANIFEST_UNKNOWN".into()),
                    message: None,
                })?,
        };
        let path = self.blob_path(&head.digest);
        let bytes = Bytes::from(
            tokio::fs::read(&path)
                .await
                .map_err(|e| Error::io(&path, e))?,
        );
        let what = format!("{}@{}", self.describe(), head.digest);
        let actual = Digest::of(&bytes);
        if actual != head.digest {
            return Err(Error::DigestMismatch {
                what,
                expected: head.digest,
                actual: actual.to_string(),
            });
        }
        Manifest::new(
            bytes,
            (!head.media_type.is_empty()).then_some(head.media_type),
            what,
        )
    }

    async fn blob(&self, _repo: &str, digest: &Digest) -> Result<BlobStream> {
        let path = self.blob_path(digest);
        let len = tokio::fs::metadata(&path)
            .await
            .map_err(|e| Error::io(&path, e))?
            .len();
        file_stream(&path, 0, len).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names() {
        assert_eq!(split_ref_name("v1"), ("".into(), "v1".into()));
        assert_eq!(
            split_ref_name("team/app:v1"),
            ("team/app".into(), "v1".into())
        );
        assert_eq!(
            split_ref_name("localhost:5000/app:2"),
            ("app".into(), "2".into())
        );
    }
}
