-- Build, test, evolve. An agent's latest evaluation (`agent_evaluate`): the cases it was given
-- (JSON [{prompt, expect}]) and how each went (JSON [{case, passed, ms, tokens, reply}]).
CREATE TABLE evaluations (
    agent      TEXT PRIMARY KEY,
    cases      TEXT NOT NULL,
    results    TEXT NOT NULL,
    passed     INTEGER NOT NULL,
    total      INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- Variants of an agent (`agent_variants`): agents of their own, each on a clone of the parent's
-- instance, with one setting changed (JSON {"persona": ...} or {"model": ...}). Promoting one
-- applies its settings to the parent and removes every variant of that parent.
CREATE TABLE variants (
    name       TEXT PRIMARY KEY,
    parent     TEXT NOT NULL,
    change     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX variants_by_parent ON variants (parent);
