-- Turns in flight: a row is written when a turn starts and closed when it ends, so a turn cut
-- short by a crash is found at the next start and reported to its chat.
CREATE TABLE turns (
    id               INTEGER PRIMARY KEY,
    conversation_id  INTEGER NOT NULL,
    agent            TEXT NOT NULL,
    channel          TEXT NOT NULL,
    chat_id          TEXT NOT NULL,
    thread_id        TEXT NOT NULL DEFAULT '',
    request          TEXT NOT NULL DEFAULT '',
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    -- reply | failed | cancelled | interrupted
    outcome          TEXT
);
CREATE INDEX turns_open ON turns (finished_at);
