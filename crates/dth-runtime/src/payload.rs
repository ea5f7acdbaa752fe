//! What an item carries for the engine besides its key, size and ETag: the rest of the listing entry,
//! the multipart upload its last attempt opened, for giant objects the split upload and each part's
//! range and result, for images the planned job (source and destination names). Stored as JSON in
//! the item.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dth_model::ItemKind;
use dth_oci::Digest;
use dth_oci::plan::ImageJob;
use dth_s3::{GiantUpload, ObjectMeta, OpenUpload, PartCopied};
use dth_store::{Item, NewItem};
use serde::{Deserialize, Serialize};

/// Payload of an object item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ObjectPayload {
    /// Source last-modified time, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_ms: Option<i64>,
    /// Source storage class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// The open upload, once a giant object was split into parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<GiantUpload>,
    /// The multipart upload an attempt opened, recorded before its first part was sent
    /// ([`crate::upload_log`]); the next attempt aborts it before it starts over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_upload: Option<OpenUpload>,
    /// An attempt was opening an upload whose id had not come back yet: the next attempt looks
    /// for it by listing the key's uploads.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub opening_upload: bool,
    /// Queued by an S3 event, not by a listing: a delete first checks that the source object is
    /// still gone (a later write may have brought it back).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_event: bool,
}

/// Payload of a part item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartPayload {
    /// The giant object's upload.
    pub upload: GiantUpload,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// What the destination stored, once copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<PartCopied>,
}

/// The queue item for a found object (copy) or destination object (delete).
pub(crate) fn new_item(kind: ItemKind, obj: ObjectMeta) -> NewItem {
    let payload = ObjectPayload {
        last_modified_ms: obj
            .last_modified
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64),
        storage_class: obj.storage_class,
        upload: None,
        open_upload: None,
        opening_upload: false,
        from_event: false,
    };
    NewItem {
        kind,
        key: obj.key,
        size: obj.size,
        etag: obj.etag,
        part_number: None,
        payload: serde_json::to_value(payload).unwrap_or_default(),
    }
}

/// Marks a new item as queued by an S3 event ([`ObjectPayload::from_event`]).
pub(crate) fn mark_from_event(item: &mut NewItem) {
    if let Some(obj) = item.payload.as_object_mut() {
        obj.insert("from_event".into(), serde_json::Value::Bool(true));
    }
}

/// The object an item stands for, and its payload.
pub(crate) fn object(item: &Item) -> (ObjectMeta, ObjectPayload) {
    let p: ObjectPayload = serde_json::from_value(item.payload.clone()).unwrap_or_default();
    let meta = ObjectMeta {
        key: item.key.clone(),
        size: item.size,
        etag: item.etag.clone(),
        last_modified: p
            .last_modified_ms
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)),
        storage_class: p.storage_class.clone(),
    };
    (meta, p)
}

/// An image's item key: the source `repo:tag` (or `repo@digest`).
pub(crate) fn image_key(job: &ImageJob) -> String {
    let sep = if job.reference.contains(':') {
        '@'
    } else {
        ':'
    };
    format!("{}{sep}{}", job.src_repo, job.reference)
}

/// The queue item for an image to copy; `digest` is the source's, when the finder saw it.
pub(crate) fn image_item(job: &ImageJob, digest: Option<Digest>) -> NewItem {
    NewItem {
        kind: ItemKind::Image,
        key: image_key(job),
        size: 0,
        etag: digest.map(|d| d.as_str().to_string()),
        part_number: None,
        payload: serde_json::to_value(job).unwrap_or_default(),
    }
}

/// The image job an item carries.
pub(crate) fn image_job(item: &Item) -> Result<ImageJob, String> {
    serde_json::from_value(item.payload.clone())
        .map_err(|e| format!("image item {} has no readable job: {e}", item.id))
}

/// The part items of a giant object.
pub(crate) fn parts(key: &str, size: u64, upload: &GiantUpload) -> Vec<NewItem> {
    upload
        .ranges(size)
        .into_iter()
        .enumerate()
        .map(|(i, (start, end))| NewItem {
            kind: ItemKind::Part,
            key: key.to_string(),
            size: end - start,
            etag: None,
            part_number: Some(i as u32 + 1),
            payload: serde_json::to_value(PartPayload {
                upload: upload.clone(),
                start,
                end,
                done: None,
            })
            .unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_round_trip() {
        let obj = ObjectMeta {
            key: "a/b".into(),
            size: 7,
            etag: Some("e".into()),
            last_modified: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            storage_class: Some("GLACIER".into()),
        };
        let n = new_item(ItemKind::Object, obj.clone());
        let item = Item {
            id: 1,
            run_id: 1,
            task_id: "t".into(),
            kind: n.kind,
            key: n.key,
            size: n.size,
            etag: n.etag,
            parent_id: None,
            part_number: None,
            state: dth_model::ItemState::Leased,
            attempts: 1,
            lease_owner: None,
            lease_expires_at: None,
            not_before: 0,
            last_error: None,
            bytes_done: 0,
            dst_etag: None,
            verification: None,
            payload: n.payload,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(object(&item).0, obj);
    }

    #[test]
    fn parts_cover_the_object() {
        let up = GiantUpload {
            upload_id: "u".into(),
            part_size: 4,
            src_etag: None,
            same_layout: false,
        };
        let p = parts("k", 10, &up);
        assert_eq!(p.len(), 3);
        assert_eq!(p.iter().map(|p| p.size).sum::<u64>(), 10);
        assert_eq!(p[2].part_number, Some(3));
    }
}
