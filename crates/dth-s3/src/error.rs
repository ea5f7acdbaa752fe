//! The engine's one error type. Messages name the side, the object and the endpoint, and say what to do.

use std::fmt;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Which end of a transfer an error or an endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Where objects are read.
    Source,
    /// Where objects are written.
    Destination,
}

impl Side {
    /// The prefix of this side's command-line flags: `src` or `dst`.
    pub fn flag_prefix(self) -> &'static str {
        match self {
            Side::Source => "src",
            Side::Destination => "dst",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

/// Everything that can go wrong in the object engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An endpoint could not be set up from its spec.
    #[error("{side} endpoint: {message}")]
    Config {
        /// Which side.
        side: Side,
        /// What is wrong.
        message: String,
    },
    /// A request failed (after the request-level retries).
    #[error("{op} {target} on {side} {endpoint}: {detail}")]
    Request {
        /// The S3 operation, e.g. `GetObject`.
        op: &'static str,
        /// Which side.
        side: Side,
        /// `s3://bucket/key` or `s3://bucket`.
        target: String,
        /// The endpoint URL or provider name.
        endpoint: String,
        /// HTTP status, when a response arrived.
        status: Option<u16>,
        /// S3 error code such as `AccessDenied`, when given.
        code: Option<String>,
        /// Human text: code, message and a hint.
        detail: String,
        /// Whether trying the object again later may succeed.
        retryable: bool,
    },
    /// A listing returned keys out of byte order: the diff of that partition cannot stream.
    #[error("{side} listing out of order: {key:?} came after {prev:?}")]
    Unsorted {
        /// Which side.
        side: Side,
        /// The previous key.
        prev: String,
        /// The key that should have sorted after it.
        key: String,
    },
    /// The bytes read or written do not match what the source says the object is.
    #[error("verification of {key:?} failed: {detail}")]
    Verify {
        /// The relative key.
        key: String,
        /// Expected vs actual.
        detail: String,
    },
    /// The object was written, but the destination's ETag or size does not match what was sent.
    #[error("verification of {key:?} at the destination failed: {detail}")]
    WrittenMismatch {
        /// The relative key.
        key: String,
        /// Expected vs actual.
        detail: String,
    },
    /// A source body ended early or could not be read.
    #[error("reading {target} from the source: {detail}")]
    Body {
        /// `s3://bucket/key`.
        target: String,
        /// What happened.
        detail: String,
    },
    /// Local I/O (prefix list, spill files, report).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A giant object's multipart upload is gone (aborted, or lost by a server interrupted while
    /// completing it) and the object was not completed: it must be copied again from the start.
    #[error(
        "{key}: the multipart upload is gone and the object was not completed; it will be copied again"
    )]
    UploadGone {
        /// The object key.
        key: String,
    },
    /// The sync was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether trying the same object again may succeed (transient server or network trouble, a short
    /// body, a checksum mismatch). Permanent errors (403, 404, bad request) are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Request { retryable, .. } => *retryable,
            Error::Verify { .. }
            | Error::WrittenMismatch { .. }
            | Error::Body { .. }
            | Error::UploadGone { .. } => true,
            _ => false,
        }
    }

    /// Whether copying the object again at once may help: a short body or a checksum mismatch.
    /// Request errors are not in it: the SDK already retried them.
    pub fn is_retryable_object(&self) -> bool {
        matches!(
            self,
            Error::Body { .. } | Error::Verify { .. } | Error::WrittenMismatch { .. }
        )
    }

    /// Whether the source object was gone when read (a 404 on its GET or HEAD).
    pub fn is_source_gone(&self) -> bool {
        self.is_not_found()
            && matches!(
                self,
                Error::Request {
                    op: "GetObject" | "HeadObject",
                    side: Side::Source,
                    ..
                }
            )
    }

    /// Whether the object does not exist (S3 `NoSuchKey` / 404).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Request {
                status: Some(404),
                ..
            }
        ) || matches!(self, Error::Request { code: Some(c), .. } if c == "NoSuchKey" || c == "NotFound")
    }

    /// Builds a request error from an SDK error.
    pub(crate) fn request<E, R>(
        op: &'static str,
        side: Side,
        target: String,
        endpoint: &str,
        err: SdkError<E, R>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + HasStatus,
    {
        let (status, code, message, retryable) = match &err {
            SdkError::ServiceError(se) => {
                let status = se.raw().status();
                let code = se.err().code().map(str::to_string);
                let msg = se.err().message().unwrap_or("").to_string();
                let retryable = status >= 500 || status == 429 || status == 408;
                (Some(status), code, msg, retryable)
            }
            SdkError::TimeoutError(_) => (None, None, "timed out".to_string(), true),
            SdkError::DispatchFailure(_) if source_chain(&err).contains("loading credentials") => {
                let p = side.flag_prefix();
                let msg = format!(
                    "no usable {side} credentials: give --{p}-access-key and --{p}-secret-key (or DTH_{P}_ACCESS_KEY_ID and DTH_{P}_SECRET_ACCESS_KEY), --{p}-profile, or --{p}-anonymous",
                    P = p.to_ascii_uppercase()
                );
                (None, None, msg, false)
            }
            SdkError::DispatchFailure(_) => (
                None,
                None,
                format!("cannot connect: {}", source_chain(&err)),
                true,
            ),
            SdkError::ResponseError(e) => {
                let status = e.raw().status();
                (
                    Some(status),
                    None,
                    format!("bad response: {}", source_chain(&err)),
                    true,
                )
            }
            other => (None, None, source_chain(other), false),
        };
        let hint = match (status, code.as_deref()) {
            (_, Some("InvalidAccessKeyId" | "SignatureDoesNotMatch")) | (Some(401), _) => {
                format!(" (check the {side} credentials)")
            }
            (_, Some("AccessDenied")) | (Some(403), _) => {
                format!(" (the {side} credentials are not allowed to do this)")
            }
            (_, Some("NoSuchBucket")) => format!(" (create the bucket or fix the {side} URL)"),
            _ => String::new(),
        };
        let mut detail = match (status, &code) {
            (Some(s), Some(c)) => format!("{s} {c}"),
            (Some(s), None) => s.to_string(),
            (None, Some(c)) => c.clone(),
            (None, None) => String::new(),
        };
        if !message.is_empty() {
            if !detail.is_empty() {
                detail.push_str(": ");
            }
            detail.push_str(&message);
        }
        detail.push_str(&hint);
        Error::Request {
            op,
            side,
            target,
            endpoint: endpoint.to_string(),
            status,
            code,
            detail,
            retryable,
        }
    }
}

/// HTTP status access for the SDK's raw response types.
pub(crate) trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::client::orchestrator::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// `err: cause: cause` on one line.
fn source_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = e.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_side_and_key() {
        let e = Error::Unsorted {
            side: Side::Destination,
            prev: "b".into(),
            key: "a".into(),
        };
        assert_eq!(
            e.to_string(),
            "destination listing out of order: \"a\" came after \"b\""
        );
        let v = Error::Verify {
            key: "k".into(),
            detail: "md5 x != y".into(),
        };
        assert!(v.is_retryable());
    }
}
