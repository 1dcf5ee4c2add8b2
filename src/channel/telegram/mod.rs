//! Telegram bots through teloxide's Bot API client (rustls).
//!
//! Inbound: long polling (or a webhook on the admin listener) stores every update, deduplicated
//! by update id, before Telegram is told it arrived (the next `getUpdates` offset), so a crash
//! loses nothing; an update stays `new` until the router answers its receipt, and is handled
//! again after a crash until then. Outbound: answers go to a durable outbox in the same
//! transaction that settles the update, and a sender per bot delivers it in order per chat,
//! split to 4096 UTF-16 units, as HTML with a plain-text fallback, within Telegram's rate
//! limits, honouring `retry_after`.

mod format;
mod inbound;
mod live;
mod outbox;

use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use teloxide_core::prelude::*;
use teloxide_core::types::{BotCommand, ChatAction, ChatId, MessageId, ThreadId};
use teloxide_core::{ApiError, RequestError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Capabilities, Channel, ChannelError, Health, InboundTx, Outbound, Receipt, durable};
use crate::agent::llm::BoxFuture;
use crate::domain::ChatRef;
use crate::secrets::{MasterKey, Redactor};
use crate::store::{NewOutbox, Store};

pub use format::{MAX_MESSAGE_UNITS, escape, split as split_message, to_html};
pub use inbound::{Identity, Intake, Webhook, WebhookIntake, read_update};

/// How often "typing…" is renewed while an agent works (Telegram shows it for 5 seconds).
const TYPING_EVERY: Duration = Duration::from_secs(4);
/// Replies go as HTML; notices and failures as plain text.
const ROWS: durable::RowStyle = durable::RowStyle {
    split: format::split,
    reply: "text",
    notice: "plain",
};

/// What a bot is set up with. (No `Debug`: it holds the token.)
#[derive(Clone)]
pub struct BotConfig {
    pub token: String,
    pub api_url: String,
    pub default_agent: String,
    /// The secret holding the token (bots added at runtime); `None` for the config file's.
    pub token_secret: Option<String>,
    pub messages_per_second: f64,
    pub chat_messages_per_second: f64,
    /// The command menu: (command without slash, description).
    pub commands: Vec<(String, String)>,
    /// Take updates through a webhook instead of polling.
    pub webhook: Option<Webhook>,
    /// Where the admin listener hands webhook deliveries.
    pub intake: Option<WebhookIntake>,
    /// Where files in transit are kept (uploads being handed on, files waiting to be sent).
    pub files_dir: PathBuf,
    /// Seals stored updates: they may carry secret values (`/secret NAME VALUE`).
    pub key: Arc<MasterKey>,
    /// How a reply shows while the model writes it.
    pub streaming: crate::config::Streaming,
}

#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error("the Telegram bot token is malformed: it looks like 123456789:AA… (from @BotFather)")]
    MalformedToken,
    #[error("the Telegram bot token was rejected by {api}: {detail}")]
    BadToken { api: String, detail: String },
    #[error("cannot reach the Telegram Bot API at {api}: {detail}")]
    Unreachable { api: String, detail: String },
    #[error("{0}")]
    Other(String),
}

/// One connected bot: a channel with id `telegram:<bot user id>`.
pub struct TelegramBot {
    id: String,
    user_id: u64,
    username: Mutex<String>,
    api: Bot,
    token: String,
    api_url: String,
    store: Store,
    config: BotConfig,
    wake_outbox: Arc<Notify>,
    typing: durable::Typing,
    health: Mutex<Health>,
    /// When `getUpdates` last returned (ms since the epoch); the poller's watchdog reads it.
    last_poll: AtomicI64,
    /// Updates below this id were handed to the core by this process's poller: a poller
    /// restarted while its last batch was still being stored does not hand them on twice.
    handed_on: AtomicI64,
    /// Stops the outbox sender. Separate from the channel's shutdown, so answers of turns
    /// that finish while the daemon drains still go out.
    outbox_stop: CancellationToken,
    /// Replies shown while they are written.
    live: crate::channel::live::Live<live::TelegramSurface>,
    /// Button presses waiting for their answer: receipt (update id) -> callback query id.
    callbacks: Mutex<std::collections::HashMap<i64, String>>,
}

impl TelegramBot {
    /// Checks the token with `getMe`, records the bot, and registers its command menu in the
    /// background when it changed. A rejected token is an error; an unreachable API is too (the caller decides
    /// whether to go on with [`TelegramBot::offline`]).
    pub async fn connect(store: Store, config: BotConfig) -> Result<Arc<Self>, TelegramError> {
        let bot = Arc::new(Self::offline(store, config)?);
        let me = bot.api.get_me().await.map_err(|e| bot.connect_error(e))?;
        let username = me.user.username.clone().unwrap_or_default();
        *bot.username.lock().unwrap_or_else(|e| e.into_inner()) = username.clone();
        bot.store
            .upsert_bot(
                &bot.id,
                "telegram",
                &username,
                &bot.config.default_agent,
                bot.config.token_secret.as_deref(),
            )
            .await
            .map_err(|e| TelegramError::Other(e.to_string()))?;
        // Polling starts without waiting for the command menu (a read and maybe a request).
        let menu = bot.clone();
        tokio::spawn(async move { menu.register_commands().await });
        Ok(bot)
    }

    /// A bot whose API has not answered yet: its id comes from the token, its name from the
    /// last time it was seen.
    pub fn offline(store: Store, config: BotConfig) -> Result<Self, TelegramError> {
        let user_id = bot_id_of(&config.token).ok_or(TelegramError::MalformedToken)?;
        let url = reqwest::Url::parse(&config.api_url)
            .map_err(|e| TelegramError::Other(format!("[telegram] api_url: {e}")))?;
        Redactor::global().set(&format!("telegram bot {user_id} token"), &config.token);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| TelegramError::Other(format!("HTTP client: {e}")))?;
        let api = Bot::with_client(config.token.clone(), client).set_api_url(url);
        let id = format!("telegram:{user_id}");
        let surface = live::surface(
            &id,
            api.clone(),
            &config.api_url,
            &config.token,
            store.clone(),
            config.streaming,
        );
        Ok(Self {
            live: crate::channel::live::Live::new(surface),
            callbacks: Mutex::new(std::collections::HashMap::new()),
            id,
            user_id,
            username: Mutex::new(String::new()),
            api,
            token: config.token.clone(),
            api_url: config.api_url.clone(),
            store,
            config,
            wake_outbox: Arc::new(Notify::new()),
            typing: durable::Typing::default(),
            health: Mutex::new(Health::Down("not connected yet".into())),
            last_poll: AtomicI64::new(0),
            handed_on: AtomicI64::new(0),
            outbox_stop: CancellationToken::new(),
        })
    }

    /// Records the bot while its API cannot be reached, keeping what was known of it.
    pub async fn remember(&self) -> Result<(), TelegramError> {
        let known = self.store.bot(&self.id).await.ok();
        let username = known.map(|b| b.username).unwrap_or_default();
        *self.username.lock().unwrap_or_else(|e| e.into_inner()) = username.clone();
        self.store
            .upsert_bot(
                &self.id,
                "telegram",
                &username,
                &self.config.default_agent,
                self.config.token_secret.as_deref(),
            )
            .await
            .map(|_| ())
            .map_err(|e| TelegramError::Other(e.to_string()))
    }

    /// Cancel to stop delivering the outbox (after the turns have drained).
    pub fn outbox_stop(&self) -> CancellationToken {
        self.outbox_stop.clone()
    }

    pub fn username(&self) -> String {
        self.username
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn connect_error(&self, e: RequestError) -> TelegramError {
        let detail = self.describe(&e);
        match e {
            RequestError::Api(ApiError::InvalidToken) => TelegramError::BadToken {
                api: self.api_url.clone(),
                detail,
            },
            RequestError::Network(_) | RequestError::Io(_) => TelegramError::Unreachable {
                api: self.api_url.clone(),
                detail,
            },
            _ => TelegramError::Other(format!("getMe failed: {detail}")),
        }
    }

    /// An error's text without the token (reqwest puts the request URL, token and all, in it).
    fn describe(&self, e: &RequestError) -> String {
        let text = match e {
            RequestError::Network(inner) => {
                let mut text = inner.to_string();
                let mut source = std::error::Error::source(inner.as_ref());
                while let Some(s) = source {
                    text.push_str(&format!(": {s}"));
                    source = s.source();
                }
                text
            }
            other => other.to_string(),
        };
        text.replace(&self.token, "[token]")
    }

    /// Sets the command menu, only when it differs from the one last registered.
    async fn register_commands(&self) {
        let commands: Vec<BotCommand> = self
            .config
            .commands
            .iter()
            .map(|(c, d)| BotCommand::new(c, d))
            .collect();
        let hash = {
            use sha2::Digest;
            let json = serde_json::to_string(&commands).unwrap_or_default();
            hex::encode(sha2::Sha256::digest(json.as_bytes()))
        };
        let known = self.store.bot(&self.id).await.map(|b| b.commands_hash);
        if known.as_deref().is_ok_and(|h| *h == hash) {
            return;
        }
        match self.api.set_my_commands(commands).await {
            Ok(_) => {
                if let Err(e) = self.store.set_bot_commands_hash(&self.id, &hash).await {
                    tracing::warn!(bot = %self.id, "cannot record the command menu: {e}");
                }
            }
            Err(e) => tracing::warn!(bot = %self.id, "setMyCommands failed: {}", self.describe(&e)),
        }
    }

    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(|e| e.into_inner()) = health;
    }

    /// Shows "typing…" in the chat until it is answered (or for at most a few minutes).
    fn start_typing(&self, chat: &ChatRef) {
        let Some((chat_id, thread)) = target(chat) else {
            return;
        };
        let api = self.api.clone();
        self.typing.start(chat, TYPING_EVERY, move || {
            let mut request = api.send_chat_action(chat_id, ChatAction::Typing);
            request.message_thread_id = thread;
            async move {
                let _ = request.send().await;
            }
        });
    }

    async fn queue(
        &self,
        chat: &ChatRef,
        parts: Vec<Outbound>,
        receipts: &[Receipt],
    ) -> Result<(), ChannelError> {
        let ends = durable::ends_wait(&parts);
        let ends_turn = parts.iter().any(Outbound::ends_turn);
        let mut rows = durable::rows(chat, parts, &ROWS, &self.config.files_dir)?;
        self.answer_presses(chat, receipts, &mut rows);
        // The reply shown while it was written becomes the answer (or goes, if none came).
        let live = self
            .live
            .settle(chat, ends_turn, &mut rows, ROWS.reply)
            .await;
        let queued = durable::queue(
            &self.store,
            &self.id,
            &rows,
            receipts,
            live.then_some(chat),
            &self.wake_outbox,
        )
        .await;
        if ends || !receipts.is_empty() {
            self.typing.stop(chat);
        }
        queued
    }
}

impl TelegramBot {
    /// The answer to a button press is a short notice on the button (answerCallbackQuery),
    /// not a message in the chat; a press nobody answered (a stranger's) is told no.
    fn answer_presses(&self, chat: &ChatRef, receipts: &[Receipt], rows: &mut Vec<NewOutbox>) {
        let presses: Vec<String> = {
            let mut callbacks = self.callbacks.lock().unwrap_or_else(|e| e.into_inner());
            receipts
                .iter()
                .filter_map(|r| callbacks.remove(&r.0))
                .collect()
        };
        if presses.is_empty() {
            return;
        }
        let text = durable::press_answer(rows, |row| matches!(row.kind, "plain" | "text"));
        for id in presses {
            rows.push(NewOutbox {
                chat_id: chat.chat_id.clone(),
                thread_id: chat.thread_id.clone(),
                kind: "callback",
                text: serde_json::json!({ "id": id, "text": text }).to_string(),
            });
        }
    }
}

/// Checks a token with `getMe` without recording anything (for `operator check`); returns
/// the bot's `@username`.
pub async fn probe(token: &str, api_url: &str) -> Result<String, TelegramError> {
    let user_id = bot_id_of(token).ok_or(TelegramError::MalformedToken)?;
    let url = reqwest::Url::parse(api_url)
        .map_err(|e| TelegramError::Other(format!("[telegram] api_url: {e}")))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| TelegramError::Other(format!("HTTP client: {e}")))?;
    let api = Bot::with_client(token, client).set_api_url(url);
    let clean = |e: &RequestError| e.to_string().replace(token, "[token]");
    match api.get_me().await {
        Ok(me) => Ok(format!(
            "@{} (bot {user_id})",
            me.user.username.unwrap_or_default()
        )),
        Err(e @ RequestError::Api(ApiError::InvalidToken)) => Err(TelegramError::BadToken {
            api: api_url.to_string(),
            detail: clean(&e),
        }),
        Err(e) => Err(TelegramError::Unreachable {
            api: api_url.to_string(),
            detail: clean(&e),
        }),
    }
}

/// The chat and topic a chat reference points at.
fn target(chat: &ChatRef) -> Option<(ChatId, Option<ThreadId>)> {
    let chat_id = ChatId(chat.chat_id.parse().ok()?);
    let thread = match chat.thread_id.as_str() {
        "" => None,
        t => Some(ThreadId(MessageId(t.parse().ok()?))),
    };
    Some((chat_id, thread))
}

/// The bot's user id: the part of the token before the colon.
pub fn bot_id_of(token: &str) -> Option<u64> {
    let (id, secret) = token.split_once(':')?;
    if secret.is_empty() || secret.contains(char::is_whitespace) {
        return None;
    }
    id.parse().ok()
}

impl Channel for TelegramBot {
    fn id(&self) -> &str {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        // Telegram counts UTF-16 units; the bot splits its messages itself.
        Capabilities {
            max_message_chars: 0,
            can_edit: true,
            answers_are_stored: true,
        }
    }

    fn run(
        self: Arc<Self>,
        inbound: InboundTx,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move { inbound::run(self, inbound, shutdown).await })
    }

    fn send<'a>(
        &'a self,
        chat: &'a ChatRef,
        message: Outbound,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            match message {
                Outbound::Typing => self.start_typing(chat),
                Outbound::Partial(text) => {
                    if self.config.streaming != crate::config::Streaming::Off {
                        self.live.update(chat, text);
                    }
                }
                message => return self.queue(chat, vec![message], &[]).await,
            }
            Ok(())
        })
    }

    fn answer<'a>(
        &'a self,
        chat: &'a ChatRef,
        receipts: &'a [Receipt],
        parts: Vec<Outbound>,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move { self.queue(chat, parts, receipts).await })
    }

    fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_ids_come_from_tokens() {
        assert_eq!(bot_id_of("123456:ABC-def"), Some(123456));
        assert_eq!(bot_id_of("123456"), None);
        assert_eq!(bot_id_of("abc:def"), None);
        assert_eq!(bot_id_of("1:"), None);
    }
}
