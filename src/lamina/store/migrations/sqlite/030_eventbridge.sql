-- EventBridge Scheduler schedules and groups, event buses and rules (issue 17).
-- next_due: epoch seconds of the next occurrence not yet fired (NULL: none to come); advanced and committed
-- before an occurrence is handed to its target, so no occurrence fires twice across a restart.
CREATE TABLE eb_schedule_groups (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
CREATE TABLE eb_schedules (
    group_name TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    next_due REAL,
    PRIMARY KEY (group_name, name)
);
CREATE TABLE eb_buses (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
CREATE TABLE eb_rules (
    bus TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    targets TEXT NOT NULL,
    next_due REAL,
    PRIMARY KEY (bus, name)
);
