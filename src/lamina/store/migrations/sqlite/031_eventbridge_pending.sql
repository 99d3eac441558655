-- EventBridge occurrences fired but not yet taken by their targets (issue 17): the outbox between a schedule's
-- next_due being advanced and its target's commit. A row is written in the same transaction that advances the
-- schedule's (or scheduled rule's) next_due, and removed in the same transaction as the target's own write (the
-- function's async event, the queue's message), so a restart at any moment neither loses nor repeats an occurrence.
-- owner: 's' a Scheduler schedule (a = its group), 'r' a scheduled rule (a = its bus); b: the name.
-- occurrence: its scheduled time; fire_at: when it is sent (a flexible window's pick, else the occurrence).
-- target: the target (JSON); payload: what the target receives.
CREATE TABLE eb_pending (
    id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    occurrence REAL NOT NULL,
    fire_at REAL NOT NULL,
    target TEXT NOT NULL,
    payload BLOB NOT NULL
);
