-- The cost of a message does not grow with the history behind it.
--
-- The due index holds only the messages still on their way, so claiming walks the live queue,
-- never the sent history. Queries that want it name its states word for word (SQLite uses a
-- partial index only when the query repeats the index's condition).
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages (state, next_attempt_at)
    WHERE state IN ('queued', 'deferred', 'sending');
-- Retention reads only what it deletes: bodies of ended messages still kept are found here, whole
-- records past history_days by `messages_created`. Before, both purges walked every ended
-- message, at each start and every hour, while holding the write lock.
CREATE INDEX messages_bodies_kept ON messages (updated_at)
    WHERE body IS NOT NULL AND state IN ('sent', 'failed', 'cancelled');
-- Counting messages by state (dashboard, /metrics) reads this narrow index rather than the
-- table and its bodies. It indexes an expression on purpose: no query that filters on `state`
-- can pick it instead of the partial indexes above.
CREATE INDEX messages_states ON messages ((state || ''));
