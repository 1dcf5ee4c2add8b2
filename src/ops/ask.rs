//! Messages into agents: `agent_ask` sends Operator's message into each named agent, whose turn
//! runs (in parallel, any runtime) in a conversation of its own that shows the message came
//! from Operator; the replies come back as one result, an entry per agent. A turn that outlives
//! `wait` goes on, and its reply is handed to Operator's conversation when it ends. The replies
//! go to the `ask` chats, which no platform shows: an agent's own chats never receive them.
//! Only Operator has this tool (agents' tools take no target), so asks never chain.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use super::{Access, Invocation, OpError, OpSpec, Ops, Output};
use crate::domain::{ChatRef, OPERATOR, Role};

/// The channel of the conversations Operator has with its agents; it shows nothing.
pub const ASK_CHANNEL: &str = "ask";
const DEFAULT_WAIT: u64 = 120;

pub const ASK: OpSpec = OpSpec::tool(
    "agent_ask",
    "Send a message into one or more agents and get each one's reply (they work in parallel, \
     each in its own instance). A reply that takes longer than wait seconds (default 120) comes \
     back to you later, when it is ready.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "agents": { "type": "array", "items": { "type": "string" } },
                "message": { "type": "string" },
                "wait": { "type": "integer", "description": "seconds to wait for the replies (default 120)" }
            },
            "required": ["agents", "message"]
        })
    },
);

pub const HISTORY: OpSpec = OpSpec::tool(
    "agent_history",
    "What an agent recently said and did, from the records (its activity: messages, tool calls,      replies), newest first, so questions about its work are answered from records.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "agent": { "type": "string" },
                "limit": { "type": "integer", "description": "how many entries (default 30, at most 200)" }
            },
            "required": ["agent"]
        })
    },
);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryArgs {
    agent: String,
    limit: Option<u32>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AskArgs {
    agents: Vec<String>,
    message: String,
    wait: Option<u64>,
}

/// The conversation Operator keeps with `agent`.
fn chat_with(agent: &str) -> ChatRef {
    ChatRef::new(ASK_CHANNEL, format!("operator-to-{agent}"))
}

impl Ops {
    pub(super) async fn ask(&self, inv: &Invocation, args: AskArgs) -> Result<Output, OpError> {
        let invalid = |message: String| OpError::InvalidArgs {
            op: ASK.name,
            message,
        };
        let mut agents: Vec<String> = Vec::new();
        for name in &args.agents {
            let name = name.trim().trim_start_matches('@').to_ascii_lowercase();
            if name == OPERATOR {
                return Err(invalid("Operator cannot ask itself".into()));
            }
            self.inner.store.agent(&name).await?;
            if !agents.contains(&name) {
                agents.push(name);
            }
        }
        if agents.is_empty() || args.message.trim().is_empty() {
            return Err(invalid("name at least one agent and a message".into()));
        }
        let runner = self.turn_runner()?;
        let wait = Duration::from_secs(args.wait.unwrap_or(DEFAULT_WAIT).clamp(1, 3600));
        let text = format!(
            "[message from Operator, asked by {}]\n{}",
            inv.caller.label,
            args.message.trim()
        );
        let turns = agents.iter().map(|agent| {
            let (runner, agent, caller, text) = (
                runner.clone(),
                agent.clone(),
                inv.caller.clone(),
                text.clone(),
            );
            let ops = self.clone();
            async move {
                let turn = tokio::spawn(async move {
                    let (ok, summary) = runner
                        .run_turn(chat_with(&agent), agent.clone(), caller, text)
                        .await;
                    let reply = ops.last_reply(&agent).await.unwrap_or(summary);
                    (agent, ok, reply)
                });
                (turn, tokio::time::Instant::now() + wait)
            }
        });
        let started = join_all(turns).await;
        let mut entries = Vec::new();
        let mut later = Vec::new();
        for ((turn, deadline), agent) in started.into_iter().zip(agents.iter()) {
            let mut turn = turn;
            match tokio::time::timeout_at(deadline, &mut turn).await {
                Ok(Ok((agent, ok, reply))) => entries.push(json!({ "agent": agent, "ok": ok, "reply": reply })),
                Ok(Err(e)) => entries.push(json!({ "agent": agent, "ok": false, "reply": format!("the turn failed: {e}") })),
                Err(_) => {
                    entries.push(json!({ "agent": agent, "ok": null, "reply": "still working; the reply comes to you when it is ready" }));
                    later.push((agent.clone(), turn));
                }
            }
        }
        // Replies that came late are handed to Operator's conversation as they end.
        if let Some(chat) = inv.chat.clone() {
            for (agent, turn) in later {
                let (runner, caller, chat) = (runner.clone(), inv.caller.clone(), chat.clone());
                tokio::spawn(async move {
                    if let Ok((_, ok, reply)) = turn.await {
                        let state = if ok { "replied" } else { "could not finish" };
                        let text = format!("[{agent} {state} to your earlier agent_ask]\n{reply}");
                        runner
                            .run_turn(chat, OPERATOR.to_string(), caller, text)
                            .await;
                    }
                });
            }
        }
        let text = entries
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["agent"].as_str().unwrap_or_default(),
                    e["reply"].as_str().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        Ok(Output::new(text, Value::Array(entries)))
    }

    /// `agent_history`: the agent's activity entries, newest first.
    pub(super) async fn agent_history(&self, args: HistoryArgs) -> Result<Output, OpError> {
        let name = args
            .agent
            .trim()
            .trim_start_matches('@')
            .to_ascii_lowercase();
        if name != OPERATOR {
            self.inner.store.agent(&name).await?;
        }
        let entries = self
            .inner
            .store
            .activity(&crate::store::ActivityFilter {
                agent: Some(name.clone()),
                limit: args.limit.unwrap_or(30).clamp(1, 200),
                ..Default::default()
            })
            .await?;
        if entries.is_empty() {
            return Ok(Output::new(
                format!("{name} has no recorded activity yet."),
                json!([]),
            ));
        }
        let text = entries
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    crate::domain::format_millis(e.at),
                    e.kind,
                    e.summary
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let data = entries
            .iter()
            .map(|e| json!({ "at": e.at, "kind": e.kind, "summary": e.summary }))
            .collect();
        Ok(Output::new(text, Value::Array(data)))
    }

    /// The last answer of `agent` in its conversation with Operator.
    async fn last_reply(&self, agent: &str) -> Option<String> {
        let store = &self.inner.store;
        let conversation = store
            .open_conversation(&chat_with(agent), agent)
            .await
            .ok()?;
        let messages = store.messages_after(conversation.id, 0).await.ok()?;
        messages
            .iter()
            .rev()
            .find(|m| m.role == Role::Assistant && m.tool_calls.is_empty())
            .map(|m| m.content.clone())
    }
}
