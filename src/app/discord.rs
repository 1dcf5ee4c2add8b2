//! The Discord bots: the one in `[discord]` and those connected at runtime (tokens in secrets),
//! with the Discord access rules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Core;
use crate::channel::discord::{BotConfig, DiscordBot, DiscordError};
use crate::channel::{Channel, Health, InboundTx};
use crate::config::Settings;
use crate::domain::OPERATOR;
use crate::router::AccessRules;

struct RunningBot {
    bot: Arc<DiscordBot>,
    task: JoinHandle<anyhow::Result<()>>,
    stop: CancellationToken,
}

pub struct DiscordBots {
    core: Core,
    /// Everything but the token and the default agent.
    template: BotConfig,
    inbound: InboundTx,
    stop: CancellationToken,
    running: Mutex<HashMap<String, RunningBot>>,
}

impl DiscordBots {
    /// Sets the Discord access rules and starts the configured bot and the bots kept in
    /// secrets. A rejected token in `[discord]` stops the daemon with a clear error, as does an
    /// unreachable Discord (the bot's identity comes from it; `operator check` says which).
    pub async fn start(
        settings: &Settings,
        core: &Core,
        inbound: InboundTx,
        stop: &CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let d = &settings.discord;
        core.router.set_access(
            "discord",
            AccessRules {
                owners: d.owners.iter().map(u64::to_string).collect(),
                dm: d.dm_policy,
                group: d.group_policy,
                require_mention: d.require_mention,
                allow_users: d.allow_users.iter().map(u64::to_string).collect(),
                allow_groups: d.allow_channels.iter().map(u64::to_string).collect(),
                allow_spaces: d.allow_guilds.iter().map(u64::to_string).collect(),
            },
        );
        let template = BotConfig {
            token: String::new(),
            api_url: d.api_url.clone(),
            default_agent: OPERATOR.to_string(),
            token_secret: None,
            messages_per_second: d.messages_per_second,
            chat_messages_per_second: d.chat_messages_per_second,
            files_dir: settings.state_dir().join("files").join("discord"),
            key: core.ops.master_key_arc(),
            guild_ids: d.guild_ids.clone(),
            streaming: d.streaming,
        };
        let bots = Arc::new(Self {
            core: core.clone(),
            template,
            inbound,
            stop: stop.clone(),
            running: Mutex::new(HashMap::new()),
        });
        if d.enabled {
            if d.token.is_empty() {
                bail!("[discord] enabled = true, but [discord] token is empty");
            }
            let config = BotConfig {
                token: d.token.expose().to_string(),
                ..bots.template.clone()
            };
            bots.launch(config)
                .await
                .map_err(|e| anyhow::anyhow!("[discord] {e}"))?;
        }
        super::telegram::start_kept(core, "discord", |token, agent, secret| {
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

    /// Connects one bot and starts it; returns its channel id and name.
    pub async fn launch(&self, config: BotConfig) -> Result<(String, String), DiscordError> {
        let bot = DiscordBot::connect(self.core.store.clone(), config).await?;
        let channel = bot.id().to_string();
        if self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&channel)
        {
            return Err(DiscordError::Other(format!(
                "{} ({channel}) is already running",
                bot.username()
            )));
        }
        self.core
            .router
            .close_interrupted(std::slice::from_ref(&channel))
            .await;
        tracing::info!(bot = %channel, username = %bot.username(), "Discord bot connected");
        self.core.hub.add(bot.clone());
        let stop = self.stop.child_token();
        let task = tokio::spawn(bot.clone().run(self.inbound.clone(), stop.clone()));
        let username = bot.username().to_string();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel.clone(), RunningBot { bot, task, stop });
        Ok((channel, username))
    }

    /// A config for a bot connected at runtime.
    pub fn config_for(&self, token: String, agent: String, secret: String) -> BotConfig {
        BotConfig {
            token,
            default_agent: agent,
            token_secret: Some(secret),
            ..self.template.clone()
        }
    }

    pub fn health(&self, channel: &str) -> Option<String> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.get(channel).map(|b| match b.bot.health() {
            Health::Up => "up".to_string(),
            Health::Down(why) => format!("down: {why}"),
        })
    }

    pub async fn stop_bot(&self, channel: &str) -> Result<(), String> {
        let bot = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(channel)
            .ok_or_else(|| format!("{channel} is not running"))?;
        bot.stop.cancel();
        bot.bot.outbox_stop().cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), bot.task).await;
        self.core.hub.remove(channel);
        Ok(())
    }

    /// After the turns drained: lets each outbox send what it holds, within a few seconds.
    pub async fn finish(&self) {
        let bots: Vec<RunningBot> = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            running.drain().map(|(_, b)| b).collect()
        };
        for bot in &bots {
            bot.bot.outbox_stop().cancel();
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
}
