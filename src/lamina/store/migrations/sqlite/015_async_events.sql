-- Asynchronous invocation (issue 15).
-- The durable event queue: one row per accepted Event invoke until it is done (ran, or went to its
-- failure handling). `claimed` marks an event a node has taken to run; a row still claimed at start-up
-- was in flight when the server stopped, and runs again (counted as redelivered).
CREATE TABLE async_events (
    id              TEXT PRIMARY KEY,
    function_name   TEXT NOT NULL,
    version         TEXT NOT NULL,
    qualifier       TEXT,
    invoked_arn     TEXT NOT NULL,
    payload         BLOB NOT NULL,
    client_context  BLOB,
    trace_id        TEXT,
    tenant_id       TEXT,
    created         REAL NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    throttles       INTEGER NOT NULL DEFAULT 0,
    due             REAL NOT NULL,
    claimed         INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
) WITHOUT ROWID;
CREATE INDEX async_events_due ON async_events (claimed, due);
CREATE INDEX async_events_function ON async_events (function_name, created);
-- Counters that outlive a restart (redelivered: events run again after a restart interrupted them).
CREATE TABLE async_counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
-- Put/UpdateFunctionEventInvokeConfig, one row per function and qualifier ('$LATEST', a version, an alias).
CREATE TABLE event_invoke_configs (
    function_name  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier      TEXT NOT NULL,
    config         TEXT NOT NULL,
    PRIMARY KEY (function_name, qualifier)
);
