//! The counters of a run, as every view shows them.

use serde::{Deserialize, Serialize};

/// Counters of a run, computed by the store from item states (parts are not counted; their object
/// is), so `copied` never exceeds `found`. The one counter set of the API, portal and alarms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunCounters {
    /// Objects or images found at the source that are in scope: items of kind object or image + up
    /// to date.
    pub found: u64,
    /// Their bytes.
    pub found_bytes: u64,
    /// Up to date (finder) + skipped items (archived, vanished).
    pub skipped: u64,
    /// Object and image items done (copied and verified).
    pub copied: u64,
    /// Bytes of `copied`.
    pub copied_bytes: u64,
    /// Delete items done.
    pub deleted: u64,
    /// Items queued, leased or waiting for parts.
    pub pending: u64,
    /// Pending items that already failed at least once.
    pub retrying: u64,
    /// Items dead-lettered.
    pub dead: u64,
    /// Items cancelled by a stop.
    pub cancelled: u64,
    /// Bytes written so far by unfinished items (objects and parts being copied) and by the done
    /// parts of giant objects that are not complete yet.
    pub bytes_in_flight: u64,
}
