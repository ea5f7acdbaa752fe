//! What happened to one object: the action taken and how the copy was verified.

use serde::{Deserialize, Serialize};

/// What a sync did, or planned, for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Copied and verified.
    Copy,
    /// Left alone: already up to date.
    Skip,
    /// Left alone: archived (GLACIER / DEEP_ARCHIVE) and not restored.
    SkipArchived,
    /// Left alone: listed at the source but gone when read.
    SkipVanished,
    /// Deleted at the destination.
    Delete,
    /// The copy or delete failed; see the error.
    Fail,
}

/// How the destination object was shown to equal the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// The MD5 of the bytes read equals the source ETag, and the destination stored the same MD5.
    Md5,
    /// Copied in the source's part layout: the MD5-of-part-MD5s composite equals the source ETag, and each
    /// part was stored with its Content-MD5.
    CompositeEtag,
    /// Whole-object MD5 equals the source's MD5 ETag; the parts were stored with their Content-MD5.
    #[serde(rename = "md5+parts")]
    Md5AndParts,
    /// The source ETag is opaque (another provider's multipart ETag, or encrypted with KMS or customer
    /// keys): the body read had the source's length, the destination accepted each part (or the whole
    /// body) with the Content-MD5 of the bytes read, and after a multipart upload its size was checked.
    #[serde(rename = "parts-md5+size")]
    PartsMd5AndSize,
    /// Server-side copy whose destination ETag equals the source ETag.
    ServerSideEtag,
    /// Server-side copy of an object with an opaque ETag: the destination size equals the source size.
    ServerSideSize,
}

impl Verification {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Verification::Md5 => "md5",
            Verification::CompositeEtag => "composite-etag",
            Verification::Md5AndParts => "md5+parts",
            Verification::PartsMd5AndSize => "parts-md5+size",
            Verification::ServerSideEtag => "server-side-etag",
            Verification::ServerSideSize => "server-side-size",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_match_serde() {
        use Verification::*;
        for v in [
            Md5,
            CompositeEtag,
            Md5AndParts,
            PartsMd5AndSize,
            ServerSideEtag,
            ServerSideSize,
        ] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.name());
        }
    }
}
