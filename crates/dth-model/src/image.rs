//! Container image tasks: which registry images go where ([`ImageSync`]), and how each side is
//! reached and signed in to ([`ImageEndpoint`], [`RegistryCredentials`]).
//!
//! Locations keep the command line's form (`docker://HOST[/REPO[:TAG]]`, `ecr://ACCOUNT.REGION`,
//! `artifactory://HOST[/KEY]`, `oci:DIR[:TAG]`, `docker-archive:FILE`), so a task reads like the
//! `dth image sync` that does the same once. This crate only checks their shape; the image engine
//! parses them fully when a task is created.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// Images copied at once per task and process, unless the task says otherwise.
pub const DEFAULT_IMAGE_CONCURRENCY: usize = 10;
/// Attempts of one image before it is dead-lettered, unless the task says otherwise.
pub const DEFAULT_IMAGE_ATTEMPTS: u32 = 3;

/// Images from one registry (or local layout) to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSync {
    /// Where images are read.
    pub source: ImageEndpoint,
    /// Where they are written (a registry).
    pub destination: ImageEndpoint,
    /// `name[:tag]` entries (`name:ALL_TAGS`, `name@sha256:…`; no tag means `latest`). Empty: what
    /// the source location names (the whole registry, one repository or one tag).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Copy only listed tags matching one of these: globs, `regex:RE`, `semver:RANGE`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag_filter: Vec<String>,
    /// Then skip listed tags matching one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_tags: Vec<String>,
    /// Of the listed tags left, keep the N newest (highest semantic versions first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_latest: Option<usize>,
    /// Only these platforms (`os/arch[/variant]`) of multi-arch images; the whole index when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Images copied at once (per task, in each worker process).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Blobs transferred at once (per task, in each worker process).
    #[serde(default = "default_blobs")]
    pub blobs: usize,
    /// Attempts after the first, per request and per blob.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Try cross-repository blob mounts at the destination.
    #[serde(default = "yes")]
    pub mount: bool,
    /// Blob upload at the destination: `monolithic`, `patch` or `chunked:SIZE`; the registry's
    /// profile when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
}

fn default_concurrency() -> usize {
    DEFAULT_IMAGE_CONCURRENCY
}
fn default_blobs() -> usize {
    8
}
fn default_retries() -> u32 {
    5
}
fn yes() -> bool {
    true
}

impl ImageSync {
    /// A sync from `source` to `destination` with every default.
    pub fn new(source: ImageEndpoint, destination: ImageEndpoint) -> ImageSync {
        ImageSync {
            source,
            destination,
            images: Vec::new(),
            tag_filter: Vec::new(),
            exclude_tags: Vec::new(),
            keep_latest: None,
            platforms: Vec::new(),
            concurrency: DEFAULT_IMAGE_CONCURRENCY,
            blobs: default_blobs(),
            retries: default_retries(),
            mount: true,
            upload: None,
        }
    }

    /// Checks shapes; the image engine checks the rest (locations, patterns) when a task is made.
    pub fn validate(&self) -> Result<(), ParseError> {
        self.source.validate("source")?;
        self.destination.validate("destination")?;
        if self.destination.location.starts_with("oci:")
            || self.destination.location.starts_with("docker-archive:")
        {
            return Err(bad(
                "destination.location",
                &self.destination.location,
                "a registry (docker://, ecr:// or artifactory://)",
            ));
        }
        if self.concurrency == 0 {
            return Err(bad("concurrency", "0", "at least 1"));
        }
        if self.blobs == 0 {
            return Err(bad("blobs", "0", "at least 1"));
        }
        for p in &self.platforms {
            let n = p.split('/').count();
            if !(2..=3).contains(&n) || p.split('/').any(str::is_empty) {
                return Err(bad(
                    "platforms",
                    p,
                    "OS/ARCH[/VARIANT], e.g. linux/arm64/v8",
                ));
            }
        }
        if self.images.iter().any(|i| i.trim().is_empty()) {
            return Err(bad("images", "", "an entry is empty"));
        }
        Ok(())
    }
}

/// One side of an image task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEndpoint {
    /// `docker://HOST[/REPO[:TAG]]`, `ecr://ACCOUNT.REGION[/REPO]`, `artifactory://HOST[/KEY]`,
    /// `oci:DIR[:TAG]` or `docker-archive:FILE` (the last two as sources only).
    pub location: String,
    /// How to sign in. ECR uses the hub's AWS credentials (environment, profile, instance role).
    #[serde(default)]
    pub credentials: RegistryCredentials,
    /// Verify the registry's TLS certificate; `false` also allows plain HTTP.
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// Where the registry's v2 API really is (a proxy, a mirror, a VPC endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The ECR API endpoint (default: the region's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecr_endpoint: Option<String>,
}

impl ImageEndpoint {
    /// An endpoint at `location` with anonymous access and TLS verified.
    pub fn new(location: impl Into<String>) -> ImageEndpoint {
        ImageEndpoint {
            location: location.into(),
            credentials: RegistryCredentials::Anonymous,
            tls_verify: true,
            endpoint: None,
            ecr_endpoint: None,
        }
    }

    fn validate(&self, side: &'static str) -> Result<(), ParseError> {
        const SCHEMES: [&str; 5] = [
            "docker://",
            "ecr://",
            "artifactory://",
            "oci:",
            "docker-archive:",
        ];
        if !SCHEMES.iter().any(|s| self.location.starts_with(s)) {
            return Err(bad(
                if side == "source" {
                    "source.location"
                } else {
                    "destination.location"
                },
                &self.location,
                "starts with docker://, ecr://, artifactory://, oci: or docker-archive:",
            ));
        }
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(bad(
                if side == "source" {
                    "source.endpoint"
                } else {
                    "destination.endpoint"
                },
                e,
                "an http:// or https:// URL",
            ));
        }
        if let RegistryCredentials::Basic { username, .. } = &self.credentials
            && username.is_empty()
        {
            return Err(bad(
                if side == "source" {
                    "source.credentials.username"
                } else {
                    "destination.credentials.username"
                },
                "",
                "a user name",
            ));
        }
        Ok(())
    }
}

/// How an image endpoint signs in.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RegistryCredentials {
    /// No credentials (public images), or ECR's AWS credentials.
    #[default]
    Anonymous,
    /// A user and a password or token. The hub moves these into a secret when a task is created.
    Basic {
        /// User name (`AWS` for an ECR token, `_json_key` for a GCR key…).
        username: String,
        /// Password or access token.
        password: String,
    },
    /// A hub secret holding `{"username": …, "password": …}`.
    Secret {
        /// The secret's name.
        name: String,
    },
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryCredentials::Anonymous => f.write_str("Anonymous"),
            RegistryCredentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"[REDACTED]")
                .finish(),
            RegistryCredentials::Secret { name } => {
                f.debug_struct("Secret").field("name", name).finish()
            }
        }
    }
}

fn bad(what: &'static str, value: &str, reason: &str) -> ParseError {
    ParseError::BadValue {
        what,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let s: ImageSync = serde_json::from_value(serde_json::json!({
            "source": {"location": "docker://quay.io/team/app"},
            "destination": {"location": "docker://127.0.0.1:5000", "tls_verify": false,
                            "credentials": {"kind": "basic", "username": "u", "password": "p"}},
        }))
        .unwrap();
        assert_eq!(s.concurrency, DEFAULT_IMAGE_CONCURRENCY);
        assert!(s.source.tls_verify && !s.destination.tls_verify);
        s.validate().unwrap();
        assert!(!format!("{s:?}").contains("\"p\""));

        let mut bad = s.clone();
        bad.destination.location = "oci:/tmp/x".into();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("destination.location")
        );
        let mut bad = s.clone();
        bad.source.location = "http://x".into();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("source.location")
        );
        let mut bad = s;
        bad.platforms = vec!["linux".into()];
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("platforms")
        );
    }
}
