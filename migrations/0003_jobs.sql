-- Background commands ("jobs") started in instances. They run detached inside the container,
-- writing .jobs/<id>.log and .jobs/<id>.exit in the workspace, so they outlive the daemon;
-- the watcher follows rows in status 'running'.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    instance         TEXT NOT NULL,
    agent            TEXT NOT NULL,
    conversation_id  INTEGER,
    channel          TEXT NOT NULL DEFAULT '',
    chat_id          TEXT NOT NULL DEFAULT '',
    thread_id        TEXT NOT NULL DEFAULT '',
    caller           TEXT NOT NULL,
    caller_is_owner  INTEGER NOT NULL DEFAULT 0,
    command          TEXT NOT NULL,
    timeout_secs     INTEGER NOT NULL,
    -- running | succeeded | failed | lost
    status           TEXT NOT NULL,
    exit_code        INTEGER,
    last_line        TEXT NOT NULL DEFAULT '',
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX jobs_by_status ON jobs (status, id);
