-- Agents, bindings, conversations, messages and the activity feed.
-- Portable SQL: INTEGER and TEXT columns, times as integer milliseconds since the epoch.

CREATE TABLE agents (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    persona     TEXT NOT NULL DEFAULT '',
    model       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- A binding routes one chat (or one thread of it) to an agent.
CREATE TABLE bindings (
    id          INTEGER PRIMARY KEY,
    channel     TEXT NOT NULL,
    chat_id     TEXT NOT NULL,
    thread_id   TEXT NOT NULL DEFAULT '',
    agent       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (channel, chat_id, thread_id)
);

-- The history of one chat with one agent. Closed by /new; summary covers messages up to
-- summary_upto once the history outgrew the context budget.
CREATE TABLE conversations (
    id            INTEGER PRIMARY KEY,
    agent         TEXT NOT NULL,
    channel       TEXT NOT NULL,
    chat_id       TEXT NOT NULL,
    thread_id     TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    closed_at     INTEGER,
    summary       TEXT,
    summary_upto  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX conversations_by_chat ON conversations (channel, chat_id, thread_id, agent, closed_at);

CREATE TABLE messages (
    id               INTEGER PRIMARY KEY,
    conversation_id  INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role             TEXT NOT NULL,
    content          TEXT NOT NULL DEFAULT '',
    tool_calls       TEXT,
    tool_call_id     TEXT,
    tool_name        TEXT,
    is_error         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, id);

-- The append-only audit feed.
CREATE TABLE activity (
    id               INTEGER PRIMARY KEY,
    at               INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    actor            TEXT NOT NULL,
    agent            TEXT,
    conversation_id  INTEGER,
    summary          TEXT NOT NULL,
    detail           TEXT
);
CREATE INDEX activity_by_time ON activity (at);
