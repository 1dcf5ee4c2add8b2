-- Secrets: values sealed under the master key (hex of nonce + ciphertext + tag), with the key's
-- fingerprint, so a wrong key is told apart from a damaged record.
CREATE TABLE secrets (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    description  TEXT NOT NULL DEFAULT '',
    -- 1: every instance gets it; 0: only instances it is granted to.
    global       INTEGER NOT NULL DEFAULT 0,
    sealed       TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- A grant gives a secret to one instance, or to every instance with a tag.
CREATE TABLE secret_grants (
    id           INTEGER PRIMARY KEY,
    secret       TEXT NOT NULL REFERENCES secrets (name) ON DELETE CASCADE,
    target_kind  TEXT NOT NULL,
    target       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (secret, target_kind, target)
);
