-- Instances: one container plus a workspace volume each, with the settings they are created from.
CREATE TABLE instances (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    image       TEXT NOT NULL,
    memory_mb   INTEGER NOT NULL,
    cpus        REAL NOT NULL,
    pids_limit  INTEGER NOT NULL,
    network     TEXT NOT NULL,
    -- Comma-separated, lowercase, sorted.
    tags        TEXT NOT NULL DEFAULT '',
    project     TEXT NOT NULL DEFAULT '',
    agent       TEXT,
    -- provisioning | active | stopped | failed | missing
    status      TEXT NOT NULL,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
