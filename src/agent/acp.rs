//! The `acp` runtime: any agent speaking the Agent Client Protocol (v1) over stdio, started
//! with the agent's `command` inside its instance (an attached exec, never on the host).
//!
//! A turn: `initialize`, then `session/load` of the conversation's session when the agent can
//! load sessions (else `session/new` with `/workspace` as cwd and the agent's MCP servers),
//! then `session/prompt` with the message. While it runs, `session/update` notifications become
//! the reply's text (`agent_message_chunk`) and progress (`tool_call`); a permission request is
//! answered "allow" (the container is the sandbox; nobody can answer it headless); requests for
//! capabilities we do not offer (files, terminals) are refused. The prompt's `stopReason` ends
//! the turn. `/stop` sends `session/cancel`, then ends the process tree.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::Runner;
use super::turn::{Outcome, Progress, Turn};
use crate::domain::Role;
use crate::instance::files::shell_quote;
use crate::instance::{ExecRequest, kill_tree_command};
use crate::store::{Agent, NewMessage};

/// The protocol version this client speaks.
const PROTOCOL_VERSION: u64 = 1;
/// The longest a turn may run.
const TURN_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long `initialize` and session setup may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// One JSON-RPC connection over the process's stdin and stdout.
struct Connection {
    stdin: tokio::io::WriteHalf<tokio::io::SimplexStream>,
    lines: tokio::io::Lines<BufReader<tokio::io::ReadHalf<tokio::io::SimplexStream>>>,
    next_id: u64,
    /// Lines that were not JSON-RPC (kept for a failure's explanation).
    noise: Vec<String>,
}

/// What the agent said while a request was pending.
#[derive(Default)]
struct Heard {
    text: String,
    /// Tool calls by id: their titles.
    tools: HashMap<String, String>,
}

impl Connection {
    async fn send(&mut self, message: Value) -> Result<(), String> {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("could not write to the agent: {e}"))
    }

    async fn notify(&mut self, method: &str, params: Value) -> Result<(), String> {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }))
            .await
    }

    /// Sends a request and reads until its response, handling what the agent sends meanwhile.
    async fn request(
        &mut self,
        method: &str,
        params: Value,
        heard: &mut Heard,
        progress: &(dyn Fn(Progress) + Send + Sync),
        cancel: Option<&CancellationToken>,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await?;
        let mut cancelled = false;
        loop {
            // After a cancel the agent has a few seconds to end its prompt; then it is ended.
            let read = async {
                if cancelled {
                    tokio::time::timeout(Duration::from_secs(5), self.lines.next_line())
                        .await
                        .unwrap_or(Ok(None))
                } else {
                    self.lines.next_line().await
                }
            };
            let line = tokio::select! {
                line = read => line,
                () = async { cancel.unwrap().cancelled().await }, if cancel.is_some() && !cancelled => {
                    cancelled = true;
                    let session = params.get("sessionId").cloned().unwrap_or(Value::Null);
                    self.notify("session/cancel", json!({ "sessionId": session })).await?;
                    continue;
                }
            };
            let line = match line {
                Ok(Some(line)) => line,
                Ok(None) if cancelled => return Ok(json!({ "stopReason": "cancelled" })),
                Ok(None) => return Err(format!("the agent exited during {method}")),
                Err(e) => return Err(format!("reading the agent's output: {e}")),
            };
            let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                if self.noise.len() < 20 {
                    self.noise.push(line);
                }
                continue;
            };
            let is_response = msg.get("method").is_none();
            if is_response {
                if msg["id"].as_u64() != Some(id) {
                    continue;
                }
                if let Some(error) = msg.get("error") {
                    let text = error["message"].as_str().unwrap_or("an error");
                    return Err(format!("{method} failed: {text}"));
                }
                return Ok(msg["result"].clone());
            }
            self.handle(&msg, heard, progress).await?;
        }
    }

    /// A notification or a request from the agent.
    async fn handle(
        &mut self,
        msg: &Value,
        heard: &mut Heard,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<(), String> {
        let method = msg["method"].as_str().unwrap_or_default();
        match (method, msg.get("id")) {
            ("session/update", _) => {
                let update = &msg["params"]["update"];
                match update["sessionUpdate"].as_str().unwrap_or_default() {
                    "agent_message_chunk" => {
                        if let Some(text) = update["content"]["text"].as_str() {
                            heard.text.push_str(text);
                            progress(Progress::Text(heard.text.clone()));
                        }
                    }
                    "tool_call" => {
                        let title = update["title"].as_str().unwrap_or("a tool").to_string();
                        let id = update["toolCallId"].as_str().unwrap_or_default();
                        heard.tools.insert(id.to_string(), title.clone());
                        progress(Progress::Status {
                            key: "cli".into(),
                            text: title,
                        });
                    }
                    "tool_call_update" if update["status"] == "failed" => {
                        let id = update["toolCallId"].as_str().unwrap_or_default();
                        let title = heard.tools.get(id).cloned().unwrap_or_default();
                        progress(Progress::Status {
                            key: "cli".into(),
                            text: format!("{title} failed"),
                        });
                    }
                    _ => {}
                }
                Ok(())
            }
            ("session/request_permission", Some(id)) => {
                let options = msg["params"]["options"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let pick = ["allow_always", "allow_once"]
                    .iter()
                    .find_map(|kind| options.iter().find(|o| o["kind"] == *kind))
                    .or(options.first());
                let outcome = match pick {
                    Some(option) => {
                        json!({ "outcome": "selected", "optionId": option["optionId"] })
                    }
                    None => json!({ "outcome": "cancelled" }),
                };
                self.send(json!({ "jsonrpc": "2.0", "id": id, "result": { "outcome": outcome } }))
                    .await
            }
            (_, Some(id)) => {
                let error = json!({ "code": -32601, "message": format!("{method} is not offered by this client") });
                self.send(json!({ "jsonrpc": "2.0", "id": id, "error": error }))
                    .await
            }
            _ => Ok(()),
        }
    }
}

fn pid_file(conversation: i64) -> String {
    format!("/tmp/operator-acp-{conversation}.pid")
}

impl Runner {
    /// Runs a turn of an agent whose runtime is `acp`.
    pub(super) async fn run_acp_turn(
        &self,
        turn: &Turn,
        agent: &Agent,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Outcome {
        let store = &self.inner.store;
        let ops = &self.inner.ops;
        let conversation = &turn.conversation;
        let Some(command) = agent.command.clone().filter(|c| !c.trim().is_empty()) else {
            return Outcome::Failed(format!(
                "agent {} has the acp runtime but no command to start it (agent_update with command)",
                agent.name
            ));
        };
        let (instance, message) = match self.cli_inputs(turn, agent, "its ACP agent").await {
            Ok(inputs) => inputs,
            Err(failed) => return failed,
        };
        let env = match ops.secret_env(&instance).await {
            Ok(env) => env,
            Err(e) => return Outcome::Failed(format!("the instance's secrets: {e}")),
        };
        let mcp = match ops.mcp_acp_servers(&agent.name).await {
            Ok(servers) => servers,
            Err(e) => return Outcome::Failed(format!("the agent's MCP servers: {e}")),
        };
        let pid = pid_file(conversation.id);
        let line = format!(
            "echo $$ > {}; exec sh -c {}",
            shell_quote(&pid),
            shell_quote(&command)
        );
        let backend = ops.instances();
        let attached = match backend.attach(&instance.name, line, env).await {
            Ok(a) => a,
            Err(e) => return Outcome::Failed(format!("could not start `{command}`: {e}")),
        };
        let mut stderr = attached.stderr;
        let tail = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let kept = tail.clone();
        tokio::spawn(async move {
            while let Some(line) = stderr.recv().await {
                let mut kept = kept.lock().unwrap();
                kept.push(line);
                if kept.len() > 10 {
                    kept.remove(0);
                }
            }
        });
        let mut conn = Connection {
            stdin: attached.stdin,
            lines: BufReader::new(attached.stdout).lines(),
            next_id: 0,
            noise: Vec::new(),
        };
        let session = store.runtime_session(conversation.id).await.ok().flatten();
        let result = tokio::time::timeout(
            TURN_TIMEOUT,
            self.acp_exchange(&mut conn, turn, agent, &message, session, mcp, progress),
        )
        .await
        .unwrap_or_else(|_| Err("the agent did not finish within 30 minutes".into()));
        // One process per turn: the session lives on in the agent's own storage.
        drop(conn);
        let _ = backend
            .exec(&instance.name, ExecRequest::new(kill_tree_command(&pid)))
            .await;
        match result {
            Ok(outcome) => outcome,
            Err(e) => {
                let said = tail.lock().unwrap().join("\n");
                let said = if said.is_empty() {
                    String::new()
                } else {
                    format!("\nIts last output:\n{said}")
                };
                Outcome::Failed(format!("the ACP agent `{command}`: {e}{said}"))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn acp_exchange(
        &self,
        conn: &mut Connection,
        turn: &Turn,
        agent: &Agent,
        message: &str,
        session: Option<String>,
        mcp: Vec<Value>,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Outcome, String> {
        let store = &self.inner.store;
        let conversation = &turn.conversation;
        let mut heard = Heard::default();
        let init = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "clientCapabilities": { "fs": { "readTextFile": false, "writeTextFile": false }, "terminal": false },
            "clientInfo": { "name": "operator", "version": env!("CARGO_PKG_VERSION") }
        });
        let setup = async {
            let info = conn
                .request("initialize", init, &mut heard, progress, None)
                .await?;
            let can_load = info["agentCapabilities"]["loadSession"] == true;
            let http_ok = info["agentCapabilities"]["mcpCapabilities"]["http"] == true;
            let servers: Vec<Value> = mcp
                .into_iter()
                .filter(|s| http_ok || s.get("type").is_none())
                .collect();
            if let (Some(id), true) = (&session, can_load) {
                let params = json!({ "sessionId": id, "cwd": "/workspace", "mcpServers": servers });
                conn.request("session/load", params, &mut Heard::default(), &|_| {}, None)
                    .await?;
                return Ok::<(String, bool), String>((id.clone(), false));
            }
            let params = json!({ "cwd": "/workspace", "mcpServers": servers });
            let created = conn
                .request("session/new", params, &mut heard, progress, None)
                .await?;
            let id = created["sessionId"]
                .as_str()
                .ok_or("session/new gave no sessionId")?
                .to_string();
            Ok((id, true))
        };
        let (session_id, fresh) = tokio::time::timeout(SETUP_TIMEOUT, setup)
            .await
            .map_err(|_| "the agent did not start a session within 2 minutes".to_string())??;
        if let Err(e) = store
            .set_runtime_session(conversation.id, &session_id)
            .await
        {
            tracing::warn!("could not keep the ACP session id: {e}");
        }
        // A new session hears who it is first.
        let text = if fresh && !agent.persona.trim().is_empty() {
            format!("{}\n\n{message}", agent.persona.trim())
        } else {
            message.to_string()
        };
        let params =
            json!({ "sessionId": session_id, "prompt": [{ "type": "text", "text": text }] });
        let done = conn
            .request(
                "session/prompt",
                params,
                &mut heard,
                progress,
                Some(&turn.cancel),
            )
            .await?;
        let reply = heard.text.trim().to_string();
        let stop = done["stopReason"].as_str().unwrap_or("end_turn");
        let outcome = match stop {
            "cancelled" => return Ok(Outcome::Cancelled),
            "refusal" => Outcome::Failed(format!("the agent refused: {reply}")),
            _ if reply.is_empty() => {
                let noise = conn.noise.join("\n");
                Outcome::Failed(format!("the agent ended ({stop}) without a reply. {noise}"))
            }
            "max_tokens" | "max_turn_requests" => {
                Outcome::Reply(format!("{reply}\n\n(the agent stopped: {stop})"))
            }
            _ => Outcome::Reply(reply),
        };
        if let Outcome::Reply(text) = &outcome {
            let stored = NewMessage::text(text.clone());
            if let Err(e) = store
                .append_message(conversation.id, Role::Assistant, &stored)
                .await
            {
                return Err(format!("could not save the reply: {e}"));
            }
        }
        Ok(outcome)
    }
}
