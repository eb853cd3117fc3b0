-- "Connect your Gmail account" can start from an incoming server's page too: which kind of
-- server the round trip is for, beside its id (existing rows came from outgoing servers).
ALTER TABLE oauth_states ADD COLUMN server_kind TEXT NOT NULL DEFAULT 'outgoing';
