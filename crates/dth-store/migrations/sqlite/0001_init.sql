-- Data Transfer Hub store, SQLite. Times are Unix milliseconds; JSON is stored as text.

CREATE TABLE tasks (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    status      TEXT NOT NULL,
    error_code  TEXT,
    error       TEXT,
    next_run_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX tasks_due ON tasks (next_run_at) WHERE next_run_at IS NOT NULL;

CREATE TABLE runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id          TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    trigger_kind     TEXT NOT NULL,
    status           TEXT NOT NULL,
    max_attempts     INTEGER NOT NULL,
    error            TEXT,
    started_at       INTEGER NOT NULL,
    found_at         INTEGER,
    ended_at         INTEGER,
    up_to_date       INTEGER NOT NULL DEFAULT 0,
    up_to_date_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_task ON runs (task_id, id);
CREATE INDEX runs_status ON runs (status);
-- At most one finding run per task, even with racing schedulers.
CREATE UNIQUE INDEX runs_one_finding ON runs (task_id) WHERE status = 'FINDING';

-- The queue: one row per object, part or delete. part_number is 0 for non-parts so that the unique
-- index below treats them as equal (NULLs would all be distinct). prio is 0 for parts (claimed first).
CREATE TABLE items (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id           INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task_id          TEXT NOT NULL,
    kind             TEXT NOT NULL,
    key              TEXT NOT NULL,
    size             INTEGER NOT NULL,
    etag             TEXT,
    parent_id        INTEGER REFERENCES items (id) ON DELETE CASCADE,
    part_number      INTEGER NOT NULL DEFAULT 0,
    prio             INTEGER NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    not_before       INTEGER NOT NULL,
    last_error       TEXT,
    bytes_done       INTEGER NOT NULL DEFAULT 0,
    dst_etag         TEXT,
    verification     TEXT,
    payload          TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX items_unique ON items (run_id, kind, key, part_number);
-- Claims walk these two in (prio, id) order.
CREATE INDEX items_queued ON items (prio, id) WHERE state = 'queued';
CREATE INDEX items_leased ON items (lease_expires_at) WHERE state = 'leased';
CREATE INDEX items_run_state ON items (run_id, state, id);
CREATE INDEX items_parent ON items (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE secrets (
    name       TEXT PRIMARY KEY NOT NULL,
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    hash       TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- No foreign key: an event may outlive its task (`task.deleted`); delete_task removes the others.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    task_id TEXT,
    run_id  INTEGER,
    kind    TEXT NOT NULL,
    actor   TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX events_task ON events (task_id, id);

-- Scheduler leadership on SQLite: one lease row, renewed by its holder.
CREATE TABLE leader (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    token      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
