-- The smtpkit outbox on PostgreSQL, version 1: the same tables, columns and meanings as the
-- SQLite schema (migrations/sqlite/0001_outbox.sql). Times are milliseconds since the Unix
-- epoch (UTC), taken from the clock of the process that writes them: keep the workers' clocks
-- in sync (NTP), as leases and due times from several machines are compared.
--
-- The tables live in the schema `smtpkit` (created on open, and set as the search path of the
-- outbox's connections), so the outbox shares a database with an application without clashing
-- with its tables or its own sqlx migrations.
--
-- `due_at` is the one column the worker's claim looks at: for a queued or deferred message its
-- next attempt, for a message being sent the end of its lease (then another worker may take
-- it), NULL once the message is final (sent, failed, expired, unknown).
CREATE TABLE messages (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider        TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    mail_from       TEXT    NOT NULL,
    idempotency_key TEXT    UNIQUE,
    body            BYTEA   NOT NULL,
    size            BIGINT  NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN
                        ('queued', 'sending', 'deferred', 'sent', 'failed', 'expired', 'unknown')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    next_attempt_at BIGINT,
    lease_owner     TEXT,
    lease_until     BIGINT,
    -- True while the message may have had its final `.` written under some lease: set by the
    -- worker just before it writes the `.`, cleared only by a record or an operator's retry.
    final_dot       BOOLEAN NOT NULL DEFAULT FALSE,
    last_reply      TEXT,
    due_at          BIGINT
);

CREATE INDEX messages_due ON messages (due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX messages_state ON messages (state, id);

CREATE TABLE recipients (
    message  BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    address  TEXT   NOT NULL,
    state    TEXT   NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'unknown')),
    reply    TEXT,
    PRIMARY KEY (message, position)
);
