-- Limits that hold across every instance sharing this database, where each instance once kept
-- its own in memory.

-- Gmail sessions per account: a row per session slot in use, owned by the instance holding the
-- session (working or idle). An instance's rows go with it when it stops beating.
CREATE TABLE session_slots (
    account TEXT NOT NULL,
    slot BIGINT NOT NULL,
    owner TEXT NOT NULL,
    taken_at BIGINT NOT NULL,
    PRIMARY KEY (account, slot)
);

-- The daily limit: sends an instance has reserved for an account and not yet recorded in
-- account_sends. Sent plus held never exceeds the limit, whichever instance sends.
CREATE TABLE quota_holds (
    account TEXT NOT NULL,
    owner TEXT NOT NULL,
    held BIGINT NOT NULL,
    PRIMARY KEY (account, owner)
);

-- Gmail's last "daily sending quota exceeded" per account: no instance sends before then.
CREATE TABLE quota_blocks (
    account TEXT PRIMARY KEY,
    blocked_until BIGINT NOT NULL
);

-- Password attempts (admin sign-in, relay logins) per budget ("address:…", "account:…",
-- "device:…", "relay:…"): reserved (pending = 1) before the password is checked, then a failure
-- or gone with a success.
CREATE TABLE sign_in_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    budget TEXT NOT NULL,
    at BIGINT NOT NULL,
    pending BIGINT NOT NULL
);
CREATE INDEX sign_in_attempts_budget ON sign_in_attempts (budget, at);
CREATE INDEX sign_in_attempts_at ON sign_in_attempts (at);
