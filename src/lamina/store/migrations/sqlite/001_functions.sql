-- One row per function ($LATEST). The configuration is a JSON document so the API can grow
-- without a migration per field; the columns are what we look up by.
CREATE TABLE functions (
    name        TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    tags        TEXT NOT NULL DEFAULT '{}',
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
