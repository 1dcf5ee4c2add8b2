//! Telegram's growing replies: `sendMessageDraft` (Bot API 9.5) in private chats, else one
//! message sent and then edited in place (`editMessageText`, about once a second). A Bot API
//! server that does not know drafts (404, or a 400 refusing them) makes the bot fall back to
//! edits for good. Partial text goes as plain text, so no half-written markup can be refused;
//! the final answer (HTML) replaces it through the outbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use teloxide_core::prelude::*;
use teloxide_core::types::MessageId;
use teloxide_core::{ApiError, RequestError};

use super::{format, target};
use crate::agent::llm::BoxFuture;
use crate::channel::live::{Shown, Surface};
use crate::config::Streaming;
use crate::domain::ChatRef;
use crate::store::Store;

/// Drafts are made for streaming; edits are rate limited more tightly.
const DRAFT_EVERY: Duration = Duration::from_millis(400);
const EDIT_EVERY: Duration = Duration::from_millis(1000);

pub struct TelegramSurface {
    pub(super) channel: String,
    pub(super) api: Bot,
    pub(super) http: reqwest::Client,
    /// `{api_url}/bot{token}/sendMessageDraft`.
    pub(super) draft_url: String,
    pub(super) store: Store,
    pub(super) mode: Streaming,
    /// The server refused drafts once: edits from now on.
    pub(super) no_drafts: AtomicBool,
}

impl TelegramSurface {
    fn drafts(&self, chat: &ChatRef) -> bool {
        self.mode == Streaming::Draft
            && !self.no_drafts.load(Ordering::Relaxed)
            // Private chats have the user's (positive) id; groups are negative.
            && chat.chat_id.parse::<i64>().is_ok_and(|id| id > 0)
    }

    async fn draft(&self, chat: &ChatRef, text: &str, id: i64) -> Result<bool, String> {
        let mut body = json!({ "chat_id": chat.chat_id.parse::<i64>().unwrap_or_default(),
                               "draft_id": id, "text": text });
        if let Ok(thread) = chat.thread_id.parse::<i64>() {
            body["message_thread_id"] = json!(thread);
        }
        let response = self
            .http
            .post(&self.draft_url)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        let reply: Value = response.json().await.unwrap_or_default();
        if reply["ok"] == true {
            return Ok(true);
        }
        // The method is unknown, or drafts are refused here: not worth asking again.
        if status.as_u16() == 404 || status.as_u16() == 400 {
            let why = reply["description"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            tracing::info!(bot = %self.channel, "drafts are not available ({status} {why}); editing a message instead");
            return Ok(false);
        }
        Err(format!("sendMessageDraft: HTTP {status}"))
    }

    async fn edit(
        &self,
        chat: &ChatRef,
        text: &str,
        shown: Option<&Shown>,
    ) -> Result<Shown, String> {
        let (chat_id, thread) = target(chat).ok_or("not a Telegram chat")?;
        if let Some(Shown::Message(id)) = shown {
            let message = MessageId(id.parse().unwrap_or_default());
            return match self.api.edit_message_text(chat_id, message, text).await {
                Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => {
                    Ok(Shown::Message(id.clone()))
                }
                Err(e) => Err(e.to_string()),
            };
        }
        let mut request = self.api.send_message(chat_id, text);
        request.message_thread_id = thread;
        let sent = request.await.map_err(|e| e.to_string())?;
        let id = sent.id.0.to_string();
        crate::channel::live::remember(&self.store, &self.channel, chat, &id).await;
        Ok(Shown::Message(id))
    }
}

impl Surface for TelegramSurface {
    fn show<'a>(
        &'a self,
        chat: &'a ChatRef,
        text: &'a str,
        shown: Option<&'a Shown>,
    ) -> BoxFuture<'a, Result<Shown, String>> {
        Box::pin(async move {
            let text = clip(text);
            if self.drafts(chat) && !matches!(shown, Some(Shown::Message(_))) {
                let id = match shown {
                    Some(Shown::Draft(id)) => *id,
                    _ => i64::from(rand::random::<u32>() >> 1) + 1,
                };
                if self.draft(chat, &text, id).await? {
                    return Ok(Shown::Draft(id));
                }
                self.no_drafts.store(true, Ordering::Relaxed);
            }
            let shown = shown.filter(|s| matches!(s, Shown::Message(_)));
            self.edit(chat, &text, shown).await
        })
    }

    fn interval(&self, _chat: &ChatRef, shown: Option<&Shown>) -> Duration {
        match shown {
            Some(Shown::Draft(_)) => DRAFT_EVERY,
            _ => EDIT_EVERY,
        }
    }
}

/// A partial text within one message: its beginning, marked as going on.
fn clip(text: &str) -> String {
    match format::split(text).into_iter().next() {
        Some(first) if first.len() < text.len() => {
            let mut first = first;
            let cut = first.char_indices().rev().nth(1).map_or(0, |(i, _)| i);
            first.truncate(cut);
            first.push('…');
            first
        }
        _ => text.to_string(),
    }
}

/// The surface the bot shows growing replies on.
pub(super) fn surface(
    channel: &str,
    api: Bot,
    api_url: &str,
    token: &str,
    store: Store,
    mode: Streaming,
) -> Arc<TelegramSurface> {
    Arc::new(TelegramSurface {
        channel: channel.to_string(),
        api,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default(),
        draft_url: format!(
            "{}/bot{token}/sendMessageDraft",
            api_url.trim_end_matches('/')
        ),
        store,
        mode,
        no_drafts: AtomicBool::new(false),
    })
}
