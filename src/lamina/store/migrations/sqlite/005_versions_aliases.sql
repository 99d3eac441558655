-- Published versions (an immutable snapshot of $LATEST's code and configuration, numbered per
-- function) and aliases (a name for a version, optionally with a weighted second version). Both
-- go when their function is deleted. Like functions.config, the documents are JSON.
CREATE TABLE function_versions (
    function_name  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    version        INTEGER NOT NULL,
    config         TEXT NOT NULL,
    created_at     REAL NOT NULL,
    PRIMARY KEY (function_name, version)
);

CREATE TABLE function_aliases (
    function_name  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    config         TEXT NOT NULL,
    PRIMARY KEY (function_name, name)
);
