-- Provisioned concurrency (PutProvisionedConcurrencyConfig), one row per function version or alias;
-- goes with the function (the version's or alias's row is removed when that is deleted).
CREATE TABLE provisioned_concurrency (
    function_name  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier      TEXT NOT NULL,
    requested      INTEGER NOT NULL,
    last_modified  TEXT NOT NULL,
    PRIMARY KEY (function_name, qualifier)
);
