//! A conversation as a file: Markdown for people (`/export`, `?format=md`) or JSON lines for
//! programs (`?format=jsonl`, one stored message a line). Pure rendering, no I/O.

use serde_json::json;

use crate::domain::{Role, StoredMessage};
use crate::store::Conversation;

/// The formats a conversation can be exported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    JsonLines,
}

impl Format {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "md" | "markdown" => Some(Self::Markdown),
            "jsonl" => Some(Self::JsonLines),
            _ => None,
        }
    }

    /// A file name for the export of this conversation.
    pub fn file_name(self, conversation: &Conversation) -> String {
        let ext = match self {
            Self::Markdown => "md",
            Self::JsonLines => "jsonl",
        };
        format!(
            "conversation-{}-{}.{ext}",
            conversation.id, conversation.agent
        )
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Markdown => "text/markdown; charset=utf-8",
            Self::JsonLines => "application/x-ndjson",
        }
    }
}

/// Renders a conversation and its messages (already redacted in the store).
pub fn render(conversation: &Conversation, messages: &[StoredMessage], format: Format) -> String {
    match format {
        Format::Markdown => markdown(conversation, messages),
        Format::JsonLines => messages
            .iter()
            .map(|m| {
                json!({
                    "id": m.id,
                    "conversation": conversation.id,
                    "role": m.role.as_str(),
                    "content": m.content,
                    "tool_calls": m.tool_calls,
                    "tool_call_id": m.tool_call_id,
                    "tool_name": m.tool_name,
                    "is_error": m.is_error,
                    "created_at": m.created_at,
                })
                .to_string()
                    + "\n"
            })
            .collect(),
    }
}

fn markdown(conversation: &Conversation, messages: &[StoredMessage]) -> String {
    let when = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default()
    };
    let mut out = format!(
        "# Conversation with {} in {}\n\nStarted {}; {} messages.\n",
        conversation.agent,
        conversation.chat,
        when(conversation.created_at),
        messages.len()
    );
    if let Some(summary) = &conversation.summary {
        out.push_str(&format!("\n> Summary of earlier messages: {summary}\n"));
    }
    for m in messages {
        match m.role {
            Role::User => out.push_str(&format!(
                "\n**You** ({}):\n\n{}\n",
                when(m.created_at),
                m.content
            )),
            Role::Assistant => {
                if !m.content.is_empty() {
                    out.push_str(&format!(
                        "\n**{}** ({}):\n\n{}\n",
                        conversation.agent,
                        when(m.created_at),
                        m.content
                    ));
                }
                for call in &m.tool_calls {
                    out.push_str(&format!(
                        "\n- called `{}` with `{}`\n",
                        call.name, call.arguments
                    ));
                }
            }
            Role::Tool => {
                let name = m.tool_name.as_deref().unwrap_or("tool");
                let status = if m.is_error { "failed" } else { "returned" };
                let content: String = m.content.chars().take(400).collect();
                out.push_str(&format!("\n- `{name}` {status}: {content}\n"));
            }
        }
    }
    out
}
