//! MCP servers: `mcp_add`, `mcp_list`, `mcp_remove`, `mcp_test`, and an agent's MCP tools for
//! its turns. An agent gets the `[[mcp.servers]]` of the config and its own (stored); a stdio
//! server runs in the agent's instance, an HTTP one is reached with the secrets its headers
//! name filled in. Operator gets the config's HTTP servers. Sessions live in `crate::mcp::Hub`.
//! `manage.rs` holds the operations, `clients.rs` what CLI runtimes are told of the servers.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Invocation, OpError, Ops};
use crate::config::McpServerSettings;
use crate::domain::{ActorRole, OPERATOR, fill_secrets};
use crate::mcp::{Connect, ConnectFn, Hub, McpTool, ToolResult, tool_name};
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

    /// Ends every MCP session and the servers' processes (the daemon is stopping).
    pub async fn mcp_shutdown(&self) {
        self.inner.mcp.hub.close_all().await;
    }

    /// Ends an agent's sessions (its servers changed, or it is gone).
    pub(in crate::ops) async fn mcp_forget(&self, agent: &str) {
        self.own_changed().await;
        self.inner.mcp.hub.close_prefix(&format!("{agent}/")).await;
    }
}

mod clients;
mod manage;

pub use manage::{ADD, LIST, REMOVE, TEST};
