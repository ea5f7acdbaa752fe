//! Names: digests, `name[:tag]` references, and the `docker://` / `oci:` / `docker-archive:` /
//! `ecr://` / `artifactory://` locations given on the command line.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// Docker Hub's registry host as users write it.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's v2 API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A content digest, `sha256:<64 lowercase hex>` (the only algorithm registries use in practice;
/// `sha512:` is accepted for reading but verified only for sha256).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes` (sha256).
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// `sha256:…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `sha256`.
    pub fn algorithm(&self) -> &str {
        self.0.split_once(':').map_or("", |(a, _)| a)
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, h)| h)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest> {
        let bad = || {
            Error::invalid(format!(
                "{s:?} is not a digest (want sha256:<64 hex digits>)"
            ))
        };
        let (alg, hex) = s.split_once(':').ok_or_else(bad)?;
        let len = match alg {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(bad()),
        };
        if hex.len() != len
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        Ok(Digest(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Incremental sha256 that yields a [`Digest`].
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// The digest of everything added.
    pub fn finish(self) -> Digest {
        Digest(format!("sha256:{}", hex::encode(self.0.finalize())))
    }
}

/// A tag or a digest after the repository name.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Reference {
    /// `:tag`.
    Tag(String),
    /// `@sha256:…`.
    Digest(Digest),
}

impl Reference {
    /// The string used in `/manifests/<reference>`.
    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(t) => t,
            Reference::Digest(d) => d.as_str(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `tag` is a valid tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Whether `name` is a valid repository path: lowercase components of `[a-z0-9]` joined by
/// `.`, `_`, `__` or `-`, separated by `/`.
pub fn is_valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| {
                    x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
                })
        })
}

/// What follows a repository in a selection entry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TagSelector {
    /// One tag or digest.
    One(Reference),
    /// `ALL_TAGS` (or a whole-repository location): every tag, then the tag filters.
    All,
}

/// One `[host[:port]/]name[:tag|@digest|:ALL_TAGS]` entry (an `--images-from` line, or the path
/// part of `docker://…`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ImageEntry {
    /// The registry host if the entry names one (a first component with a `.` or `:`, or `localhost`).
    pub host: Option<String>,
    /// The repository path.
    pub repository: String,
    /// Tag, digest or every tag. A missing tag means `latest`.
    pub tags: TagSelector,
}

impl ImageEntry {
    /// Parses an entry. `host` is split off only when the first component looks like a host
    /// (contains `.` or `:`, or is `localhost`), as Docker does; a `docker.io` entry without a
    /// namespace gets `library/`.
    pub fn parse(s: &str) -> Result<ImageEntry> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::invalid("empty image name"));
        }
        let (mut host, rest) = match s.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_string()), rest)
            }
            _ => (None, s),
        };
        let (name, tags) = if let Some((name, digest)) = rest.split_once('@') {
            (name, TagSelector::One(Reference::Digest(digest.parse()?)))
        } else {
            // A ':' after the last '/' starts the tag.
            let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
            match rest[last_slash..].rfind(':') {
                Some(i) => {
                    let (name, tag) = (&rest[..last_slash + i], &rest[last_slash + i + 1..]);
                    if tag == "ALL_TAGS" {
                        (name, TagSelector::All)
                    } else if is_valid_tag(tag) {
                        (name, TagSelector::One(Reference::Tag(tag.to_string())))
                    } else {
                        return Err(Error::invalid(format!("{s:?}: {tag:?} is not a valid tag")));
                    }
                }
                None => (rest, TagSelector::One(Reference::Tag("latest".into()))),
            }
        };
        let mut repository = name.to_string();
        if host.as_deref() == Some("index.docker.io") || host.as_deref() == Some(DOCKER_HUB_API) {
            host = Some(DOCKER_HUB.into());
        }
        if host.as_deref() == Some(DOCKER_HUB) && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        if !is_valid_repository(&repository) {
            return Err(Error::invalid(format!(
                "{s:?}: {repository:?} is not a valid repository name (lowercase letters, digits, and . _ - / separators)"
            )));
        }
        Ok(ImageEntry {
            host,
            repository,
            tags,
        })
    }
}

/// Where images come from or go to, as given on the command line.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Location {
    /// `docker://HOST[/REPO[:TAG]]`: a v2 registry, the whole of it or one repository.
    Registry {
        /// `host[:port]`; `docker.io` for Docker Hub.
        host: String,
        /// Repository and tags, or `None` for the whole registry.
        image: Option<(String, Option<TagSelector>)>,
    },
    /// `ecr://ACCOUNT.REGION[/REPO[:TAG]]`: Amazon ECR.
    Ecr {
        /// 12-digit account id.
        account: String,
        /// AWS region (`cn-*` regions use `.amazonaws.com.cn`).
        region: String,
        /// Repository and tags, or `None` for every repository.
        image: Option<(String, Option<TagSelector>)>,
    },
    /// `artifactory://HOST[/DOCKER_REPO]`: JFrog Artifactory, every Docker repository or one.
    Artifactory {
        /// `host[:port]`.
        host: String,
        /// One Artifactory Docker repository (its key), or all of them.
        repo_key: Option<String>,
    },
    /// `oci:DIR[:TAG]`: an OCI image layout directory.
    OciLayout {
        /// The directory holding `oci-layout` and `index.json`.
        dir: PathBuf,
        /// One tag (`org.opencontainers.image.ref.name`), or every tagged image.
        tag: Option<String>,
    },
    /// `docker-archive:FILE`: a `docker save` tarball.
    DockerArchive {
        /// The tar file.
        file: PathBuf,
    },
}

impl Location {
    /// Parses a command-line location.
    pub fn parse(s: &str) -> Result<Location> {
        if let Some(rest) = s.strip_prefix("docker://") {
            let rest = rest.trim_end_matches('/');
            let (host, path) = match rest.split_once('/') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            if host.is_empty() {
                return Err(Error::invalid(format!(
                    "{s:?}: no registry host after docker://"
                )));
            }
            let host = match host {
                "index.docker.io" | DOCKER_HUB_API => DOCKER_HUB,
                h => h,
            };
            let image = path.map(|p| image_part(host, p, s)).transpose()?;
            Ok(Location::Registry {
                host: host.to_string(),
                image,
            })
        } else if let Some(rest) = s.strip_prefix("ecr://") {
            let (acct_region, path) = match rest.split_once('/') {
                Some((a, p)) if !p.is_empty() => (a, Some(p)),
                Some((a, _)) => (a, None),
                None => (rest, None),
            };
            let (account, region) = acct_region.split_once('.').ok_or_else(|| {
                Error::invalid(format!("{s:?}: want ecr://ACCOUNT.REGION[/REPO[:TAG]], e.g. ecr://123456789012.us-east-1"))
            })?;
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::invalid(format!(
                    "{s:?}: {account:?} is not a 12-digit AWS account id"
                )));
            }
            if region.is_empty()
                || !region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(Error::invalid(format!(
                    "{s:?}: {region:?} is not an AWS region"
                )));
            }
            let image = path.map(|p| image_part("", p, s)).transpose()?;
            Ok(Location::Ecr {
                account: account.into(),
                region: region.into(),
                image,
            })
        } else if let Some(rest) = s.strip_prefix("artifactory://") {
            let rest = rest.trim_end_matches('/');
            let (host, key) = match rest.split_once('/') {
                Some((h, k)) => (h, Some(k.to_string())),
                None => (rest, None),
            };
            if host.is_empty() {
                return Err(Error::invalid(format!(
                    "{s:?}: no host after artifactory://"
                )));
            }
            Ok(Location::Artifactory {
                host: host.into(),
                repo_key: key,
            })
        } else if let Some(rest) = s.strip_prefix("oci:") {
            // oci:DIR[:TAG]; a ':' in the last path component starts the tag.
            let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
            let (dir, tag) = match rest[last_slash..].rfind(':') {
                Some(i) => (
                    &rest[..last_slash + i],
                    Some(rest[last_slash + i + 1..].to_string()),
                ),
                None => (rest, None),
            };
            if dir.is_empty() {
                return Err(Error::invalid(format!("{s:?}: no directory after oci:")));
            }
            if let Some(t) = &tag
                && !is_valid_tag(t)
            {
                return Err(Error::invalid(format!("{s:?}: {t:?} is not a valid tag")));
            }
            Ok(Location::OciLayout {
                dir: dir.into(),
                tag,
            })
        } else if let Some(rest) = s.strip_prefix("docker-archive:") {
            if rest.is_empty() {
                return Err(Error::invalid(format!(
                    "{s:?}: no file after docker-archive:"
                )));
            }
            Ok(Location::DockerArchive { file: rest.into() })
        } else {
            Err(Error::invalid(format!(
                "{s:?}: unknown location; use docker://HOST[/REPO[:TAG]], ecr://ACCOUNT.REGION[/REPO], \
                 artifactory://HOST[/REPO], oci:DIR[:TAG] or docker-archive:FILE"
            )))
        }
    }
}

fn image_part(host: &str, path: &str, whole: &str) -> Result<(String, Option<TagSelector>)> {
    let has_tag = {
        let last = path.rsplit('/').next().unwrap_or(path);
        last.contains(':') || path.contains('@')
    };
    let entry = ImageEntry::parse(&format!(
        "{}/{path}",
        if host.is_empty() { "ecr.local" } else { host }
    ))
    .map_err(|e| Error::invalid(format!("{whole:?}: {e}")))?;
    Ok((entry.repository, has_tag.then_some(entry.tags)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let d = Digest::of(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.as_str().parse::<Digest>().unwrap(), d);
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!(
            "md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                .parse::<Digest>()
                .is_err()
        );
        assert!(
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
                .parse::<Digest>()
                .is_err()
        );
    }

    #[test]
    fn entries() {
        let e = ImageEntry::parse("alpine").unwrap();
        assert_eq!((e.host, e.repository.as_str()), (None, "alpine"));
        assert_eq!(e.tags, TagSelector::One(Reference::Tag("latest".into())));
        let e = ImageEntry::parse("127.0.0.1:5000/team/app:1.2").unwrap();
        assert_eq!(e.host.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(e.repository, "team/app");
        assert_eq!(e.tags, TagSelector::One(Reference::Tag("1.2".into())));
        let e = ImageEntry::parse("localhost:5000/app").unwrap();
        assert_eq!(
            (e.host.as_deref(), e.repository.as_str()),
            (Some("localhost:5000"), "app")
        );
        let e = ImageEntry::parse("docker.io/nginx:ALL_TAGS").unwrap();
        assert_eq!(e.repository, "library/nginx");
        assert_eq!(e.tags, TagSelector::All);
        let e = ImageEntry::parse(
            "team/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        )
        .unwrap();
        assert!(matches!(e.tags, TagSelector::One(Reference::Digest(_))));
        assert!(ImageEntry::parse("Team/App").is_err());
        assert!(ImageEntry::parse("app:bad*tag").is_err());
        assert!(ImageEntry::parse("app:").is_err());
    }

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("docker://127.0.0.1:5000").unwrap(),
            Location::Registry {
                host: "127.0.0.1:5000".into(),
                image: None
            }
        );
        assert_eq!(
            Location::parse("docker://127.0.0.1:5000/a/b:v1").unwrap(),
            Location::Registry {
                host: "127.0.0.1:5000".into(),
                image: Some((
                    "a/b".into(),
                    Some(TagSelector::One(Reference::Tag("v1".into())))
                ))
            }
        );
        assert_eq!(
            Location::parse("docker://docker.io/nginx").unwrap(),
            Location::Registry {
                host: "docker.io".into(),
                image: Some(("library/nginx".into(), None))
            }
        );
        assert_eq!(
            Location::parse("oci:/tmp/x:v1").unwrap(),
            Location::OciLayout {
                dir: "/tmp/x".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Location::parse("oci:./dir").unwrap(),
            Location::OciLayout {
                dir: "./dir".into(),
                tag: None
            }
        );
        let Location::Ecr {
            account,
            region,
            image,
        } = Location::parse("ecr://123456789012.cn-north-1/app").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (account.as_str(), region.as_str()),
            ("123456789012", "cn-north-1")
        );
        assert_eq!(image, Some(("app".into(), None)));
        assert!(
            Location::parse("ecr://1234.us-east-1")
                .unwrap_err()
                .to_string()
                .contains("12-digit")
        );
        assert!(
            Location::parse("s3://bucket")
                .unwrap_err()
                .to_string()
                .contains("unknown location")
        );
        assert!(Location::parse("docker://").is_err());
    }
}
