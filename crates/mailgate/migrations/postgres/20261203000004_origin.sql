-- Which edge a message came in by: 'api' (with api_key_id), 'cli'; the relay adds 'relay'.
ALTER TABLE messages ADD COLUMN origin TEXT NOT NULL DEFAULT 'api';
UPDATE messages SET origin = 'cli' WHERE api_key_id IS NULL;
