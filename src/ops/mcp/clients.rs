//! An agent's MCP servers as a CLI it runs is told of them: Claude Code's `--mcp-config`, and
//! ACP's `mcpServers`.

use serde_json::{Value, json};

use crate::mcp::Connect;
use crate::ops::{OpError, Ops};

/// A server as a CLI is told to start or reach it.
enum CliServer {
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
    Stdio(String),
}

impl Ops {
    /// The agent's servers for a CLI to start itself: stdio ones as their command line, HTTP
    /// ones with their header secrets filled in.
    async fn servers_for_cli(&self, agent: &str) -> Result<Vec<(String, CliServer)>, OpError> {
        let mut out = Vec::new();
        for server in self.servers_of(agent).await? {
            let resolved = match (self.connector(agent, &server))()
                .await
                .map_err(OpError::Failed)?
            {
                Connect::Http { url, headers } => CliServer::Http { url, headers },
                Connect::Stdio { command, .. } => CliServer::Stdio(command),
            };
            out.push((server.name, resolved));
        }
        Ok(out)
    }

    /// The agent's servers as Claude Code's `--mcp-config` JSON (stdio ones through `sh -c`),
    /// or `None` when it has none.
    pub async fn mcp_claude_config(&self, agent: &str) -> Result<Option<String>, OpError> {
        let mut servers = serde_json::Map::new();
        for (name, server) in self.servers_for_cli(agent).await? {
            let entry = match server {
                CliServer::Http { url, headers } => {
                    let headers: serde_json::Map<String, Value> = headers
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect();
                    json!({ "type": "http", "url": url, "headers": headers })
                }
                CliServer::Stdio(command) => {
                    json!({ "type": "stdio", "command": "sh", "args": ["-c", command] })
                }
            };
            servers.insert(name, entry);
        }
        Ok((!servers.is_empty()).then(|| json!({ "mcpServers": servers }).to_string()))
    }

    /// The agent's servers in the form of ACP's `session/new` (`mcpServers`); HTTP ones carry
    /// `"type": "http"`, which an agent without HTTP support is not sent.
    pub async fn mcp_acp_servers(&self, agent: &str) -> Result<Vec<Value>, OpError> {
        let servers = self.servers_for_cli(agent).await?;
        Ok(servers
            .into_iter()
            .map(|(name, server)| match server {
                CliServer::Http { url, headers } => {
                    let headers: Vec<Value> = headers
                        .into_iter()
                        .map(|(k, v)| json!({ "name": k, "value": v }))
                        .collect();
                    json!({ "type": "http", "name": name, "url": url, "headers": headers })
                }
                CliServer::Stdio(command) => {
                    json!({ "name": name, "command": "sh", "args": ["-c", command], "env": [] })
                }
            })
            .collect())
    }
}
