//! Discord bots through serenity 0.12 over the gateway (rustls).
//!
//! Inbound: each `MESSAGE_CREATE` is stored (deduplicated by message id, sealed with the master
//! key) before it is handed to the core with a receipt, so a resumed gateway that replays an
//! event, or a restart, never answers a message twice. Outbound: the shared outbox (see
//! [`crate::channel::outbox`]) with this module's [`courier`]: 2,000-character chunks with code
//! blocks balanced, empty `allowed_mentions` (an agent can never ping @everyone or a role),
//! embeds suppressed, typing while an agent works, progress edited in place.

mod buttons;
mod commands;
mod courier;
mod gateway;
mod live;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serenity::http::{Http, HttpBuilder};
use serenity::model::id::ChannelId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Capabilities, Channel, ChannelError, Health, InboundTx, Outbound, Receipt, durable};
use crate::agent::llm::BoxFuture;
use crate::domain::ChatRef;
use crate::secrets::{MasterKey, Redactor};
use crate::store::{NewOutbox, Store};

pub use gateway::{Identity, read_message};

/// Discord's message length limit, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;
/// The default REST base; anything else is a proxy (or a test server).
pub const DEFAULT_API_URL: &str = "https://discord.com";
/// How often typing is renewed while an agent works (Discord shows it for 10 seconds).
const TYPING_EVERY: Duration = Duration::from_secs(8);
/// Every kind of text is a plain message, in balanced chunks.
const ROWS: durable::RowStyle = durable::RowStyle {
    split,
    reply: "text",
    notice: "text",
};

fn split(text: &str) -> Vec<String> {
    super::split_fenced(text, MAX_MESSAGE_CHARS, |_| 1)
}

/// What a bot is set up with. (No `Debug`: it holds the token.)
#[derive(Clone)]
pub struct BotConfig {
    pub token: String,
    pub api_url: String,
    pub default_agent: String,
    pub token_secret: Option<String>,
    pub messages_per_second: f64,
    pub chat_messages_per_second: f64,
    pub files_dir: PathBuf,
    pub key: Arc<MasterKey>,
    /// Guilds to register slash commands in (instant); empty: globally.
    pub guild_ids: Vec<u64>,
    /// How a reply shows while the model writes it.
    pub streaming: crate::config::Streaming,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("the Discord bot token was rejected by {api}: {detail}")]
    BadToken { api: String, detail: String },
    #[error("cannot reach Discord at {api}: {detail}")]
    Unreachable { api: String, detail: String },
    #[error("{0}")]
    Other(String),
}

/// One connected bot: a channel with id `discord:<bot user id>`.
pub struct DiscordBot {
    id: String,
    user_id: u64,
    username: String,
    http: Arc<Http>,
    store: Store,
    config: BotConfig,
    wake_outbox: Arc<Notify>,
    outbox_stop: CancellationToken,
    typing: durable::Typing,
    health: Mutex<Health>,
    /// Interactions waiting for their answer: receipt -> (application id, token).
    interactions: Mutex<HashMap<i64, (u64, String)>>,
    /// Replies shown while they are written.
    live: crate::channel::live::Live<live::DiscordSurface>,
    /// Button presses waiting for their answer: receipt -> (application id, token).
    presses: Mutex<HashMap<i64, (u64, String)>>,
}

impl DiscordBot {
    /// Checks the token (`GET /users/@me`) and records the bot. A rejected token is an error.
    pub async fn connect(store: Store, config: BotConfig) -> Result<Arc<Self>, DiscordError> {
        Redactor::global().set("discord bot token", &config.token);
        let http = Arc::new(http_for(&config));
        let me = current_user(&http, &config).await?;
        let id = format!("discord:{}", me.id.get());
        store
            .upsert_bot(
                &id,
                "discord",
                &me.name,
                &config.default_agent,
                config.token_secret.as_deref(),
            )
            .await
            .map_err(|e| DiscordError::Other(e.to_string()))?;
        let surface = Arc::new(live::DiscordSurface {
            channel: id.clone(),
            http: http.clone(),
            store: store.clone(),
        });
        Ok(Arc::new(Self {
            live: crate::channel::live::Live::new(surface),
            presses: Mutex::new(HashMap::new()),
            id,
            user_id: me.id.get(),
            username: me.name.clone(),
            http,
            store,
            config,
            wake_outbox: Arc::new(Notify::new()),
            outbox_stop: CancellationToken::new(),
            typing: durable::Typing::default(),
            health: Mutex::new(Health::Down("the gateway is not connected yet".into())),
            interactions: Mutex::new(HashMap::new()),
        }))
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// Cancel to stop delivering the outbox (after the turns have drained).
    pub fn outbox_stop(&self) -> CancellationToken {
        self.outbox_stop.clone()
    }

    fn set_health(&self, health: Health) {
        *self.health.lock().unwrap_or_else(|e| e.into_inner()) = health;
    }

    fn start_typing(&self, chat: &ChatRef) {
        let Ok(channel) = chat.chat_id.parse::<u64>() else {
            return;
        };
        let http = self.http.clone();
        self.typing.start(chat, TYPING_EVERY, move || {
            let http = http.clone();
            async move {
                let _ = ChannelId::new(channel).broadcast_typing(&http).await;
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
        // The answer to a slash command edits its deferred response, then follows up. When one
        // answer covers several slash commands, the first carries it and the others say so.
        let mut interactions: Vec<(u64, String)> = {
            let mut waiting = self.interactions.lock().unwrap_or_else(|e| e.into_inner());
            receipts
                .iter()
                .filter_map(|r| waiting.remove(&r.0))
                .collect()
        };
        let others = interactions.split_off(interactions.len().min(1));
        for (app, token) in others {
            rows.push(NewOutbox {
                chat_id: chat.chat_id.clone(),
                thread_id: chat.thread_id.clone(),
                kind: "interaction",
                text: serde_json::json!({
                    "app": app, "token": token, "first": true,
                    "content": "Answered together with the other messages here."
                })
                .to_string(),
            });
        }
        if let Some((app, token)) = interactions.pop() {
            let mut first = true;
            for row in rows.iter_mut().filter(|r| r.kind == "text") {
                row.kind = "interaction";
                row.text = serde_json::json!({
                    "app": app, "token": token, "first": first, "content": row.text
                })
                .to_string();
                first = false;
            }
            if first {
                // Nothing to say (a command with no answer): the deferred response still ends.
                rows.push(NewOutbox {
                    chat_id: chat.chat_id.clone(),
                    thread_id: chat.thread_id.clone(),
                    kind: "interaction",
                    text: serde_json::json!({
                        "app": app, "token": token, "first": true, "content": "Done."
                    })
                    .to_string(),
                });
            }
        }
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

/// The bot's own user: `GET /users/@me`, which tells a rejected token from an unreachable API.
async fn current_user(
    http: &Http,
    config: &BotConfig,
) -> Result<serenity::model::user::CurrentUser, DiscordError> {
    http.get_current_user().await.map_err(|e| {
        let detail = e.to_string().replace(&config.token, "[token]");
        match &e {
            serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r))
                if r.status_code.as_u16() == 401 =>
            {
                DiscordError::BadToken {
                    api: config.api_url.clone(),
                    detail,
                }
            }
            serenity::Error::Http(serenity::http::HttpError::Request(_)) => {
                DiscordError::Unreachable {
                    api: config.api_url.clone(),
                    detail,
                }
            }
            _ => DiscordError::Other(format!("checking the Discord token: {detail}")),
        }
    })
}

/// Checks a token without recording anything (for `operator check`); returns the bot's name.
pub async fn probe(token: &str, api_url: &str) -> Result<String, DiscordError> {
    let config = BotConfig {
        token: token.to_string(),
        api_url: api_url.to_string(),
        default_agent: String::new(),
        token_secret: None,
        messages_per_second: 1.0,
        chat_messages_per_second: 1.0,
        files_dir: PathBuf::new(),
        key: Arc::new(MasterKey::generate()),
        guild_ids: Vec::new(),
        streaming: crate::config::Streaming::Off,
    };
    let me = current_user(&http_for(&config), &config).await?;
    Ok(format!("{} (bot {})", me.name, me.id.get()))
}

/// A REST client for the bot: through `api_url` when it is not Discord itself (serenity's own
/// limiter ignores a proxy, so it is off there and the outbox paces the bot).
fn http_for(config: &BotConfig) -> Http {
    let mut builder = HttpBuilder::new(&config.token);
    if config.api_url.trim_end_matches('/') != DEFAULT_API_URL {
        builder = builder
            .proxy(config.api_url.trim_end_matches('/'))
            .ratelimiter_disabled(true);
    }
    builder.build()
}

impl Channel for DiscordBot {
    fn id(&self) -> &str {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        // The bot splits its messages itself, keeping code blocks balanced.
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
        Box::pin(async move { gateway::run(self, inbound, shutdown).await })
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
