//! Plain types and validation shared by every part of the daemon: names, chats, callers,
//! messages. Nothing in here performs I/O or knows a library that does.

mod chat;
mod commands;
mod files;
mod mcp;
mod message;
mod name;

pub use chat::{ActorRole, Caller, CallerKind, ChatRef};
pub use commands::{
    IMMEDIATE_COMMANDS, SESSION_COMMANDS, SessionCommand, is_immediate, split_command,
};
pub use files::{MAX_FILE_BYTES, safe_name};
pub use mcp::{fill_secrets, mcp_server_problem, secret_refs};
pub use message::{ImagePart, Role, StoredMessage, ToolCall};
pub use name::{AgentName, NameError, OPERATOR, split_mention};

/// Milliseconds since the Unix epoch: the one time format the store keeps.
pub type Millis = i64;

/// The current wall-clock time in milliseconds.
pub fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Renders stored milliseconds for people (UTC, to the second).
pub fn format_millis(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}
