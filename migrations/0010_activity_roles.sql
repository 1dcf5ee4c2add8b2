-- Who acted (owner, user, agent, system) and which instance an entry is about, so the feed can
-- be filtered by role and instance. Entries written before this migration have role 'system'
-- unless their actor is their agent.
ALTER TABLE activity ADD COLUMN role TEXT NOT NULL DEFAULT 'system';
ALTER TABLE activity ADD COLUMN instance TEXT;
UPDATE activity SET role = 'agent' WHERE agent IS NOT NULL AND actor = agent;
CREATE INDEX activity_by_instance ON activity (instance) WHERE instance IS NOT NULL;
