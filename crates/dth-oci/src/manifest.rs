//! Manifests as bytes plus what we read from them. The bytes are never re-serialised on the way
//! through (a digest is the hash of the exact bytes); only a platform selection writes a new index.

use bytes::Bytes;
use oci_spec::image::{ImageIndex, ImageManifest};

use crate::error::{Error, Result};
use crate::reference::Digest;
use crate::registry::client::ManifestHead;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The `Accept` header for manifest requests: all four kinds.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A blob or manifest reference inside a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// `os/arch[/variant]` for index entries that name a platform.
    pub platform: Option<String>,
    /// A foreign or non-distributable layer (has `urls`, or a nondistributable media type): not
    /// copied, registries fetch it from its URLs.
    pub foreign: bool,
}

/// What a manifest points to.
#[derive(Debug, Clone)]
pub enum Content {
    /// An image: config and layers.
    Image {
        /// The config blob.
        config: Descriptor,
        /// The layer blobs, in order.
        layers: Vec<Descriptor>,
    },
    /// An index or manifest list: child manifests.
    Index {
        /// The children.
        manifests: Vec<Descriptor>,
    },
}

/// A manifest's exact bytes, media type and digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The media type (from `Content-Type`, else from the body's `mediaType`).
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// The bytes as served.
    pub bytes: Bytes,
}

impl Manifest {
    /// Wraps bytes; the media type is taken from the body when the header is missing or generic.
    pub fn new(bytes: Bytes, media_type: Option<String>, what: String) -> Result<Manifest> {
        let doc: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Manifest {
                what: what.clone(),
                detail: format!("not JSON: {e}"),
            })?;
        let from_body = doc
            .get("mediaType")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let media_type = match media_type {
            Some(m) if is_manifest_type(&m) => m,
            _ => match from_body {
                Some(m) => m,
                None if doc.get("manifests").is_some() => OCI_INDEX.to_string(),
                None if doc.get("layers").is_some() => OCI_MANIFEST.to_string(),
                None => {
                    return Err(Error::Manifest {
                        what,
                        detail: "neither an image manifest nor an index".into(),
                    });
                }
            },
        };
        if !is_manifest_type(&media_type) {
            return Err(Error::Manifest {
                what,
                detail: format!(
                    "media type {media_type} is not copied (OCI and Docker schema 2 manifests and indexes only)"
                ),
            });
        }
        Ok(Manifest {
            digest: Digest::of(&bytes),
            media_type,
            bytes,
        })
    }

    /// Digest, media type and size, as a HEAD would tell.
    pub fn head(&self) -> ManifestHead {
        ManifestHead {
            digest: self.digest.clone(),
            media_type: self.media_type.clone(),
            size: Some(self.bytes.len() as u64),
        }
    }

    /// Whether this is an index or manifest list.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    /// Parses what it points to.
    pub fn content(&self, what: &str) -> Result<Content> {
        let bad = |e: serde_json::Error| Error::Manifest {
            what: what.to_string(),
            detail: e.to_string(),
        };
        if self.is_index() {
            let index: ImageIndex = serde_json::from_slice(&self.bytes).map_err(bad)?;
            let manifests = index
                .manifests()
                .iter()
                .map(|d| descriptor(d, what))
                .collect::<Result<Vec<_>>>()?;
            Ok(Content::Index { manifests })
        } else {
            let m: ImageManifest = serde_json::from_slice(&self.bytes).map_err(bad)?;
            Ok(Content::Image {
                config: descriptor(m.config(), what)?,
                layers: m
                    .layers()
                    .iter()
                    .map(|d| descriptor(d, what))
                    .collect::<Result<Vec<_>>>()?,
            })
        }
    }

    /// A new index holding only the children whose platform is in `platforms` (`os/arch[/variant]`;
    /// `os/arch` matches every variant). Errors when none match.
    pub fn select_platforms(&self, platforms: &[String], what: &str) -> Result<Manifest> {
        let mut doc: serde_json::Value =
            serde_json::from_slice(&self.bytes).map_err(|e| Error::Manifest {
                what: what.into(),
                detail: e.to_string(),
            })?;
        let list = doc
            .get_mut("manifests")
            .and_then(|m| m.as_array_mut())
            .ok_or_else(|| Error::Manifest {
                what: what.into(),
                detail: "index without manifests".into(),
            })?;
        list.retain(|entry| {
            let p = entry.get("platform");
            let field = |k: &str| {
                p.and_then(|p| p.get(k))
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
            };
            let (os, arch, variant) = (field("os"), field("architecture"), field("variant"));
            platforms
                .iter()
                .any(|want| platform_matches(want, os, arch, variant))
        });
        if list.is_empty() {
            return Err(Error::Manifest {
                what: what.into(),
                detail: format!("no child manifest for platform {}", platforms.join(", ")),
            });
        }
        let bytes = Bytes::from(serde_json::to_vec(&doc).expect("a JSON value serialises"));
        Ok(Manifest {
            digest: Digest::of(&bytes),
            media_type: self.media_type.clone(),
            bytes,
        })
    }
}

/// `os/arch[/variant]` against an entry.
pub fn platform_matches(want: &str, os: &str, arch: &str, variant: &str) -> bool {
    let mut parts = want.split('/');
    let (w_os, w_arch, w_variant) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next(),
    );
    w_os == os && w_arch == arch && w_variant.is_none_or(|v| v == variant)
}

/// Whether a media type is one of the four manifest kinds we copy.
pub fn is_manifest_type(m: &str) -> bool {
    matches!(m, OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_LIST)
}

fn descriptor(d: &oci_spec::image::Descriptor, what: &str) -> Result<Descriptor> {
    let media_type = d.media_type().to_string();
    let digest: Digest = d
        .digest()
        .to_string()
        .parse()
        .map_err(|e: Error| Error::Manifest {
            what: what.to_string(),
            detail: e.to_string(),
        })?;
    let foreign = d.urls().as_ref().is_some_and(|u| !u.is_empty())
        || media_type.contains("foreign")
        || media_type.contains("nondistributable");
    let platform = d.platform().as_ref().map(|p| {
        let mut s = format!("{}/{}", p.os(), p.architecture());
        if let Some(v) = p.variant() {
            s.push('/');
            s.push_str(v);
        }
        s
    });
    Ok(Descriptor {
        media_type,
        digest,
        size: d.size(),
        platform,
        foreign,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":10,"platform":{"architecture":"amd64","os":"linux"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":11,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#;

    #[test]
    fn index_and_platforms() {
        let m = Manifest::new(Bytes::from_static(INDEX.as_bytes()), None, "t".into()).unwrap();
        assert!(m.is_index());
        let Content::Index { manifests } = m.content("t").unwrap() else {
            panic!()
        };
        assert_eq!(manifests.len(), 2);
        assert_eq!(manifests[1].platform.as_deref(), Some("linux/arm64/v8"));
        let only = m.select_platforms(&["linux/arm64".into()], "t").unwrap();
        let Content::Index { manifests } = only.content("t").unwrap() else {
            panic!()
        };
        assert_eq!(manifests.len(), 1);
        assert_ne!(only.digest, m.digest);
        assert!(m.select_platforms(&["windows/amd64".into()], "t").is_err());
    }

    #[test]
    fn image_manifest_and_foreign_layers() {
        let body = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
          "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":3,"digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333"},
          "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":5,"digest":"sha256:4444444444444444444444444444444444444444444444444444444444444444"},
                    {"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":6,"digest":"sha256:5555555555555555555555555555555555555555555555555555555555555555","urls":["https://x"]}]}"#;
        let m = Manifest::new(
            Bytes::from(body),
            Some("application/json".into()),
            "t".into(),
        )
        .unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);
        let Content::Image { config, layers } = m.content("t").unwrap() else {
            panic!()
        };
        assert_eq!(config.size, 3);
        assert!(!layers[0].foreign && layers[1].foreign);
        assert_eq!(m.digest, Digest::of(body.as_bytes()));
    }

    #[test]
    fn unknown_kinds_are_refused() {
        let e = Manifest::new(
            Bytes::from_static(b"{\"schemaVersion\":1,\"fsLayers\":[]}"),
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws".into()),
            "t".into(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
    }
}
