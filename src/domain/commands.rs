//! Chat commands that steer the conversation itself rather than run an operation. The router
//! handles these; commands of operations are declared with the operations.

pub struct SessionCommand {
    pub name: &'static str,
    pub usage: &'static str,
    pub description: &'static str,
}

pub const SESSION_COMMANDS: &[SessionCommand] = &[
    SessionCommand {
        name: "start",
        usage: "/start",
        description: "Say hello and show what I can do.",
    },
    SessionCommand {
        name: "new",
        usage: "/new",
        description: "Start a fresh conversation in this chat.",
    },
    SessionCommand {
        name: "secret",
        usage: "/secret <NAME> [value]",
        description: "Store a secret (encrypted, never shown to a model); without a value, send it next.",
    },
    SessionCommand {
        name: "backup",
        usage: "/backup",
        description: "Owners: save the daemon's state now (into [backup] dir).",
    },
    SessionCommand {
        name: "export",
        usage: "/export",
        description: "Send this conversation as a Markdown file.",
    },
    SessionCommand {
        name: "stop",
        usage: "/stop",
        description: "Cancel the work in progress in this chat.",
    },
];

/// Commands answered at once, ahead of the chat's queue (a running turn does not hold them up;
/// a turn waiting for an approval is waiting for exactly these).
pub const IMMEDIATE_COMMANDS: [&str; 6] = ["stop", "status", "help", "start", "approve", "deny"];

/// Whether a message is a command answered at once, ahead of the chat's queue.
pub fn is_immediate(text: &str) -> bool {
    split_command(text).is_some_and(|(command, _)| IMMEDIATE_COMMANDS.contains(&command))
}

/// Splits `/cmd@botname rest` into `cmd` and `rest`; `None` when the text is not a command.
pub fn split_command(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start().strip_prefix('/')?;
    let (head, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let command = head.split('@').next().unwrap_or(head);
    if command.is_empty() {
        return None;
    }
    Some((command, rest))
}
