//! MCP servers: `mcp_add`, `mcp_list`, `mcp_remove`, `mcp_test`, and an agent's MCP tools for
//! its turns. An agent gets the `[[mcp.servers]]` of the config and its own (stored); a stdio
//! server runs in the agent's instance, an HTTP one is reached with the secrets its headers
//! name filled in. Operator gets the config's HTTP servers. Sessions live in `crate::mcp::Hub`.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Access, Invocation, OpError, OpSpec, Ops, Output};
use crate::config::McpServerSettings;
use crate::domain::{ActorRole, OPERATOR, fill_secrets, mcp_server_problem};
use crate::mcp::{Connect, ConnectFn, Hub, McpTool, ServerState, ToolResult, tool_name};
use crate::secrets::Redactor;
use crate::store::{McpServerRecord, NewActivity};

/// How long one MCP tool call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The control surface's MCP state: the sessions, and the config's servers.
#[derive(Default)]
pub struct Mcp {
    hub: Hub,
    shared: OnceLock<Vec<McpServerSettings>>,
    /// Every agent's own servers, read once and read again after a change (a turn asks for
    /// them, and most agents have none).
    own: tokio::sync::RwLock<Option<HashMap<String, Vec<McpServerRecord>>>>,
}

/// A server an agent has, from the config (`shared`) or its own.
#[derive(Debug, Clone, PartialEq)]
struct Server {
    name: String,
    url: Option<String>,
    command: Option<String>,
    headers: BTreeMap<String, String>,
    shared: bool,
}

impl Server {
    fn transport(&self) -> &'static str {
        if self.url.is_some() { "http" } else { "stdio" }
    }

    /// The session's key: a shared HTTP server has one session for everyone.
    fn key(&self, agent: &str) -> String {
        if self.shared && self.url.is_some() {
            format!("*/{}", self.name)
        } else {
            format!("{agent}/{}", self.name)
        }
    }
}

/// A server as a CLI is told to start or reach it.
enum CliServer {
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
    Stdio(String),
}

/// An agent's MCP tools for one turn.
#[derive(Debug, Default)]
pub struct AgentMcpTools {
    /// Model-facing name and the tool.
    pub tools: Vec<(String, McpTool)>,
    /// Model-facing name -> (server, tool).
    pub routes: HashMap<String, (String, String)>,
    /// Servers that could not be reached, one line each.
    pub problems: Vec<String>,
}

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
    /// The config's `[[mcp.servers]]` (set once by the app).
    pub fn set_mcp_servers(&self, servers: Vec<McpServerSettings>) {
        let _ = self.inner.mcp.shared.set(servers);
    }

    fn shared_servers(&self) -> &[McpServerSettings] {
        self.inner
            .mcp
            .shared
            .get()
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The servers an agent has: the config's (HTTP ones only for Operator), then its own.
    async fn servers_of(&self, agent: &str) -> Result<Vec<Server>, OpError> {
        let mut servers: Vec<Server> = self
            .shared_servers()
            .iter()
            .filter(|s| agent != OPERATOR || s.url.is_some())
            .map(|s| Server {
                name: s.name.clone(),
                url: s.url.clone(),
                command: s.command.clone(),
                headers: s.headers.clone(),
                shared: true,
            })
            .collect();
        if agent != OPERATOR {
            for r in self.own_servers(agent).await? {
                servers.retain(|s| s.name != r.name);
                servers.push(Server {
                    name: r.name,
                    url: r.url,
                    command: r.command,
                    headers: r.headers,
                    shared: false,
                });
            }
        }
        Ok(servers)
    }

    /// An agent's own servers, from the copy kept in memory.
    async fn own_servers(&self, agent: &str) -> Result<Vec<McpServerRecord>, OpError> {
        let own = &self.inner.mcp.own;
        if let Some(all) = own.read().await.as_ref() {
            return Ok(all.get(agent).cloned().unwrap_or_default());
        }
        let mut guard = own.write().await;
        if guard.is_none() {
            let mut all: HashMap<String, Vec<McpServerRecord>> = HashMap::new();
            for r in self.store().mcp_servers(None).await? {
                all.entry(r.agent.clone()).or_default().push(r);
            }
            *guard = Some(all);
        }
        Ok(guard
            .as_ref()
            .and_then(|all| all.get(agent).cloned())
            .unwrap_or_default())
    }

    /// Forgets the kept copy of the agents' own servers (one was added or removed).
    async fn own_changed(&self) {
        *self.inner.mcp.own.write().await = None;
    }

    /// How to start a session with `server` for `agent`, resolved only when one is needed.
    fn connector(&self, agent: &str, server: &Server) -> ConnectFn {
        let (ops, agent, server) = (self.clone(), agent.to_string(), server.clone());
        Box::new(move || {
            Box::pin(async move {
                let (this, agent) = (&ops, agent.as_str());
                if let Some(url) = &server.url {
                    let mut headers = Vec::new();
                    for (name, value) in &server.headers {
                        let mut found = HashMap::new();
                        for secret in crate::domain::secret_refs(value)? {
                            let value = this.secret_value(&secret).await?;
                            found.insert(secret, value);
                        }
                        let filled = fill_secrets(value, &|n| found.get(n).cloned())?;
                        headers.push((name.clone(), filled));
                    }
                    return Ok(Connect::Http {
                        url: url.clone(),
                        headers,
                    });
                }
                let command = server.command.clone().unwrap_or_default();
                let instance = this
                    .store()
                    .instance_of_agent(agent)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| {
                        format!(
                            "agent {agent} has no instance, and a stdio MCP server runs inside one"
                        )
                    })?;
                let env = this
                    .secret_env(&instance)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Connect::Stdio {
                    backend: this.instances().clone(),
                    instance: instance.name,
                    command,
                    env,
                    pid_file: format!("/tmp/operator-mcp-{}.pid", server.name),
                })
            })
        })
    }

    /// A stored secret's value, for a header that names it.
    async fn secret_value(&self, name: &str) -> Result<String, String> {
        let record = self
            .store()
            .secret(name)
            .await
            .map_err(|_| format!("there is no secret called {name}"))?;
        let value = self
            .master_key()
            .open(&record.name, &record.sealed, &record.key_id)
            .map_err(|e| e.to_string())?;
        String::from_utf8(value).map_err(|_| format!("secret {name} is not valid text"))
    }

    /// The MCP tools `agent` is offered this turn. A server that cannot be reached is left out
    /// and named in `problems`; the turn goes on with the rest.
    pub async fn mcp_tools_for(&self, agent: &str) -> AgentMcpTools {
        let mut out = AgentMcpTools::default();
        let servers = match self.servers_of(agent).await {
            Ok(s) => s,
            Err(e) => {
                out.problems
                    .push(format!("MCP servers could not be read: {e}"));
                return out;
            }
        };
        for server in servers {
            let key = server.key(agent);
            let connect = self.connector(agent, &server);
            match self.inner.mcp.hub.tools(&key, connect).await {
                Ok(tools) => {
                    for tool in tools {
                        let name = tool_name(&server.name, &tool.name);
                        out.routes
                            .insert(name.clone(), (server.name.clone(), tool.name.clone()));
                        out.tools.push((name, tool));
                    }
                }
                Err(e) => {
                    let e = Redactor::global().redact(&e).into_owned();
                    out.problems
                        .push(format!("MCP server {}: {e}", server.name));
                }
            }
        }
        out
    }

    /// Calls one MCP tool for `agent`'s turn; recorded in the feed like an operation.
    pub async fn mcp_call(
        &self,
        inv: &Invocation,
        agent: &str,
        server: &str,
        tool: &str,
        args: Value,
    ) -> Result<ToolResult, OpError> {
        let servers = self.servers_of(agent).await?;
        let server = servers
            .into_iter()
            .find(|s| s.name == server)
            .ok_or_else(|| {
                OpError::NotFound(format!("agent {agent} has no MCP server {server}"))
            })?;
        let hub = &self.inner.mcp.hub;
        let key = server.key(agent);
        let result = hub
            .call(
                &key,
                tool,
                args,
                CALL_TIMEOUT,
                self.connector(agent, &server),
            )
            .await;
        let redactor = Redactor::global();
        let result = match result {
            Ok(mut r) => {
                r.text = redactor.redact(&r.text).into_owned();
                Ok(r)
            }
            Err(e) => Err(OpError::Failed(redactor.redact(&e).into_owned())),
        };
        let summary = match &result {
            Ok(r) if r.is_error => {
                format!("mcp {}/{tool}: the tool reported an error", server.name)
            }
            Ok(_) => format!("mcp {}/{tool}", server.name),
            Err(e) => format!("mcp {}/{tool} failed: {e}", server.name),
        };
        self.store().record(NewActivity {
            kind: "mcp.call".into(),
            actor: inv.caller.label.clone(),
            role: Some(ActorRole::Agent),
            agent: Some(agent.to_string()),
            instance: None,
            conversation_id: inv.conversation_id,
            summary,
            detail: Some(json!({ "server": server.name, "tool": tool, "ok": result.is_ok() })),
        });
        result
    }

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

    /// Ends every MCP session and the servers' processes (the daemon is stopping).
    pub async fn mcp_shutdown(&self) {
        self.inner.mcp.hub.close_all().await;
    }

    /// Ends an agent's sessions (its servers changed, or it is gone).
    pub(super) async fn mcp_forget(&self, agent: &str) {
        self.own_changed().await;
        self.inner.mcp.hub.close_prefix(&format!("{agent}/")).await;
    }

    pub(super) async fn mcp_add(&self, args: AddArgs) -> Result<Output, OpError> {
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

    pub(super) async fn mcp_remove(&self, args: ServerArgs) -> Result<Output, OpError> {
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
    pub(super) async fn mcp_list(&self, args: AgentArgs) -> Result<Output, OpError> {
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

    pub(super) async fn mcp_test(&self, args: ServerArgs) -> Result<Output, OpError> {
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
    pub(super) async fn mcp_by_agent(
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
    pub(super) async fn mcp_status_lines(&self) -> Vec<String> {
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
