-- Skills: every version of every skill (its files as a JSON object of path -> text), and where
-- which version is installed.
CREATE TABLE skills (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    hash         TEXT NOT NULL,
    description  TEXT NOT NULL,
    author       TEXT NOT NULL,
    files        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    UNIQUE (name, version)
);

CREATE TABLE skill_installs (
    id            INTEGER PRIMARY KEY,
    skill         TEXT NOT NULL,
    instance      TEXT NOT NULL,
    version       INTEGER NOT NULL,
    installed_at  INTEGER NOT NULL,
    UNIQUE (skill, instance)
);
