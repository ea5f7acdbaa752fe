//! Giant objects copied part by part by independent workers, possibly in different processes: one call
//! opens the upload ([`Copier::begin_giant`]), any worker copies any part ([`Copier::copy_giant_part`]),
//! and whoever holds the last part completes it ([`Copier::finish_giant`]). Everything a later worker
//! needs travels in [`GiantUpload`] and [`PartCopied`], which the caller keeps (the hub keeps them in its
//! store).
//!
//! Every step is idempotent, because a worker may die anywhere and another take over:
//! - opening records the upload id in the caller's [`UploadLog`] before anything else, so the worker
//!   that takes over from one that died before splitting the object aborts it;
//! - a part copied again replaces the same part number; with `reuse` a part already stored (ListParts)
//!   with the right size and an MD5 ETag is taken as it is;
//! - completing an upload that is already gone checks the destination object instead: it is taken as
//!   done only when its ETag is the composite of our parts.
//!
//! Verification: Content-MD5 on every part; before completion the MD5-of-part-MD5s is compared with the
//! source ETag when the source has a composite ETag in the same layout; after completion the destination
//! ETag (when predictable) and size.

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use dth_model::Verification;
use serde::{Deserialize, Serialize};

use crate::copy::{Copier, backoff};
use crate::error::{Error, Result};
use crate::meta::{ObjectMeta, checksum_etag, etag_md5, etag_parts, unquote};
use crate::multipart::{
    UploadLog, check_dst_etag, composite_etag, open_recorded, ranges, source_layout, upload_part,
};
use crate::profile::EtagKind;
use crate::write::{SourceMeta, apply_write};

/// An open multipart upload of a giant object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiantUpload {
    /// The destination's upload id.
    pub upload_id: String,
    /// Bytes per part (the last may be shorter).
    pub part_size: u64,
    /// The source ETag when it can check the copy (an MD5, or a composite in our layout).
    pub src_etag: Option<String>,
    /// Whether the parts follow the source's own layout, so its composite ETag can be recomputed.
    pub same_layout: bool,
}

impl GiantUpload {
    /// Byte ranges `[start, end)` of the parts, part 1 first.
    pub fn ranges(&self, size: u64) -> Vec<(u64, u64)> {
        ranges(size, self.part_size)
    }
}

/// One part stored at the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartCopied {
    /// The ETag the destination gave the part.
    pub etag: String,
    /// MD5 of the part's bytes, hex.
    pub md5: String,
}

impl Copier {
    /// Opens the upload of a giant object, recorded in `log` before it is returned.
    pub async fn begin_giant(&self, obj: &ObjectMeta, log: &dyn UploadLog) -> Result<GiantUpload> {
        let layout = source_layout(self, obj).await?;
        let head = self.head_source(&obj.key).await?;
        let size = head.content_length().unwrap_or(-1);
        if size != obj.size as i64 {
            return Err(Error::Verify {
                key: obj.key.clone(),
                detail: format!("listed with {} bytes, now has {size}", obj.size),
            });
        }
        let meta = SourceMeta::from_head(&head);
        let tagging = self.tagging(&obj.key).await?;
        let part_size = layout.part_size.unwrap_or_else(|| {
            self.dst
                .profile()
                .part_size_for(obj.size, self.opts.part_size)
        });
        let req = self
            .dst
            .client()
            .create_multipart_upload()
            .bucket(self.dst.bucket())
            .key(self.dst.full_key(&obj.key));
        let req = apply_write!(req, &meta, tagging, &self.opts);
        let upload_id = open_recorded(self, &obj.key, req, part_size, log).await?;
        Ok(GiantUpload {
            upload_id,
            part_size,
            src_etag: layout.etag,
            same_layout: layout.part_size.is_some(),
        })
    }

    /// Copies part `number` (1-based) of a giant object. With `reuse`, a part already stored with the
    /// right size and an MD5 ETag (a previous worker's) is kept instead of copied again.
    pub async fn copy_giant_part(
        &self,
        key: &str,
        upload: &GiantUpload,
        number: u32,
        range: (u64, u64),
        reuse: bool,
    ) -> Result<PartCopied> {
        if reuse && let Some(done) = self.stored_part(key, upload, number, range).await {
            return Ok(done);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res = async {
                let (_, body) = self.get(key, Some(range)).await?;
                upload_part(self, key, &upload.upload_id, number as i32, body).await
            };
            let res = tokio::select! {
                res = res => res,
                _ = self.cancel.cancelled() => Err(Error::Cancelled),
            };
            match res {
                Ok((etag, md5, _)) => {
                    return Ok(PartCopied {
                        etag,
                        md5: hex::encode(md5),
                    });
                }
                Err(e) if e.is_retryable_object() && attempt <= self.opts.retries => {
                    tracing::warn!(key, part = number, attempt, "{e}; trying the part again");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The part as the destination already holds it, when it can be trusted.
    async fn stored_part(
        &self,
        key: &str,
        upload: &GiantUpload,
        number: u32,
        range: (u64, u64),
    ) -> Option<PartCopied> {
        let out = self
            .dst
            .client()
            .list_parts()
            .bucket(self.dst.bucket())
            .key(self.dst.full_key(key))
            .upload_id(&upload.upload_id)
            .part_number_marker((number - 1).to_string())
            .max_parts(1)
            .send()
            .await
            .ok()?;
        let part = out
            .parts()
            .iter()
            .find(|p| p.part_number() == Some(number as i32))?;
        let etag = part.e_tag()?.to_string();
        let md5 = etag_md5(&unquote(&etag))?.to_string();
        (part.size() == Some((range.1 - range.0) as i64)).then(|| {
            tracing::info!(key, part = number, "part already stored; reusing it");
            PartCopied { etag, md5 }
        })
    }

    /// Completes a giant object from its parts (in any order; all must be there) and verifies it.
    pub async fn finish_giant(
        &self,
        obj: &ObjectMeta,
        upload: &GiantUpload,
        parts: &[(u32, PartCopied)],
    ) -> Result<Verification> {
        let mut parts: Vec<&(u32, PartCopied)> = parts.iter().collect();
        parts.sort_by_key(|p| p.0);
        let want = upload.ranges(obj.size).len();
        if parts.len() != want || parts.iter().enumerate().any(|(i, p)| p.0 as usize != i + 1) {
            return Err(Error::Verify {
                key: obj.key.clone(),
                detail: format!("{} of {want} parts recorded", parts.len()),
            });
        }
        let mut md5s = Vec::with_capacity(parts.len());
        for (n, p) in &parts {
            let m = hex::decode(&p.md5)
                .ok()
                .and_then(|v| <[u8; 16]>::try_from(v).ok())
                .ok_or_else(|| Error::Verify {
                    key: obj.key.clone(),
                    detail: format!("part {n} has no MD5 recorded"),
                })?;
            md5s.push(m);
        }
        let composite = composite_etag(md5s.into_iter());
        let verification = match &upload.src_etag {
            Some(e) if upload.same_layout && etag_parts(e).is_some() => {
                if *e != composite {
                    return Err(Error::Verify {
                        key: obj.key.clone(),
                        detail: format!("source ETag {e}, the parts copied give {composite}"),
                    });
                }
                Verification::CompositeEtag
            }
            _ => Verification::PartsMd5AndSize,
        };
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|(n, p)| {
                        CompletedPart::builder()
                            .part_number(*n as i32)
                            .e_tag(&p.etag)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let done = self
            .dst
            .client()
            .complete_multipart_upload()
            .bucket(self.dst.bucket())
            .key(self.dst.full_key(&obj.key))
            .upload_id(&upload.upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .map_err(|e| self.dst.error("CompleteMultipartUpload", Some(&obj.key), e));
        match done {
            Ok(done) => {
                let etag = checksum_etag(done.e_tag(), done.server_side_encryption(), None);
                check_dst_etag(self, obj, etag, &composite, None)?;
                let head_etag = self.check_dst_size(&obj.key, obj.size).await?;
                check_dst_etag(self, obj, head_etag, &composite, None)?;
            }
            // The upload is gone: a worker that lost its lease may have completed it already (servers
            // answer NoSuchUpload, or like s3s-fs AccessDenied). The object must then be ours.
            Err(e)
                if matches!(
                    e,
                    Error::Request {
                        status: Some(403 | 404),
                        ..
                    }
                ) =>
            {
                tracing::info!(key = %obj.key, "upload gone; checking whether it was completed: {e}");
                let gone = || Error::UploadGone {
                    key: obj.key.clone(),
                };
                let head_etag = self
                    .check_dst_size(&obj.key, obj.size)
                    .await
                    .map_err(|_| gone())?;
                let predictable = self.dst.profile().multipart_etag == EtagKind::Md5OfParts;
                if !predictable || head_etag.as_deref() != Some(composite.as_str()) {
                    return Err(gone());
                }
            }
            Err(e) => return Err(e),
        }
        Ok(verification)
    }
}
