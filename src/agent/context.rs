//! The model's view of a conversation: stored messages turned into model messages, repaired
//! where a turn was cut short, and compacted (older turns summarized) to fit a token budget.

use crate::domain::{Role, StoredMessage};

use super::llm::LlmMessage;

/// A rough token estimate (four characters a token), good enough to budget with.
pub fn estimate_tokens(text: &str) -> usize {
    text.len() / 4 + 4
}

/// What one image costs a model, roughly (a 1568 px image is about 1,600 tokens and more).
const IMAGE_TOKENS: usize = 1600;

/// The most images a request carries: older ones are left out (their messages still say which
/// file they were), so a conversation full of photos does not resend them all every turn.
pub const MAX_CONTEXT_IMAGES: usize = 4;

pub fn message_tokens(m: &StoredMessage) -> usize {
    estimate_tokens(&m.content)
        + m.images.len().min(MAX_CONTEXT_IMAGES) * IMAGE_TOKENS
        + m.tool_calls
            .iter()
            .map(|c| estimate_tokens(&c.name) + estimate_tokens(&c.arguments))
            .sum::<usize>()
}

/// Where to cut so that the kept tail fits in `keep_tokens`. The cut lands on a user message, so
/// tool calls and their results are never separated. Returns 0 when nothing can be cut.
pub fn compaction_cut(messages: &[StoredMessage], keep_tokens: usize) -> usize {
    let mut kept = 0;
    let mut cut = messages.len();
    for (i, m) in messages.iter().enumerate().rev() {
        kept += message_tokens(m);
        if kept > keep_tokens {
            break;
        }
        cut = i;
    }
    // Move forward to the next user message; if there is none, move back to the last one.
    let forward = (cut..messages.len()).find(|&i| messages[i].role == Role::User);
    let cut = forward.or_else(|| (0..cut).rev().find(|&i| messages[i].role == Role::User));
    match cut {
        Some(i) if i > 0 => i,
        _ => 0,
    }
}

/// Renders messages as plain text for the summarizer.
pub fn transcript(messages: &[StoredMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        match m.role {
            Role::User => out.push_str(&format!("User: {}\n", m.content)),
            Role::Assistant => {
                if !m.content.is_empty() {
                    out.push_str(&format!("Assistant: {}\n", m.content));
                }
                for c in &m.tool_calls {
                    out.push_str(&format!("Assistant called {}({})\n", c.name, c.arguments));
                }
            }
            Role::Tool => {
                let name = m.tool_name.as_deref().unwrap_or("tool");
                let content: String = m.content.chars().take(500).collect();
                out.push_str(&format!("{name} returned: {content}\n"));
            }
        }
    }
    out
}

/// Turns stored messages into model messages. A tool call without a stored result (the turn was
/// cancelled or the process stopped in between) gets a synthetic error result, because both
/// vendors reject a history where a call has no answer. Images follow their message's text (a
/// tool result's images follow all results of that step, since nothing may come between a
/// step's results); only the newest [`MAX_CONTEXT_IMAGES`] are given.
pub fn to_llm_messages(messages: &[StoredMessage]) -> Vec<LlmMessage> {
    let mut out = Vec::with_capacity(messages.len());
    let total: usize = messages.iter().map(|m| m.images.len()).sum();
    let mut skip = total.saturating_sub(MAX_CONTEXT_IMAGES);
    let mut images_of = |m: &StoredMessage, out: &mut Vec<LlmMessage>| {
        for image in &m.images {
            if skip > 0 {
                skip -= 1;
            } else {
                out.push(LlmMessage::Image(image.clone()));
            }
        }
    };
    let mut i = 0;
    while i < messages.len() {
        let m = &messages[i];
        i += 1;
        match m.role {
            Role::User => {
                out.push(LlmMessage::User(m.content.clone()));
                images_of(m, &mut out);
            }
            Role::Tool => {
                // A result whose call is not in view (cut off by compaction) is dropped.
            }
            Role::Assistant => {
                out.push(LlmMessage::Assistant {
                    text: m.content.clone(),
                    tool_calls: m.tool_calls.clone(),
                });
                let mut answered = Vec::new();
                let mut with_images = Vec::new();
                while i < messages.len() && messages[i].role == Role::Tool {
                    let r = &messages[i];
                    let known = r
                        .tool_call_id
                        .as_ref()
                        .is_some_and(|id| m.tool_calls.iter().any(|c| &c.id == id));
                    if known {
                        answered.push(r.tool_call_id.clone().unwrap_or_default());
                        out.push(LlmMessage::ToolResult {
                            call_id: r.tool_call_id.clone().unwrap_or_default(),
                            name: r.tool_name.clone().unwrap_or_default(),
                            content: r.content.clone(),
                            is_error: r.is_error,
                        });
                        if !r.images.is_empty() {
                            with_images.push(r);
                        }
                    }
                    i += 1;
                }
                for call in &m.tool_calls {
                    if !answered.contains(&call.id) {
                        out.push(LlmMessage::ToolResult {
                            call_id: call.id.clone(),
                            name: call.name.clone(),
                            content: "error: this call was interrupted before it finished".into(),
                            is_error: true,
                        });
                    }
                }
                for r in with_images {
                    images_of(r, &mut out);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ToolCall;

    fn msg(id: i64, role: Role, content: &str) -> StoredMessage {
        StoredMessage {
            id,
            role,
            content: content.into(),
            tool_calls: vec![],
            tool_call_id: None,
            tool_name: None,
            is_error: false,
            created_at: 0,
            images: vec![],
        }
    }

    #[test]
    fn unanswered_tool_calls_get_an_error_result() {
        let mut a = msg(2, Role::Assistant, "");
        a.tool_calls = vec![ToolCall {
            id: "c1".into(),
            name: "status".into(),
            arguments: "{}".into(),
        }];
        let history = vec![msg(1, Role::User, "hi"), a, msg(3, Role::User, "again")];
        let out = to_llm_messages(&history);
        assert_eq!(out.len(), 4);
        assert!(
            matches!(&out[2], LlmMessage::ToolResult { call_id, is_error: true, .. } if call_id == "c1")
        );
    }

    #[test]
    fn cut_lands_on_a_user_message() {
        let long = "x".repeat(400);
        let history: Vec<_> = (0..10)
            .map(|i| {
                msg(
                    i,
                    if i % 2 == 0 {
                        Role::User
                    } else {
                        Role::Assistant
                    },
                    &long,
                )
            })
            .collect();
        let cut = compaction_cut(&history, 350);
        assert!(cut > 0 && cut < 10);
        assert_eq!(history[cut].role, Role::User);
        assert_eq!(compaction_cut(&history[..1], 10), 0);
    }
}
