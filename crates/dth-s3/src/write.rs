//! What a copy writes besides the bytes: the source's metadata (taken from the GET response, never an
//! extra HEAD) and the destination options (storage class, ACL, encryption, tags).

use std::collections::HashMap;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use dth_model::Sse;

/// GetObject and HeadObject outputs share these getters.
macro_rules! source_meta {
    ($out:expr) => {
        SourceMeta {
            content_type: $out.content_type().map(str::to_string),
            cache_control: $out.cache_control().map(str::to_string),
            content_encoding: $out.content_encoding().map(str::to_string),
            content_language: $out.content_language().map(str::to_string),
            content_disposition: $out.content_disposition().map(str::to_string),
            expires: $out.expires_string().map(str::to_string),
            user: $out.metadata().filter(|m| !m.is_empty()).cloned(),
        }
    };
}

/// Metadata of a source object, as its GET response told it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceMeta {
    /// Content-Type.
    pub content_type: Option<String>,
    /// Cache-Control.
    pub cache_control: Option<String>,
    /// Content-Encoding.
    pub content_encoding: Option<String>,
    /// Content-Language.
    pub content_language: Option<String>,
    /// Content-Disposition.
    pub content_disposition: Option<String>,
    /// Expires, as sent (HTTP date).
    pub expires: Option<String>,
    /// `x-amz-meta-*` without the prefix.
    pub user: Option<HashMap<String, String>>,
}

impl SourceMeta {
    /// Reads the metadata headers of a GetObject response.
    pub fn from_get(out: &aws_sdk_s3::operation::get_object::GetObjectOutput) -> Self {
        source_meta!(out)
    }

    /// Reads the metadata headers of a HeadObject response.
    pub fn from_head(out: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> Self {
        source_meta!(out)
    }

    /// The Expires header as a date, when it parses.
    pub fn expires_date(&self) -> Option<DateTime> {
        self.expires
            .as_deref()
            .and_then(|s| DateTime::from_str(s, Format::HttpDate).ok())
    }
}

/// Object tags in the `Tagging` header form (`k1=v1&k2=v2`, URL-encoded).
pub fn tagging_header(tags: &[aws_sdk_s3::types::Tag]) -> Option<String> {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    if tags.is_empty() {
        return None;
    }
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    Some(
        tags.iter()
            .map(|t| format!("{}={}", enc(t.key()), enc(t.value())))
            .collect::<Vec<_>>()
            .join("&"),
    )
}

/// The SDK's encryption enum for an [`Sse`].
pub fn sse(s: Sse) -> aws_sdk_s3::types::ServerSideEncryption {
    match s {
        Sse::Aes256 => aws_sdk_s3::types::ServerSideEncryption::Aes256,
        Sse::Kms => aws_sdk_s3::types::ServerSideEncryption::AwsKms,
    }
}

/// Applies metadata (unless `--no-metadata`), tags and destination options to a PutObject or
/// CreateMultipartUpload request builder (they share these method names).
macro_rules! apply_write {
    ($req:expr, $meta:expr, $tagging:expr, $opts:expr) => {{
        let opts: &dth_model::SyncOptions = $opts;
        let meta: &$crate::write::SourceMeta = $meta;
        let mut r = $req;
        if opts.metadata {
            r = r
                .set_content_type(meta.content_type.clone())
                .set_cache_control(meta.cache_control.clone())
                .set_content_encoding(meta.content_encoding.clone())
                .set_content_language(meta.content_language.clone())
                .set_content_disposition(meta.content_disposition.clone())
                .set_expires(meta.expires_date())
                .set_metadata(meta.user.clone());
        }
        r = r.set_tagging($tagging);
        if let Some(c) = &opts.storage_class {
            r = r.storage_class(aws_sdk_s3::types::StorageClass::from(c.as_str()));
        }
        if let Some(a) = &opts.acl {
            r = r.acl(aws_sdk_s3::types::ObjectCannedAcl::from(a.as_str()));
        }
        if let Some(s) = opts.sse {
            r = r.server_side_encryption($crate::write::sse(s));
        }
        r.set_ssekms_key_id(opts.sse_kms_key_id.clone())
    }};
}
pub(crate) use apply_write;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_tags() {
        let t = |k: &str, v: &str| {
            aws_sdk_s3::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .unwrap()
        };
        assert_eq!(
            tagging_header(&[t("a b", "1"), t("c", "x&y")]).unwrap(),
            "a%20b=1&c=x%26y"
        );
        assert_eq!(tagging_header(&[]), None);
    }
}
