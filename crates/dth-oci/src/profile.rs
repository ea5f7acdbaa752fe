//! Registry quirks in one table. This module is the only place that looks at which registry we
//! talk to: everything else reads a [`Profile`]. An unknown registry gets the cautious profile of
//! the CNCF distribution registry (monolithic PUT uploads, which every v2 registry accepts).

/// How a blob is uploaded after `POST /v2/<name>/blobs/uploads/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStrategy {
    /// One `PUT <location>?digest=` carrying the whole body.
    Monolithic,
    /// One `PATCH` carrying the whole body, then an empty `PUT ?digest=` (Artifactory).
    SinglePatch,
    /// `PATCH` chunks of at most this many bytes with `Content-Range`, then an empty `PUT ?digest=`
    /// (registries that cap request bodies).
    Chunked(u64),
}

/// The kind of registry, detected from its host name (or given by the source type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegistryKind {
    /// Docker Hub (`docker.io`, served by `registry-1.docker.io`).
    DockerHub,
    /// Amazon ECR (`*.dkr.ecr.*.amazonaws.com[.cn]`).
    Ecr,
    /// Quay (`quay.io` and Red Hat Quay).
    Quay,
    /// Google Container Registry and Artifact Registry (`gcr.io`, `*.gcr.io`, `*-docker.pkg.dev`).
    Gcr,
    /// GitHub Container Registry (`ghcr.io`).
    Ghcr,
    /// Harbor (detected only when named; behaves like distribution).
    Harbor,
    /// JFrog Artifactory (`*.jfrog.io`, or an `artifactory://` location).
    Artifactory,
    /// The CNCF distribution registry and anything unknown.
    Distribution,
}

/// What differs between registries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// The kind this profile is for.
    pub kind: RegistryKind,
    /// How blobs are uploaded.
    pub upload: UploadStrategy,
    /// Whether `POST ?mount=&from=` is worth trying (it costs a request where it never works).
    pub mount: bool,
    /// Whether `GET /v2/_catalog` is served to ordinary users.
    pub catalog: bool,
    /// Requests in flight per action (pull, push) this registry takes before it throttles; the
    /// rate window starts here and halves on each 429.
    pub window: usize,
    /// Largest manifest it accepts, in bytes.
    pub max_manifest: usize,
}

const DISTRIBUTION: Profile = Profile {
    kind: RegistryKind::Distribution,
    upload: UploadStrategy::Monolithic,
    mount: true,
    catalog: true,
    window: 32,
    max_manifest: 4 << 20,
};

/// One row per registry kind.
const PROFILES: &[Profile] = &[
    Profile {
        kind: RegistryKind::DockerHub,
        catalog: false,
        window: 16,
        ..DISTRIBUTION
    },
    // ECR: no cross-repository mount before 2024 and still off by default for pull-through
    // repositories; listing goes through the ECR API, not _catalog; bodies up to 20 MB a PATCH.
    Profile {
        kind: RegistryKind::Ecr,
        mount: false,
        catalog: false,
        window: 32,
        ..DISTRIBUTION
    },
    Profile {
        kind: RegistryKind::Quay,
        ..DISTRIBUTION
    },
    // GAR refuses PATCH uploads: monolithic only.
    Profile {
        kind: RegistryKind::Gcr,
        catalog: false,
        ..DISTRIBUTION
    },
    // GHCR corrupts multi-PATCH uploads: monolithic only; its catalog is not public.
    Profile {
        kind: RegistryKind::Ghcr,
        catalog: false,
        window: 16,
        ..DISTRIBUTION
    },
    Profile {
        kind: RegistryKind::Harbor,
        ..DISTRIBUTION
    },
    // Artifactory wants the body in a PATCH before the closing PUT; its catalog is per Docker
    // repository under /artifactory/api/docker/<repo>/v2/_catalog.
    Profile {
        kind: RegistryKind::Artifactory,
        upload: UploadStrategy::SinglePatch,
        ..DISTRIBUTION
    },
    DISTRIBUTION,
];

impl Profile {
    /// The profile of a registry kind.
    pub fn of(kind: RegistryKind) -> &'static Profile {
        PROFILES
            .iter()
            .find(|p| p.kind == kind)
            .unwrap_or(&PROFILES[PROFILES.len() - 1])
    }

    /// The profile for a registry host (`host[:port]`).
    pub fn for_host(host: &str) -> &'static Profile {
        Profile::of(RegistryKind::detect(host))
    }
}

impl RegistryKind {
    /// Detects the kind from a host name; unknown hosts are [`RegistryKind::Distribution`].
    pub fn detect(host: &str) -> RegistryKind {
        let h = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        if h == "docker.io" || h == "registry-1.docker.io" || h == "index.docker.io" {
            RegistryKind::DockerHub
        } else if h.contains(".dkr.ecr.")
            && (h.ends_with(".amazonaws.com") || h.ends_with(".amazonaws.com.cn"))
        {
            RegistryKind::Ecr
        } else if h == "quay.io" {
            RegistryKind::Quay
        } else if h == "gcr.io" || h.ends_with(".gcr.io") || h.ends_with("-docker.pkg.dev") {
            RegistryKind::Gcr
        } else if h == "ghcr.io" {
            RegistryKind::Ghcr
        } else if h.ends_with(".jfrog.io") {
            RegistryKind::Artifactory
        } else if h.starts_with("harbor.") {
            RegistryKind::Harbor
        } else {
            RegistryKind::Distribution
        }
    }
}

/// The registry host of an ECR account and region: `.amazonaws.com.cn` for `cn-*` regions.
pub fn ecr_host(account: &str, region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account}.dkr.ecr.{region}.{suffix}")
}

/// The host that serves a registry's v2 API (Docker Hub's differs from its name).
pub fn api_host(host: &str) -> &str {
    if host == crate::reference::DOCKER_HUB {
        crate::reference::DOCKER_HUB_API
    } else {
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        assert_eq!(RegistryKind::detect("docker.io"), RegistryKind::DockerHub);
        assert_eq!(
            RegistryKind::detect("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            RegistryKind::Ecr
        );
        assert_eq!(
            RegistryKind::detect("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            RegistryKind::Ecr
        );
        assert_eq!(
            RegistryKind::detect("europe-docker.pkg.dev"),
            RegistryKind::Gcr
        );
        assert_eq!(RegistryKind::detect("ghcr.io"), RegistryKind::Ghcr);
        assert_eq!(
            RegistryKind::detect("acme.jfrog.io"),
            RegistryKind::Artifactory
        );
        assert_eq!(
            RegistryKind::detect("127.0.0.1:5000"),
            RegistryKind::Distribution
        );
        assert_eq!(
            Profile::of(RegistryKind::Artifactory).upload,
            UploadStrategy::SinglePatch
        );
        assert_eq!(
            Profile::for_host("ghcr.io").upload,
            UploadStrategy::Monolithic
        );
        assert!(!Profile::for_host("123456789012.dkr.ecr.us-east-1.amazonaws.com").catalog);
    }

    #[test]
    fn ecr_hosts() {
        assert_eq!(
            ecr_host("123456789012", "us-east-1"),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(
            ecr_host("123456789012", "cn-north-1"),
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
    }
}
