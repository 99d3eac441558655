-- Queues and event source mappings (issue 16).
-- SQS-compatible queues: one row per queue; its attributes and tags as JSON.
CREATE TABLE sqs_queues (
    id          INTEGER PRIMARY KEY,
    account     TEXT NOT NULL,
    name        TEXT NOT NULL,
    attributes  TEXT NOT NULL,
    tags        TEXT NOT NULL,
    created     REAL NOT NULL,
    modified    REAL NOT NULL,
    purged      REAL NOT NULL DEFAULT 0,
    UNIQUE (account, name)
);
-- Messages: one row from the 200 of its send until it is deleted (or expires, or moves to a dead-letter queue).
-- seq is the enqueue order (a FIFO queue's SequenceNumber); visible is when it can be received (its delay, or
-- the end of its visibility timeout while in flight), in epoch seconds.
CREATE TABLE sqs_messages (
    seq            INTEGER PRIMARY KEY,
    queue_id       INTEGER NOT NULL,
    id             TEXT NOT NULL,
    body           TEXT NOT NULL,
    attributes     TEXT,
    system         TEXT,
    sent           REAL NOT NULL,
    visible        REAL NOT NULL,
    receives       INTEGER NOT NULL DEFAULT 0,
    first_receive  REAL NOT NULL DEFAULT 0
);
CREATE INDEX sqs_messages_queue ON sqs_messages (queue_id, seq);
-- FIFO deduplication ids, kept for the 5-minute window after their send.
CREATE TABLE sqs_dedup (
    queue_id    INTEGER NOT NULL,
    dedup_id    TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    expires     REAL NOT NULL,
    PRIMARY KEY (queue_id, dedup_id)
) WITHOUT ROWID;
-- Event source mappings (CreateEventSourceMapping): their configuration as the API returns it, as JSON.
CREATE TABLE event_source_mappings (
    uuid    TEXT PRIMARY KEY,
    config  TEXT NOT NULL
);
