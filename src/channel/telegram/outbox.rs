//! Telegram's side of the outbox: one row as `sendMessage` (HTML, then plain text when the
//! markup is refused), an edit of the progress message, `sendDocument`, or `deleteMessage`.

use std::sync::Arc;

use teloxide_core::prelude::*;
use teloxide_core::types::{
    CallbackQueryId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, LinkPreviewOptions,
    MessageId, ParseMode, ReplyMarkup,
};
use teloxide_core::{ApiError, RequestError};

use super::{TelegramBot, format, target};
use crate::agent::llm::BoxFuture;
use crate::channel::outbox::{Courier, Failure};
use crate::store::{OutboxRow, Store};

impl Courier for TelegramBot {
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
        Box::pin(async move {
            let edit = edit.and_then(|id| id.parse().ok()).map(MessageId);
            deliver(self, row, edit)
                .await
                .map(|shown| shown.map(|id| id.0.to_string()))
        })
    }
}

/// Starts the sender of a bot's outbox.
pub fn start(bot: Arc<TelegramBot>) -> tokio::task::JoinHandle<()> {
    let (wake, stop) = (bot.wake_outbox.clone(), bot.outbox_stop.clone());
    tokio::spawn(crate::channel::outbox::run(bot, wake, stop))
}

/// One attempt at one row. Returns the id of the message shown (for progress messages).
async fn deliver(
    bot: &TelegramBot,
    row: &OutboxRow,
    edit: Option<MessageId>,
) -> Result<Option<MessageId>, Failure> {
    let chat = crate::domain::ChatRef {
        channel: bot.id.clone(),
        chat_id: row.chat_id.clone(),
        thread_id: row.thread_id.clone(),
    };
    let Some((chat_id, thread)) = target(&chat) else {
        return Err(Failure::Permanent(format!("{chat} is not a Telegram chat")));
    };
    let no_preview = LinkPreviewOptions {
        is_disabled: true,
        url: None,
        prefer_small_media: false,
        prefer_large_media: false,
        show_above_text: false,
    };
    if row.kind == "progress"
        && let Some(id) = edit
    {
        match bot.api.edit_message_text(chat_id, id, &row.text).await {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => return Ok(Some(id)),
            Err(e @ (RequestError::RetryAfter(_) | RequestError::Network(_))) => {
                return Err(classify(bot, e));
            }
            // The message is gone or too old to edit: show a new one.
            Err(_) => {}
        }
    }
    if row.kind == "delete" {
        let id = MessageId(row.text.parse().unwrap_or_default());
        return match bot.api.delete_message(chat_id, id).await {
            Ok(_) => Ok(None),
            Err(e) => Err(classify(bot, e)),
        };
    }
    if row.kind == "file" {
        return send_file(bot, row, chat_id, thread).await;
    }
    if matches!(row.kind.as_str(), "callback" | "approval" | "decided") {
        return approvals(bot, row, chat_id, thread).await;
    }
    // The reply shown while it was written becomes the answer; if that message cannot be
    // edited any more, the answer is sent as a new one.
    let (kind, body) = if row.kind == "replace" {
        let spec: serde_json::Value = serde_json::from_str(&row.text).unwrap_or_default();
        let text = spec["text"].as_str().unwrap_or_default().to_string();
        let id = MessageId(
            spec["message"]
                .as_str()
                .and_then(|m| m.parse().ok())
                .unwrap_or_default(),
        );
        let edit = |text: String, html: bool| {
            let mut request = bot
                .api
                .edit_message_text(chat_id, id, text)
                .link_preview_options(no_preview.clone());
            if html {
                request.parse_mode = Some(ParseMode::Html);
            }
            request
        };
        let edited = match edit(format::to_html(&text), true).await {
            Err(RequestError::Api(ApiError::CantParseEntities(_))) => {
                edit(text.clone(), false).await
            }
            other => other,
        };
        match edited {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => return Ok(Some(id)),
            Err(e @ (RequestError::RetryAfter(_) | RequestError::Network(_))) => {
                return Err(classify(bot, e));
            }
            Err(e) => {
                tracing::info!(bot = %bot.id, "the partial reply cannot be edited ({}); sending the answer anew", bot.describe(&e));
            }
        }
        ("text", text)
    } else {
        (row.kind.as_str(), row.text.clone())
    };
    let send = |text: String, html: bool| {
        let mut request = bot
            .api
            .send_message(chat_id, text)
            .link_preview_options(no_preview.clone());
        request.message_thread_id = thread;
        if html {
            request.parse_mode = Some(ParseMode::Html);
        }
        request
    };
    let result = if kind == "text" {
        match send(format::to_html(&body), true).await {
            Err(RequestError::Api(ApiError::CantParseEntities(why))) => {
                tracing::info!(bot = %bot.id, "markup rejected ({why}); sending as plain text");
                send(body.clone(), false).await
            }
            other => other,
        }
    } else {
        send(body, false).await
    };
    match result {
        Ok(message) => Ok(Some(message.id)),
        Err(e) => Err(classify(bot, e)),
    }
}

/// The rows of approvals: a request with Approve / Deny buttons (its message id kept with the
/// request), the request's message edited to say how it was decided, and the answer to a press.
async fn approvals(
    bot: &TelegramBot,
    row: &OutboxRow,
    chat_id: teloxide_core::types::ChatId,
    thread: Option<teloxide_core::types::ThreadId>,
) -> Result<Option<MessageId>, Failure> {
    let spec: serde_json::Value = serde_json::from_str(&row.text).unwrap_or_default();
    let field = |key: &str| spec[key].as_str().unwrap_or_default().to_string();
    let (code, text) = (field("code"), field("text"));
    match row.kind.as_str() {
        "callback" => {
            // Telegram shows at most 200 characters on the button's notice.
            let text: String = text.chars().take(200).collect();
            let answer = bot
                .api
                .answer_callback_query(CallbackQueryId(field("id")))
                .text(text);
            match answer.await {
                Ok(_) => Ok(None),
                Err(e @ (RequestError::RetryAfter(_) | RequestError::Network(_))) => {
                    Err(classify(bot, e))
                }
                // Too old to answer: the press is long over.
                Err(_) => Ok(None),
            }
        }
        "approval" => {
            let buttons = InlineKeyboardMarkup::new([[
                InlineKeyboardButton::callback("Approve", format!("approve:{code}")),
                InlineKeyboardButton::callback("Deny", format!("deny:{code}")),
            ]]);
            let mut request = bot.api.send_message(chat_id, text);
            request.message_thread_id = thread;
            request.reply_markup = Some(ReplyMarkup::InlineKeyboard(buttons));
            let sent = request.await.map_err(|e| classify(bot, e))?;
            if let Err(e) = bot
                .store
                .set_approval_message(&code, &sent.id.0.to_string())
                .await
            {
                tracing::warn!(bot = %bot.id, "cannot keep the message of approval {code}: {e}");
            }
            Ok(Some(sent.id))
        }
        _ => {
            // The request's message now says how it was decided, without its buttons.
            let shown = bot.store.approval(&code).await.ok().flatten();
            if let Some(id) = shown
                .and_then(|a| a.message_id)
                .and_then(|id| id.parse().ok())
                .map(MessageId)
            {
                match bot.api.edit_message_text(chat_id, id, text.clone()).await {
                    Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => {
                        return Ok(Some(id));
                    }
                    Err(e @ (RequestError::RetryAfter(_) | RequestError::Network(_))) => {
                        return Err(classify(bot, e));
                    }
                    Err(_) => {}
                }
            }
            let mut request = bot.api.send_message(chat_id, text);
            request.message_thread_id = thread;
            let sent = request.await.map_err(|e| classify(bot, e))?;
            Ok(Some(sent.id))
        }
    }
}

/// Sends a kept file as a document (a spoken reply as a voice message); the kept copy goes once the row is settled either way.
async fn send_file(
    bot: &TelegramBot,
    row: &OutboxRow,
    chat_id: teloxide_core::types::ChatId,
    thread: Option<teloxide_core::types::ThreadId>,
) -> Result<Option<MessageId>, Failure> {
    let spec: serde_json::Value = serde_json::from_str(&row.text).unwrap_or_default();
    let path = std::path::PathBuf::from(spec["path"].as_str().unwrap_or_default());
    let name = spec["name"].as_str().unwrap_or("file").to_string();
    if !path.is_file() {
        return Err(Failure::Permanent(format!(
            "the file {name} to send is gone"
        )));
    }
    let file = InputFile::file(path.clone()).file_name(name);
    let result = if spec["voice"] == true {
        let mut request = bot.api.send_voice(chat_id, file);
        request.message_thread_id = thread;
        request.await
    } else {
        let mut request = bot.api.send_document(chat_id, file);
        request.message_thread_id = thread;
        request.await
    };
    let failure = match result {
        Ok(message) => {
            let _ = std::fs::remove_file(&path);
            return Ok(Some(message.id));
        }
        Err(e) => classify(bot, e),
    };
    if matches!(failure, Failure::Permanent(_)) {
        let _ = std::fs::remove_file(&path);
    }
    Err(failure)
}

fn classify(bot: &TelegramBot, e: RequestError) -> Failure {
    match e {
        RequestError::RetryAfter(after) => Failure::RetryAfter(after.duration()),
        RequestError::Network(_) | RequestError::Io(_) | RequestError::InvalidJson { .. } => {
            Failure::Transient(bot.describe(&e))
        }
        RequestError::Api(ApiError::Unknown(ref text))
            if [
                "Internal Server Error",
                "Bad Gateway",
                "Gateway",
                "Service Unavailable",
            ]
            .iter()
            .any(|w| text.contains(w)) =>
        {
            Failure::Transient(bot.describe(&e))
        }
        other => Failure::Permanent(bot.describe(&other)),
    }
}
