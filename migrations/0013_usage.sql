-- One row per model request: who caused it, which provider and model, its tokens, and its cost
-- in USD at the configured prices (`estimated` when the model had no price of its own and was
-- counted at the highest configured one). Budgets and `/usage` are computed from these rows.
CREATE TABLE usage (
    id              INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    agent           TEXT NOT NULL,
    conversation_id INTEGER,
    -- chat | automation:<name> | webhook:<name>
    source          TEXT NOT NULL DEFAULT 'chat',
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    cache_read      INTEGER NOT NULL DEFAULT 0,
    cache_write     INTEGER NOT NULL DEFAULT 0,
    cost_usd        REAL NOT NULL DEFAULT 0,
    estimated       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX usage_by_time ON usage (at);
CREATE INDEX usage_by_agent ON usage (agent, at);
