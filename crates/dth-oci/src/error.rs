//! The crate's one error type.

use crate::reference::Digest;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the image engine. Messages name the registry, the repository
/// and the digest or tag involved, never a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A reference, flag value or file given by the user cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The registry answered with an error status (after retries where the status is transient).
    #[error("{method} {url}: {status}{}", code_text(.code, .message))]
    Status {
        /// HTTP method.
        method: String,
        /// Full URL without credentials.
        url: String,
        /// HTTP status.
        status: u16,
        /// The first OCI error code of the body (`MANIFEST_UNKNOWN`, `DENIED`...), if any.
        code: Option<String>,
        /// The first OCI error message of the body, if any.
        message: Option<String>,
    },
    /// The registry wants credentials we do not have, or refused the ones we sent.
    #[error("{registry}: authentication failed for {what}: {detail}")]
    Auth {
        /// Registry host.
        registry: String,
        /// What we were doing.
        what: String,
        /// Why it failed (never the credential itself).
        detail: String,
    },
    /// Bytes received do not hash to the digest they were asked for or announced with.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Blob or manifest, with its repository.
        what: String,
        /// The digest we asked for.
        expected: Digest,
        /// The digest of the bytes we got.
        actual: String,
    },
    /// The body ended short of (or beyond) its announced size.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// Blob or manifest, with its repository.
        what: String,
        /// Announced size.
        expected: u64,
        /// Bytes received.
        actual: u64,
    },
    /// A network error, timeout or broken connection (after retries).
    #[error("{what}: {source}")]
    Transport {
        /// The request.
        what: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// A manifest or index cannot be parsed, or has a media type we do not copy.
    #[error("{what}: {detail}")]
    Manifest {
        /// Which manifest.
        what: String,
        /// The problem.
        detail: String,
    },
    /// A local file (OCI layout, docker archive, auth file) cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An AWS ECR API call failed.
    #[error("ECR {operation} in {region}: {detail}")]
    Ecr {
        /// The API operation.
        operation: String,
        /// The region.
        region: String,
        /// The SDK's error text.
        detail: String,
    },
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
}

fn code_text(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(" {c}: {m}"),
        (Some(c), None) => format!(" {c}"),
        (None, Some(m)) => format!(": {m}"),
        (None, None) => String::new(),
    }
}

impl Error {
    /// Whether the answer was a 404 (or an OCI `*_UNKNOWN` code).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Status { status, code, .. } => {
                *status == 404 || code.as_deref().is_some_and(|c| c.ends_with("_UNKNOWN"))
            }
            _ => false,
        }
    }

    /// Whether trying the same thing again later may succeed: transient statuses, transport errors,
    /// corrupted or truncated bodies, and an upload session the registry dropped (a new session
    /// can succeed: distribution cancels an upload when a chunk arrives with a stale `_state`,
    /// as after a lost answer). Other 4xx answers, bad input and auth failures are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Status { status, code, .. } => {
                is_transient_status(*status)
                    || matches!(
                        code.as_deref(),
                        Some("BLOB_UPLOAD_INVALID" | "BLOB_UPLOAD_UNKNOWN")
                    )
            }
            Error::Transport { .. } | Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => {
                true
            }
            _ => false,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Error {
        Error::Invalid(msg.into())
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// The statuses worth retrying: 408, 429 and every 5xx except 501 and 505.
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429) || (status >= 500 && status != 501 && status != 505)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text_names_code_and_message() {
        let e = Error::Status {
            method: "GET".into(),
            url: "https://r.example/v2/app/manifests/1".into(),
            status: 404,
            code: Some("MANIFEST_UNKNOWN".into()),
            message: Some("manifest unknown".into()),
        };
        assert_eq!(
            e.to_string(),
            "GET https://r.example/v2/app/manifests/1: 404 MANIFEST_UNKNOWN: manifest unknown"
        );
        assert!(e.is_not_found());
        assert!(!e.is_retryable());
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_transient_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 501, 505] {
            assert!(!is_transient_status(s), "{s}");
        }
    }
}
