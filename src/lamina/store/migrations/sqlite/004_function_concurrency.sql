-- Reserved concurrency (PutFunctionConcurrency), one row per function; goes with the function.
CREATE TABLE function_concurrency (
    function_name  TEXT PRIMARY KEY REFERENCES functions(name) ON DELETE CASCADE,
    reserved       INTEGER NOT NULL
);
