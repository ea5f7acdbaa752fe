-- People and their access: users, server-side sessions, per-user API tokens, sign-in throttling,
-- pending OpenID Connect sign-ins; the event log gains the audit fields (target, client).
-- Booleans are 0/1 integers; emails are stored lowercased.

CREATE TABLE users (
    id                   TEXT PRIMARY KEY NOT NULL,
    email                TEXT NOT NULL,
    name                 TEXT NOT NULL,
    role                 TEXT NOT NULL,
    disabled             INTEGER NOT NULL DEFAULT 0,
    password_hash        TEXT,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    oidc_subject         TEXT,
    language             TEXT,
    failed_signins       INTEGER NOT NULL DEFAULT 0,
    last_failed_at       INTEGER,
    locked               INTEGER NOT NULL DEFAULT 0,
    last_signin_at       INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (email);
CREATE UNIQUE INDEX users_oidc_subject ON users (oidc_subject) WHERE oidc_subject IS NOT NULL;

-- The cookie holds the session id; only its SHA-256 is stored.
CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    method       TEXT NOT NULL,
    subject      TEXT,
    client       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Failed sign-ins per client address.
CREATE TABLE client_throttle (
    client         TEXT PRIMARY KEY NOT NULL,
    failures       INTEGER NOT NULL,
    last_failed_at INTEGER NOT NULL
);

-- A sign-in sent to the OpenID Connect provider and not back yet: by SHA-256 of its `state`.
CREATE TABLE oidc_states (
    state_hash    TEXT PRIMARY KEY NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    expires_at    INTEGER NOT NULL
);

-- API tokens now belong to users (NULL: a token from before accounts, kept as an admin token).
CREATE TABLE api_tokens_v2 (
    id           TEXT PRIMARY KEY NOT NULL,
    hash         TEXT NOT NULL,
    name         TEXT NOT NULL,
    user_id      TEXT REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
INSERT INTO api_tokens_v2 (id, hash, name, user_id, role, created_at)
    SELECT substr(hash, 1, 16), hash, name, NULL, 'admin', created_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_v2 RENAME TO api_tokens;
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (hash);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

ALTER TABLE events ADD COLUMN target TEXT;
ALTER TABLE events ADD COLUMN client TEXT;
CREATE INDEX events_kind ON events (kind, id);
