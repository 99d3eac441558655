-- Issue 19: layers, code signing configurations and the smaller per-function settings.
-- A layer keeps its version counter after all its versions are deleted (AWS never reuses a number).
CREATE TABLE layers (
    name          TEXT PRIMARY KEY,
    next_version  INTEGER NOT NULL
);
-- One row per published layer version: its document (the GetLayerVersion shape), its package in the code
-- store (code_hex), its resource policy ({"RevisionId", "Statements": {sid: statement}} or NULL).
CREATE TABLE layer_versions (
    layer_name  TEXT NOT NULL REFERENCES layers(name) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    config      TEXT NOT NULL,
    code_hex    TEXT NOT NULL,
    policy      TEXT,
    created_at  REAL NOT NULL,
    PRIMARY KEY (layer_name, version)
);
-- Code signing configurations: the CodeSigningConfig document and its tags.
CREATE TABLE code_signing_configs (
    id      TEXT PRIMARY KEY,
    config  TEXT NOT NULL,
    tags    TEXT NOT NULL DEFAULT '{}'
);
-- Per-function (and per-qualifier, '' for none) settings kept apart from the configuration document:
-- kind 'recursion' (PutFunctionRecursionConfig), 'runtime-management', 'code-signing' (the bound config's ARN).
CREATE TABLE function_settings (
    function_name  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
    qualifier      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    doc            TEXT NOT NULL,
    PRIMARY KEY (function_name, qualifier, kind)
);
