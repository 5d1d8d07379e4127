-- The smtpkit outbox, version 1. Times are milliseconds since the Unix epoch (UTC).
--
-- `due_at` is the one column the worker's claim looks at: for a queued or deferred message its
-- next attempt, for a message being sent the end of its lease (then another worker may take
-- it), NULL once the message is final (sent, failed, expired, unknown).
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    provider        TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    mail_from       TEXT    NOT NULL,
    idempotency_key TEXT    UNIQUE,
    body            BLOB    NOT NULL,
    size            INTEGER NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN
                        ('queued', 'sending', 'deferred', 'sent', 'failed', 'expired', 'unknown')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    next_attempt_at INTEGER,
    lease_owner     TEXT,
    lease_until     INTEGER,
    -- 1 while the worker holding the lease may have written the final `.` of the message.
    final_dot       INTEGER NOT NULL DEFAULT 0,
    last_reply      TEXT,
    due_at          INTEGER
);

CREATE INDEX messages_due ON messages (due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX messages_state ON messages (state, id);

CREATE TABLE recipients (
    message  INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    address  TEXT    NOT NULL,
    state    TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'unknown')),
    reply    TEXT,
    PRIMARY KEY (message, position)
) WITHOUT ROWID;
