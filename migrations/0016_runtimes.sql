-- Agent runtimes: what thinks for an agent. `builtin` is the daemon's own loop; `claude-code`
-- runs the Claude Code CLI inside the agent's instance. `base_url` is handed to the CLI as its
-- vendor's base URL (a proxy). A conversation keeps the CLI's session id, so the next message
-- continues the session; `/new` starts a conversation without one.
ALTER TABLE agents ADD COLUMN runtime TEXT NOT NULL DEFAULT 'builtin';
ALTER TABLE agents ADD COLUMN base_url TEXT;
ALTER TABLE conversations ADD COLUMN runtime_session TEXT;
