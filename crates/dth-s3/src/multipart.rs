//! Multipart copies. Parts are read (ranged GETs) and written (UploadPart with Content-MD5) in parallel
//! within the copier's memory budget; the upload is completed only after every part is stored and the
//! bytes read were checked against the source, and aborted on any failure, so no orphan upload remains.
//!
//! Verification against the source, strongest first:
//! - the source ETag is an MD5-of-parts composite and the source's part size is known (HEAD with
//!   `partNumber=1`): we copy in the same layout and recompute the composite from our part MD5s;
//! - the source ETag is a plain MD5: the whole-object MD5 is computed in order as parts arrive;
//! - otherwise (opaque ETag): Content-MD5 on every part plus the size.
//!
//! After completion the destination's ETag is checked when it is an MD5 or an MD5-of-parts composite
//! that we can predict, and its size always.
//!
//! Every upload opened here is handed to the caller's [`UploadLog`] before its first part is sent, so
//! a caller with a store (the hub, `dth s3 sync --state`) can abort an upload left by a process that
//! died mid-copy without relying on ListMultipartUploads, which some providers lack.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use dth_model::Verification;
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::copy::{Body, Copier, backoff, copy_source};
use crate::error::{Error, Result};
use crate::meta::{ObjectMeta, checksum_etag, etag_md5, etag_parts};
use crate::profile::EtagKind;
use crate::uploads::{self, Aborted, ListedUpload};
use crate::write::{SourceMeta, apply_write};

/// A multipart upload an attempt opened: what is recorded before its first part is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenUpload {
    /// The destination's upload id.
    pub upload_id: String,
    /// Bytes per part (the last may be shorter).
    pub part_size: u64,
}

/// Where a copy records each multipart upload it opens: that one is about to be opened (so a process
/// killed before the id came back is known to have maybe left one), then its id, before the first
/// part is sent. An error stops the copy (an opened upload is aborted first): no part is ever sent
/// for an unrecorded upload.
pub trait UploadLog: Send + Sync {
    /// Records that an upload of `key` is about to be opened.
    fn opening<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;
    /// Records that `upload` was opened for `key`.
    fn opened<'a>(&'a self, key: &'a str, upload: &'a OpenUpload) -> BoxFuture<'a, Result<()>>;
}

/// The log of a sync without a store: nothing is kept, so a process killed mid-copy leaves its open
/// uploads behind (`dth s3 uploads` finds and aborts them).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unrecorded;

impl UploadLog for Unrecorded {
    fn opening<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn opened<'a>(&'a self, _key: &'a str, _upload: &'a OpenUpload) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// Opens a multipart upload and records it in `log`; an upload that cannot be recorded is aborted.
pub(crate) async fn open_recorded(
    c: &Copier,
    key: &str,
    req: aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder,
    part_size: u64,
    log: &dyn UploadLog,
) -> Result<String> {
    log.opening(key).await?;
    let upload_id = create_upload(c, key, req).await?;
    let open = OpenUpload {
        upload_id,
        part_size,
    };
    if let Err(e) = log.opened(key, &open).await {
        abort(c, key, &open.upload_id).await;
        return Err(e);
    }
    Ok(open.upload_id)
}

/// What the source tells about its layout and checksum.
pub(crate) struct SourceLayout {
    pub(crate) etag: Option<String>,
    /// The source's part size, when its ETag is a composite we can reproduce.
    pub(crate) part_size: Option<u64>,
}

/// The id of an upload being opened, awaited by the parts read meanwhile: `None` when it could not be
/// opened.
type UploadId = Shared<BoxFuture<'static, Option<String>>>;

/// The upload's id once it is open; an upload that could not be opened stops its parts (the
/// opening's own error is the one reported).
async fn opened_id(id: &UploadId) -> Result<String> {
    id.clone().await.ok_or(Error::Cancelled)
}

/// Copies a large object through us in parts.
///
/// Round trips in series, which bound it between far endpoints: the first part's GET (its answer
/// carries the metadata the upload is created with), then the upload's creation while the next parts
/// are read, the parts' uploads, the completion and the check of the destination.
pub(crate) async fn copy(
    c: &Arc<Copier>,
    obj: &ObjectMeta,
    log: &dyn UploadLog,
) -> Result<Verification> {
    let layout = match listed_layout(c, obj) {
        Some(layout) => layout,
        None => source_layout(c, obj).await?,
    };
    let part_size = layout
        .part_size
        .unwrap_or_else(|| c.dst.profile().part_size_for(obj.size, c.opts.part_size));
    let ranges = ranges(obj.size, part_size);
    let tagging = c.tagging(&obj.key).await?;
    // Part 1 first: its GET response carries the metadata the upload is created with.
    let (first_out, first) = c.get(&obj.key, Some(ranges[0])).await?;
    let meta = SourceMeta::from_get(&first_out);
    let src_etag = checksum_etag(
        first_out.e_tag(),
        first_out.server_side_encryption(),
        first_out.sse_customer_algorithm(),
    )
    .or(layout.etag);
    let req = c
        .dst
        .client()
        .create_multipart_upload()
        .bucket(c.dst.bucket())
        .key(c.dst.full_key(&obj.key));
    let req = apply_write!(req, &meta, tagging, &c.opts);
    let (id_tx, id_rx) = oneshot::channel();
    let upload_id: UploadId = id_rx.map(Result::ok).boxed().shared();
    let opened = async move {
        let id = open_recorded(c, &obj.key, req, part_size, log).await?;
        let _ = id_tx.send(id.clone());
        Ok::<_, Error>(id)
    };
    let parts = async {
        let parts = upload_parts(
            c,
            obj,
            upload_id,
            &ranges,
            first,
            src_etag.as_deref(),
            layout.part_size.is_some(),
        );
        tokio::select! {
            res = parts => res,
            _ = c.cancel.cancelled() => Err(Error::Cancelled),
        }
    };
    // The opening is never cancelled: an upload it opens is known here, and aborted on failure.
    let (opened, res) = tokio::join!(opened, parts);
    let upload_id = opened?;
    match res {
        Ok(v) => Ok(v),
        Err(e) => {
            abort(c, &obj.key, &upload_id).await;
            Err(e)
        }
    }
}

async fn upload_parts(
    c: &Arc<Copier>,
    obj: &ObjectMeta,
    upload_id: UploadId,
    ranges: &[(u64, u64)],
    first: Body,
    src_etag: Option<&str>,
    same_layout: bool,
) -> Result<Verification> {
    let src_md5 = src_etag.and_then(etag_md5).map(str::to_string);
    // The whole-object MD5 needs the parts in order; a hasher task reorders them.
    let jobs =
        (c.memory_kib as u64 * 1024 / (ranges[0].1 - ranges[0].0).max(1)).clamp(2, 16) as usize;
    // A part holds one of `jobs` slots from before it is read until it is hashed, so a hasher slower
    // than the network bounds this object's parts in memory instead of queueing them without end.
    // Its bytes stay in memory until then, so it also keeps its share of the memory budget until
    // hashed. That share is taken in part order (one part after the other, below): the lowest part
    // not yet hashed always holds its memory, so parts waiting for it can never starve it of memory.
    let hashing = src_md5.is_some();
    let (hash_tx, hasher) = if hashing {
        let (tx, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(jobs));
        (Some((tx, slots)), Some(tokio::spawn(hash_in_order(rx))))
    } else {
        (None, None)
    };
    let mut first = Some(first);
    let parts: Vec<(i32, String, [u8; 16])> =
        futures::stream::iter(ranges.iter().copied().enumerate())
            // Sequential: each part's memory is taken after the previous part's.
            .then(|(i, range)| {
                let c = Arc::clone(c);
                async move {
                    let memory = match (hashing, i) {
                        (true, 1..) => Some(c.reserve(range.1 - range.0).await),
                        _ => None,
                    };
                    (i, range, memory.transpose())
                }
            })
            .map(|(i, range, memory)| {
                let c = Arc::clone(c);
                let key = obj.key.clone();
                let upload_id = upload_id.clone();
                let hash_tx = hash_tx.clone();
                let body = if i == 0 { first.take() } else { None };
                tokio::spawn(async move {
                    let memory = memory?;
                    let part = Part {
                        number: i as i32 + 1,
                        range,
                        body,
                        memory,
                    };
                    copy_part(&c, &key, &upload_id, part, hash_tx).await
                })
            })
            .buffered(jobs)
            .map(|joined| {
                joined.map_err(|e| Error::Body {
                    target: obj.key.clone(),
                    detail: format!("part task failed: {e}"),
                })?
            })
            .try_collect()
            .await?;
    drop(hash_tx);
    let composite = composite_etag(parts.iter().map(|p| p.2));
    // Check what we read against the source before anything becomes visible.
    let verification = match (&src_md5, src_etag) {
        (_, Some(e)) if same_layout && etag_parts(e).is_some() => {
            if e != composite {
                return Err(Error::Verify {
                    key: obj.key.clone(),
                    detail: format!("source ETag {e}, the parts read give {composite}"),
                });
            }
            Verification::CompositeEtag
        }
        (Some(want), _) => {
            let got = match hasher {
                Some(h) => h.await.map_err(|e| Error::Body {
                    target: obj.key.clone(),
                    detail: e.to_string(),
                })?,
                None => String::new(),
            };
            if *want != got {
                return Err(Error::Verify {
                    key: obj.key.clone(),
                    detail: format!("source ETag is MD5 {want}, the bytes read hash to {got}"),
                });
            }
            Verification::Md5AndParts
        }
        _ => Verification::PartsMd5AndSize,
    };
    let upload_id = opened_id(&upload_id).await?;
    let completed = CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, etag, _)| CompletedPart::builder().part_number(*n).e_tag(etag).build())
                .collect(),
        ))
        .build();
    let done = c
        .dst
        .client()
        .complete_multipart_upload()
        .bucket(c.dst.bucket())
        .key(c.dst.full_key(&obj.key))
        .upload_id(upload_id)
        .multipart_upload(completed)
        .send()
        .await
        .map_err(|e| c.dst.error("CompleteMultipartUpload", Some(&obj.key), e))?;
    let whole = src_md5
        .as_deref()
        .filter(|_| verification == Verification::Md5AndParts);
    let done_etag = checksum_etag(done.e_tag(), done.server_side_encryption(), None);
    check_dst_etag(c, obj, done_etag, &composite, whole)?;
    let head_etag = c.check_dst_size(&obj.key, obj.size).await?;
    check_dst_etag(c, obj, head_etag, &composite, whole)?;
    Ok(verification)
}

/// A destination ETag must be our composite (when the provider makes MD5-of-parts ETags) or, when it is
/// a plain MD5 and we know the whole-object MD5, equal to it.
pub(crate) fn check_dst_etag(
    c: &Copier,
    obj: &ObjectMeta,
    etag: Option<String>,
    composite: &str,
    whole: Option<&str>,
) -> Result<()> {
    let Some(etag) = etag else { return Ok(()) };
    let bad = etag_parts(&etag).is_some()
        && c.dst.profile().multipart_etag == EtagKind::Md5OfParts
        && etag != composite
        || etag_md5(&etag).is_some_and(|m| whole.is_some_and(|w| w != m));
    if bad {
        return Err(Error::WrittenMismatch {
            key: obj.key.clone(),
            detail: format!("destination ETag {etag} does not match the parts sent ({composite})"),
        });
    }
    Ok(())
}

/// One part of a multipart copy through us.
struct Part {
    number: i32,
    range: (u64, u64),
    /// Part 1, already read (with its own share of the memory budget).
    body: Option<Body>,
    /// The part's share of the memory budget, taken in part order, when it is hashed after its
    /// upload; its reads then take none of their own.
    memory: Option<OwnedSemaphorePermit>,
}

async fn copy_part(
    c: &Copier,
    key: &str,
    upload_id: &UploadId,
    part: Part,
    hash_tx: Option<(HashQueue, Arc<Semaphore>)>,
) -> Result<(i32, String, [u8; 16])> {
    let Part {
        number,
        range,
        mut body,
        memory,
    } = part;
    let mut slot = match &hash_tx {
        Some((_, slots)) => Some(
            Arc::clone(slots)
                .acquire_owned()
                .await
                .map_err(|_| Error::Cancelled)?,
        ),
        None => None,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let res = async {
            let part = match body.take() {
                Some(b) => b,
                None if memory.is_some() => c.get_reserved(key, range).await?,
                None => c.get(key, Some(range)).await?.1,
            };
            upload_part(c, key, &opened_id(upload_id).await?, number, part).await
        }
        .await;
        match res {
            Ok((etag, md5, body)) => {
                if let (Some((tx, _)), Some(slot)) = (&hash_tx, slot.take()) {
                    let _ = tx.send(Hashed {
                        number,
                        body,
                        memory,
                        _slot: slot,
                    });
                }
                return Ok((number, etag, md5));
            }
            Err(e) if e.is_retryable_object() && attempt <= c.opts.retries => {
                tracing::warn!(key, part = number, attempt, "{e}; trying the part again");
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Uploads one part; returns its ETag, its MD5 and the body (with its share of the memory budget,
/// if it holds one), for the whole-object hash.
pub(crate) async fn upload_part(
    c: &Copier,
    key: &str,
    upload_id: &str,
    number: i32,
    part: Body,
) -> Result<(String, [u8; 16], Body)> {
    let md5_hex = hex::encode(part.md5);
    let out = c
        .dst
        .client()
        .upload_part()
        .bucket(c.dst.bucket())
        .key(c.dst.full_key(key))
        .upload_id(upload_id)
        .part_number(number)
        .content_length(part.bytes.len() as i64)
        .content_md5(base64::engine::general_purpose::STANDARD.encode(part.md5))
        .body(ByteStream::from(part.bytes.clone()))
        // Content-MD5 guards the bytes (see `copy_small`).
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .map_err(|e| c.dst.error("UploadPart", Some(key), e))?;
    let etag = out.e_tag().unwrap_or_default().to_string();
    let checksum = checksum_etag(
        out.e_tag(),
        out.server_side_encryption(),
        out.sse_customer_algorithm(),
    );
    if checksum
        .as_deref()
        .and_then(etag_md5)
        .is_some_and(|e| e != md5_hex)
    {
        return Err(Error::Verify {
            key: key.to_string(),
            detail: format!("part {number} stored with ETag {etag}, sent MD5 {md5_hex}"),
        });
    }
    Ok((etag, part.md5, part))
}

/// A stored part on its way to [`hash_in_order`]: its bytes, its share of the memory budget and its
/// slot, all given back once it is hashed.
struct Hashed {
    number: i32,
    body: Body,
    memory: Option<OwnedSemaphorePermit>,
    _slot: OwnedSemaphorePermit,
}

/// Parts on their way to [`hash_in_order`].
type HashQueue = mpsc::UnboundedSender<Hashed>;

/// Hashes parts in part-number order as they arrive in any order.
async fn hash_in_order(mut rx: mpsc::UnboundedReceiver<Hashed>) -> String {
    let mut md5 = Md5::new();
    let mut next = 1;
    let mut waiting = BTreeMap::new();
    while let Some(part) = rx.recv().await {
        waiting.insert(part.number, part);
        while let Some(part) = waiting.remove(&next) {
            md5 = tokio::task::spawn_blocking(move || {
                md5.update(&part.body.bytes);
                drop(part.memory);
                md5
            })
            .await
            .expect("hashing task");
            next += 1;
        }
    }
    hex::encode(md5.finalize())
}

pub(crate) async fn abort(c: &Copier, key: &str, upload_id: &str) {
    let upload = ListedUpload {
        key: c.dst.full_key(key),
        upload_id: upload_id.to_string(),
        initiated: None,
        storage_class: None,
    };
    abort_listed(c, key, &upload).await;
}

/// Aborts one upload of `key`, logging the outcome.
async fn abort_listed(c: &Copier, key: &str, upload: &ListedUpload) {
    let upload_id = upload.upload_id.as_str();
    match uploads::abort(&c.dst, upload).await {
        Ok(Aborted::Now) => tracing::debug!(key, upload_id, "multipart upload aborted"),
        Ok(Aborted::AlreadyGone) => {
            tracing::debug!(key, upload_id, "multipart upload already gone")
        }
        // s3s-fs answers AccessDenied for an upload it no longer has.
        Err(e) => tracing::warn!(key, upload_id, "aborting the multipart upload failed: {e}"),
    }
}

impl Copier {
    /// Aborts an upload (logged, not returned, when it fails; one already gone is fine).
    pub async fn abort_upload(&self, key: &str, upload_id: &str) {
        abort(self, key, upload_id).await;
    }

    /// Aborts every open upload of exactly this key, found by ListMultipartUploads: for a process
    /// that died between opening an upload and recording its id. Servers without the listing (s3s-fs)
    /// give nothing to abort; the failure is logged.
    pub async fn abort_unrecorded_uploads(&self, key: &str) {
        match uploads::of_key(&self.dst, key).await {
            Ok(open) => {
                for u in open {
                    tracing::info!(key, upload_id = %u.upload_id, "aborting an upload whose id was never recorded");
                    abort_listed(self, key, &u).await;
                }
            }
            Err(e) => tracing::warn!(key, "cannot look for an unrecorded upload: {e}"),
        }
    }
}

/// Opens a multipart upload and returns its id.
///
/// Some servers (rclone's `serve s3` up to 1.75 at least) name the answer's root element
/// `InitiateMultipartUpload` instead of `InitiateMultipartUploadResult`; the SDK then cannot parse it, and
/// the upload id is read from the raw answer instead.
pub(crate) async fn create_upload(
    c: &Copier,
    key: &str,
    req: aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder,
) -> Result<String> {
    let err = match req.send().await {
        Ok(out) => {
            return out
                .upload_id()
                .map(str::to_string)
                .ok_or_else(|| Error::Body {
                    target: c.dst.target(Some(key)),
                    detail: "CreateMultipartUpload answered no upload id".into(),
                });
        }
        Err(e) => e,
    };
    if let Some(raw) = err.raw_response()
        && raw.status().is_success()
        && let Some(id) = raw
            .body()
            .bytes()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|xml| xml_element(xml, "UploadId"))
    {
        return Ok(id.to_string());
    }
    Err(c.dst.error("CreateMultipartUpload", Some(key), err))
}

/// The text of the first `<name>…</name>` element.
fn xml_element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..start + len]).filter(|v| !v.is_empty())
}

/// The layout without a HEAD, when the listing tells enough: a source whose composite ETags cannot
/// be reproduced, or a listed ETag that is no composite. The ETag then comes from the first part's
/// GET.
fn listed_layout(c: &Copier, obj: &ObjectMeta) -> Option<SourceLayout> {
    let plain = obj.etag.as_deref().is_some_and(|e| etag_parts(e).is_none());
    (plain || c.src.profile().multipart_etag != EtagKind::Md5OfParts).then_some(SourceLayout {
        etag: None,
        part_size: None,
    })
}

/// Learns the source ETag and, when it is a composite, the source's part size (HEAD `partNumber=1`).
pub(crate) async fn source_layout(c: &Copier, obj: &ObjectMeta) -> Result<SourceLayout> {
    let head = c
        .src
        .client()
        .head_object()
        .bucket(c.src.bucket())
        .key(c.src.full_key(&obj.key))
        .part_number(1)
        .set_request_payer(c.payer())
        .send()
        .await
        .map_err(|e| c.src.error("HeadObject", Some(&obj.key), e))?;
    let etag = checksum_etag(
        head.e_tag(),
        head.server_side_encryption(),
        head.sse_customer_algorithm(),
    );
    if c.src.profile().multipart_etag != EtagKind::Md5OfParts {
        // An opaque composite cannot be reproduced: verify per part and by size.
        return Ok(SourceLayout {
            etag: etag.filter(|e| etag_md5(e).is_some()),
            part_size: None,
        });
    }
    let part_size = match (
        etag.as_deref().and_then(etag_parts),
        head.parts_count(),
        head.content_length(),
    ) {
        (Some(n), Some(pc), Some(len)) if pc as u64 == n && len > 0 && (len as u64) < obj.size => {
            let p = len as u64;
            let prof = c.dst.profile();
            (obj.size.div_ceil(p) == n
                && p >= prof.min_part
                && p <= prof.max_part
                && n <= prof.max_parts)
                .then_some(p)
        }
        _ => None,
    };
    Ok(SourceLayout { etag, part_size })
}

/// Copies an object above 5 GiB server-side with UploadPartCopy, or through us where the provider
/// cannot copy parts.
pub(crate) async fn copy_server_side(
    c: &Arc<Copier>,
    obj: &ObjectMeta,
    log: &dyn UploadLog,
) -> Result<Verification> {
    if !c.dst.profile().part_copy {
        return copy(c, obj, log).await;
    }
    let head = c.head_source(&obj.key).await?;
    let meta = SourceMeta::from_head(&head);
    let tagging = c.tagging(&obj.key).await?;
    let req = c
        .dst
        .client()
        .create_multipart_upload()
        .bucket(c.dst.bucket())
        .key(c.dst.full_key(&obj.key));
    let part_size = c.dst.profile().part_size_for(obj.size, 512 * 1024 * 1024);
    let req = apply_write!(req, &meta, tagging, &c.opts);
    let upload_id = open_recorded(c, &obj.key, req, part_size, log).await?;
    let source = copy_source(c.src.bucket(), &c.src.full_key(&obj.key));
    let result: Result<Vec<CompletedPart>> =
        futures::stream::iter(ranges(obj.size, part_size).into_iter().enumerate())
            .map(|(i, (start, end))| {
                let req = c
                    .dst
                    .client()
                    .upload_part_copy()
                    .bucket(c.dst.bucket())
                    .key(c.dst.full_key(&obj.key))
                    .upload_id(&upload_id)
                    .part_number(i as i32 + 1)
                    .copy_source(&source)
                    .copy_source_range(format!("bytes={start}-{}", end - 1))
                    .set_request_payer(c.payer());
                async move {
                    let out = req
                        .send()
                        .await
                        .map_err(|e| c.dst.error("UploadPartCopy", Some(&obj.key), e))?;
                    let etag = out
                        .copy_part_result()
                        .and_then(|r| r.e_tag())
                        .unwrap_or_default();
                    Ok(CompletedPart::builder()
                        .part_number(i as i32 + 1)
                        .e_tag(etag)
                        .build())
                }
            })
            .buffered(8)
            .try_collect()
            .await;
    let done = match result {
        Ok(parts) => c
            .dst
            .client()
            .complete_multipart_upload()
            .bucket(c.dst.bucket())
            .key(c.dst.full_key(&obj.key))
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| c.dst.error("CompleteMultipartUpload", Some(&obj.key), e)),
        Err(e) => Err(e),
    };
    if let Err(e) = done {
        abort(c, &obj.key, &upload_id).await;
        return Err(e);
    }
    c.check_dst_size(&obj.key, obj.size).await?;
    Ok(Verification::ServerSideSize)
}

/// Byte ranges `[start, end)` of the parts of an object.
pub(crate) fn ranges(size: u64, part_size: u64) -> Vec<(u64, u64)> {
    let n = size.div_ceil(part_size).max(1);
    (0..n)
        .map(|i| (i * part_size, ((i + 1) * part_size).min(size)))
        .collect()
}

/// `hex(md5(md5_1 ‖ … ‖ md5_n))-n`, the ETag S3 gives a multipart upload.
pub(crate) fn composite_etag(md5s: impl Iterator<Item = [u8; 16]>) -> String {
    let mut h = Md5::new();
    let mut n = 0;
    for m in md5s {
        h.update(m);
        n += 1;
    }
    format!("{}-{n}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_upload_id_from_raw_xml() {
        let xml = "<InitiateMultipartUpload><Bucket>b</Bucket><UploadId>3c7c-4e</UploadId></InitiateMultipartUpload>";
        assert_eq!(xml_element(xml, "UploadId"), Some("3c7c-4e"));
        assert_eq!(xml_element("<UploadId></UploadId>", "UploadId"), None);
    }

    #[test]
    fn splits_ranges() {
        assert_eq!(ranges(10, 4), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(ranges(8, 4), vec![(0, 4), (4, 8)]);
        assert_eq!(ranges(0, 4), vec![(0, 0)]);
    }

    #[test]
    fn composite_matches_s3() {
        // md5(md5("a") ‖ md5("b")), computed independently with Python's hashlib.
        let parts = [Md5::digest(b"a").into(), Md5::digest(b"b").into()];
        assert_eq!(
            composite_etag(parts.into_iter()),
            "96e024ba2074fe77e8e965ba43a704be-2"
        );
    }
}
