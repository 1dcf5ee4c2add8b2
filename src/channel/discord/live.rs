//! Discord's growing replies: one message sent, then edited in place as the text grows
//! (about once every 1.2 seconds, within Discord's five edits per five seconds), with mentions
//! disabled and embeds suppressed like every message the bot sends. The final answer replaces
//! it through the outbox; the message is recorded so a restart can take it back.

use std::sync::Arc;
use std::time::Duration;

use serenity::builder::{CreateAllowedMentions, CreateMessage, EditMessage};
use serenity::http::Http;
use serenity::model::channel::MessageFlags;
use serenity::model::id::{ChannelId, MessageId};

use crate::agent::llm::BoxFuture;
use crate::channel::live::{Shown, Surface};
use crate::domain::ChatRef;
use crate::store::Store;

const EDIT_EVERY: Duration = Duration::from_millis(1200);
/// Discord's message limit, in characters.
const LIMIT: usize = 2000;

pub struct DiscordSurface {
    pub(super) channel: String,
    pub(super) http: Arc<Http>,
    pub(super) store: Store,
}

impl Surface for DiscordSurface {
    fn show<'a>(
        &'a self,
        chat: &'a ChatRef,
        text: &'a str,
        shown: Option<&'a Shown>,
    ) -> BoxFuture<'a, Result<Shown, String>> {
        Box::pin(async move {
            let channel = chat
                .chat_id
                .parse::<u64>()
                .ok()
                .filter(|id| *id != 0)
                .map(ChannelId::new)
                .ok_or("not a Discord channel")?;
            let text = clip(text);
            let http = self.http.as_ref();
            if let Some(Shown::Message(id)) = shown {
                let message = id
                    .parse::<u64>()
                    .ok()
                    .filter(|i| *i != 0)
                    .ok_or("no message id")?;
                let change = EditMessage::new()
                    .content(&text)
                    .allowed_mentions(CreateAllowedMentions::new());
                channel
                    .edit_message(http, MessageId::new(message), change)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(Shown::Message(id.clone()));
            }
            let message = CreateMessage::new()
                .content(&text)
                .allowed_mentions(CreateAllowedMentions::new())
                .flags(MessageFlags::SUPPRESS_EMBEDS);
            let sent = channel
                .send_message(http, message)
                .await
                .map_err(|e| e.to_string())?;
            let id = sent.id.get().to_string();
            crate::channel::live::remember(&self.store, &self.channel, chat, &id).await;
            Ok(Shown::Message(id))
        })
    }

    fn interval(&self, _chat: &ChatRef, _shown: Option<&Shown>) -> Duration {
        EDIT_EVERY
    }
}

/// A partial text within one message: its beginning, marked as going on.
fn clip(text: &str) -> String {
    if text.chars().count() <= LIMIT {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(LIMIT - 1).collect();
    clipped.push('…');
    clipped
}
