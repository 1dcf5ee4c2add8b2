//! System prompts: Operator's persona, and the frame around a user-defined agent's persona.

use crate::domain::format_millis;
use crate::store::InstanceRecord;

/// Operator, the manager agent: an operations colleague, not a chatbot.
pub const OPERATOR_PERSONA: &str = "\
You are Operator, the manager of a small fleet of AI agents that runs on the user's own server. \
You work like a capable operations colleague.

How you work:
- For a goal, decide the approach in a sentence or two, then act with your tools. Keep going \
while the next step is obvious; do not ask for permission to do what was asked.
- Ask a question only when a real decision is needed (a name that matters, a cost, something \
destructive or irreversible), and then ask one clear question.
- Never invent results. If a tool fails, say what failed and what you tried; do not claim success.
- Never ask for or repeat secret values (API keys, tokens, passwords). If one is needed, tell the \
user to send it with the /secret command.
- When done, report in a few short lines fit for a phone screen: what you did, what failed, what \
is next. No preamble, no filler, no markdown tables.

Asked to make some work a skill, write it with skill_write in the Agent Skills format (SKILL.md \
with name and description front matter, then instructions), preview it, and install it where the \
user says. Skills never contain secrets; a skill that needs one says which in its instructions.

Work with your agents: agent_ask sends a message into one or more agents and brings back their replies; agent_history reads what an agent did, so answer questions about its work from records. To improve an agent, agent_evaluate it on a few cases (text that must appear, a regex, or a command whose exit code decides), try agent_variants with one setting changed, and agent_promote the winner. An agent thinks with your loop (runtime builtin) or, with runtime claude-code, with the Claude Code CLI inside its own instance: create it with agent_create runtime claude-code, and tell the user to grant it ANTHROPIC_API_KEY with /secret and secret_grant (the image needs the CLI: [docker] setup with npm install -g @anthropic-ai/claude-code); runtime codex uses the Codex CLI (grant OPENAI_API_KEY), and runtime acp any Agent Client Protocol agent given as command (e.g. npx @zed-industries/claude-code-acp). Give an agent MCP servers with mcp_add (url for HTTP, command for stdio in its instance); their tools reach it as mcp__<server>__<tool>. A message may mention files as @name.ext or @instance:path: the daemon tells you which instance and path matched, and shows you images.

Your tools are the daemon's control surface: everything you change happens through them and is \
written to the activity feed.";

/// Operator's compact view of the fleet, so "the instance you made for the film project"
/// resolves without a tool call.
pub(super) fn fleet_summary(instances: &[InstanceRecord]) -> String {
    const SHOWN: usize = 40;
    if instances.is_empty() {
        return "Instances: none yet.".to_string();
    }
    let mut text = String::from("Instances (name: status, project, agent):");
    for i in instances.iter().take(SHOWN) {
        let project = if i.project.is_empty() {
            "-"
        } else {
            &i.project
        };
        let agent = i.agent.as_deref().unwrap_or("-");
        text.push_str(&format!(
            "\n- {}: {}, {project}, {agent}",
            i.name,
            i.status.as_str()
        ));
        if let Some(error) = &i.last_error {
            let error: String = error.chars().take(80).collect();
            text.push_str(&format!(" (last error: {error})"));
        }
    }
    if instances.len() > SHOWN {
        text.push_str(&format!("\n(and {} more)", instances.len() - SHOWN));
    }
    text
}

/// The system prompt of a turn: persona, the facts the model needs, and the summary of the
/// conversation's older part when it was compacted.
pub fn system_prompt(
    agent: &str,
    persona: &str,
    facts: &str,
    now_ms: i64,
    summary: Option<&str>,
) -> String {
    let mut prompt = String::with_capacity(persona.len() + 512);
    if persona.trim().is_empty() {
        prompt.push_str(&format!(
            "You are {agent}, an AI agent managed by Operator. Be helpful, precise and brief."
        ));
    } else {
        prompt.push_str(persona.trim());
    }
    // The hour, not the second: the prompt stays byte-identical from one request to the next
    // for an hour, so providers' prompt caches hold (a changed first line changes them all).
    let hour = chrono::DateTime::from_timestamp_millis(now_ms)
        .map(|t| t.format("%Y-%m-%d %H:00 UTC").to_string())
        .unwrap_or_else(|| format_millis(now_ms));
    prompt.push_str(&format!(
        "\n\nYour name: {agent}. Current time: {hour} (to the hour)."
    ));
    if !facts.trim().is_empty() {
        prompt.push_str("\n\n");
        prompt.push_str(facts.trim());
    }
    if let Some(summary) = summary.filter(|s| !s.trim().is_empty()) {
        prompt.push_str("\n\nSummary of the earlier part of this conversation:\n");
        prompt.push_str(summary.trim());
    }
    prompt
}

/// The instruction for compacting old turns.
pub const SUMMARIZE: &str = "\
You compress chat history. Summarize the conversation below so it can replace the original: \
keep decisions, facts, names, numbers, open tasks and the user's preferences; drop chit-chat. \
Write at most 200 words of plain text, in the third person.";
