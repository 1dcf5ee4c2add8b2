-- The platform message a user message came from (a Telegram update id, a Discord message or
-- interaction id), so a message handled again after a crash is never stored twice in its
-- conversation. NULL for messages without a durable receipt (console, HTTP, the daemon's own).
ALTER TABLE messages ADD COLUMN receipt INTEGER;
CREATE UNIQUE INDEX messages_by_receipt ON messages (conversation_id, receipt)
    WHERE receipt IS NOT NULL;

-- Approvals: a model's call of an operation that needs an owner's yes waits here until an
-- owner decides, the request times out, or a restart finds it (then it is expired and the chat
-- told). `state`: pending | approved | denied | expired. `decided_by` names the owner.
CREATE TABLE approvals (
    id           INTEGER PRIMARY KEY,
    code         TEXT NOT NULL UNIQUE,
    op           TEXT NOT NULL,
    args         TEXT NOT NULL,
    summary      TEXT NOT NULL,
    channel      TEXT NOT NULL DEFAULT '',
    chat_id      TEXT NOT NULL DEFAULT '',
    thread_id    TEXT NOT NULL DEFAULT '',
    requested_by TEXT NOT NULL,
    agent        TEXT,
    state        TEXT NOT NULL DEFAULT 'pending',
    decided_by   TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    decided_at   INTEGER,
    -- The platform message that shows the request with its buttons, to edit once decided.
    message_id   TEXT
);
CREATE INDEX approvals_pending ON approvals (state, expires_at);

-- Messages created to show a reply while the model writes it (edited in place, then turned
-- into the final answer in the same transaction that removes the row here). Rows left by a
-- crash name partial messages that the next start takes back.
CREATE TABLE live_replies (
    channel    TEXT NOT NULL,
    chat_id    TEXT NOT NULL,
    thread_id  TEXT NOT NULL DEFAULT '',
    message_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (channel, chat_id, thread_id, message_id)
);
