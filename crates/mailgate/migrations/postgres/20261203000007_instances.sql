-- Each running mailgate: a random id per start, where it runs, and its heartbeat. Leases are
-- owned by the id; an instance whose heartbeat stops has its messages taken back by the others.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    http_addr TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
