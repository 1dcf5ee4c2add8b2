//! Starting the Telegram bots: the one in `[telegram]`, with its access rules and command menu.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Core;
use crate::agent::llm::BoxFuture;
use crate::channel::telegram::{BotConfig, TelegramBot, TelegramError, Webhook, WebhookIntake};
use crate::channel::{Channel, Health, InboundTx};
use crate::config::{Settings, TelegramMode};
use crate::domain::{OPERATOR, SESSION_COMMANDS};
use crate::ops::BotConnector;
use crate::ops::SPECS;
use crate::router::AccessRules;

/// The chat commands in the bot's menu, in this order.
const MENU: [&str; 12] = [
    "start",
    "help",
    "agents",
    "use",
    "new",
    "status",
    "stop",
    "export",
    "backup",
    "instances",
    "pair",
    "secret",
];

/// A running bot: its channel, its task, and the tokens that stop it.
struct RunningBot {
    bot: Arc<TelegramBot>,
    task: JoinHandle<anyhow::Result<()>>,
    /// Stops its inbound side.
    stop: CancellationToken,
    /// Stops its outbox sender, once the turns have drained.
    finish: CancellationToken,
}

/// The menu: each command with its description, cut to Telegram's 256 characters.
pub fn command_menu() -> Vec<(String, String)> {
    MENU.iter()
        .filter_map(|name| {
            let session = SESSION_COMMANDS.iter().find(|c| c.name == *name);
            let op = SPECS.iter().find(|s| s.command == Some(*name));
            let description = session
                .map(|c| c.description)
                .or(op.map(|s| s.description))?;
            let description: String = description.split_whitespace().collect::<Vec<_>>().join(" ");
            Some((name.to_string(), description.chars().take(256).collect()))
        })
        .collect()
}

/// The daemon's Telegram bots: the one in `[telegram]` and those connected at runtime (their
/// tokens in secrets), each started without a restart.
pub struct TelegramBots {
    core: Core,
    /// Everything but the token and the default agent.
    template: BotConfig,
    inbound: InboundTx,
    stop: CancellationToken,
    running: Mutex<HashMap<String, RunningBot>>,
}

impl TelegramBots {
    /// Sets the Telegram access rules and starts the bots. A rejected or malformed token in
    /// `[telegram]` stops the daemon with a clear error; an unreachable Bot API does not (the
    /// poller keeps trying and reports it). A runtime bot that cannot start is logged.
    pub async fn start(
        settings: &Settings,
        core: &Core,
        intake: &WebhookIntake,
        inbound: InboundTx,
        stop: &CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let t = &settings.telegram;
        core.router.set_access(
            "telegram",
            AccessRules {
                owners: t.owners.iter().map(u64::to_string).collect(),
                dm: t.dm_policy,
                group: t.group_policy,
                require_mention: t.require_mention,
                allow_users: t.allow_users.iter().map(u64::to_string).collect(),
                allow_groups: t.allow_groups.iter().map(i64::to_string).collect(),
                allow_spaces: Vec::new(),
            },
        );
        let webhook = match t.mode {
            TelegramMode::Polling => None,
            TelegramMode::Webhook => Some(Webhook {
                base_url: t.webhook_url.clone(),
                secret: webhook_secret(settings, core).await?,
            }),
        };
        let template = BotConfig {
            token: String::new(),
            api_url: t.api_url.clone(),
            default_agent: OPERATOR.to_string(),
            token_secret: None,
            messages_per_second: t.messages_per_second,
            chat_messages_per_second: t.chat_messages_per_second,
            commands: command_menu(),
            webhook,
            intake: Some(intake.clone()),
            files_dir: settings.state_dir().join("files").join("telegram"),
            key: core.ops.master_key_arc(),
            streaming: t.streaming,
        };
        let bots = Arc::new(Self {
            core: core.clone(),
            template,
            inbound,
            stop: stop.clone(),
            running: Mutex::new(HashMap::new()),
        });
        if t.enabled {
            if t.token.is_empty() {
                bail!(
                    "[telegram] enabled = true, but [telegram] token is empty (get one from @BotFather)"
                );
            }
            let config = BotConfig {
                token: t.token.expose().to_string(),
                ..bots.template.clone()
            };
            bots.launch(config)
                .await
                .map_err(|e| anyhow::anyhow!("[telegram] {e}"))?;
        }
        start_kept(core, "telegram", |token, agent, secret| {
            let bots = bots.clone();
            async move {
                let config = bots.config_for(token, agent, secret);
                bots.launch(config)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
        Ok(bots)
    }

    /// The config of a bot connected at runtime.
    fn config_for(&self, token: String, agent: String, secret: String) -> BotConfig {
        BotConfig {
            token,
            default_agent: agent,
            token_secret: Some(secret),
            ..self.template.clone()
        }
    }

    /// Connects one bot and starts its task; returns its channel id and username.
    async fn launch(&self, config: BotConfig) -> Result<(String, String), TelegramError> {
        let store = self.core.store.clone();
        let bot = match TelegramBot::connect(store.clone(), config.clone()).await {
            Ok(bot) => bot,
            Err(e @ TelegramError::Unreachable { .. }) => {
                tracing::warn!("{e}; starting anyway and retrying");
                let bot = Arc::new(TelegramBot::offline(store, config)?);
                bot.remember().await?;
                bot
            }
            Err(e) => return Err(e),
        };
        let channel = bot.id().to_string();
        let already = |running: &HashMap<String, RunningBot>| {
            running.contains_key(&channel).then(|| {
                TelegramError::Other(format!(
                    "@{} ({channel}) is already running",
                    bot.username()
                ))
            })
        };
        if let Some(e) = already(&self.running.lock().unwrap_or_else(|e| e.into_inner())) {
            return Err(e);
        }
        // Turns a crash cut short resume when the bot hands their stored updates over again;
        // those no update will restart (the daemon's own work) are closed quietly first.
        self.core
            .router
            .close_interrupted(std::slice::from_ref(&channel))
            .await;
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = already(&running) {
            return Err(e);
        }
        tracing::info!(bot = %channel, username = %bot.username(), "Telegram bot connected");
        self.core.hub.add(bot.clone());
        let stop = self.stop.child_token();
        let finish = bot.outbox_stop();
        let task = tokio::spawn(bot.clone().run(self.inbound.clone(), stop.clone()));
        let username = bot.username();
        running.insert(
            channel.clone(),
            RunningBot {
                bot,
                task,
                stop,
                finish,
            },
        );
        Ok((channel, username))
    }

    /// After the turns drained: lets each outbox send what it holds, within a few seconds.
    pub async fn finish(&self) {
        let bots: Vec<RunningBot> = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            running.drain().map(|(_, b)| b).collect()
        };
        for bot in &bots {
            bot.finish.cancel();
        }
        for bot in bots {
            if tokio::time::timeout(Duration::from_secs(5), bot.task)
                .await
                .is_err()
            {
                tracing::warn!(bot = %bot.bot.id(), "the outbox did not finish in time; the rest goes out at the next start");
            }
        }
    }

    fn health(&self, channel: &str) -> Option<String> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.get(channel).map(|b| match b.bot.health() {
            Health::Up => "up".to_string(),
            Health::Down(why) => format!("down: {why}"),
        })
    }

    async fn stop_bot(&self, channel: &str) -> Result<(), String> {
        let bot = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            running.remove(channel)
        };
        let Some(bot) = bot else {
            return Err(format!("{channel} is not running"));
        };
        bot.stop.cancel();
        bot.finish.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), bot.task).await;
        self.core.hub.remove(channel);
        Ok(())
    }
}

/// Starts the bots of a platform connected at runtime, each with the token from its secret;
/// one that cannot start is logged and the others go on.
pub(super) async fn start_kept<F, Fut>(core: &Core, platform: &str, launch: F) -> anyhow::Result<()>
where
    F: Fn(String, String, String) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    for record in core.store.list_bots(platform).await? {
        let Some(secret) = record.token_secret else {
            continue;
        };
        let started = match token_from(core, &secret).await {
            Ok(token) => launch(token, record.default_agent, secret.clone()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            tracing::error!(bot = %record.channel, "cannot start the bot whose token is in secret {secret}: {e}");
        }
    }
    Ok(())
}

/// A bot token kept in a secret.
pub(super) async fn token_from(core: &Core, secret: &str) -> Result<String, String> {
    let record = core.store.secret(secret).await.map_err(|e| e.to_string())?;
    let bytes = core
        .ops
        .master_key()
        .open(&record.name, &record.sealed, &record.key_id)
        .map_err(|e| e.to_string())?;
    String::from_utf8(bytes)
        .map(|t| t.trim().to_string())
        .map_err(|_| format!("secret {secret} is not text"))
}

/// The control surface's handle on the bots of both platforms.
pub struct Connector {
    pub telegram: Arc<TelegramBots>,
    pub discord: Arc<super::discord::DiscordBots>,
}

impl BotConnector for Connector {
    fn connect(
        &self,
        platform: String,
        token: String,
        agent: String,
        secret: String,
    ) -> BoxFuture<'static, Result<(String, String), String>> {
        let (telegram, discord) = (self.telegram.clone(), self.discord.clone());
        Box::pin(async move {
            match platform.as_str() {
                "telegram" => telegram
                    .launch(telegram.config_for(token, agent, secret))
                    .await
                    .map_err(|e| e.to_string()),
                "discord" => discord
                    .launch(discord.config_for(token, agent, secret))
                    .await
                    .map_err(|e| e.to_string()),
                other => Err(format!("no platform {other}: telegram or discord")),
            }
        })
    }

    fn disconnect(&self, channel: String) -> BoxFuture<'static, Result<(), String>> {
        let (telegram, discord) = (self.telegram.clone(), self.discord.clone());
        Box::pin(async move {
            if channel.starts_with("discord:") {
                discord.stop_bot(&channel).await
            } else {
                telegram.stop_bot(&channel).await
            }
        })
    }

    fn health(&self, channel: &str) -> Option<String> {
        self.telegram
            .health(channel)
            .or_else(|| self.discord.health(channel))
    }
}

/// The webhook's secret token: `[telegram] webhook_secret`, else one generated once and kept.
async fn webhook_secret(settings: &Settings, core: &Core) -> anyhow::Result<String> {
    if !settings.telegram.webhook_secret.is_empty() {
        return Ok(settings.telegram.webhook_secret.expose().to_string());
    }
    const KEY: &str = "telegram.webhook_secret";
    if let Some(secret) = core.store.kv_get(KEY).await? {
        return Ok(secret);
    }
    let secret = hex::encode(rand::random::<[u8; 24]>());
    core.store.kv_set(KEY, &secret).await?;
    Ok(secret)
}
