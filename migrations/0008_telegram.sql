-- Chat bots (Telegram now, Discord later): one row per bot, keyed by its channel id.
CREATE TABLE bots (
    channel        TEXT PRIMARY KEY,          -- "telegram:<bot user id>"
    platform       TEXT NOT NULL,
    username       TEXT NOT NULL DEFAULT '',
    default_agent  TEXT NOT NULL DEFAULT 'operator',
    token_secret   TEXT,                      -- the secret holding the token; NULL: from config
    poll_offset    INTEGER NOT NULL DEFAULT 0,
    commands_hash  TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- Updates received from a platform, stored before the platform is told they arrived.
-- state: new (not yet answered) | done. A done update keeps its key so a replay is ignored.
CREATE TABLE inbound_updates (
    channel      TEXT NOT NULL,
    update_id    INTEGER NOT NULL,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'new',
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (channel, update_id)
);
CREATE INDEX inbound_updates_new ON inbound_updates (channel, state, update_id);

-- Messages waiting to be delivered, in order per chat. kind: text | progress.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    channel     TEXT NOT NULL,
    chat_id     TEXT NOT NULL,
    thread_id   TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL,
    text        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX outbox_channel ON outbox (channel, id);

-- Direct-message pairing: a stranger's one-time code, and the people an owner approved.
CREATE TABLE pairings (
    platform     TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    name         TEXT NOT NULL,
    chat         TEXT NOT NULL,
    code         TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (platform, user_id)
);
CREATE TABLE paired_users (
    platform     TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    name         TEXT NOT NULL,
    approved_by  TEXT NOT NULL,
    approved_at  INTEGER NOT NULL,
    PRIMARY KEY (platform, user_id)
);
