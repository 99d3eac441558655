-- Function URLs (one per function and qualifier; '' is the unqualified function) and the
-- statements of each function's resource-based policy (AddPermission). Both go when their
-- function is deleted. The configuration and statement are JSON documents, like functions.config.
CREATE TABLE function_urls (
    url_id         TEXT PRIMARY KEY,
    function_name  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier      TEXT NOT NULL DEFAULT '',
    config         TEXT NOT NULL,
    UNIQUE (function_name, qualifier)
);

CREATE TABLE function_permissions (
    function_name  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier      TEXT NOT NULL DEFAULT '',
    statement_id   TEXT NOT NULL,
    statement      TEXT NOT NULL,
    created_at     REAL NOT NULL,
    PRIMARY KEY (function_name, qualifier, statement_id)
);
