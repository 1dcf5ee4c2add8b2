//! The sender: delivers a bot's outbox in order per chat, several chats at a time, within the
//! bot's and each chat's rate, honouring `retry_after`, resending rejected markup as plain
//! text, and editing one progress message in place. A row leaves the outbox only once
//! Telegram has accepted it (or refused it for good).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use teloxide_core::prelude::*;
use teloxide_core::types::{InputFile, LinkPreviewOptions, MessageId, ParseMode};
use teloxide_core::{ApiError, RequestError};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{TelegramBot, format, target};
use crate::store::{NewActivity, OutboxRow};

/// Sends in flight at once, over all chats (one per chat).
const MAX_IN_FLIGHT: usize = 8;
/// Rows read from the store at a time.
const BATCH: i64 = 1000;
/// Transient failures of one message before it is given up.
const MAX_ATTEMPTS: u32 = 12;

enum Failure {
    RetryAfter(Duration),
    Transient(String),
    Permanent(String),
}

type Sent = (OutboxRow, Result<Option<MessageId>, Failure>);

fn chat_key(row: &OutboxRow) -> String {
    format!("{}/{}", row.chat_id, row.thread_id)
}

/// Delivers until `shutdown`, then until the outbox is empty (the caller bounds that wait).
pub async fn run(bot: Arc<TelegramBot>, shutdown: CancellationToken) {
    let bot_interval = Duration::from_secs_f64(1.0 / bot.config.messages_per_second);
    let chat_interval = Duration::from_secs_f64(1.0 / bot.config.chat_messages_per_second);
    let mut queue: BTreeMap<i64, OutboxRow> = BTreeMap::new();
    let mut last_id = 0;
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut blocked: HashMap<String, Instant> = HashMap::new();
    let mut attempts: HashMap<i64, u32> = HashMap::new();
    let mut progress: HashMap<String, MessageId> = HashMap::new();
    let mut next_slot = Instant::now();
    let mut tasks: JoinSet<Sent> = JoinSet::new();
    let mut refill = true;
    loop {
        // Stopping: whatever is queued still goes out, then the sender ends.
        let stopping = shutdown.is_cancelled() && tasks.is_empty() && queue.is_empty();
        if refill || stopping {
            refill = false;
            match bot.store.outbox_after(&bot.id, last_id, BATCH).await {
                Ok(rows) => {
                    for row in rows {
                        last_id = last_id.max(row.id);
                        queue.insert(row.id, row);
                    }
                }
                Err(e) => tracing::error!(bot = %bot.id, "cannot read the outbox: {e}"),
            }
        }
        if stopping && queue.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut wake_at = now + Duration::from_secs(30);
        {
            let mut heads = HashSet::new();
            for row in queue.values() {
                let key = chat_key(row);
                if !heads.insert(key.clone()) || in_flight.contains(&key) {
                    continue;
                }
                if tasks.len() >= MAX_IN_FLIGHT {
                    break;
                }
                if let Some(until) = blocked.get(&key).filter(|t| **t > now) {
                    wake_at = wake_at.min(*until);
                    continue;
                }
                if next_slot > now {
                    wake_at = wake_at.min(next_slot);
                    break;
                }
                next_slot = next_slot.max(now) + bot_interval;
                blocked.insert(key.clone(), now + chat_interval);
                let edit = progress.get(&key).copied();
                in_flight.insert(key);
                let (bot, row) = (bot.clone(), row.clone());
                tasks.spawn(async move {
                    let result = deliver(&bot, &row, edit).await;
                    // Out of the outbox before anyone hears it was sent.
                    if !matches!(result, Err(Failure::RetryAfter(_) | Failure::Transient(_)))
                        && let Err(e) = bot.store.outbox_delivered(row.id).await
                    {
                        tracing::error!(bot = %bot.id, "cannot remove a sent message from the outbox: {e}");
                    }
                    (row, result)
                });
            }
        }
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((row, result)) = done else { continue };
                let key = chat_key(&row);
                in_flight.remove(&key);
                match result {
                    Ok(message) => {
                        queue.remove(&row.id);
                        attempts.remove(&row.id);
                        match (row.kind.as_str(), message) {
                            ("progress", Some(id)) => { progress.insert(key.clone(), id); }
                            ("progress", None) => {}
                            _ => { progress.remove(&key); }
                        }
                        if !queue.values().any(|r| chat_key(r) == key) {
                            blocked.retain(|_, t| *t > Instant::now());
                        }
                    }
                    Err(Failure::RetryAfter(wait)) => {
                        tracing::info!(bot = %bot.id, chat = %key, "Telegram asked to wait {wait:?}");
                        blocked.insert(key, Instant::now() + wait);
                    }
                    Err(Failure::Transient(reason)) => {
                        let n = attempts.entry(row.id).or_insert(0);
                        *n += 1;
                        if *n >= MAX_ATTEMPTS {
                            give_up(&bot, &row, &format!("{reason} ({n} attempts)")).await;
                            queue.remove(&row.id);
                            attempts.remove(&row.id);
                        } else {
                            let wait = Duration::from_millis(500) * 2u32.pow((*n).min(7));
                            blocked.insert(key, Instant::now() + wait);
                        }
                    }
                    Err(Failure::Permanent(reason)) => {
                        queue.remove(&row.id);
                        attempts.remove(&row.id);
                        report_undeliverable(&bot, &row, &reason);
                    }
                }
                if queue.len() < BATCH as usize / 2 {
                    refill = true;
                }
            }
            _ = bot.wake_outbox.notified() => refill = true,
            _ = tokio::time::sleep_until(wake_at) => refill = queue.is_empty(),
            _ = shutdown.cancelled(), if !shutdown.is_cancelled() => {}
        }
    }
}

async fn give_up(bot: &TelegramBot, row: &OutboxRow, reason: &str) {
    if let Err(e) = bot.store.outbox_delivered(row.id).await {
        tracing::error!(bot = %bot.id, "cannot drop a message from the outbox: {e}");
    }
    report_undeliverable(bot, row, reason);
}

fn report_undeliverable(bot: &TelegramBot, row: &OutboxRow, reason: &str) {
    tracing::error!(bot = %bot.id, chat = %row.chat_id, "message not delivered: {reason}");
    bot.store.record(NewActivity {
        kind: "message.undeliverable".into(),
        actor: bot.id.clone(),
        summary: format!(
            "a message to chat {} was not delivered: {reason}",
            row.chat_id
        ),
        ..NewActivity::default()
    });
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
    let result = if row.kind == "text" {
        match send(format::to_html(&row.text), true).await {
            Err(RequestError::Api(ApiError::CantParseEntities(why))) => {
                tracing::info!(bot = %bot.id, "markup rejected ({why}); sending as plain text");
                send(row.text.clone(), false).await
            }
            other => other,
        }
    } else {
        send(row.text.clone(), false).await
    };
    match result {
        Ok(message) => Ok(Some(message.id)),
        Err(e) => Err(classify(bot, e)),
    }
}

/// Sends a kept file as a document; the kept copy goes once the row is settled either way.
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
    let mut request = bot
        .api
        .send_document(chat_id, InputFile::file(path.clone()).file_name(name));
    request.message_thread_id = thread;
    let result = request.await;
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
