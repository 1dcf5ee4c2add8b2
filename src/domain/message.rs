//! Conversation messages as they are persisted: user text, assistant text with tool calls, and
//! tool results.

use serde::{Deserialize, Serialize};

use super::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "tool" => Some(Role::Tool),
            _ => None,
        }
    }
}

/// A tool call requested by the model. `arguments` is the raw JSON text the model produced,
/// kept as is so a malformed call can be answered with an error instead of being lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// One persisted message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub id: i64,
    pub role: Role,
    pub content: String,
    /// For assistant messages: the tool calls it asked for.
    pub tool_calls: Vec<ToolCall>,
    /// For tool messages: the call this answers, the tool's name, and whether it failed.
    pub tool_call_id: Option<String>,
    pub tool_name: Option<String>,
    pub is_error: bool,
    pub created_at: Millis,
    /// Images that came with the message (a photo someone sent, an image a tool read), ready
    /// for the model: scaled and encoded by `media::prepare`.
    pub images: Vec<ImagePart>,
}

/// An image as the model is given it: the encoded bytes and their media type.
#[derive(Clone, PartialEq, Eq)]
pub struct ImagePart {
    /// `image/jpeg`, `image/png`, `image/gif` or `image/webp`.
    pub media_type: String,
    pub data: Vec<u8>,
    /// What to call it where the image itself is left out (a file name or path).
    pub label: String,
}

impl std::fmt::Debug for ImagePart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ImagePart({}, {}, {} bytes)",
            self.label,
            self.media_type,
            self.data.len()
        )
    }
}
