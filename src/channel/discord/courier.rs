//! Discord's side of the outbox: one row as a message (mentions disabled, embeds suppressed),
//! an edit of the progress message, a file, or a deletion.

use std::sync::Arc;
use std::time::Duration;

use serenity::builder::{
    CreateAllowedMentions, CreateAttachment, CreateInteractionResponseFollowup, CreateMessage,
    EditInteractionResponse, EditMessage,
};
use serenity::model::channel::MessageFlags;
use serenity::model::id::{ApplicationId, ChannelId, MessageId};

use super::DiscordBot;
use crate::agent::llm::BoxFuture;
use crate::channel::outbox::{Courier, Failure};
use crate::store::{OutboxRow, Store};

impl Courier for DiscordBot {
    fn channel(&self) -> &str {
        &self.id
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn rates(&self) -> (f64, f64) {
        (
            self.config.messages_per_second,
            self.config.chat_messages_per_second,
        )
    }

    fn deliver<'a>(
        &'a self,
        row: &'a OutboxRow,
        edit: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<String>, Failure>> {
        Box::pin(deliver(self, row, edit))
    }
}

/// Starts the sender of a bot's outbox.
pub fn start(bot: Arc<DiscordBot>) -> tokio::task::JoinHandle<()> {
    let (wake, stop) = (bot.wake_outbox.clone(), bot.outbox_stop.clone());
    tokio::spawn(crate::channel::outbox::run(bot, wake, stop))
}

async fn deliver(
    bot: &DiscordBot,
    row: &OutboxRow,
    edit: Option<&str>,
) -> Result<Option<String>, Failure> {
    let channel = row
        .chat_id
        .parse::<u64>()
        .ok()
        .filter(|id| *id != 0)
        .map(ChannelId::new)
        .ok_or_else(|| Failure::Permanent(format!("{} is not a Discord channel", row.chat_id)))?;
    let http = bot.http.as_ref();
    match row.kind.as_str() {
        "interaction" => {
            let spec: serde_json::Value = serde_json::from_str(&row.text).unwrap_or_default();
            let token = spec["token"].as_str().unwrap_or_default();
            let content = spec["content"].as_str().unwrap_or_default();
            if let Some(app) = spec["app"].as_u64().filter(|a| *a != 0) {
                http.set_application_id(ApplicationId::new(app));
            }
            let sent = if spec["first"].as_bool() == Some(true) {
                let change = EditInteractionResponse::new()
                    .content(content)
                    .allowed_mentions(CreateAllowedMentions::new());
                http.edit_original_interaction_response(token, &change, vec![])
                    .await
            } else {
                let follow = CreateInteractionResponseFollowup::new()
                    .content(content)
                    .allowed_mentions(CreateAllowedMentions::new())
                    .flags(MessageFlags::SUPPRESS_EMBEDS);
                http.create_followup_message(token, &follow, vec![]).await
            };
            sent.map(|m| Some(m.id.get().to_string())).map_err(classify)
        }
        "press" | "approval" | "decided" => {
            super::buttons::deliver(bot, row, channel, classify).await
        }
        "replace" => {
            // The reply shown while it was written becomes the answer; a message that cannot
            // be edited any more gets the answer as a new one.
            let spec: serde_json::Value = serde_json::from_str(&row.text).unwrap_or_default();
            let content = spec["text"].as_str().unwrap_or_default();
            if let Ok(id) = message_id(spec["message"].as_str().unwrap_or_default()) {
                let change = EditMessage::new()
                    .content(content)
                    .allowed_mentions(CreateAllowedMentions::new());
                match channel
                    .edit_message(http, id, change)
                    .await
                    .map_err(classify)
                {
                    Ok(_) => return Ok(Some(id.get().to_string())),
                    Err(retry @ (Failure::RetryAfter(_) | Failure::Transient(_))) => {
                        return Err(retry);
                    }
                    Err(_) => {}
                }
            }
            let message = CreateMessage::new()
                .content(content)
                .allowed_mentions(CreateAllowedMentions::new())
                .flags(MessageFlags::SUPPRESS_EMBEDS);
            let sent = channel
                .send_message(http, message)
                .await
                .map_err(classify)?;
            Ok(Some(sent.id.get().to_string()))
        }
        "delete" => {
            let id = message_id(&row.text)?;
            channel.delete_message(http, id).await.map_err(classify)?;
            Ok(None)
        }
        "file" => {
            let spec: serde_json::Value = serde_json::from_str(&row.text).unwrap_or_default();
            let path = std::path::PathBuf::from(spec["path"].as_str().unwrap_or_default());
            let name = spec["name"].as_str().unwrap_or("file").to_string();
            let bytes = std::fs::read(&path)
                .map_err(|e| Failure::Permanent(format!("the file {name} to send is gone: {e}")))?;
            let message = CreateMessage::new()
                .allowed_mentions(CreateAllowedMentions::new())
                .add_file(CreateAttachment::bytes(bytes, name));
            let result = channel.send_message(http, message).await.map_err(classify);
            if !matches!(result, Err(Failure::RetryAfter(_) | Failure::Transient(_))) {
                let _ = std::fs::remove_file(&path);
            }
            result.map(|m| Some(m.id.get().to_string()))
        }
        kind => {
            if kind == "progress"
                && let Some(id) = edit.and_then(|id| message_id(id).ok())
            {
                let change = EditMessage::new()
                    .content(&row.text)
                    .allowed_mentions(CreateAllowedMentions::new());
                if channel.edit_message(http, id, change).await.is_ok() {
                    return Ok(Some(id.get().to_string()));
                }
            }
            let message = CreateMessage::new()
                .content(&row.text)
                .allowed_mentions(CreateAllowedMentions::new())
                .flags(MessageFlags::SUPPRESS_EMBEDS);
            let sent = channel
                .send_message(http, message)
                .await
                .map_err(classify)?;
            Ok(Some(sent.id.get().to_string()))
        }
    }
}

fn message_id(text: &str) -> Result<MessageId, Failure> {
    text.parse::<u64>()
        .ok()
        .filter(|id| *id != 0)
        .map(MessageId::new)
        .ok_or_else(|| Failure::Permanent(format!("{text} is not a message id")))
}

fn classify(e: serenity::Error) -> Failure {
    use serenity::http::HttpError;
    match &e {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) => {
            let status = r.status_code.as_u16();
            if status == 429 {
                // Behind a proxy serenity's limiter is off and the header is not kept: wait a
                // moment and try again.
                Failure::RetryAfter(Duration::from_secs(1))
            } else if status >= 500 {
                Failure::Transient(e.to_string())
            } else {
                Failure::Permanent(format!("HTTP {status}: {}", r.error.message))
            }
        }
        serenity::Error::Http(HttpError::Request(_)) | serenity::Error::Io(_) => {
            Failure::Transient(e.to_string())
        }
        _ => Failure::Permanent(e.to_string()),
    }
}
