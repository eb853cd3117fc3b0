-- Incoming Mail Servers: a Gmail folder read over IMAP with the account's Google connection (one
-- consent serves sending and receiving), and the webhook its mail goes to.
CREATE TABLE incoming_servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    username TEXT NOT NULL,
    folder TEXT NOT NULL,
    interval_secs BIGINT NOT NULL,
    mark_seen BIGINT NOT NULL DEFAULT 0,
    webhook_url TEXT,
    webhook_secret_sealed BLOB,
    confirmed BIGINT NOT NULL DEFAULT 0,
    -- Where fetching stands: the folder's UIDVALIDITY and the highest UID stored. Mail read on a
    -- phone is fetched all the same: UIDs, not \Seen, decide.
    uidvalidity BIGINT,
    last_uid BIGINT NOT NULL DEFAULT 0,
    -- After a UIDVALIDITY change the folder is fetched again; up to this UID, a message already
    -- stored (same Message-ID, or same bytes) is not stored twice.
    refetch_through BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'new',
    status_reason TEXT,
    status_at BIGINT,
    last_fetch_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX incoming_servers_name ON incoming_servers (name);

-- Every message fetched, stored before its UID counts as fetched, with what it says of itself
-- and how its webhook went.
CREATE TABLE inbox_messages (
    id TEXT PRIMARY KEY,
    server_id BIGINT NOT NULL REFERENCES incoming_servers (id) ON DELETE CASCADE,
    folder TEXT NOT NULL,
    uidvalidity BIGINT NOT NULL,
    uid BIGINT NOT NULL,
    message_id TEXT,
    content_hash TEXT NOT NULL,
    summary TEXT NOT NULL,
    subject TEXT NOT NULL,
    from_header TEXT NOT NULL,
    size BIGINT NOT NULL,
    raw BLOB,
    received_at BIGINT NOT NULL,
    -- 'pending' (to the webhook, in id order), 'delivered', or 'none' (no webhook: API only).
    webhook TEXT NOT NULL,
    webhook_attempts BIGINT NOT NULL DEFAULT 0,
    webhook_next_at BIGINT,
    webhook_at BIGINT,
    webhook_error TEXT
);
CREATE UNIQUE INDEX inbox_messages_uid ON inbox_messages (server_id, folder, uidvalidity, uid);
CREATE INDEX inbox_messages_message_id ON inbox_messages (server_id, folder, message_id);
CREATE INDEX inbox_messages_hash ON inbox_messages (server_id, folder, content_hash);
CREATE INDEX inbox_messages_pending ON inbox_messages (server_id, id) WHERE webhook = 'pending';
CREATE INDEX inbox_messages_received ON inbox_messages (received_at);

-- Every webhook attempt: when, what came back.
CREATE TABLE webhook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL REFERENCES inbox_messages (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    status BIGINT,
    error TEXT,
    took_ms BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_message ON webhook_attempts (message_id, at);

-- Work one instance at a time does (fetching an incoming server), held by a live instance: the
-- row goes with an instance that stops beating.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    taken_at BIGINT NOT NULL
);
