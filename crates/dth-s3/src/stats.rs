//! Live counters of a sync, shared by the finder, the copiers and whoever shows progress. Plain atomics:
//! readers see a consistent-enough snapshot for a progress bar; the final summary is read after every
//! task has ended.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Counters updated while a sync runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Source objects listed.
    pub listed: AtomicU64,
    /// Objects planned for copy, and their bytes.
    pub planned: AtomicU64,
    /// Bytes of the objects planned for copy.
    pub planned_bytes: AtomicU64,
    /// Objects copied and verified.
    pub copied: AtomicU64,
    /// Bytes of the objects copied and verified.
    pub copied_bytes: AtomicU64,
    /// Bytes moved so far, including parts of objects still in flight and failed attempts.
    pub transferred_bytes: AtomicU64,
    /// Objects already up to date.
    pub skipped: AtomicU64,
    /// Archived objects not restored.
    pub skipped_archived: AtomicU64,
    /// Objects gone between listing and reading.
    pub vanished: AtomicU64,
    /// Destination objects planned for deletion.
    pub planned_deletes: AtomicU64,
    /// Destination objects deleted.
    pub deleted: AtomicU64,
    /// Objects (or partitions) that failed.
    pub failed: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// See [`Stats::listed`].
    pub listed: u64,
    /// See [`Stats::planned`].
    pub planned: u64,
    /// See [`Stats::planned_bytes`].
    pub planned_bytes: u64,
    /// See [`Stats::copied`].
    pub copied: u64,
    /// See [`Stats::copied_bytes`].
    pub copied_bytes: u64,
    /// See [`Stats::transferred_bytes`].
    pub transferred_bytes: u64,
    /// See [`Stats::skipped`].
    pub skipped: u64,
    /// See [`Stats::skipped_archived`].
    pub skipped_archived: u64,
    /// See [`Stats::vanished`].
    pub vanished: u64,
    /// See [`Stats::planned_deletes`].
    pub planned_deletes: u64,
    /// See [`Stats::deleted`].
    pub deleted: u64,
    /// See [`Stats::failed`].
    pub failed: u64,
}

impl Stats {
    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            listed: self.listed.load(Relaxed),
            planned: self.planned.load(Relaxed),
            planned_bytes: self.planned_bytes.load(Relaxed),
            copied: self.copied.load(Relaxed),
            copied_bytes: self.copied_bytes.load(Relaxed),
            transferred_bytes: self.transferred_bytes.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            skipped_archived: self.skipped_archived.load(Relaxed),
            vanished: self.vanished.load(Relaxed),
            planned_deletes: self.planned_deletes.load(Relaxed),
            deleted: self.deleted.load(Relaxed),
            failed: self.failed.load(Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}
