//! The hub: the running channels by id, and delivery of outbound messages to them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{Channel, Outbound, Receipt};
use crate::domain::ChatRef;
use crate::secrets::Redactor;

#[derive(Clone, Default)]
pub struct Hub {
    channels: Arc<RwLock<HashMap<String, Arc<dyn Channel>>>>,
}

impl Hub {
    pub fn add(&self, channel: Arc<dyn Channel>) {
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        channels.insert(channel.id().to_string(), channel);
    }

    pub fn remove(&self, id: &str) {
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        channels.remove(id);
    }

    pub fn ids(&self) -> Vec<String> {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = channels.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Whether the channel's answers are store writes that wait for their commit.
    pub fn answers_are_stored(&self, id: &str) -> bool {
        self.get(id)
            .is_some_and(|c| c.capabilities().answers_are_stored)
    }

    fn get(&self, id: &str) -> Option<Arc<dyn Channel>> {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        channels.get(id).cloned()
    }

    /// Delivers one message, split to the channel's length limit. Failures are logged: one
    /// chat's delivery problem never stops the caller.
    pub async fn deliver(&self, chat: &ChatRef, message: Outbound) {
        self.answer(chat, &[], Some(message)).await;
    }

    /// Delivers one message and says whether the channel took it.
    pub async fn try_deliver(&self, chat: &ChatRef, message: Outbound) -> Result<(), String> {
        let channel = self
            .get(&chat.channel)
            .ok_or_else(|| format!("no channel {} to deliver to", chat.channel))?;
        for part in prepared(channel.as_ref(), message) {
            channel.send(chat, part).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Answers inbound messages: delivers `message` (if any) and, for the messages that came
    /// with a receipt, marks them answered through their channel.
    pub async fn answer(&self, chat: &ChatRef, receipts: &[Receipt], message: Option<Outbound>) {
        self.answer_all(chat, receipts, message.into_iter().collect())
            .await;
    }

    /// Answers inbound messages with several outbound messages, in order.
    pub async fn answer_all(&self, chat: &ChatRef, receipts: &[Receipt], messages: Vec<Outbound>) {
        let Some(channel) = self.get(&chat.channel) else {
            tracing::error!(%chat, "no channel {} to deliver to", chat.channel);
            return;
        };
        let parts: Vec<Outbound> = messages
            .into_iter()
            .flat_map(|m| prepared(channel.as_ref(), m))
            .collect();
        let result = match receipts {
            [_, ..] => channel.answer(chat, receipts, parts).await,
            [] => {
                let mut result = Ok(());
                for part in parts {
                    if let Err(e) = channel.send(chat, part).await {
                        result = Err(e);
                    }
                }
                result
            }
        };
        if let Err(e) = result {
            tracing::error!(%chat, "delivery failed: {e}");
        }
    }
}

/// The message redacted and split to the channel's length limit (0: the channel splits).
fn prepared(channel: &dyn Channel, message: Outbound) -> Vec<Outbound> {
    let limit = channel.capabilities().max_message_chars;
    let message = redacted(message);
    match &message {
        Outbound::Reply(text) => split_text(text, limit)
            .into_iter()
            .map(Outbound::Reply)
            .collect(),
        Outbound::Notice(text) => split_text(text, limit)
            .into_iter()
            .map(Outbound::Notice)
            .collect(),
        Outbound::Failed(text) => split_text(text, limit)
            .into_iter()
            .map(Outbound::Failed)
            .collect(),
        _ => vec![message],
    }
}

/// The message with any secret value replaced: nothing leaves for a chat with one in it.
fn redacted(message: Outbound) -> Outbound {
    let clean = |s: String| Redactor::global().redact(&s).into_owned();
    match message {
        Outbound::Reply(t) => Outbound::Reply(clean(t)),
        Outbound::Failed(t) => Outbound::Failed(clean(t)),
        Outbound::Notice(t) => Outbound::Notice(clean(t)),
        Outbound::Progress(t) => Outbound::Progress(clean(t)),
        Outbound::Partial(t) => Outbound::Partial(clean(t)),
        Outbound::Approval { code, text } => Outbound::Approval {
            code,
            text: clean(text),
        },
        Outbound::Decided { code, text } => Outbound::Decided {
            code,
            text: clean(text),
        },
        Outbound::Status { key, text } => Outbound::Status {
            key,
            text: clean(text),
        },
        other => other,
    }
}

/// Splits text into pieces of at most `limit` characters, at line breaks where possible.
pub fn split_text(text: &str, limit: usize) -> Vec<String> {
    split_text_by(text, limit, |_| 1)
}

/// Splits text like [`split_text_by`], keeping code fences balanced: a piece that ends inside a
/// ``` block is closed, and the next piece reopens it with the same language, so every piece
/// renders on its own. Pieces stay within `limit`.
pub fn split_fenced(text: &str, limit: usize, units: fn(char) -> usize) -> Vec<String> {
    // Room for the closing fence and a reopening one with a short language tag.
    const ROOM: usize = 24;
    let raw = split_text_by(text, limit.saturating_sub(ROOM).max(1), units);
    if raw.len() < 2 {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut open: Option<String> = None;
    for piece in raw {
        let mut chunk = String::new();
        if let Some(lang) = &open {
            chunk.push_str(&format!("```{lang}\n"));
        }
        chunk.push_str(&piece);
        // Walk the fences in this piece to know whether it ends inside a block.
        let mut rest = piece.as_str();
        while let Some(at) = rest.find("```") {
            let after = &rest[at + 3..];
            open = match open {
                Some(_) => None,
                None => {
                    let lang: String = after
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || "+-_#.".contains(*c))
                        .take(12)
                        .collect();
                    Some(lang)
                }
            };
            rest = after;
        }
        if open.is_some() {
            if !chunk.ends_with('\n') {
                chunk.push('\n');
            }
            chunk.push_str("```");
        }
        out.push(chunk);
    }
    out
}

/// Splits text into pieces of at most `limit` units, `units` telling how many each character
/// counts for (Telegram counts UTF-16 code units), at line breaks where possible.
pub fn split_text_by(text: &str, limit: usize, units: fn(char) -> usize) -> Vec<String> {
    let len = |s: &str| s.chars().map(units).sum::<usize>();
    if limit == 0 || len(text) <= limit {
        return vec![text.to_string()];
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    for line in text.split_inclusive('\n') {
        let mut line = line;
        loop {
            let line_len = len(line);
            if current_len + line_len <= limit {
                current.push_str(line);
                current_len += line_len;
                break;
            }
            if current_len > 0 {
                parts.push(std::mem::take(&mut current));
                current_len = 0;
                continue;
            }
            // A single line longer than the limit is cut at a character boundary.
            let mut used = 0;
            let cut = line
                .char_indices()
                .find(|&(_, c)| {
                    used += units(c);
                    used > limit
                })
                .map_or(line.len(), |(i, _)| i);
            // A character wider than the limit still has to go somewhere.
            let cut = if cut == 0 {
                line.chars().next().map_or(line.len(), char::len_utf8)
            } else {
                cut
            };
            parts.push(line[..cut].to_string());
            line = &line[cut..];
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_lines_and_cuts_long_lines() {
        assert_eq!(split_text("short", 10), vec!["short"]);
        assert_eq!(split_text("aaaa\nbbbb\ncc", 10), vec!["aaaa\nbbbb\n", "cc"]);
        let parts = split_text(&"é".repeat(25), 10);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= 10));
        assert_eq!(parts.concat(), "é".repeat(25));
        // An emoji is two UTF-16 units: ten fit in twenty, never half of one.
        let parts = split_text_by(&"😀".repeat(15), 20, char::len_utf16);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "😀".repeat(10));
        let parts = split_text_by(&"😀".repeat(3), 3, char::len_utf16);
        assert_eq!(parts, vec!["😀", "😀", "😀"]);
    }

    #[test]
    fn fenced_pieces_are_balanced_and_within_the_limit() {
        let code: String = (0..200).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("Here:\n```rust\n{code}```\nDone.");
        let parts = split_fenced(&text, 500, |_| 1);
        assert!(parts.len() > 3);
        for p in &parts {
            assert!(p.chars().count() <= 500, "{}", p.len());
            assert_eq!(p.matches("```").count() % 2, 0, "unbalanced: {p}");
        }
        assert!(parts[1].starts_with("```rust\n"), "{}", parts[1]);
        let joined: String = parts.concat();
        assert!(joined.contains("let x199 = 199;") && joined.ends_with("Done."));
        assert_eq!(split_fenced("short", 500, |_| 1), vec!["short"]);
    }
}
