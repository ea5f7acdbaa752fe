//! Copying one object, verified. Three paths, chosen per object:
//! - **small** (below the multipart threshold): one GET, one PUT with Content-MD5;
//! - **multipart** (see [`crate::multipart`]): parts read and written in parallel;
//! - **server-side** (same service and credentials on both sides): CopyObject, or UploadPartCopy for
//!   objects above 5 GiB, so no byte passes through us.
//!
//! Object-level retries live here: a short body or a checksum mismatch is tried again (bounded by
//! `retries`, with backoff and jitter); request errors were already retried by the SDK (see
//! [`crate::endpoint`]) and are final. The source's ETag is checked against the bytes read whenever it
//! is an MD5, so a body corrupted on the way is a failed attempt, never a copy.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::RequestPayer;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use dth_model::{SyncOptions, Verification};
use md5::{Digest, Md5};
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::bwlimit::BandwidthLimit;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::meta::{ObjectMeta, checksum_etag, etag_md5, unquote};
use crate::multipart::{self, UploadLog};
use crate::stats::Stats;
use crate::write::{SourceMeta, apply_write, tagging_header};

/// How long a body may stall before the read is abandoned.
const READ_STALL: Duration = Duration::from_secs(60);

/// The outcome of a successful copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// How the copy was verified.
    pub verification: Verification,
    /// Attempts used (1 = first try).
    pub attempts: u32,
}

/// What [`Copier::transfer`] did with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transferred {
    /// Copied and verified.
    Copied(Copied),
    /// Archived at the source and not restored: left alone.
    Archived,
    /// Gone from the source between listing and reading: left alone.
    Vanished,
}

/// Copies objects from one endpoint to another; shared by every transfer of a sync.
#[derive(Debug)]
pub struct Copier {
    pub(crate) src: Endpoint,
    pub(crate) dst: Endpoint,
    pub(crate) opts: SyncOptions,
    pub(crate) server_side: bool,
    pub(crate) limit: Option<BandwidthLimit>,
    /// Buffer memory budget, in KiB permits.
    pub(crate) memory: Arc<Semaphore>,
    pub(crate) memory_kib: u32,
    pub(crate) stats: Arc<Stats>,
    pub(crate) cancel: CancellationToken,
}

impl Copier {
    /// A copier with a buffer budget of `opts.buffer_memory` across all transfers.
    pub fn new(src: Endpoint, dst: Endpoint, opts: SyncOptions, stats: Arc<Stats>) -> Self {
        let memory_bytes = opts.buffer_memory;
        let server_side = opts.server_side_copy && src.same_service(&dst);
        let memory_kib = (memory_bytes / 1024).clamp(1024, u32::MAX as u64 / 2) as u32;
        Copier {
            limit: opts.bwlimit.map(BandwidthLimit::new),
            src,
            dst,
            opts,
            server_side,
            memory: Arc::new(Semaphore::new(memory_kib as usize)),
            memory_kib,
            stats,
            cancel: CancellationToken::new(),
        }
    }

    /// Stops copies when `cancel` is cancelled: multipart uploads in flight are aborted.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// The source endpoint.
    pub fn source(&self) -> &Endpoint {
        &self.src
    }

    /// The destination endpoint.
    pub fn destination(&self) -> &Endpoint {
        &self.dst
    }

    /// The options copies follow.
    pub fn options(&self) -> &SyncOptions {
        &self.opts
    }

    /// Copies one listed object unless it is archived or gone: the whole decision a transfer makes.
    /// Each multipart upload it opens is recorded in `log` before its first part is sent.
    pub async fn transfer(
        self: &Arc<Self>,
        obj: &ObjectMeta,
        log: &dyn UploadLog,
    ) -> Result<Transferred> {
        if self.src.profile().is_archived(obj.storage_class.as_deref())
            && !self.is_restored(&obj.key).await?
        {
            return Ok(Transferred::Archived);
        }
        match self.copy(obj, log).await {
            Ok(done) => Ok(Transferred::Copied(done)),
            Err(e) if e.is_source_gone() => Ok(Transferred::Vanished),
            Err(e) => Err(e),
        }
    }

    /// Whether copies go server-side.
    pub fn is_server_side(&self) -> bool {
        self.server_side
    }

    /// Copies one object and verifies it, retrying short bodies and mismatches; multipart uploads
    /// are recorded in `log`.
    pub async fn copy(self: &Arc<Self>, obj: &ObjectMeta, log: &dyn UploadLog) -> Result<Copied> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let res = if self.server_side {
                self.copy_server_side(obj, log).await
            } else if obj.size >= self.opts.multipart_threshold {
                multipart::copy(self, obj, log).await
            } else {
                self.copy_small(obj).await
            };
            match res {
                Ok(verification) => {
                    return Ok(Copied {
                        verification,
                        attempts: attempt,
                    });
                }
                Err(e) if e.is_retryable_object() && attempt <= self.opts.retries => {
                    tracing::warn!(key = %obj.key, attempt, "{e}; trying again");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e @ Error::WrittenMismatch { .. }) => {
                    // Never leave a copy that failed its check where the next run would take it as done.
                    if let Err(d) = self.delete(&obj.key).await {
                        tracing::error!(key = %obj.key, "removing the unverified copy failed: {d}");
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Deletes a destination object.
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.dst
            .client()
            .delete_object()
            .bucket(self.dst.bucket())
            .key(self.dst.full_key(key))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.dst.error("DeleteObject", Some(key), e))
    }

    /// HEADs the source object (with requester pays when the source says so).
    pub(crate) async fn head_source(&self, key: &str) -> Result<HeadObjectOutput> {
        self.src
            .client()
            .head_object()
            .bucket(self.src.bucket())
            .key(self.src.full_key(key))
            .set_request_payer(self.payer())
            .send()
            .await
            .map_err(|e| self.src.error("HeadObject", Some(key), e))
    }

    /// Whether the source object exists now (HEAD; 404 is false).
    pub async fn source_exists(&self, key: &str) -> Result<bool> {
        match self.head_source(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_source_gone() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether an archived source object has been restored and can be read.
    pub async fn is_restored(&self, key: &str) -> Result<bool> {
        let out = self.head_source(key).await?;
        Ok(out
            .restore()
            .is_some_and(|r| r.contains("ongoing-request=\"false\"")))
    }

    pub(crate) fn payer(&self) -> Option<RequestPayer> {
        self.src
            .spec()
            .requester_pays
            .then_some(RequestPayer::Requester)
    }

    /// The source's tags in header form, when `--tags` is on.
    pub(crate) async fn tagging(&self, key: &str) -> Result<Option<String>> {
        if !self.opts.tags {
            return Ok(None);
        }
        let out = self
            .src
            .client()
            .get_object_tagging()
            .bucket(self.src.bucket())
            .key(self.src.full_key(key))
            .set_request_payer(self.payer())
            .send()
            .await
            .map_err(|e| self.src.error("GetObjectTagging", Some(key), e))?;
        Ok(tagging_header(out.tag_set()))
    }

    /// GETs a whole object or a byte range, reading the body into memory within the buffer budget.
    pub(crate) async fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<(aws_sdk_s3::operation::get_object::GetObjectOutput, Body)> {
        self.get_body(key, range, true).await
    }

    /// Like [`Copier::get`] for a caller that already holds the body's share of the budget
    /// ([`Copier::reserve`]); the body then holds none.
    pub(crate) async fn get_reserved(&self, key: &str, range: (u64, u64)) -> Result<Body> {
        Ok(self.get_body(key, Some(range), false).await?.1)
    }

    /// Takes `bytes`' share of the buffer budget (all of it for a body larger than the budget).
    pub(crate) async fn reserve(&self, bytes: u64) -> Result<OwnedSemaphorePermit> {
        Arc::clone(&self.memory)
            .acquire_many_owned(kib(bytes).min(self.memory_kib))
            .await
            .map_err(|_| Error::Cancelled)
    }

    async fn get_body(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        reserve: bool,
    ) -> Result<(aws_sdk_s3::operation::get_object::GetObjectOutput, Body)> {
        let mut out = self
            .src
            .client()
            .get_object()
            .bucket(self.src.bucket())
            .key(self.src.full_key(key))
            .set_range(range.map(|(start, end)| format!("bytes={start}-{}", end - 1)))
            .set_request_payer(self.payer())
            .send()
            .await
            .map_err(|e| self.src.error("GetObject", Some(key), e))?;
        let expected = out.content_length().unwrap_or(0).max(0) as u64;
        if let Some((start, end)) = range
            && expected != end - start
        {
            return Err(Error::Body {
                target: self.src.target(Some(key)),
                detail: format!("asked for {} bytes at {start}, got {expected}", end - start),
            });
        }
        let body = std::mem::replace(&mut out.body, ByteStream::from_static(b""));
        let permit = if reserve {
            Some(self.reserve(expected).await?)
        } else {
            None
        };
        let body = self.read_body(key, body, expected, permit).await?;
        Ok((out, body))
    }

    async fn read_body(
        &self,
        key: &str,
        mut stream: ByteStream,
        expected: u64,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<Body> {
        let mut buf = BytesMut::with_capacity(expected as usize);
        let mut md5 = Md5::new();
        let short = |detail: String| Error::Body {
            target: self.src.target(Some(key)),
            detail,
        };
        loop {
            let chunk = tokio::time::timeout(READ_STALL, stream.try_next())
                .await
                .map_err(|_| short(format!("no data for {}s", READ_STALL.as_secs())))?
                .map_err(|e| {
                    short(format!(
                        "body broke after {} of {expected} bytes: {e}",
                        buf.len()
                    ))
                })?;
            let Some(chunk) = chunk else { break };
            if let Some(l) = &self.limit {
                l.take(chunk.len()).await;
            }
            md5.update(&chunk);
            Stats::add(&self.stats.transferred_bytes, chunk.len() as u64);
            buf.extend_from_slice(&chunk);
            if buf.len() as u64 > expected {
                return Err(short(format!(
                    "body longer than its Content-Length {expected}"
                )));
            }
        }
        if buf.len() as u64 != expected {
            return Err(short(format!(
                "body ended after {} of {expected} bytes",
                buf.len()
            )));
        }
        Ok(Body {
            bytes: buf.freeze(),
            md5: md5.finalize().into(),
            _permit: permit,
        })
    }

    async fn copy_small(&self, obj: &ObjectMeta) -> Result<Verification> {
        let tagging = self.tagging(&obj.key).await?;
        let (out, body) = self.get(&obj.key, None).await?;
        let src_etag = checksum_etag(
            out.e_tag(),
            out.server_side_encryption(),
            out.sse_customer_algorithm(),
        );
        let md5_hex = hex::encode(body.md5);
        if let Some(src_md5) = src_etag.as_deref().and_then(etag_md5)
            && src_md5 != md5_hex
        {
            return Err(Error::Verify {
                key: obj.key.clone(),
                detail: format!(
                    "source ETag is MD5 {src_md5} but the bytes read hash to {md5_hex}"
                ),
            });
        }
        let meta = SourceMeta::from_get(&out);
        let req = self
            .dst
            .client()
            .put_object()
            .bucket(self.dst.bucket())
            .key(self.dst.full_key(&obj.key))
            .content_length(body.bytes.len() as i64)
            .content_md5(base64::engine::general_purpose::STANDARD.encode(body.md5));
        let req = apply_write!(req, &meta, tagging, &self.opts);
        let put = req
            .body(ByteStream::from(body.bytes))
            // Content-MD5 guards the bytes; a SHA-256 of every payload for the signature would be a
            // second full pass over the data for nothing.
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| self.dst.error("PutObject", Some(&obj.key), e))?;
        // The destination checked Content-MD5; if it answers an MD5 ETag it must be ours.
        let dst_etag = checksum_etag(
            put.e_tag(),
            put.server_side_encryption(),
            put.sse_customer_algorithm(),
        );
        if let Some(d) = dst_etag.as_deref().and_then(etag_md5)
            && d != md5_hex
        {
            return Err(Error::WrittenMismatch {
                key: obj.key.clone(),
                detail: format!("destination stored MD5 {d}, the bytes sent hash to {md5_hex}"),
            });
        }
        let source_md5 = src_etag.as_deref().and_then(etag_md5).is_some();
        Ok(if source_md5 {
            Verification::Md5
        } else {
            Verification::PartsMd5AndSize
        })
    }

    async fn copy_server_side(
        self: &Arc<Self>,
        obj: &ObjectMeta,
        log: &dyn UploadLog,
    ) -> Result<Verification> {
        if obj.size > self.dst.profile().copy_object_max {
            return multipart::copy_server_side(self, obj, log).await;
        }
        let source = copy_source(self.src.bucket(), &self.src.full_key(&obj.key));
        let mut req = self
            .dst
            .client()
            .copy_object()
            .bucket(self.dst.bucket())
            .key(self.dst.full_key(&obj.key))
            .copy_source(source)
            .set_request_payer(self.payer());
        if !self.opts.metadata {
            req = req.metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace);
        }
        if let Some(c) = &self.opts.storage_class {
            req = req.storage_class(aws_sdk_s3::types::StorageClass::from(c.as_str()));
        }
        if let Some(a) = &self.opts.acl {
            req = req.acl(aws_sdk_s3::types::ObjectCannedAcl::from(a.as_str()));
        }
        if let Some(s) = self.opts.sse {
            req = req.server_side_encryption(crate::write::sse(s));
        }
        if !self.opts.tags {
            req = req.tagging_directive(aws_sdk_s3::types::TaggingDirective::Replace);
        }
        let out = req
            .set_ssekms_key_id(self.opts.sse_kms_key_id.clone())
            .send()
            .await
            .map_err(|e| self.dst.error("CopyObject", Some(&obj.key), e))?;
        let dst_etag = out
            .copy_object_result()
            .and_then(|r| r.e_tag())
            .map(unquote);
        // The service copied the bytes itself: equal MD5 ETags prove it; anything else (encryption on
        // either side, a multipart source) is checked by size.
        match (
            obj.etag.as_deref().and_then(etag_md5),
            dst_etag.as_deref().and_then(etag_md5),
        ) {
            (Some(s), Some(d)) if s == d => Ok(Verification::ServerSideEtag),
            _ => {
                self.check_dst_size(&obj.key, obj.size).await?;
                Ok(Verification::ServerSideSize)
            }
        }
    }

    /// HEADs the destination object and checks its size.
    pub(crate) async fn check_dst_size(&self, key: &str, size: u64) -> Result<Option<String>> {
        let head = self
            .dst
            .client()
            .head_object()
            .bucket(self.dst.bucket())
            .key(self.dst.full_key(key))
            .send()
            .await
            .map_err(|e| self.dst.error("HeadObject", Some(key), e))?;
        let got = head.content_length().unwrap_or(-1);
        if got != size as i64 {
            return Err(Error::WrittenMismatch {
                key: key.to_string(),
                detail: format!("destination has {got} bytes, the source {size}"),
            });
        }
        Ok(checksum_etag(
            head.e_tag(),
            head.server_side_encryption(),
            head.sse_customer_algorithm(),
        ))
    }
}

/// A body read into memory with its MD5, holding its share of the memory budget until dropped
/// (none when its reader holds that share itself: [`Copier::get_reserved`]).
pub(crate) struct Body {
    pub(crate) bytes: Bytes,
    pub(crate) md5: [u8; 16],
    _permit: Option<OwnedSemaphorePermit>,
}

/// `bucket/key` for `x-amz-copy-source`, the key URL-encoded except `/`.
pub(crate) fn copy_source(bucket: &str, key: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    format!("{bucket}/{}", utf8_percent_encode(key, KEEP))
}

/// KiB permits for a buffer of `bytes` (at least 1).
pub(crate) fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).clamp(1, u32::MAX as u64) as u32
}

/// Exponential backoff with full jitter: up to 250 ms × 2^(attempt-1), capped at 20 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let cap = (250u64 << attempt.saturating_sub(1).min(7)).min(20_000);
    Duration::from_millis(rand::thread_rng().gen_range(cap / 2..=cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_copy_source() {
        assert_eq!(copy_source("b", "a b/c+d%/é"), "b/a%20b/c%2Bd%25/%C3%A9");
    }

    #[test]
    fn backoff_is_bounded() {
        for a in 1..20 {
            let d = backoff(a);
            assert!(
                d <= Duration::from_secs(20) && d >= Duration::from_millis(125),
                "{d:?}"
            );
        }
    }
}
