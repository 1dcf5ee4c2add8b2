-- MCP servers an agent was given with mcp_add (those of [[mcp.servers]] live in the config).
-- A server is reached over HTTP (url, headers as a JSON object whose values may name secrets as
-- ${secret:NAME}) or started in the agent's instance (command).
CREATE TABLE mcp_servers (
    agent      TEXT NOT NULL,
    name       TEXT NOT NULL,
    url        TEXT,
    command    TEXT,
    headers    TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (agent, name)
);
