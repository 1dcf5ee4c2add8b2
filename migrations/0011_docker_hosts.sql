-- The Docker host each instance lives on (a name from [[docker.hosts]]). Instances created
-- before several hosts existed get the first configured host when the daemon starts.
ALTER TABLE instances ADD COLUMN host TEXT NOT NULL DEFAULT '';
