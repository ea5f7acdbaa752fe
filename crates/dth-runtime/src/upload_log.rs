//! An object item's record of the multipart upload its attempt opened: [`dth_s3::UploadLog`] on the
//! store. The copy marks the item before it opens an upload and writes the id before the first part
//! is sent; the worker that takes the item over after a crash (or dead-letters it) aborts that upload
//! first, and when only the mark is there (killed while the upload was being opened) the key's
//! uploads found by ListMultipartUploads. So no upload is left open, and only that rare moment needs
//! the listing.

use dth_s3::{OpenUpload, UploadLog};
use dth_store::Item;
use futures::future::BoxFuture;

use crate::hub::Hub;
use crate::metrics::timed;
use crate::payload::ObjectPayload;
use crate::worker::store_err;

/// Records uploads in the payload of the item a worker holds.
pub(crate) struct ItemUploads<'a> {
    pub(crate) hub: &'a Hub,
    pub(crate) item: &'a Item,
    /// The item's payload as claimed; the record is added to it.
    pub(crate) payload: &'a ObjectPayload,
}

impl ItemUploads<'_> {
    /// Writes the item's payload with these upload fields.
    async fn record(
        &self,
        key: &str,
        opening: bool,
        open: Option<&OpenUpload>,
    ) -> dth_s3::Result<()> {
        let mut p = self.payload.clone();
        p.opening_upload = opening;
        if let Some(open) = open {
            p.open_upload = Some(open.clone());
        }
        let value = serde_json::to_value(&p).unwrap_or_default();
        let worker = &self.hub.config.worker_id;
        match timed(
            "set_payload",
            self.hub.store.set_payload(worker, self.item.id, &value),
        )
        .await
        {
            Ok(true) => Ok(()),
            // The lease is lost: another worker has the item now.
            Ok(false) => Err(dth_s3::Error::Cancelled),
            Err(e) => Err(store_err(key, e)),
        }
    }
}

impl UploadLog for ItemUploads<'_> {
    fn opening<'a>(&'a self, key: &'a str) -> BoxFuture<'a, dth_s3::Result<()>> {
        Box::pin(self.record(key, true, None))
    }

    fn opened<'a>(
        &'a self,
        key: &'a str,
        upload: &'a OpenUpload,
    ) -> BoxFuture<'a, dth_s3::Result<()>> {
        Box::pin(self.record(key, false, Some(upload)))
    }
}
