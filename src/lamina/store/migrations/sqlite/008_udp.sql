-- UDP gateway listeners (lamina udp listener create / POST /lamina/v1/udp/listeners). The document is
-- the listener as the API returns it, minus its metrics (those live in memory and restart at zero),
-- with the port it was bound to, so a restarted server binds the same port again. Listeners name
-- their destination functions loosely (a missing function is an error counted per batch), so there
-- is no foreign key to functions.
CREATE TABLE udp_listeners (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    config      TEXT NOT NULL,
    created_at  REAL NOT NULL
);
