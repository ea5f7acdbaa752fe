//! A `docker save` tarball as a source. Two shapes exist:
//!
//! - Docker ≥ 25 writes an OCI layout inside the tar (`oci-layout`, `index.json`, `blobs/`): its
//!   manifests are copied as they are, digests preserved.
//! - Older Docker, Podman and skopeo write `manifest.json` (`Config`, `RepoTags`, `Layers`) with
//!   uncompressed layer tars: we write a Docker schema 2 manifest for each image (layers keep their
//!   bytes, so their digests equal the config's `diff_ids`).
//!
//! Opening hashes every member once (the tar is read, not unpacked); blobs are then served from
//! their offsets in the file.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::ImageSource;
use super::oci_layout::{file_stream, read_index};
use crate::error::{Error, Result};
use crate::manifest::{DOCKER_MANIFEST, Manifest};
use crate::reference::{Digest, Hasher, ImageEntry, Reference, TagSelector};
use crate::registry::{BlobStream, ManifestHead};

/// Reads images from a `docker save` tarball.
#[derive(Debug, Clone)]
pub struct DockerArchiveSource {
    file: PathBuf,
    /// digest → (offset of the data in the tar, length)
    blobs: HashMap<Digest, (u64, u64)>,
    /// Manifests we wrote (legacy archives), by digest.
    written: HashMap<Digest, Manifest>,
    /// repository → tag → manifest
    refs: BTreeMap<String, BTreeMap<String, ManifestHead>>,
}

struct Member {
    offset: u64,
    len: u64,
    link: Option<String>,
}

fn normalise(p: &str) -> String {
    p.trim_start_matches("./").to_string()
}

impl DockerArchiveSource {
    /// Opens and indexes an archive (reads it once; runs on a blocking thread).
    pub async fn open(file: &Path) -> Result<DockerArchiveSource> {
        let file = file.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&file))
            .await
            .map_err(|e| Error::invalid(format!("archive reader: {e}")))?
    }

    fn open_blocking(path: &Path) -> Result<DockerArchiveSource> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, f));
        let mut members: HashMap<String, Member> = HashMap::new();
        let mut small: HashMap<String, Vec<u8>> = HashMap::new();
        let mut digests: HashMap<String, Digest> = HashMap::new();
        let bad = |e: std::io::Error| {
            Error::invalid(format!(
                "{}: not a readable tar archive: {e}",
                path.display()
            ))
        };
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let name = normalise(&entry.path().map_err(bad)?.to_string_lossy());
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(bad)?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let target = if kind.is_symlink() {
                    // Relative to the link's directory.
                    let dir = Path::new(&name)
                        .parent()
                        .map(|p| p.to_path_buf())
                        .unwrap_or_default();
                    normalise_path(&dir.join(&target))
                } else {
                    normalise(&target)
                };
                members.insert(
                    name,
                    Member {
                        offset: 0,
                        len: 0,
                        link: Some(target),
                    },
                );
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let offset = entry.raw_file_position();
            let len = entry.size();
            let mut hasher = Hasher::default();
            let mut keep = Vec::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = entry.read(&mut buf).map_err(bad)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                if name.ends_with(".json")
                    || name == "oci-layout"
                    || (len <= 1 << 20 && name.starts_with("blobs/"))
                {
                    keep.extend_from_slice(&buf[..n]);
                }
            }
            digests.insert(name.clone(), hasher.finish());
            if !keep.is_empty() {
                small.insert(name.clone(), keep);
            }
            members.insert(
                name,
                Member {
                    offset,
                    len,
                    link: None,
                },
            );
        }
        let resolve = |name: &str| -> Option<(&Member, String)> {
            let mut n = normalise(name);
            for _ in 0..16 {
                let m = members.get(&n)?;
                match &m.link {
                    Some(t) => n = t.clone(),
                    None => return Some((m, n)),
                }
            }
            None
        };
        let mut out = DockerArchiveSource {
            file: path.to_path_buf(),
            blobs: HashMap::new(),
            written: HashMap::new(),
            refs: BTreeMap::new(),
        };
        for (name, m) in &members {
            if m.link.is_none() {
                out.blobs.insert(digests[name].clone(), (m.offset, m.len));
            }
        }
        if let (Some(_), Some(index)) = (small.get("oci-layout"), small.get("index.json")) {
            let what = format!("{}: index.json", path.display());
            // Docker names images in its own annotation; prefer that full name.
            let doc: serde_json::Value = serde_json::from_slice(index)
                .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
            let mut renamed = doc.clone();
            if let Some(list) = renamed.get_mut("manifests").and_then(|m| m.as_array_mut()) {
                for entry in list {
                    let full = entry
                        .get("annotations")
                        .and_then(|a| a.get("io.containerd.image.name"))
                        .and_then(|v| v.as_str())
                        .map(str::to_string);
                    if let (Some(full), Some(ann)) = (
                        full,
                        entry.get_mut("annotations").and_then(|a| a.as_object_mut()),
                    ) {
                        ann.insert(
                            super::oci_layout::REF_NAME.into(),
                            serde_json::Value::String(full),
                        );
                    }
                }
            }
            out.refs = read_index(&serde_json::to_vec(&renamed).expect("JSON"), &what)?;
            return Ok(out);
        }
        let manifest_json = small.get("manifest.json").ok_or_else(|| {
            Error::invalid(format!(
                "{}: not a docker archive (no manifest.json or index.json)",
                path.display()
            ))
        })?;
        let images: Vec<serde_json::Value> = serde_json::from_slice(manifest_json)
            .map_err(|e| Error::invalid(format!("{}: manifest.json: {e}", path.display())))?;
        for image in images {
            let config_name = image
                .get("Config")
                .and_then(|v| v.as_str())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "{}: manifest.json entry without Config",
                        path.display()
                    ))
                })?;
            let (config, config_name) = resolve(config_name).ok_or_else(|| {
                Error::invalid(format!("{}: {config_name} is missing", path.display()))
            })?;
            let mut layers = Vec::new();
            for layer in image
                .get("Layers")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                let layer = layer.as_str().unwrap_or_default();
                let (m, real) = resolve(layer).ok_or_else(|| {
                    Error::invalid(format!("{}: layer {layer} is missing", path.display()))
                })?;
                let media_type = layer_media_type(path, m.offset)?;
                layers.push(serde_json::json!({"mediaType": media_type, "size": m.len, "digest": digests[&real].as_str()}));
            }
            let doc = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len, "digest": digests[&config_name].as_str()},
                "layers": layers,
            });
            let bytes = Bytes::from(serde_json::to_vec(&doc).expect("JSON"));
            let manifest = Manifest::new(
                bytes,
                Some(DOCKER_MANIFEST.into()),
                path.display().to_string(),
            )?;
            for tag in image
                .get("RepoTags")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                let Some(tag) = tag.as_str() else { continue };
                let entry = ImageEntry::parse(tag).map_err(|e| {
                    Error::invalid(format!("{}: RepoTags {tag:?}: {e}", path.display()))
                })?;
                let TagSelector::One(Reference::Tag(t)) = entry.tags else {
                    continue;
                };
                out.refs
                    .entry(entry.repository)
                    .or_default()
                    .insert(t, manifest.head());
            }
            out.written.insert(manifest.digest.clone(), manifest);
        }
        Ok(out)
    }
}

fn normalise_path(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

/// gzip and zstd layers keep their compressed media type; anything else is a plain tar.
fn layer_media_type(path: &Path, offset: u64) -> Result<&'static str> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(|e| Error::io(path, e))?;
    Ok(if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        "application/vnd.docker.image.rootfs.diff.tar"
    })
}

#[async_trait]
impl ImageSource for DockerArchiveSource {
    fn describe(&self) -> String {
        format!("docker-archive:{}", self.file.display())
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
        Ok(None)
    }

    async fn manifest(&self, repo: &str, reference: &str) -> Result<Manifest> {
        let digest = match reference.parse::<Digest>() {
            Ok(d) => d,
            Err(_) => {
                self.resolve(repo, reference)
                    .await?
                    .ok_or_else(|| {
                        Error::invalid(format!("{}: no image {repo}:{reference}", self.describe()))
                    })?
                    .digest
            }
        };
        if let Some(m) = self.written.get(&digest) {
            return Ok(m.clone());
        }
        let &(offset, len) = self
            .blobs
            .get(&digest)
            .ok_or_else(|| Error::invalid(format!("{}: no manifest {digest}", self.describe())))?;
        let mut stream = file_stream(&self.file, offset, len).await?.stream;
        let mut bytes = Vec::with_capacity(len as usize);
        use futures::StreamExt;
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        let what = format!("{}@{digest}", self.describe());
        let media = self
            .refs
            .values()
            .flat_map(|t| t.values())
            .find(|h| h.digest == digest)
            .map(|h| h.media_type.clone())
            .filter(|m| !m.is_empty());
        Manifest::new(Bytes::from(bytes), media, what)
    }

    async fn blob(&self, _repo: &str, digest: &Digest) -> Result<BlobStream> {
        let &(offset, len) = self
            .blobs
            .get(digest)
            .ok_or_else(|| Error::invalid(format!("{}: no blob {digest}", self.describe())))?;
        file_stream(&self.file, offset, len).await
    }
}
