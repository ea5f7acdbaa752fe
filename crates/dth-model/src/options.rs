//! Options of an object sync: what to compare, what to copy, how to write it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// How the finder decides that an object present on both sides must be copied again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompareMode {
    /// Copy when missing or the sizes differ.
    #[default]
    Size,
    /// Copy when missing, the sizes differ, or both ETags are known and differ.
    SizeEtag,
    /// Copy when missing or the source was modified after the destination.
    Newer,
    /// Copy everything.
    None,
}

impl CompareMode {
    /// Names accepted by [`FromStr`].
    pub const NAMES: [&'static str; 4] = ["size", "size-etag", "newer", "none"];
}

impl FromStr for CompareMode {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "size" => Ok(Self::Size),
            "size-etag" => Ok(Self::SizeEtag),
            "newer" => Ok(Self::Newer),
            "none" => Ok(Self::None),
            _ => Err(ParseError::BadValue {
                what: "compare mode",
                value: s.into(),
                reason: format!("expected one of {}", Self::NAMES.join(", ")),
            }),
        }
    }
}

impl fmt::Display for CompareMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = [Self::Size, Self::SizeEtag, Self::Newer, Self::None]
            .iter()
            .position(|m| m == self)
            .unwrap_or(0);
        f.write_str(Self::NAMES[i])
    }
}

/// Server-side encryption asked of the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sse {
    /// SSE-S3.
    #[serde(rename = "AES256")]
    Aes256,
    /// SSE-KMS, with the key in [`SyncOptions::sse_kms_key_id`] or the account default.
    #[serde(rename = "aws:kms")]
    Kms,
}

impl FromStr for Sse {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "AES256" => Ok(Self::Aes256),
            "aws:kms" => Ok(Self::Kms),
            _ => Err(ParseError::BadValue {
                what: "server-side encryption",
                value: s.into(),
                reason: "expected AES256 or aws:kms".into(),
            }),
        }
    }
}

/// Everything that tunes one object sync besides its two endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncOptions {
    /// How objects present on both sides are compared.
    pub compare: CompareMode,
    /// Glob patterns on the relative key; when any are given only matching keys are copied.
    pub include: Vec<String>,
    /// Glob patterns on the relative key; matching keys are neither copied nor deleted.
    pub exclude: Vec<String>,
    /// Delete destination objects missing at the source.
    pub delete: bool,
    /// Plan only; change nothing.
    pub dry_run: bool,
    /// Depth of `/`-delimited prefixes listed in parallel.
    pub list_depth: u32,
    /// Objects of this size or more are copied in parts.
    pub multipart_threshold: u64,
    /// Part size; grown automatically to stay within the provider's part count.
    pub part_size: u64,
    /// Objects in flight at the start.
    pub transfers: usize,
    /// Objects in flight the one-shot sync may grow to while throughput grows with them (far
    /// endpoints need many); at or below `transfers`, the number stays fixed at `transfers`.
    pub transfers_max: usize,
    /// Memory for object bodies and parts held at once, across all transfers.
    pub buffer_memory: u64,
    /// Bytes per second across the whole sync, `None` for unlimited.
    pub bwlimit: Option<u64>,
    /// Copy Content-Type, Cache-Control, … and user metadata.
    pub metadata: bool,
    /// Copy object tags.
    pub tags: bool,
    /// Storage class for written objects.
    pub storage_class: Option<String>,
    /// Canned ACL for written objects.
    pub acl: Option<String>,
    /// Server-side encryption for written objects.
    pub sse: Option<Sse>,
    /// KMS key for [`Sse::Kms`].
    pub sse_kms_key_id: Option<String>,
    /// Attempts after the first for one request or one object.
    pub retries: u32,
    /// Use server-side copy when both sides are the same endpoint with the same credentials.
    pub server_side_copy: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            compare: CompareMode::Size,
            include: Vec::new(),
            exclude: Vec::new(),
            delete: false,
            dry_run: false,
            list_depth: 2,
            multipart_threshold: 16 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
            transfers: 64,
            transfers_max: 512,
            buffer_memory: 128 * 1024 * 1024,
            bwlimit: None,
            metadata: true,
            tags: false,
            storage_class: None,
            acl: None,
            sse: None,
            sse_kms_key_id: None,
            retries: 5,
            server_side_copy: true,
        }
    }
}
