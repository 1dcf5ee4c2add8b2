-- Automations: a prompt on a cron schedule in a time zone, delivered to a chat.
CREATE TABLE automations (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    prompt          TEXT NOT NULL,
    cron            TEXT NOT NULL,
    timezone        TEXT NOT NULL DEFAULT 'UTC',
    enabled         INTEGER NOT NULL DEFAULT 1,
    agent           TEXT NOT NULL,
    channel         TEXT NOT NULL DEFAULT '',
    chat_id         TEXT NOT NULL DEFAULT '',
    thread_id       TEXT NOT NULL DEFAULT '',
    created_by      TEXT NOT NULL,
    -- The next scheduled time (ms); claimed by a conditional update so it fires once.
    next_run_at     INTEGER,
    -- The run in progress, so the next one is skipped instead of overlapping it.
    running_run_id  INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE automation_runs (
    id             INTEGER PRIMARY KEY,
    automation_id  INTEGER NOT NULL REFERENCES automations (id) ON DELETE CASCADE,
    scheduled_for  INTEGER NOT NULL,
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    -- running | ok | failed | skipped | interrupted
    status         TEXT NOT NULL,
    summary        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX automation_runs_by_automation ON automation_runs (automation_id, id);

-- Webhooks: a prompt template run when POST /hooks/<token> is called. Only a hash of the
-- token is kept, so the database alone does not give the URL away.
CREATE TABLE webhooks (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    template    TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    enabled     INTEGER NOT NULL DEFAULT 1,
    agent       TEXT NOT NULL,
    channel     TEXT NOT NULL DEFAULT '',
    chat_id     TEXT NOT NULL DEFAULT '',
    thread_id   TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
