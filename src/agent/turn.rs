//! One turn of one conversation.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Runner;
use super::context::{
    compaction_cut, estimate_tokens, message_tokens, to_llm_messages, transcript,
};
use super::llm::{BoxFuture, ChatRequest, LlmError, LlmMessage, ToolSpec};
use super::prompt::{OPERATOR_PERSONA, SUMMARIZE, fleet_summary, system_prompt};
use super::toolset::{Offer, Toolset};
use crate::domain::{Caller, OPERATOR, Role, now_millis};
use crate::store::{Conversation, NewActivity, NewMessage};

/// A turn to run: the user's message is already stored in the conversation.
pub struct Turn {
    pub conversation: Conversation,
    pub caller: Caller,
    pub cancel: CancellationToken,
    /// Messages that arrive while the turn runs, joined before each later model call.
    pub steer: Option<Arc<dyn Steering>>,
    /// The answer settles platform receipts in a store write of its own: the final reply is
    /// queued to be committed with it instead of in a commit before it (a crash before that
    /// commit loses both, and the stored update is handled again).
    pub reply_rides_with_answer: bool,
}

/// Where a running turn picks up the messages sent in its chat since it started ("no, use
/// Python"). The router provides it; the turn only asks.
pub trait Steering: Send + Sync {
    /// Stores the waiting messages that may join this turn in its conversation and returns how
    /// many joined; the model sees them in its next request.
    fn take(&self) -> BoxFuture<'_, usize>;
}

/// What the chat sees while a turn works.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The model is thinking.
    Thinking,
    /// A tool is running.
    Tool(String),
    /// A long step inside a tool (an image pull): a status line, keyed so it can be updated
    /// in place.
    Status { key: String, text: String },
    /// The model's answer so far, while it writes it.
    Text(String),
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Reply(String),
    /// The turn could not finish; the text says why, for the user.
    Failed(String),
    Cancelled,
}

/// The agent a turn runs as.
pub(super) struct Profile {
    pub(super) name: String,
    persona: String,
    model: String,
    /// What the agent should know about its situation: its instance, or Operator's fleet.
    facts: String,
    pub(super) tools: Toolset,
    /// MCP tools by their model-facing name: (server, tool).
    pub(super) mcp: std::collections::HashMap<String, (String, String)>,
}

impl Runner {
    /// Runs the turn to its end. Every model reply and tool result is persisted as it happens.
    pub async fn run_turn(
        &self,
        turn: Turn,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Outcome {
        let conversation = &turn.conversation;
        // The summary is tracked in memory for the turn; compaction updates it and the store.
        let mut summary = (conversation.summary.clone(), conversation.summary_upto);
        // The agent is read once; one whose mind is a CLI runs it inside its instance instead
        // of this loop (it needs no model of the daemon's own).
        let agent = if conversation.agent == OPERATOR {
            None
        } else {
            match self.inner.store.agent(&conversation.agent).await {
                Ok(agent) if agent.runtime == "acp" => {
                    return self.run_acp_turn(&turn, &agent, progress).await;
                }
                Ok(agent) if agent.runtime != "builtin" => {
                    return self.run_cli_turn(&turn, &agent, progress).await;
                }
                Ok(agent) => Some(agent),
                Err(e) => {
                    let why = format!("agent {} is not available: {e}", conversation.agent);
                    return Outcome::Failed(why);
                }
            }
        };
        let Some(llm) = self.inner.llm.clone() else {
            return Outcome::Failed(LlmError::NotConfigured.to_string());
        };
        let profile = match self.profile(&turn.caller, agent).await {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e),
        };
        let limits = &self.inner.limits;
        let mut last_text = String::new();
        for step in 0..limits.max_steps {
            if turn.cancel.is_cancelled() {
                return Outcome::Cancelled;
            }
            // Messages sent while the tools ran join now, after the tool results, so the model
            // sees them in this request (the first request already has what started the turn).
            if step > 0
                && let Some(steer) = &turn.steer
            {
                let joined = steer.take().await;
                if joined > 0 {
                    self.note(
                        conversation,
                        &profile.name,
                        "turn.steered",
                        format!("{joined} message(s) joined the running turn"),
                        None,
                    );
                }
            }
            // Past a spending limit no model is called; the message names the limit.
            if let Some(why) = limits.meter.refusal(&self.inner.store, &profile.name).await {
                self.note(
                    conversation,
                    &profile.name,
                    "budget.refused",
                    why.clone(),
                    None,
                );
                return Outcome::Failed(why);
            }
            progress(Progress::Thinking);
            let request = match self.request(conversation, &mut summary, &profile).await {
                Ok(r) => r,
                Err(e) => return Outcome::Failed(e),
            };
            let asked = std::time::Instant::now();
            let on_text = |text: &str| progress(Progress::Text(text.to_string()));
            let response = tokio::select! {
                r = self.ask_model(llm.as_ref(), request, &on_text, progress) => r,
                () = turn.cancel.cancelled() => return Outcome::Cancelled,
            };
            crate::agent::llm::latency::LATENCY.observe(asked.elapsed());
            let response = match response {
                Ok(r) => {
                    let source = super::metering::usage_source(&turn.caller.label);
                    let (provider, model, warning) = self
                        .record_usage(&r, &profile.name, conversation.id, source, &profile.model)
                        .await;
                    if let Some(warning) = warning {
                        // Owners hear it in their chat; the feed has it for everyone.
                        self.note(
                            conversation,
                            &profile.name,
                            "budget.warning",
                            warning.clone(),
                            None,
                        );
                        if turn.caller.kind == crate::domain::CallerKind::Owner {
                            progress(Progress::Status {
                                key: "budget".into(),
                                text: format!("⚠️ {warning}"),
                            });
                        }
                    }
                    if let Some(failed) = &r.fell_back {
                        self.note(
                            conversation,
                            &profile.name,
                            "llm.fallback",
                            format!("answered by {provider}/{model} after: {failed}"),
                            None,
                        );
                    }
                    r
                }
                Err(e) => {
                    self.note(
                        conversation,
                        &profile.name,
                        "llm.error",
                        e.to_string(),
                        None,
                    );
                    return Outcome::Failed(e.to_string());
                }
            };
            let stored = NewMessage {
                content: response.text.clone(),
                tool_calls: response.tool_calls.clone(),
                ..NewMessage::default()
            };
            let store = &self.inner.store;
            if turn.reply_rides_with_answer && response.tool_calls.is_empty() {
                store.queue_message(conversation.id, Role::Assistant, &stored);
            } else if let Err(e) = store
                .append_message(conversation.id, Role::Assistant, &stored)
                .await
            {
                return Outcome::Failed(format!("could not save the reply: {e}"));
            }
            if !response.text.is_empty() {
                last_text = response.text.clone();
            }
            if response.tool_calls.is_empty() {
                let usage = json!({
                    "step": step + 1,
                    "input_tokens": response.input_tokens,
                    "output_tokens": response.output_tokens,
                });
                self.note(
                    conversation,
                    &profile.name,
                    "message.out",
                    first_line(&response.text),
                    Some(usage),
                );
                if response.text.trim().is_empty() {
                    return Outcome::Reply("(the model gave an empty answer)".into());
                }
                return Outcome::Reply(response.text);
            }
            for call in &response.tool_calls {
                if turn.cancel.is_cancelled() {
                    return Outcome::Cancelled;
                }
                progress(Progress::Tool(call.name.clone()));
                let (content, is_error, images) =
                    self.call_tool(&turn, &profile, call, progress).await;
                let result = NewMessage {
                    content,
                    tool_call_id: Some(call.id.clone()),
                    tool_name: Some(call.name.clone()),
                    is_error,
                    images,
                    ..NewMessage::default()
                };
                if let Err(e) = self
                    .inner
                    .store
                    .append_message(conversation.id, Role::Tool, &result)
                    .await
                {
                    return Outcome::Failed(format!("could not save a tool result: {e}"));
                }
            }
        }
        let note = format!(
            "I stopped after {} steps (the [operator] max_steps limit).",
            limits.max_steps
        );
        self.note(
            conversation,
            &profile.name,
            "turn.limit",
            note.clone(),
            None,
        );
        if last_text.is_empty() {
            return Outcome::Failed(note);
        }
        // The history ends on a tool result here; the reply is stored so the turn reads as
        // answered (the router stores the notes of failed and cancelled turns).
        let reply = format!("{last_text}\n\n{note}");
        let stored = NewMessage::text(reply.clone());
        if let Err(e) = self
            .inner
            .store
            .append_message(conversation.id, Role::Assistant, &stored)
            .await
        {
            tracing::error!("cannot store the reply of a turn that hit its step limit: {e}");
        }
        Outcome::Reply(reply)
    }

    /// The agent the turn runs as: Operator (`agent` is `None`), or the stored agent.
    async fn profile(
        &self,
        caller: &Caller,
        agent: Option<crate::store::Agent>,
    ) -> Result<Profile, String> {
        let limits = &self.inner.limits;
        let store = &self.inner.store;
        let offer;
        let (name, persona, model, facts) = match agent {
            None => {
                offer = Offer::Operator(caller.kind);
                let instances = store.list_instances().await.map_err(|e| e.to_string())?;
                let jobs = self
                    .inner
                    .ops
                    .jobs_summary()
                    .await
                    .map_err(|e| e.to_string())?;
                let facts = format!("{}\n{jobs}", fleet_summary(&instances));
                let persona = OPERATOR_PERSONA.to_string();
                (
                    OPERATOR.to_string(),
                    persona,
                    limits.default_model.clone(),
                    facts,
                )
            }
            Some(agent) => {
                let instance = store
                    .instance_of_agent(&agent.name)
                    .await
                    .map_err(|e| e.to_string())?;
                let facts = match &instance {
                    Some(i) => {
                        offer = Offer::Workspace;
                        let mut facts = format!(
                            "You have your own computer: instance {} ({}), your files are in /workspace. \
                         IDENTITY.md says who you are; keep what you learn about the user in USER.md.",
                            i.name,
                            i.status.as_str()
                        );
                        facts.push_str(&self.skills_facts(&i.name).await?);
                        facts
                    }
                    None => {
                        offer = Offer::Nothing;
                        String::new()
                    }
                };
                let model = agent.model.unwrap_or_else(|| limits.default_model.clone());
                (agent.name, agent.persona, model, facts)
            }
        };
        // MCP servers' tools; one that cannot be reached is named in the facts.
        let mcp = self.inner.ops.mcp_tools_for(&name).await;
        let mut facts = facts;
        for problem in &mcp.problems {
            facts.push_str(&format!("\n(not available now: {problem})"));
        }
        let tools = Toolset::of(offer).with(
            mcp.tools
                .into_iter()
                .map(|(name, tool)| ToolSpec {
                    name,
                    description: tool.description,
                    parameters: tool.schema,
                })
                .collect(),
        );
        Ok(Profile {
            name,
            persona,
            model,
            facts,
            tools,
            mcp: mcp.routes,
        })
    }

    /// The skills installed on an instance, by name and description only: the agent reads a
    /// skill's SKILL.md from its workspace when a task matches.
    async fn skills_facts(&self, instance: &str) -> Result<String, String> {
        let store = &self.inner.store;
        let installs = store
            .skill_installs(None, Some(instance))
            .await
            .map_err(|e| e.to_string())?;
        if installs.is_empty() {
            return Ok(String::new());
        }
        let mut text = String::from(
            "\n\nSkills installed in /workspace/skills/<name>/ (when a task matches one, read its SKILL.md \
             and the files it points to, then follow it):",
        );
        for install in installs {
            if let Ok(skill) = store.skill(&install.skill).await {
                text.push_str(&format!("\n- {}: {}", skill.name, skill.description));
            }
        }
        Ok(text)
    }

    /// Builds the model request, compacting the history first when it outgrew the budget.
    async fn request(
        &self,
        conversation: &Conversation,
        summary: &mut (Option<String>, i64),
        profile: &Profile,
    ) -> Result<ChatRequest, String> {
        let store = &self.inner.store;
        let budget = self.inner.limits.context_tokens as usize;
        let mut messages = store
            .messages_after(conversation.id, summary.1)
            .await
            .map_err(|e| e.to_string())?;
        let fixed = estimate_tokens(&profile.persona)
            + estimate_tokens(&profile.facts)
            + summary.0.as_deref().map_or(0, estimate_tokens)
            + profile.tools.tokens;
        let total = fixed + messages.iter().map(message_tokens).sum::<usize>();
        if total > budget {
            let cut = compaction_cut(&messages, budget.saturating_sub(fixed) / 2);
            if cut > 0 {
                let upto = messages[cut - 1].id;
                match self
                    .summarize(
                        summary.0.as_deref(),
                        &messages[..cut],
                        &profile.model,
                        (&profile.name, conversation.id),
                    )
                    .await
                {
                    Ok(text) => {
                        store
                            .set_summary(conversation.id, &text, upto)
                            .await
                            .map_err(|e| e.to_string())?;
                        self.note(
                            conversation,
                            &profile.name,
                            "conversation.compact",
                            format!("summarized {cut} older messages"),
                            Some(json!({ "upto": upto })),
                        );
                        *summary = (Some(text), upto);
                    }
                    Err(e) => {
                        // Better an answer without the oldest turns than no answer at all.
                        tracing::warn!(
                            conversation = conversation.id,
                            "compaction failed, dropping old turns: {e}"
                        );
                    }
                }
                messages.drain(..cut);
            }
        }
        let system = system_prompt(
            &profile.name,
            &profile.persona,
            &profile.facts,
            now_millis(),
            summary.0.as_deref(),
        );
        Ok(ChatRequest {
            model: profile.model.clone(),
            system,
            messages: to_llm_messages(&messages),
            tools: profile.tools.list.clone(),
            max_tokens: self.inner.limits.max_tokens,
        })
    }

    async fn summarize(
        &self,
        previous: Option<&str>,
        messages: &[crate::domain::StoredMessage],
        model: &str,
        (agent, conversation): (&str, i64),
    ) -> Result<String, LlmError> {
        let llm = self.inner.llm.as_ref().ok_or(LlmError::NotConfigured)?;
        let mut text = String::new();
        if let Some(previous) = previous {
            text.push_str(&format!("Earlier summary: {previous}\n\n"));
        }
        text.push_str(&transcript(messages));
        let request = ChatRequest {
            model: model.to_string(),
            system: SUMMARIZE.to_string(),
            messages: vec![LlmMessage::User(text)],
            tools: Arc::from([]),
            max_tokens: 600,
        };
        let response = llm.complete(&request).await?;
        // Compaction is a model request like any other: it is counted and costs.
        self.record_usage(&response, agent, conversation, "compaction", model)
            .await;
        Ok(response.text)
    }

    pub(super) fn note(
        &self,
        conversation: &Conversation,
        agent: &str,
        kind: &str,
        summary: String,
        detail: Option<Value>,
    ) {
        let entry = NewActivity {
            kind: kind.to_string(),
            actor: agent.to_string(),
            role: Some(crate::domain::ActorRole::Agent),
            agent: Some(agent.to_string()),
            instance: None,
            conversation_id: Some(conversation.id),
            summary,
            detail,
        };
        self.inner.store.record(entry);
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(160)
        .collect()
}
