//! Updates in: long polling with a watchdog, or a webhook; both store an update before it is
//! confirmed, then hand it to the core as an [`Inbound`] with a receipt.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use teloxide_core::prelude::*;
use teloxide_core::types::{AllowedUpdate, Update, UpdateKind};
use teloxide_core::{ApiError, RequestError};
use tokio_util::sync::CancellationToken;

use super::{TelegramBot, outbox};
use crate::channel::{Attachment, Health, Inbound, InboundTx, Receipt, durable};
use crate::domain::{ChatRef, now_millis};

/// The long-poll timeout asked of Telegram.
const POLL_SECS: u32 = 25;
/// A poller whose `getUpdates` has not returned for this long is stalled and restarted.
const STALLED_AFTER: Duration = Duration::from_secs(POLL_SECS as u64 + 45);
/// The longest wait between retries after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs a bot: the outbox sender, then the stored but unanswered updates, then polling (or,
/// with a webhook, waiting for what the admin listener receives) until shutdown.
pub async fn run(
    bot: Arc<TelegramBot>,
    inbound: InboundTx,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Partial replies a stopped process left in chats are taken back before anything else.
    match bot.store.retract_live_replies(&bot.id).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(bot = %bot.id, "taking back {n} unfinished partial replies"),
        Err(e) => tracing::error!(bot = %bot.id, "cannot look for unfinished partial replies: {e}"),
    }
    let sender = outbox::start(bot.clone());
    replay(&bot, &inbound).await;
    match &bot.config.webhook {
        Some(hook) => serve_webhook(&bot, hook, &inbound, &shutdown).await,
        None => supervise(bot.clone(), inbound.clone(), shutdown.clone()).await,
    }
    // The core stops once every sender of inbound messages is gone.
    drop(inbound);
    let _ = sender.await;
    Ok(())
}

/// Hands the updates a previous run stored but did not answer to the core, oldest first.
async fn replay(bot: &Arc<TelegramBot>, inbound: &InboundTx) {
    let pending = match bot.store.pending_updates(&bot.id).await {
        Ok(pending) => pending,
        Err(e) => {
            tracing::error!(bot = %bot.id, "cannot read stored updates: {e}");
            return;
        }
    };
    if !pending.is_empty() {
        tracing::info!(bot = %bot.id, count = pending.len(), "handling stored updates");
    }
    for update in pending {
        let payload = open_payload(bot, update.update_id, &update.payload);
        match payload.and_then(|p| serde_json::from_str::<Update>(&p).map_err(|e| e.to_string())) {
            Ok(parsed) => dispatch(bot, inbound, &parsed).await,
            Err(e) => {
                tracing::warn!(bot = %bot.id, update = update.update_id, "unreadable stored update: {e}");
                settle_ignored(bot, update.update_id).await;
            }
        }
    }
}

/// Runs the poller, restarting it when its `getUpdates` stalls.
async fn supervise(bot: Arc<TelegramBot>, inbound: InboundTx, shutdown: CancellationToken) {
    loop {
        bot.last_poll.store(now_millis(), Ordering::Relaxed);
        let mut poller = tokio::spawn(poll(bot.clone(), inbound.clone(), shutdown.clone()));
        loop {
            tokio::select! {
                _ = &mut poller => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            let quiet = now_millis() - bot.last_poll.load(Ordering::Relaxed);
            if quiet > STALLED_AFTER.as_millis() as i64 {
                tracing::warn!(bot = %bot.id, "getUpdates has not returned for {quiet} ms; restarting the poller");
                bot.store.record(crate::store::NewActivity {
                    kind: "channel.restarted".into(),
                    actor: bot.id.clone(),
                    summary: format!(
                        "the Telegram poller stalled for {} s and was restarted",
                        quiet / 1000
                    ),
                    ..Default::default()
                });
                poller.abort();
                let _ = poller.await;
                break;
            }
        }
    }
}

/// Long polling. The offset sent to Telegram only moves past updates that are stored.
async fn poll(bot: Arc<TelegramBot>, inbound: InboundTx, shutdown: CancellationToken) {
    let mut offset = bot.store.bot(&bot.id).await.map_or(0, |b| b.poll_offset);
    let mut failures = 0u32;
    loop {
        let request = bot
            .api
            .get_updates()
            .offset(offset as i32)
            .timeout(POLL_SECS)
            .allowed_updates([AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
        let result = tokio::select! {
            r = request.send() => r,
            _ = shutdown.cancelled() => return,
        };
        bot.last_poll.store(now_millis(), Ordering::Relaxed);
        let wait = match result {
            Ok(updates) => {
                failures = 0;
                bot.set_health(Health::Up);
                if updates.is_empty() {
                    continue;
                }
                match hand_on(&bot, &inbound, &updates).await {
                    Ok(next) => {
                        offset = next;
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(bot = %bot.id, "cannot store updates (they are fetched again): {e}");
                        Duration::from_secs(1)
                    }
                }
            }
            Err(RequestError::RetryAfter(after)) => after.duration(),
            Err(e) => {
                failures += 1;
                let reason = match &e {
                    RequestError::Api(ApiError::TerminatedByOtherGetUpdates) => {
                        "409 Conflict: another process is polling this bot token; stop it (only one poller may run)".to_string()
                    }
                    RequestError::Api(ApiError::CantGetUpdates) => {
                        "a webhook is set for this bot, so getUpdates is refused; use mode = \"webhook\" or delete the webhook".to_string()
                    }
                    RequestError::Api(ApiError::InvalidToken) => {
                        "the bot token was rejected (revoked in @BotFather?)".to_string()
                    }
                    other => bot.describe(other),
                };
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(bot = %bot.id, "getUpdates failed ({failures} in a row): {reason}");
                }
                bot.set_health(Health::Down(reason));
                backoff(failures)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Waits longer after each failure, up to a minute, with jitter.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(500) * 2u32.saturating_pow(failures.min(8));
    let base = base.min(MAX_BACKOFF);
    let jitter = rand::random::<f64>() * 0.25;
    base.mul_f64(1.0 + jitter)
}

/// Hands a polled batch to the core and returns the offset that confirms it, once it is stored.
/// It is stored in the commit of the core's first write for it (the person's message), not one
/// of its own before that, so the caller's next `getUpdates` is what waits for the commit.
async fn hand_on(
    bot: &TelegramBot,
    inbound: &InboundTx,
    updates: &[Update],
) -> anyhow::Result<i64> {
    let (rows, next) = rows(bot, updates)?;
    let stored = bot.store.queue_updates(&bot.id, rows, Some(next));
    // Telegram sends nothing below the offset it was given, and every update at or above it is
    // new to the store (the offset moves only past stored ones).
    let from = bot.handed_on.load(Ordering::Relaxed);
    for update in updates.iter().filter(|u| u.id.0 as i64 >= from) {
        dispatch(bot, inbound, update).await;
    }
    bot.handed_on.fetch_max(next, Ordering::Relaxed);
    stored.await?;
    Ok(next)
}

/// A batch as rows to store (sealed payloads) and the offset after it.
fn rows(bot: &TelegramBot, updates: &[Update]) -> anyhow::Result<(Vec<(i64, String)>, i64)> {
    let mut rows = Vec::with_capacity(updates.len());
    for u in updates {
        let json = serde_json::to_string(u)?;
        rows.push((u.id.0 as i64, seal_payload(bot, u.id.0 as i64, &json)));
    }
    let next = rows.iter().map(|(id, _)| id + 1).max().unwrap_or(0);
    Ok((rows, next))
}

fn seal_payload(bot: &TelegramBot, update_id: i64, json: &str) -> String {
    durable::seal(&bot.config.key, &bot.id, update_id, json)
}

fn open_payload(bot: &TelegramBot, update_id: i64, stored: &str) -> Result<String, String> {
    durable::open(&bot.config.key, &bot.id, update_id, stored)
}

/// Hands one stored update to the core, or settles it at once when it is nothing to answer.
async fn dispatch(bot: &TelegramBot, inbound: &InboundTx, update: &Update) {
    let me = Identity {
        channel: bot.id.clone(),
        user_id: bot.user_id,
        username: bot.username(),
    };
    // A button press waits for its answer (answerCallbackQuery) with the message's receipt.
    if let UpdateKind::CallbackQuery(query) = &update.kind {
        bot.callbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(update.id.0 as i64, query.id.0.clone());
    }
    match normalize(&me, update) {
        Some(mut message) => {
            fetch(bot, update.id.0 as i64, &mut message.attachments).await;
            if inbound.send(message).await.is_err() {
                tracing::debug!(bot = %bot.id, "the core stopped taking messages");
            }
        }
        None => settle_ignored(bot, update.id.0 as i64).await,
    }
}

async fn settle_ignored(bot: &TelegramBot, update_id: i64) {
    // A press of a button that means nothing here still gets its spinner stopped.
    let callback = bot
        .callbacks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&update_id);
    if let Some(id) = callback {
        let answer = bot
            .api
            .answer_callback_query(teloxide_core::types::CallbackQueryId(id));
        let _ = answer.await;
    }
    if let Err(e) = bot.store.settle_update(&bot.id, &[update_id], &[]).await {
        tracing::error!(bot = %bot.id, "cannot settle update {update_id}: {e}");
    }
}

/// A Telegram update as an [`Inbound`]: text (or a caption), who sent it, which chat and
/// topic, and whether it was addressed to this bot (direct message, @mention, reply to the bot,
/// or a command not meant for another bot). The mention itself is taken out of the text.
pub fn normalize(bot: &Identity, update: &Update) -> Option<Inbound> {
    if let UpdateKind::CallbackQuery(query) = &update.kind {
        return button_press(bot, update, query);
    }
    let UpdateKind::Message(msg) = &update.kind else {
        return None;
    };
    let from = msg.from.as_ref().filter(|u| !u.is_bot)?;
    let mut text = msg.text().or(msg.caption()).unwrap_or_default().to_string();
    let files = files_of(msg);
    if text.trim().is_empty() && files.is_empty() {
        return None;
    }
    let group = !msg.chat.is_private();
    let username = &bot.username;
    let mut addressed = !group;
    if !username.is_empty() {
        let handle = format!("@{}", username.to_ascii_lowercase());
        let lower = text.to_ascii_lowercase();
        if text.trim_start().starts_with('/') {
            // `/cmd@otherbot` is for another bot in this group.
            let head = lower.split_whitespace().next().unwrap_or_default();
            if let Some((_, to)) = head.split_once('@')
                && format!("@{to}") != handle
            {
                return None;
            }
            addressed = true;
        } else if let Some(at) = find_handle(&lower, &handle) {
            text = format!("{}{}", &text[..at], &text[at + handle.len()..])
                .trim()
                .to_string();
            addressed = true;
        }
    } else if text.trim_start().starts_with('/') {
        addressed = true;
    }
    if msg
        .reply_to_message()
        .and_then(|r| r.from.as_ref())
        .is_some_and(|u| u.id.0 == bot.user_id)
    {
        addressed = true;
    }
    let thread_id = match msg.thread_id {
        Some(thread) if msg.is_topic_message => thread.0.0.to_string(),
        _ => String::new(),
    };
    Some(Inbound {
        chat: ChatRef {
            channel: bot.channel.clone(),
            chat_id: msg.chat.id.0.to_string(),
            thread_id,
        },
        sender_id: from.id.0.to_string(),
        sender_name: from.full_name(),
        text,
        group,
        addressed,
        receipt: Some(Receipt(update.id.0 as i64)),
        message_id: Some(msg.id.0.to_string()),
        space: String::new(),
        attachments: files
            .into_iter()
            .map(|(id, name, size, voice)| Attachment {
                name,
                size,
                local: None,
                problem: Some(format!("telegram-file:{id}")),
                voice,
            })
            .collect(),
    })
}

/// A press of an Approve / Deny button (callback data `approve:<id>` / `deny:<id>`) as the
/// command it stands for, from the person who pressed it.
fn button_press(
    bot: &Identity,
    update: &Update,
    query: &teloxide_core::types::CallbackQuery,
) -> Option<Inbound> {
    let data = query.data.as_deref().unwrap_or_default();
    let (verb, code) = data.split_once(':')?;
    if !matches!(verb, "approve" | "deny") || query.from.is_bot {
        return None;
    }
    let message = query.message.as_ref()?;
    let chat = message.chat();
    Some(Inbound {
        chat: ChatRef {
            channel: bot.channel.clone(),
            chat_id: chat.id.0.to_string(),
            thread_id: String::new(),
        },
        sender_id: query.from.id.0.to_string(),
        sender_name: query.from.full_name(),
        text: format!("/{verb} {code}"),
        group: !chat.is_private(),
        addressed: true,
        receipt: Some(Receipt(update.id.0 as i64)),
        message_id: None,
        space: String::new(),
        attachments: Vec::new(),
    })
}

/// The document or the largest photo of a message: (file id, name, size).
/// The files a message carries: (file id, name, size, whether it is a voice note or audio).
fn files_of(msg: &teloxide_core::types::Message) -> Vec<(String, String, u64, bool)> {
    let mut files = Vec::new();
    if let Some(doc) = msg.document() {
        let name = doc
            .file_name
            .clone()
            .unwrap_or_else(|| format!("document-{}", msg.id.0));
        files.push((doc.file.id.0.clone(), name, doc.file.size as u64, false));
    }
    if let Some(photo) = msg
        .photo()
        .and_then(|sizes| sizes.iter().max_by_key(|p| p.file.size))
    {
        files.push((
            photo.file.id.0.clone(),
            format!("photo-{}.jpg", msg.id.0),
            photo.file.size as u64,
            false,
        ));
    }
    if let Some(voice) = msg.voice() {
        let name = format!("voice-{}.ogg", msg.id.0);
        files.push((voice.file.id.0.clone(), name, voice.file.size as u64, true));
    }
    if let Some(audio) = msg.audio() {
        let name = audio
            .file_name
            .clone()
            .unwrap_or_else(|| format!("audio-{}.mp3", msg.id.0));
        files.push((audio.file.id.0.clone(), name, audio.file.size as u64, true));
    }
    files
}

/// Downloads the files a message carries (each up to the size limit) into the bot's files
/// directory. Before this, an attachment's `problem` holds its Telegram file id.
async fn fetch(bot: &TelegramBot, update_id: i64, attachments: &mut [Attachment]) {
    use teloxide_core::net::Download;
    let dir = bot.config.files_dir.clone();
    durable::fetch_files(
        attachments,
        "telegram-file",
        &dir,
        update_id,
        |id, path| async move {
            let file = bot
                .api
                .get_file(teloxide_core::types::FileId(id))
                .await
                .map_err(|e| bot.describe(&e))?;
            let mut out = tokio::fs::File::create(&path)
                .await
                .map_err(|e| e.to_string())?;
            bot.api
                .download_file(&file.path, &mut out)
                .await
                .map_err(|e| e.to_string().replace(&bot.token, "[token]"))
        },
    )
    .await;
}

/// Who a bot is, for reading its updates.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `telegram:<user id>`.
    pub channel: String,
    pub user_id: u64,
    pub username: String,
}

/// Reads one update as Telegram sends it (JSON) into what the core sees; `Ok(None)` for an
/// update that is not a message for the bot. Used by the fuzz tests.
pub fn read_update(bot: &Identity, json: &str) -> Result<Option<Inbound>, String> {
    let update: Update = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(normalize(bot, &update))
}

/// Where `@handle` appears in `lower` as a whole word.
fn find_handle(lower: &str, handle: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = lower[from..].find(handle) {
        let at = from + i;
        let end = at + handle.len();
        let word_end = lower[end..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        if word_end {
            return Some(at);
        }
        from = end;
    }
    None
}

/// A webhook's settings: the public URL Telegram calls and the secret it must present.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub base_url: String,
    pub secret: String,
}

/// A bot taking webhook deliveries: the bot, where its messages go, and its secret.
type Registered = (Arc<TelegramBot>, InboundTx, String);

/// Webhook deliveries from the admin listener, by bot user id.
#[derive(Clone, Default)]
pub struct WebhookIntake {
    bots: Arc<RwLock<HashMap<u64, Registered>>>,
}

/// What the admin listener answers Telegram.
#[derive(Debug, PartialEq, Eq)]
pub enum Intake {
    Accepted,
    /// No bot with this id takes webhooks here.
    UnknownBot,
    /// The secret token header is missing or wrong.
    Forbidden,
    BadRequest(String),
    /// Not stored (Telegram retries).
    Unavailable(String),
}

impl WebhookIntake {
    /// Takes one update: checks the secret, stores it (a repeat is ignored), hands it on.
    pub async fn receive(&self, bot_id: u64, secret: Option<&str>, body: &[u8]) -> Intake {
        let entry = {
            let bots = self.bots.read().unwrap_or_else(|e| e.into_inner());
            bots.get(&bot_id).cloned()
        };
        let Some((bot, inbound, expected)) = entry else {
            return Intake::UnknownBot;
        };
        let ok = secret.is_some_and(|s| {
            use subtle_eq::eq;
            eq(s.as_bytes(), expected.as_bytes())
        });
        if !ok {
            return Intake::Forbidden;
        }
        let update: Update = match serde_json::from_slice(body) {
            Ok(update) => update,
            Err(e) => return Intake::BadRequest(format!("not a Telegram update: {e}")),
        };
        // Telegram may deliver an update twice: the store says whether it is new.
        let stored = match rows(&bot, std::slice::from_ref(&update)) {
            Ok((rows, next)) => bot.store.store_updates(&bot.id, &rows, Some(next)).await,
            Err(e) => return Intake::Unavailable(e.to_string()),
        };
        let fresh = match stored {
            Ok(fresh) => fresh,
            Err(e) => return Intake::Unavailable(e.to_string()),
        };
        if !fresh.is_empty() {
            dispatch(&bot, &inbound, &update).await;
        }
        Intake::Accepted
    }

    fn add(&self, bot: Arc<TelegramBot>, inbound: InboundTx, secret: String) {
        let mut bots = self.bots.write().unwrap_or_else(|e| e.into_inner());
        bots.insert(bot.user_id, (bot, inbound, secret));
    }

    fn remove(&self, bot_id: u64) {
        let mut bots = self.bots.write().unwrap_or_else(|e| e.into_inner());
        bots.remove(&bot_id);
    }
}

mod subtle_eq {
    /// Compares without stopping at the first difference.
    pub fn eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Registers the webhook with Telegram and takes deliveries until shutdown.
async fn serve_webhook(
    bot: &Arc<TelegramBot>,
    hook: &Webhook,
    inbound: &InboundTx,
    shutdown: &CancellationToken,
) {
    let Some(intake) = bot.config.intake.clone() else {
        tracing::error!(bot = %bot.id, "webhook mode without an intake on the admin listener");
        return;
    };
    intake.add(bot.clone(), inbound.clone(), hook.secret.clone());
    let url = format!(
        "{}/telegram/{}",
        hook.base_url.trim_end_matches('/'),
        bot.user_id
    );
    let mut failures = 0;
    loop {
        let parsed = match reqwest::Url::parse(&url) {
            Ok(url) => url,
            Err(e) => {
                bot.set_health(Health::Down(format!("webhook URL {url}: {e}")));
                break;
            }
        };
        let request = bot
            .api
            .set_webhook(parsed)
            .secret_token(hook.secret.clone())
            .allowed_updates([AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
        match request.send().await {
            Ok(_) => {
                bot.set_health(Health::Up);
                break;
            }
            Err(e) => {
                failures += 1;
                let reason = format!("setWebhook failed: {}", bot.describe(&e));
                tracing::warn!(bot = %bot.id, "{reason}");
                bot.set_health(Health::Down(reason));
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures)) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
    shutdown.cancelled().await;
    intake.remove(bot.user_id);
}
