//! What a listing tells about one object.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// One listed object. `key` is relative to the endpoint's prefix, so the two sides compare directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Key below the endpoint prefix, byte-exact.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag without quotes, when the listing has one.
    pub etag: Option<String>,
    /// Last modification time.
    pub last_modified: Option<SystemTime>,
    /// Storage class, when the listing has one.
    pub storage_class: Option<String>,
}

/// Things ordered by an S3 key (objects, common prefixes), for the merge-join and the sorter.
pub trait Keyed {
    /// The key, compared as UTF-8 bytes.
    fn key(&self) -> &str;
}

impl Keyed for ObjectMeta {
    fn key(&self) -> &str {
        &self.key
    }
}

/// The ETag, when it is a plain MD5 (32 hex digits).
pub fn etag_md5(etag: &str) -> Option<&str> {
    (etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(etag)
}

/// The part count of a multipart `md5-N` ETag.
pub fn etag_parts(etag: &str) -> Option<u64> {
    let (md5, n) = etag.split_once('-')?;
    etag_md5(md5)?;
    n.parse().ok().filter(|n| *n > 0)
}

/// An ETag as a checksum: `None` when server-side encryption with KMS or customer keys makes it
/// something other than an MD5 of the bytes (the value still looks like one).
pub fn checksum_etag(
    etag: Option<&str>,
    sse: Option<&aws_sdk_s3::types::ServerSideEncryption>,
    customer_key: Option<&str>,
) -> Option<String> {
    use aws_sdk_s3::types::ServerSideEncryption as S;
    let hidden = customer_key.is_some() || matches!(sse, Some(S::AwsKms | S::AwsKmsDsse));
    etag.filter(|_| !hidden).map(unquote)
}

/// Removes the double quotes S3 puts around ETags.
pub fn unquote(etag: &str) -> String {
    etag.trim().trim_matches('"').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_etags() {
        let md5 = "9e107d9d372bb6826bd81d3542a419d6";
        assert_eq!(etag_md5(md5), Some(md5));
        assert_eq!(etag_md5("abc"), None);
        assert_eq!(etag_parts(&format!("{md5}-12")), Some(12));
        assert_eq!(etag_parts(md5), None);
        assert_eq!(unquote("\"ABC\""), "abc");
        use aws_sdk_s3::types::ServerSideEncryption as S;
        assert_eq!(
            checksum_etag(Some("\"ab\""), Some(&S::Aes256), None),
            Some("ab".into())
        );
        assert_eq!(checksum_etag(Some("ab"), Some(&S::AwsKms), None), None);
        assert_eq!(checksum_etag(Some("ab"), None, Some("AES256")), None);
    }
}
