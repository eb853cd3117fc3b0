-- Hardening: leases that name their claim, attempts whose outcome is unknown, scoped API keys.

-- Each claim stamps its own random token; only the holder of the current token may renew the
-- lease or settle the message, so a worker that lost its lease cannot overwrite a newer attempt.
ALTER TABLE messages ADD COLUMN lease_token TEXT;
-- Set just before the final dot of the current attempt goes out, cleared when the attempt is
-- recorded. Found set on a claimed message, it means mailgate stopped between the two: the
-- server may have accepted the message.
ALTER TABLE messages ADD COLUMN dot_at BIGINT;
-- Attempts whose outcome mailgate could not learn: the message may have been delivered twice.
ALTER TABLE messages ADD COLUMN unknown_outcomes BIGINT NOT NULL DEFAULT 0;
CREATE INDEX messages_lease ON messages (lease_token);

-- `submit`: send, and read back what this key sent. `admin`: also read every message.
ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'submit';
