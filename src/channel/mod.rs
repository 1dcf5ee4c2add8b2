//! Channels: the transports people talk through. A channel is a small trait (run, send, health)
//! plus a capabilities struct; the hub holds the running channels and delivers outbound
//! messages to the right one.
//!
//! Adapters normalize platform input into [`Inbound`] and push it into the sender the core owns;
//! they never call the router or an agent, and they know nothing of each other.

pub mod console;
pub mod discord;
pub mod durable;
pub mod http_chat;
mod hub;
pub mod live;
pub mod outbox;
pub mod quiet;
pub mod telegram;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::agent::llm::BoxFuture;
use crate::domain::ChatRef;

pub use hub::{Hub, split_fenced, split_text, split_text_by};

/// A message from a person, normalized.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub chat: ChatRef,
    /// The platform's id for the sender.
    pub sender_id: String,
    pub sender_name: String,
    pub text: String,
    /// Sent in a group chat (as opposed to a direct message).
    pub group: bool,
    /// Addressed to the bot: a direct message, a mention, a reply to it, or a command.
    pub addressed: bool,
    /// Set by channels that store messages durably: the message stays unanswered (and is
    /// handled again after a crash) until the router answers this receipt.
    pub receipt: Option<Receipt>,
    /// Files sent with the message, already fetched by the channel.
    pub attachments: Vec<Attachment>,
    /// The platform's id for this message, where it can be deleted later.
    pub message_id: Option<String>,
    /// The server the chat belongs to (a Discord guild); empty elsewhere.
    pub space: String,
}

/// A file someone sent: kept locally until the router hands it to the agent's instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub name: String,
    pub size: u64,
    /// Where the channel saved it; `None` when it could not be fetched.
    pub local: Option<std::path::PathBuf>,
    /// Why it could not be fetched (too large, download failed).
    pub problem: Option<String>,
    /// A voice note or audio message: transcribed into the message rather than kept.
    pub voice: bool,
}

impl Inbound {
    /// A direct message, addressed to us, without a receipt.
    pub fn direct(
        chat: ChatRef,
        sender_id: impl Into<String>,
        sender_name: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Self {
            chat,
            sender_id: sender_id.into(),
            sender_name: sender_name.into(),
            text: text.into(),
            group: false,
            addressed: true,
            receipt: None,
            attachments: Vec::new(),
            message_id: None,
            space: String::new(),
        }
    }
}

/// A channel's handle on one stored inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt(pub i64);

/// Something to show in a chat.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// Work has started: show typing.
    Typing,
    /// A step of long work, such as a tool running.
    Progress(String),
    /// The final answer of a turn.
    Reply(String),
    /// A turn that could not finish, with the reason.
    Failed(String),
    /// A turn cancelled by the user.
    Cancelled,
    /// A command's answer; not part of a turn.
    Notice(String),
    /// Take back a message the person sent (it carried a secret value), by its platform id.
    Retract(String),
    /// A file for the chat (an agent's `send_file`).
    File { name: String, bytes: Vec<u8> },
    /// A status line for long work, identified by `key`: channels that can edit keep one
    /// message per key and edit it in place; others show each new text.
    Status { key: String, text: String },
    /// The reply so far while the model writes it (each one replaces the last). The final
    /// `Reply` follows; channels that cannot show a growing text ignore these.
    Partial(String),
    /// A request for an owner's yes, with Approve / Deny buttons where the platform has them
    /// (a press, `/approve <code>` or `/deny <code>` decides).
    Approval { code: String, text: String },
    /// How a request was decided: the request's message is edited to say so where possible.
    Decided { code: String, text: String },
    /// A spoken reply (Ogg Opus), sent as a voice message where the platform has them.
    Voice(Vec<u8>),
}

impl Outbound {
    /// Whether this ends a turn (as opposed to showing progress or answering a command).
    pub fn ends_turn(&self) -> bool {
        matches!(
            self,
            Outbound::Reply(_) | Outbound::Failed(_) | Outbound::Cancelled
        )
    }
}

/// What a channel can do, so the core adapts its output instead of each adapter doing so.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// The longest message the platform accepts, in characters.
    pub max_message_chars: usize,
    pub can_edit: bool,
    /// Its `answer` is a store write that waits for its commit (the outbox row with the receipts
    /// it settles), so a reply queued just before it is made durable with it.
    pub answers_are_stored: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Up,
    Down(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("{0}")]
    Send(String),
}

/// The sender through which adapters hand inbound messages to the core.
pub type InboundTx = mpsc::Sender<Inbound>;

pub trait Channel: Send + Sync {
    /// The channel's id, used as `ChatRef::channel`.
    fn id(&self) -> &str;
    fn capabilities(&self) -> Capabilities;
    /// Receives messages until `shutdown` fires or the source ends.
    fn run(
        self: Arc<Self>,
        inbound: InboundTx,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, anyhow::Result<()>>;
    fn send<'a>(
        &'a self,
        chat: &'a ChatRef,
        message: Outbound,
    ) -> BoxFuture<'a, Result<(), ChannelError>>;
    fn health(&self) -> Health;
    /// Answers stored inbound messages (one reply may cover several): queues `parts` (possibly
    /// none) and marks the messages answered, atomically where the channel is durable. By
    /// default, just sends the parts.
    fn answer<'a>(
        &'a self,
        chat: &'a ChatRef,
        receipts: &'a [Receipt],
        parts: Vec<Outbound>,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let _ = receipts;
        Box::pin(async move {
            for part in parts {
                self.send(chat, part).await?;
            }
            Ok(())
        })
    }
}
