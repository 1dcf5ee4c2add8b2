-- Small daemon-wide settings, such as the hash of the generated admin token.
CREATE TABLE kv (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
