//! The operations on MCP servers: `mcp_add`, `mcp_list`, `mcp_remove`, `mcp_test`, and the
//! few words `/agents` and `/status` say of each server.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::json;

use super::Server;
use crate::domain::{OPERATOR, mcp_server_problem};
use crate::mcp::ServerState;
use crate::ops::{Access, OpError, OpSpec, Ops, Output};
use crate::store::McpServerRecord;

pub const ADD: OpSpec = OpSpec::tool(
    "mcp_add",
    "Give an agent an MCP server. Either `url` (Streamable HTTP; `headers` values may name \
     secrets as ${secret:NAME}) or `command` (stdio, started inside the agent's instance, e.g. \
     `npx -y @modelcontextprotocol/server-everything` or `uvx mcp-server-time`). Its tools reach \
     the agent as mcp__<name>__<tool> from its next turn.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "agent": { "type": "string" },
                "name": { "type": "string", "description": "lowercase letters, digits, - and _" },
                "url": { "type": "string" },
                "command": { "type": "string" },
                "headers": { "type": "object", "additionalProperties": { "type": "string" } }
            },
            "required": ["agent", "name"]
        })
    },
);

pub const LIST: OpSpec = OpSpec::tool(
    "mcp_list",
    "List MCP servers (the config's, and each agent's own) with their state: connected, tool \
     count, last error.",
    Access::Member,
    || json!({ "type": "object", "properties": { "agent": { "type": "string" } } }),
);

pub const REMOVE: OpSpec = OpSpec::tool(
    "mcp_remove",
    "Take an MCP server from an agent (its process in the instance is ended).",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": { "agent": { "type": "string" }, "name": { "type": "string" } },
            "required": ["agent", "name"]
        })
    },
);

pub const TEST: OpSpec = OpSpec::tool(
    "mcp_test",
    "Connect to an agent's MCP server now, list its tools and report (starts it if needed).",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": { "agent": { "type": "string" }, "name": { "type": "string" } },
            "required": ["name"]
        })
    },
);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddArgs {
    agent: String,
    name: String,
    url: Option<String>,
    command: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentArgs {
    agent: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerArgs {
    agent: Option<String>,
    name: String,
}

fn invalid(message: String) -> OpError {
    OpError::InvalidArgs {
        op: "mcp_add",
        message,
    }
}

impl Ops {
    pub(in crate::ops) async fn mcp_add(&self, args: AddArgs) -> Result<Output, OpError> {
        self.store().agent(&args.agent).await?;
        if let Some((field, message)) = mcp_server_problem(
            &args.name,
            args.url.as_deref(),
            args.command.as_deref(),
            &args.headers,
        ) {
            return Err(invalid(format!("{field}: {message}")));
        }
        if self.shared_servers().iter().any(|s| s.name == args.name) {
            return Err(OpError::Conflict(format!(
                "{} is a server of the config ([[mcp.servers]]); pick another name",
                args.name
            )));
        }
        for value in args.headers.values() {
            for secret in crate::domain::secret_refs(value).map_err(invalid)? {
                self.store().secret(&secret).await.map_err(|_| {
                    invalid(format!(
                        "the headers name secret {secret}, which does not exist"
                    ))
                })?;
            }
        }
        if args.command.is_some() && self.store().instance_of_agent(&args.agent).await?.is_none() {
            return Err(OpError::Conflict(format!(
                "agent {} has no instance; a stdio server runs inside it (give it an instance or use a url)",
                args.agent
            )));
        }
        let record = McpServerRecord {
            agent: args.agent.clone(),
            name: args.name.clone(),
            url: args.url.clone(),
            command: args.command.clone(),
            headers: args.headers,
        };
        self.store().add_mcp_server(&record).await?;
        self.own_changed().await;
        let how = match (&args.url, &args.command) {
            (Some(url), _) => format!("at {url}"),
            (_, Some(command)) => format!("`{command}` in its instance"),
            _ => String::new(),
        };
        Ok(Output::new(
            format!(
                "Agent {} has MCP server {} ({how}); its tools are offered from its next turn as mcp__{}__<tool>.",
                args.agent, args.name, args.name
            ),
            json!({ "agent": args.agent, "name": args.name }),
        ))
    }

    pub(in crate::ops) async fn mcp_remove(&self, args: ServerArgs) -> Result<Output, OpError> {
        let agent = args.agent.unwrap_or_default();
        let removed = self
            .store()
            .remove_mcp_servers(&agent, Some(&args.name))
            .await?;
        self.own_changed().await;
        if removed == 0 {
            return Err(OpError::NotFound(format!(
                "agent {agent} has no MCP server {} of its own",
                args.name
            )));
        }
        self.inner
            .mcp
            .hub
            .close(&format!("{agent}/{}", args.name))
            .await;
        Ok(Output::new(
            format!("Agent {agent} no longer has MCP server {}.", args.name),
            json!({ "agent": agent, "name": args.name }),
        ))
    }

    /// The servers of one agent (the config's and its own), or of everyone: the config's once
    /// and every agent's own, with each session's state.
    pub(in crate::ops) async fn mcp_list(&self, args: AgentArgs) -> Result<Output, OpError> {
        let entries: Vec<(String, Server)> = match &args.agent {
            Some(agent) => self
                .servers_of(agent)
                .await?
                .into_iter()
                .map(|s| (agent.clone(), s))
                .collect(),
            None => {
                let shared: Vec<(String, Server)> = self
                    .shared_servers()
                    .iter()
                    .map(|s| {
                        let server = Server {
                            name: s.name.clone(),
                            url: s.url.clone(),
                            command: s.command.clone(),
                            headers: s.headers.clone(),
                            shared: true,
                        };
                        ("every agent".to_string(), server)
                    })
                    .collect();
                let own = self.store().mcp_servers(None).await?.into_iter().map(|r| {
                    let server = Server {
                        name: r.name,
                        url: r.url,
                        command: r.command,
                        headers: r.headers,
                        shared: false,
                    };
                    (r.agent, server)
                });
                shared.into_iter().chain(own).collect()
            }
        };
        let mut lines = Vec::new();
        let mut rows = Vec::new();
        for (agent, server) in entries {
            let state = self.inner.mcp.hub.state(&server.key(&agent));
            let target = server
                .url
                .clone()
                .or(server.command.clone())
                .unwrap_or_default();
            let state_text = match (&state, server.shared && server.url.is_none()) {
                (None, true) if args.agent.is_none() => {
                    "started in each agent's instance when it is used".to_string()
                }
                _ => describe(state.as_ref()),
            };
            lines.push(format!(
                "{agent} · {} ({}{}): {state_text}",
                server.name,
                server.transport(),
                if server.shared { ", config" } else { "" },
            ));
            rows.push(json!({
                "agent": agent, "name": server.name, "transport": server.transport(),
                "target": target, "shared": server.shared, "state": state,
            }));
        }
        let text = if lines.is_empty() {
            "No MCP servers. Give one with mcp_add, or for every agent in [[mcp.servers]].".into()
        } else {
            lines.join("\n")
        };
        Ok(Output::new(text, json!({ "servers": rows })))
    }

    pub(in crate::ops) async fn mcp_test(&self, args: ServerArgs) -> Result<Output, OpError> {
        let agent = args.agent.unwrap_or_else(|| OPERATOR.to_string());
        let servers = self.servers_of(&agent).await?;
        let server = servers
            .into_iter()
            .find(|s| s.name == args.name)
            .ok_or_else(|| {
                OpError::NotFound(format!("agent {agent} has no MCP server {}", args.name))
            })?;
        let hub = &self.inner.mcp.hub;
        // A test is a fresh attempt: a failed start's pause does not apply.
        hub.forget_failure(&server.key(&agent));
        let tools = hub
            .tools(&server.key(&agent), self.connector(&agent, &server))
            .await
            .map_err(|e| OpError::Failed(format!("MCP server {}: {e}", server.name)))?;
        let names: Vec<String> = tools.iter().map(|t| t.name.clone()).collect();
        Ok(Output::new(
            format!(
                "MCP server {} ({}) answers with {} tool(s): {}",
                server.name,
                server.transport(),
                tools.len(),
                names.join(", ")
            ),
            json!({ "agent": agent, "name": server.name, "tools": names }),
        ))
    }

    /// Each agent's own servers in a few words ("github: connected, 12 tools"), and the
    /// config's, for `/agents`.
    pub(in crate::ops) async fn mcp_by_agent(
        &self,
    ) -> Result<(HashMap<String, Vec<String>>, Vec<String>), OpError> {
        let short = |state: Option<ServerState>| match state {
            Some(s) if s.connected => format!("connected, {} tools", s.tools),
            Some(_) => "not connected".to_string(),
            None => "not started".to_string(),
        };
        let mut own: HashMap<String, Vec<String>> = HashMap::new();
        for r in self.store().mcp_servers(None).await? {
            let state = self.inner.mcp.hub.state(&format!("{}/{}", r.agent, r.name));
            own.entry(r.agent)
                .or_default()
                .push(format!("{}: {}", r.name, short(state)));
        }
        let shared = self
            .shared_servers()
            .iter()
            .map(|s| match &s.url {
                Some(_) => format!(
                    "{}: {}",
                    s.name,
                    short(self.inner.mcp.hub.state(&format!("*/{}", s.name)))
                ),
                None => format!("{}: stdio in each instance", s.name),
            })
            .collect();
        Ok((own, shared))
    }

    /// One line per server with a session, for `/status`.
    pub(in crate::ops) async fn mcp_status_lines(&self) -> Vec<String> {
        match self.mcp_list(AgentArgs { agent: None }).await {
            Ok(out) if !out.text.starts_with("No MCP") => {
                out.text.lines().map(str::to_string).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// A session's state in words.
fn describe(state: Option<&ServerState>) -> String {
    match state {
        None => "not started yet".into(),
        Some(s) if s.connected => {
            let mut text = format!("connected, {} tool(s)", s.tools);
            if s.restarts > 0 {
                text.push_str(&format!(", restarted {} time(s)", s.restarts));
            }
            if let Some(e) = &s.last_error {
                text.push_str(&format!("; last error: {e}"));
            }
            text
        }
        Some(s) => format!(
            "not connected: {}",
            s.last_error.as_deref().unwrap_or("unknown")
        ),
    }
}
