//! Agent runtimes other than the daemon's own loop: the Claude Code CLI as an agent's mind,
//! run inside the agent's own instance (an exec with the workspace as working directory, the
//! instance's granted secrets as its environment), never on the daemon's host.
//!
//! `claude -p <message> --output-format stream-json --verbose` prints one JSON event per line:
//! `system`/`init` (the session id), `assistant` messages (text and `tool_use` blocks, shown as
//! progress: "Bash: npm test"), `user` tool results, and a final `result` (the reply, or the
//! error, with cost and usage). The session id is kept per conversation and passed back with
//! `--resume`, so the next message continues the session; `/new` starts a conversation without
//! one. `/stop` ends the process and its children in the container.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::Runner;
pub use super::cli_lines::{claude_command, codex_command};
use super::turn::{Outcome, Progress, Turn};
use crate::domain::Role;
use crate::instance::files::shell_quote;
use crate::instance::{ExecRequest, OutputSink};
use crate::store::{Agent, NewMessage};

/// The runtimes an agent may have.
pub const RUNTIMES: &[&str] = &["builtin", "claude-code", "codex", "acp"];

/// Which CLI prints the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cli {
    /// `claude -p … --output-format stream-json --verbose`.
    #[default]
    Claude,
    /// `codex exec --json …`: `thread.started`, `item.*`, `turn.completed` / `turn.failed`.
    Codex,
}

impl Cli {
    pub fn of(runtime: &str) -> Option<Self> {
        match runtime {
            "claude-code" => Some(Self::Claude),
            "codex" => Some(Self::Codex),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Claude => "Claude Code",
            Self::Codex => "Codex",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Self::Claude => "npm install -g @anthropic-ai/claude-code",
            Self::Codex => "npm install -g @openai/codex",
        }
    }
}

/// The longest a CLI turn may run.
const TURN_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Output kept from one CLI turn.
const OUTPUT_CAP: usize = 8 * 1024 * 1024;

/// What a CLI printed, read.
#[derive(Debug, Default, PartialEq)]
pub struct Transcript {
    pub cli: Cli,
    pub session: Option<String>,
    /// The tools it used, as progress lines.
    pub steps: Vec<String>,
    /// The final result: the reply, or what went wrong.
    pub result: Option<Result<String, String>>,
    pub cost_usd: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// Lines that were not JSON events (warnings on stderr, a shell's error).
    pub other: Vec<String>,
    /// Codex: the last agent message, which is the reply when the turn completes.
    last_message: String,
    /// What the agent has written so far (its messages between tool uses), shown while it works.
    pub said: String,
}

/// The first line of `text`, at most 80 characters: what a progress line shows of a command.
fn one_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(80)
        .collect()
}

/// A tool use as a progress line: "Bash: npm test", "Edit: src/app.py".
fn step_of(block: &Value) -> String {
    let name = block["name"].as_str().unwrap_or("tool");
    let input = &block["input"];
    let detail = [
        "command",
        "file_path",
        "path",
        "pattern",
        "url",
        "description",
    ]
    .iter()
    .find_map(|k| input[*k].as_str());
    match detail {
        Some(d) => format!("{name}: {}", one_line(d)),
        None => name.to_string(),
    }
}

impl Transcript {
    /// Reads one line of output into the transcript; returns a progress line for a tool use.
    pub fn read_line(&mut self, line: &str) -> Vec<String> {
        let line = line.trim();
        if line.is_empty() {
            return Vec::new();
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            self.other.push(line.to_string());
            return Vec::new();
        };
        if self.cli == Cli::Codex {
            let steps = self.read_codex(&event);
            self.steps.extend(steps.iter().cloned());
            return steps;
        }
        if let Some(session) = event["session_id"].as_str() {
            self.session = Some(session.to_string());
        }
        let mut steps = Vec::new();
        match event["type"].as_str() {
            Some("assistant") => {
                for block in event["message"]["content"].as_array().into_iter().flatten() {
                    if block["type"] == "tool_use" {
                        steps.push(step_of(block));
                    } else if let Some(text) =
                        block["text"].as_str().filter(|_| block["type"] == "text")
                    {
                        self.say(text);
                    }
                }
            }
            Some("result") => {
                let text = event["result"].as_str().unwrap_or_default().to_string();
                let failed = event["is_error"] == true
                    || event["subtype"].as_str().is_some_and(|s| s != "success");
                self.result = Some(if failed {
                    let why = if text.is_empty() {
                        event["subtype"].as_str().unwrap_or("an error").to_string()
                    } else {
                        text
                    };
                    Err(why)
                } else {
                    Ok(text)
                });
                self.cost_usd = event["total_cost_usd"].as_f64();
                let usage = &event["usage"];
                let n = |k: &str| usage[k].as_u64().unwrap_or(0);
                self.input_tokens = n("input_tokens");
                self.output_tokens = n("output_tokens");
                self.cache_read_tokens = n("cache_read_input_tokens");
                self.cache_write_tokens = n("cache_creation_input_tokens");
            }
            _ => {}
        }
        self.steps.extend(steps.iter().cloned());
        steps
    }

    fn say(&mut self, text: &str) {
        if text.trim().is_empty() {
            return;
        }
        if !self.said.is_empty() {
            self.said.push_str("\n\n");
        }
        self.said.push_str(text.trim());
    }

    /// A Codex event: the thread id is the session; commands, file changes and MCP calls are
    /// progress; the last agent message is the reply once the turn completes.
    fn read_codex(&mut self, event: &Value) -> Vec<String> {
        let item = &event["item"];
        match event["type"].as_str().unwrap_or_default() {
            "thread.started" => {
                if let Some(id) = event["thread_id"].as_str() {
                    self.session = Some(id.to_string());
                }
                Vec::new()
            }
            "item.started" if item["type"] == "command_execution" => {
                let command = item["command"].as_str().unwrap_or_default();
                vec![format!("Shell: {}", one_line(command))]
            }
            "item.completed" => match item["type"].as_str().unwrap_or_default() {
                "agent_message" => {
                    self.last_message = item["text"].as_str().unwrap_or_default().to_string();
                    let text = self.last_message.clone();
                    self.say(&text);
                    Vec::new()
                }
                "file_change" => item["changes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| format!("Edit: {}", c["path"].as_str().unwrap_or_default()))
                    .collect(),
                "mcp_tool_call" => vec![format!(
                    "MCP: {}/{}",
                    item["server"].as_str().unwrap_or_default(),
                    item["tool"].as_str().unwrap_or_default()
                )],
                _ => Vec::new(),
            },
            "turn.completed" => {
                let usage = &event["usage"];
                let n = |k: &str| usage[k].as_u64().unwrap_or(0);
                self.input_tokens = n("input_tokens").saturating_sub(n("cached_input_tokens"));
                self.cache_read_tokens = n("cached_input_tokens");
                self.output_tokens = n("output_tokens");
                self.result = Some(Ok(std::mem::take(&mut self.last_message)));
                Vec::new()
            }
            "turn.failed" => {
                let why = event["error"]["message"]
                    .as_str()
                    .unwrap_or("the turn failed");
                self.result = Some(Err(why.to_string()));
                Vec::new()
            }
            "error" => {
                let why = event["message"].as_str().unwrap_or("an error");
                self.result = Some(Err(why.to_string()));
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Reads a whole output.
    pub fn read(cli: Cli, output: &str) -> Self {
        let mut t = Self {
            cli,
            ..Self::default()
        };
        for line in output.lines() {
            t.read_line(line);
        }
        t
    }
}

/// Where the CLI's process id is kept in the container, to end it on `/stop`.
fn pid_file(conversation: i64) -> String {
    format!("/tmp/operator-cli-{conversation}.pid")
}

/// Ends the CLI and every process it started.
fn kill_command(conversation: i64) -> String {
    crate::instance::kill_tree_command(&pid_file(conversation))
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Runner {
    /// What a turn of an agent whose mind runs in its instance (`what`) needs: the instance,
    /// and the user messages since the last answer, joined.
    pub(super) async fn cli_inputs(
        &self,
        turn: &Turn,
        agent: &Agent,
        what: &str,
    ) -> Result<(crate::store::InstanceRecord, String), Outcome> {
        let store = &self.inner.store;
        let instance = match store.instance_of_agent(&agent.name).await {
            Ok(Some(i)) => i,
            Ok(None) => {
                return Err(Outcome::Failed(format!(
                    "agent {} runs {what} inside its instance, and it has none",
                    agent.name
                )));
            }
            Err(e) => return Err(Outcome::Failed(e.to_string())),
        };
        let messages = match store.messages_after(turn.conversation.id, 0).await {
            Ok(m) => m,
            Err(e) => {
                return Err(Outcome::Failed(format!(
                    "could not read the conversation: {e}"
                )));
            }
        };
        let start = messages
            .iter()
            .rposition(|m| m.role != Role::User)
            .map_or(0, |i| i + 1);
        let message = messages[start..]
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        if message.trim().is_empty() {
            return Err(Outcome::Failed(format!(
                "there is no message to send to {what}"
            )));
        }
        Ok((instance, message))
    }

    /// Runs a turn of an agent whose runtime is a CLI inside its instance.
    pub(super) async fn run_cli_turn(
        &self,
        turn: &Turn,
        agent: &Agent,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Outcome {
        let Some(cli) = Cli::of(&agent.runtime) else {
            return Outcome::Failed(format!(
                "agent {} has the runtime {:?}, which is not available",
                agent.name, agent.runtime
            ));
        };
        let name = cli.name();
        let store = &self.inner.store;
        let ops = &self.inner.ops;
        let conversation = &turn.conversation;
        let (instance, message) = match self.cli_inputs(turn, agent, name).await {
            Ok(inputs) => inputs,
            Err(failed) => return failed,
        };
        let session = store.runtime_session(conversation.id).await.ok().flatten();
        let mut env = match ops.secret_env(&instance).await {
            Ok(env) => env,
            Err(e) => return Outcome::Failed(format!("the instance's secrets: {e}")),
        };
        if let Some(url) = agent.base_url.as_deref().filter(|u| !u.is_empty()) {
            let var = match cli {
                Cli::Claude => "ANTHROPIC_BASE_URL",
                Cli::Codex => "OPENAI_BASE_URL",
            };
            env.retain(|(k, _)| k != var);
            env.push((var.into(), url.to_string()));
        }
        let (persona, model) = (&agent.persona, agent.model.as_deref());
        let mut line = match cli {
            Cli::Claude => claude_command(&message, persona, model, session.as_deref()),
            Cli::Codex => codex_command(&message, persona, model, session.as_deref()),
        };
        // Claude Code gets the agent's MCP servers through its own configuration.
        if cli == Cli::Claude {
            match ops.mcp_claude_config(&agent.name).await {
                Ok(Some(json)) => line.push_str(&format!(" --mcp-config {}", shell_quote(&json))),
                Ok(None) => {}
                Err(e) => return Outcome::Failed(format!("the agent's MCP servers: {e}")),
            }
        }
        let command = format!("echo $$ > {}; exec {line}", pid_file(conversation.id));
        // Events become progress as they come.
        let transcript = Transcript {
            cli,
            ..Transcript::default()
        };
        let pending = Arc::new(Mutex::new((String::new(), transcript)));
        let (steps_tx, mut steps_rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
        let sink = {
            let pending = pending.clone();
            OutputSink::new(move |bytes: &[u8]| {
                let mut guard = pending.lock().expect("transcript lock");
                let (partial, transcript) = &mut *guard;
                partial.push_str(&String::from_utf8_lossy(bytes));
                while let Some(end) = partial.find('\n') {
                    let line: String = partial.drain(..=end).collect();
                    let said = transcript.said.len();
                    for step in transcript.read_line(&line) {
                        let _ = steps_tx.send(Progress::Status {
                            key: "cli".into(),
                            text: step,
                        });
                    }
                    // The reply grows with what the agent writes between its tool uses.
                    if transcript.said.len() != said {
                        let _ = steps_tx.send(Progress::Text(transcript.said.clone()));
                    }
                }
            })
        };
        let request = ExecRequest {
            command,
            env,
            timeout: TURN_TIMEOUT,
            output_cap: OUTPUT_CAP,
            stdin: None,
            on_output: Some(sink),
        };
        progress(Progress::Thinking);
        let backend = ops.instances().clone();
        let exec = backend.exec(&instance.name, request);
        tokio::pin!(exec);
        let result = loop {
            tokio::select! {
                r = &mut exec => break Some(r),
                Some(seen) = steps_rx.recv() => progress(seen),
                () = turn.cancel.cancelled() => break None,
            }
        };
        let Some(result) = result else {
            let kill = ExecRequest::new(kill_command(conversation.id));
            if let Err(e) = backend.exec(&instance.name, kill).await {
                tracing::warn!("could not end the CLI in {}: {e}", instance.name);
            }
            return Outcome::Cancelled;
        };
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                return Outcome::Failed(format!("{name} could not run in {}: {e}", instance.name));
            }
        };
        let mut transcript = {
            let mut guard = pending.lock().expect("transcript lock");
            let (partial, transcript) = &mut *guard;
            let rest = std::mem::take(partial);
            transcript.read_line(&rest);
            std::mem::take(transcript)
        };
        if transcript.result.is_none() && transcript.other.is_empty() && !out.output.is_empty() {
            transcript = Transcript::read(cli, &out.output);
        }
        if let Some(session) = &transcript.session
            && let Err(e) = store.set_runtime_session(conversation.id, session).await
        {
            tracing::warn!("cannot keep the CLI session: {e}");
        }
        self.record_cli_usage(agent, conversation.id, &transcript)
            .await;
        let code = out
            .exit_code
            .map_or("unknown".to_string(), |c| c.to_string());
        match transcript.result {
            Some(Ok(reply)) if !reply.trim().is_empty() => {
                let stored = NewMessage::text(reply.clone());
                if let Err(e) = store
                    .append_message(conversation.id, Role::Assistant, &stored)
                    .await
                {
                    return Outcome::Failed(format!("could not save the reply: {e}"));
                }
                Outcome::Reply(reply)
            }
            Some(Ok(_)) => Outcome::Failed(format!("{name} gave an empty answer")),
            Some(Err(why)) => Outcome::Failed(format!("{name} failed: {why}")),
            None if out.exit_code == Some(127) => Outcome::Failed(format!(
                "{name} is not installed in instance {}: add \"{}\" to [docker] setup (and run operator image build), or install it in the instance. Output: {}",
                instance.name,
                cli.install_hint(),
                tail(&transcript.other, 5)
            )),
            None => Outcome::Failed(format!(
                "{name} exited (code {code}) without a result. Its last output:\n{}",
                tail(&transcript.other, 10)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Claude Code 2.x `--output-format stream-json --verbose` output.
    const RECORDED: &str = r#"{"type":"system","subtype":"init","cwd":"/workspace","session_id":"5f1c-aa","tools":["Bash","Edit","Read"],"model":"claude-sonnet-4-5","permissionMode":"bypassPermissions"}
{"type":"assistant","message":{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"echo hi > notes.txt","description":"Write the note"}}],"usage":{"input_tokens":10,"output_tokens":5}},"session_id":"5f1c-aa"}
{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_1","type":"tool_result","content":"","is_error":false}]},"session_id":"5f1c-aa"}
{"type":"assistant","message":{"id":"msg_2","type":"message","role":"assistant","content":[{"type":"text","text":"Wrote notes.txt."}],"usage":{"input_tokens":20,"output_tokens":6}},"session_id":"5f1c-aa"}
{"type":"result","subtype":"success","is_error":false,"duration_ms":2310,"num_turns":2,"result":"Wrote notes.txt.","session_id":"5f1c-aa","total_cost_usd":0.0123,"usage":{"input_tokens":30,"cache_creation_input_tokens":100,"cache_read_input_tokens":200,"output_tokens":11}}
"#;

    #[test]
    fn a_recorded_transcript_is_read() {
        let t = Transcript::read(Cli::Claude, RECORDED);
        assert_eq!(t.session.as_deref(), Some("5f1c-aa"));
        assert_eq!(t.steps, vec!["Bash: echo hi > notes.txt"]);
        assert_eq!(t.result, Some(Ok("Wrote notes.txt.".into())));
        assert_eq!((t.input_tokens, t.output_tokens), (30, 11));
        assert_eq!((t.cache_read_tokens, t.cache_write_tokens), (200, 100));
        assert_eq!(t.cost_usd, Some(0.0123));
        assert_eq!(t.said, "Wrote notes.txt.");
    }

    #[test]
    fn an_error_result_and_noise_are_told_apart() {
        let t = Transcript::read(
            Cli::Claude,
            "warning: something\n{\"type\":\"result\",\"subtype\":\"error_max_turns\",\"is_error\":true,\"session_id\":\"s\"}\n",
        );
        assert_eq!(t.result, Some(Err("error_max_turns".into())));
        assert_eq!(t.other, vec!["warning: something"]);
    }

    /// The shape of `codex exec --json` output (codex-rs/exec/src/exec_events.rs).
    const RECORDED_CODEX: &str = r#"{"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}
{"type":"turn.started"}
{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"**Writing the note**"}}
{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"bash -lc 'echo hi > notes.txt'","aggregated_output":"","exit_code":null,"status":"in_progress"}}
{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc 'echo hi > notes.txt'","aggregated_output":"","exit_code":0,"status":"completed"}}
{"type":"item.completed","item":{"id":"item_2","type":"file_change","changes":[{"path":"src/app.py","kind":"update"}],"status":"completed"}}
{"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"Wrote notes.txt and updated src/app.py."}}
{"type":"turn.completed","usage":{"input_tokens":24763,"cached_input_tokens":24448,"output_tokens":122}}
"#;

    #[test]
    fn a_recorded_codex_transcript_is_read() {
        let t = Transcript::read(Cli::Codex, RECORDED_CODEX);
        assert_eq!(
            t.session.as_deref(),
            Some("0199a213-81c0-7800-8aa1-bbab2a035a53")
        );
        assert_eq!(
            t.steps,
            vec!["Shell: bash -lc 'echo hi > notes.txt'", "Edit: src/app.py"]
        );
        assert_eq!(
            t.result,
            Some(Ok("Wrote notes.txt and updated src/app.py.".into()))
        );
        assert_eq!(
            (t.input_tokens, t.cache_read_tokens, t.output_tokens),
            (315, 24448, 122)
        );
        let failed = Transcript::read(
            Cli::Codex,
            r#"{"type":"turn.failed","error":{"message":"stream disconnected"}}"#,
        );
        assert_eq!(failed.result, Some(Err("stream disconnected".into())));
    }

    #[test]
    fn the_codex_command_resumes_by_thread() {
        assert_eq!(
            codex_command("go on", "You code.", None, Some("th-1")),
            "codex exec --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox resume 'th-1' 'go on'"
        );
        assert!(
            codex_command("hi", "You code.", Some("gpt-5"), None)
                .ends_with("-m 'gpt-5' 'You code.\n\nhi'")
        );
    }

    #[test]
    fn the_command_resumes_and_quotes() {
        let c = claude_command("it's done?", "", None, Some("abc"));
        assert_eq!(
            c,
            "claude -p 'it'\\''s done?' --output-format stream-json --verbose --dangerously-skip-permissions --resume 'abc'"
        );
    }
}
