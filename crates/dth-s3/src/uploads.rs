//! Open multipart uploads of a bucket: list them (ListMultipartUploads, page by page) and abort them
//! (AbortMultipartUpload).
//!
//! An upload that was started and neither completed nor aborted — a plain `dth s3 sync` killed while
//! copying a large object — keeps its parts stored, and billed, until it is aborted. [`UploadPages`]
//! walks every open upload under an endpoint's prefix one page (up to 1,000 uploads) at a time, so a
//! bucket with millions of them is listed in bounded memory; [`abort`] ends one. A server that does not
//! implement the listing (s3s-fs 0.14 answers `501 NotImplemented`) gives an error that says so, never an
//! empty list.

use std::time::SystemTime;

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};

/// Uploads per page asked of the server (S3 caps it at 1,000).
const PAGE: i32 = 1000;

/// What a server that cannot list open uploads is told to use instead; appended to its error.
const NOT_LISTED_HINT: &str = "this server cannot list its open multipart uploads, so dth cannot \
    find or abort them here; a sync run with `dth s3 sync --state FILE`, like a hub task, records every \
    upload id and never leaves one open";

/// One open multipart upload, as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUpload {
    /// The object key in the bucket (the endpoint's prefix included).
    pub key: String,
    /// The upload id the server gave when the upload was started.
    pub upload_id: String,
    /// When the upload was started, if the server says.
    pub initiated: Option<SystemTime>,
    /// The storage class the object will have, if the server says.
    pub storage_class: Option<String>,
}

/// The open uploads under an endpoint's prefix, one page per [`UploadPages::next_page`] call, in the
/// server's order (by key, then by start time for uploads of the same key).
#[derive(Debug)]
pub struct UploadPages<'a> {
    endpoint: &'a Endpoint,
    key_marker: Option<String>,
    upload_id_marker: Option<String>,
    done: bool,
}

impl<'a> UploadPages<'a> {
    /// Starts a listing of the open uploads under `endpoint`'s prefix. Does no request yet.
    pub fn new(endpoint: &'a Endpoint) -> Self {
        UploadPages {
            endpoint,
            key_marker: None,
            upload_id_marker: None,
            done: false,
        }
    }

    /// The next page of open uploads, or `None` when the listing is over. A page may be empty only when
    /// nothing is open at all.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ListedUpload>>> {
        if self.done {
            return Ok(None);
        }
        let ep = self.endpoint;
        let prefix = &ep.spec().prefix;
        let out = ep
            .client()
            .list_multipart_uploads()
            .bucket(ep.bucket())
            .set_prefix((!prefix.is_empty()).then(|| prefix.clone()))
            .max_uploads(PAGE)
            .set_key_marker(self.key_marker.clone())
            .set_upload_id_marker(self.upload_id_marker.clone())
            .send()
            .await
            .map_err(|e| not_listed(ep.error("ListMultipartUploads", Some(""), e)))?;
        let page: Vec<ListedUpload> = out.uploads().iter().filter_map(listed).collect();
        if out.is_truncated() != Some(true) {
            self.done = true;
            return Ok(Some(page));
        }
        // Servers that leave out the next markers continue after the page's last upload.
        let last = page.last();
        let key_marker = out
            .next_key_marker()
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .or_else(|| last.map(|u| u.key.clone()));
        let upload_id_marker = out
            .next_upload_id_marker()
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .or_else(|| last.map(|u| u.upload_id.clone()));
        if key_marker.is_none()
            || (key_marker == self.key_marker && upload_id_marker == self.upload_id_marker)
        {
            return Err(Error::Config {
                side: ep.side(),
                message: format!(
                    "ListMultipartUploads {}: the server said the listing goes on but gave no \
                     marker to continue after",
                    ep.target(Some(""))
                ),
            });
        }
        self.key_marker = key_marker;
        self.upload_id_marker = upload_id_marker;
        Ok(Some(page))
    }
}

/// The open uploads of exactly `key` (relative to the endpoint's prefix), from one listing page:
/// for a copy that died between opening an upload and learning its id.
pub async fn of_key(endpoint: &Endpoint, key: &str) -> Result<Vec<ListedUpload>> {
    let full = endpoint.full_key(key);
    let out = endpoint
        .client()
        .list_multipart_uploads()
        .bucket(endpoint.bucket())
        .prefix(&full)
        .send()
        .await
        .map_err(|e| not_listed(endpoint.error("ListMultipartUploads", Some(key), e)))?;
    Ok(out
        .uploads()
        .iter()
        .filter_map(listed)
        .filter(|u| u.key == full)
        .collect())
}

/// One upload of a listing, if the server named its key and id.
fn listed(u: &aws_sdk_s3::types::MultipartUpload) -> Option<ListedUpload> {
    Some(ListedUpload {
        key: u.key()?.to_string(),
        upload_id: u.upload_id()?.to_string(),
        initiated: u.initiated().and_then(|t| SystemTime::try_from(*t).ok()),
        storage_class: u.storage_class().map(|c| c.as_str().to_string()),
    })
}

/// What [`abort`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aborted {
    /// The upload was open and is now aborted: its parts are deleted.
    Now,
    /// The upload was already gone (completed or aborted by someone else): nothing to do.
    AlreadyGone,
}

/// Aborts one open upload, deleting its parts. An upload the server no longer knows (`NoSuchUpload`)
/// counts as [`Aborted::AlreadyGone`], not as an error.
pub async fn abort(endpoint: &Endpoint, upload: &ListedUpload) -> Result<Aborted> {
    let res = endpoint
        .client()
        .abort_multipart_upload()
        .bucket(endpoint.bucket())
        .key(&upload.key)
        .upload_id(&upload.upload_id)
        .send()
        .await;
    let rel = upload
        .key
        .strip_prefix(endpoint.spec().prefix.as_str())
        .unwrap_or(&upload.key);
    match res.map_err(|e| endpoint.error("AbortMultipartUpload", Some(rel), e)) {
        Ok(_) => Ok(Aborted::Now),
        Err(e) if is_no_such_upload(&e) => Ok(Aborted::AlreadyGone),
        Err(e) => Err(e),
    }
}

fn is_no_such_upload(e: &Error) -> bool {
    matches!(e, Error::Request { code: Some(c), .. } if c == "NoSuchUpload")
        || matches!(
            e,
            Error::Request {
                status: Some(404),
                code: None,
                ..
            }
        )
}

/// Says, on a listing refused as not implemented, that the server cannot list and what to use instead.
fn not_listed(mut e: Error) -> Error {
    if let Error::Request {
        status,
        code,
        detail,
        ..
    } = &mut e
        && (*status == Some(501)
            || matches!(code.as_deref(), Some("NotImplemented" | "NotSupported")))
    {
        detail.push_str(" (");
        detail.push_str(NOT_LISTED_HINT);
        detail.push(')');
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Side;

    fn request(status: Option<u16>, code: Option<&str>) -> Error {
        Error::Request {
            op: "ListMultipartUploads",
            side: Side::Destination,
            target: "s3://b".into(),
            endpoint: "endpoint http://127.0.0.1:1".into(),
            status,
            code: code.map(str::to_string),
            detail: "x".into(),
            retryable: false,
        }
    }

    #[test]
    fn a_listing_refused_as_not_implemented_points_to_state() {
        for e in [
            request(Some(501), Some("NotImplemented")),
            request(Some(400), Some("NotImplemented")),
            request(Some(501), None),
        ] {
            let text = not_listed(e).to_string();
            assert!(
                text.contains("cannot list its open multipart uploads"),
                "{text}"
            );
            assert!(text.contains("dth s3 sync --state FILE"), "{text}");
        }
        let denied = not_listed(request(Some(403), Some("AccessDenied"))).to_string();
        assert!(!denied.contains("--state"), "{denied}");
    }

    #[test]
    fn no_such_upload_is_already_gone_but_access_denied_is_not() {
        assert!(is_no_such_upload(&request(Some(404), Some("NoSuchUpload"))));
        assert!(is_no_such_upload(&request(Some(404), None)));
        assert!(!is_no_such_upload(&request(
            Some(404),
            Some("NoSuchBucket")
        )));
        assert!(!is_no_such_upload(&request(
            Some(403),
            Some("AccessDenied")
        )));
    }
}
