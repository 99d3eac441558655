-- MicroVM images (a name, its tags and state), their versions (each build of a configuration; `built`
-- is the engine's BuiltImage once the build succeeded), the builds with their logs, and instances.
-- Documents are JSON, like functions.config; the columns are what we look up by.
CREATE TABLE microvm_images (
    name        TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    created_at  REAL NOT NULL
);

CREATE TABLE microvm_image_versions (
    image_name  TEXT NOT NULL REFERENCES microvm_images(name) ON DELETE CASCADE,
    version     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    config      TEXT NOT NULL,
    built       TEXT,
    PRIMARY KEY (image_name, version)
);

CREATE TABLE microvm_builds (
    build_id    TEXT PRIMARY KEY,
    image_name  TEXT NOT NULL,
    version     TEXT NOT NULL,
    config      TEXT NOT NULL,
    log         TEXT NOT NULL DEFAULT '',
    FOREIGN KEY (image_name, version) REFERENCES microvm_image_versions(image_name, version) ON DELETE CASCADE
);

CREATE TABLE microvm_instances (
    microvm_id    TEXT PRIMARY KEY,
    client_token  TEXT UNIQUE,
    image_name    TEXT NOT NULL,
    config        TEXT NOT NULL,
    created_at    REAL NOT NULL
);
