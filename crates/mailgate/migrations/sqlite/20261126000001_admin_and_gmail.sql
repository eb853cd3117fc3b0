-- Admin access, settings, outgoing servers and Google connections.
-- Integers are BIGINT and booleans 0/1 on both backends, so one query layer reads both.

CREATE TABLE admins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- One-time links that create the first admin; only a hash of the token is kept.
CREATE TABLE setup_tokens (
    token_hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    admin_id BIGINT NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Secrets go in `sealed` (encrypted with the installation's key), everything else in `value`.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT,
    sealed BLOB,
    updated_at BIGINT NOT NULL
);

CREATE TABLE mail_servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    auth_method TEXT NOT NULL,
    username TEXT,
    password_sealed BLOB,
    host TEXT NOT NULL,
    port BIGINT NOT NULL,
    security TEXT NOT NULL,
    from_filter TEXT,
    priority BIGINT NOT NULL,
    last_test_at BIGINT,
    last_test_ok BIGINT,
    last_test_report TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One row per Google account: outgoing and incoming servers of the same mailbox share it.
CREATE TABLE google_connections (
    email TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    refresh_token_sealed BLOB NOT NULL,
    access_token_sealed BLOB,
    access_expires_at BIGINT,
    refresh_expires_at BIGINT,
    scope TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    status_at BIGINT NOT NULL,
    connected_at BIGINT NOT NULL,
    last_refresh_at BIGINT,
    last_error TEXT,
    last_error_at BIGINT
);

-- The `state` of a "Connect your Gmail account" round trip: one use, ten minutes, one admin.
CREATE TABLE oauth_states (
    nonce_hash TEXT PRIMARY KEY,
    server_id BIGINT NOT NULL,
    admin_id BIGINT NOT NULL,
    verifier_sealed BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
