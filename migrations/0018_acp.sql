-- The `acp` runtime: the command line that starts the agent's Agent Client Protocol agent inside
-- its instance (for example `npx @zed-industries/claude-code-acp`).
ALTER TABLE agents ADD COLUMN command TEXT;
