//! Who is talking, and in which chat.

use std::fmt;

/// One chat on one channel: the address replies go to and the key bindings are stored under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChatRef {
    /// The channel instance, such as `console`, `telegram:<bot>` or `discord:<bot>`.
    pub channel: String,
    pub chat_id: String,
    /// A forum topic or thread inside the chat; empty when the chat has none.
    pub thread_id: String,
}

impl ChatRef {
    pub fn new(channel: impl Into<String>, chat_id: impl Into<String>) -> Self {
        Self {
            channel: channel.into(),
            chat_id: chat_id.into(),
            thread_id: String::new(),
        }
    }
}

impl fmt::Display for ChatRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.channel, self.chat_id)?;
        if !self.thread_id.is_empty() {
            write!(f, "/{}", self.thread_id)?;
        }
        Ok(())
    }
}

/// How much a caller may do. Ordered: an owner may do everything a member may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallerKind {
    /// An admitted user who is not an owner (paired, allowlisted or in an open chat).
    Member,
    /// Full control: configured owners, the local console, the admin token.
    Owner,
}

/// The person (or system part) on whose behalf an operation runs. Operator's tool calls carry
/// the caller of the turn, so the model can never do more than the person talking to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub kind: CallerKind,
    /// A stable label for the activity feed, such as `console` or `telegram:12345`.
    pub label: String,
}

impl Caller {
    pub fn owner(label: impl Into<String>) -> Self {
        Self {
            kind: CallerKind::Owner,
            label: label.into(),
        }
    }
    pub fn member(label: impl Into<String>) -> Self {
        Self {
            kind: CallerKind::Member,
            label: label.into(),
        }
    }

    /// The role this caller acts in, for the activity feed.
    pub fn role(&self) -> ActorRole {
        match self.kind {
            CallerKind::Owner => ActorRole::Owner,
            CallerKind::Member => ActorRole::User,
        }
    }
}

/// Who caused an activity entry: an owner, another person, an agent (a model's tool call or
/// reply), or the daemon itself (reconciliation, automations, webhooks, channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActorRole {
    Owner,
    User,
    Agent,
    #[default]
    System,
}

impl ActorRole {
    pub const ALL: [ActorRole; 4] = [Self::Owner, Self::User, Self::Agent, Self::System];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::User => "user",
            Self::Agent => "agent",
            Self::System => "system",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}
