-- The outgoing queue: messages, their attempts, API keys, and per-account send counts.

-- What Gmail lets an account send as, and what to do with any other From.
ALTER TABLE mail_servers ADD COLUMN aliases TEXT NOT NULL DEFAULT '';
ALTER TABLE mail_servers ADD COLUMN from_policy TEXT NOT NULL DEFAULT 'rewrite';
-- Messages per rolling 24 h mailgate allows itself through this server (0: no limit).
ALTER TABLE mail_servers ADD COLUMN daily_limit BIGINT NOT NULL DEFAULT 0;

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

-- One row per accepted message. `body` is the message exactly as it will be sent (RFC 5322),
-- built and fixed at submission, Message-ID included, so every attempt sends the same bytes.
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    server_id BIGINT NOT NULL,
    mail_from TEXT NOT NULL,
    rcpt_to TEXT NOT NULL,
    message_id TEXT NOT NULL,
    from_header TEXT NOT NULL,
    subject TEXT NOT NULL,
    size BIGINT NOT NULL,
    body BLOB,
    api_key_id BIGINT,
    idempotency_key TEXT,
    request_hash TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX messages_due ON messages (state, next_attempt_at);
CREATE INDEX messages_created ON messages (created_at);
CREATE UNIQUE INDEX messages_idempotency ON messages (api_key_id, idempotency_key);

-- Every attempt: when, where it ended, what the server said.
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    stage TEXT NOT NULL,
    reply TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX attempts_message ON attempts (message_id, at);
CREATE INDEX attempts_at ON attempts (at);

-- Messages sent per account per hour: the rolling 24 h window is the sum of 24 buckets.
CREATE TABLE account_sends (
    account TEXT NOT NULL,
    hour BIGINT NOT NULL,
    sent BIGINT NOT NULL,
    PRIMARY KEY (account, hour)
);
