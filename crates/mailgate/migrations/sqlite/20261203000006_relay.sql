-- The SMTP relay's credentials ("app passwords"). The password is generated, shown once and
-- kept as a keyed hash (HMAC under the secret key): it is 256 random bits, so a fast MAC is
-- as safe as a slow KDF and a login costs microseconds. `senders` lists the addresses and
-- @domains the credential may send as; empty means any address a server sends as.
CREATE TABLE relay_credentials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    prefix TEXT NOT NULL,
    senders TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
-- A name (the SMTP username) belongs to one live credential; a revoked one frees it.
CREATE UNIQUE INDEX relay_credentials_live_name ON relay_credentials (name) WHERE revoked_at IS NULL;

-- Where a delivery status notification goes when a relayed message fails for good: the
-- client's MAIL FROM (NULL for a null sender, and for everything not relayed).
ALTER TABLE messages ADD COLUMN bounce_to TEXT;
-- When that notification was queued: each failed message is reported once.
ALTER TABLE messages ADD COLUMN bounced_at BIGINT;
CREATE INDEX messages_bounce_due ON messages (id)
    WHERE state = 'failed' AND bounce_to IS NOT NULL AND bounced_at IS NULL;
