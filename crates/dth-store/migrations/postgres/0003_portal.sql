-- What the portal API needs: who asked for a run, samples of a run's progress for throughput
-- charts, and hub-wide settings (the price table) as JSON documents by key.

-- Set by a user's start (or the task's creation), taken by the scheduler when it starts the run.
ALTER TABLE tasks ADD COLUMN run_requested_by TEXT;
-- Who started a run (a user's label), NULL for the schedule.
ALTER TABLE runs ADD COLUMN started_by TEXT;

-- One row per sample: bytes and items done so far, at a time.
CREATE TABLE run_samples (
    run_id       BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    at           BIGINT NOT NULL,
    bytes_done   BIGINT NOT NULL,
    items_done   BIGINT NOT NULL,
    items_failed BIGINT NOT NULL,
    PRIMARY KEY (run_id, at)
);

CREATE TABLE settings (
    name       TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

-- A run's items in id order (item lists, reports), a page at a time.
CREATE INDEX items_run_id ON items (run_id, id);
