-- Retention: the items of a run that ended long enough ago are deleted (the hub's "purge the items of
-- finished runs after N days" setting); the run row stays with its counters in final_counters, which
-- now also holds a STOPPED run's counters once its items are purged. items_purged_at says when the
-- last of them went, so a purge never looks at that run again.
ALTER TABLE runs ADD COLUMN items_purged_at BIGINT;
-- The runs a purge looks for: ended, items not purged yet, by end time.
CREATE INDEX runs_to_purge ON runs (ended_at)
    WHERE items_purged_at IS NULL AND status IN ('DONE', 'FAILED', 'STOPPED');
