//! Starting the Discord bot of `[discord]`, with its access rules.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Core;
use crate::channel::discord::{BotConfig, DiscordBot, DiscordError};
use crate::channel::{Channel, InboundTx};
use crate::config::Settings;
use crate::domain::OPERATOR;
use crate::router::AccessRules;

/// The running Discord bot, if any.
pub struct DiscordBots {
    running: Option<(Arc<DiscordBot>, JoinHandle<anyhow::Result<()>>)>,
}

impl DiscordBots {
    /// Sets the Discord access rules and starts the configured bot. A rejected token stops the
    /// daemon with a clear error; an unreachable Discord does too, since the bot's identity
    /// comes from it (say so in `operator check` first).
    pub async fn start(
        settings: &Settings,
        core: &Core,
        inbound: InboundTx,
        stop: &CancellationToken,
    ) -> anyhow::Result<Self> {
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
        if !d.enabled {
            return Ok(Self { running: None });
        }
        if d.token.is_empty() {
            bail!("[discord] enabled = true, but [discord] token is empty");
        }
        let config = BotConfig {
            token: d.token.expose().to_string(),
            api_url: d.api_url.clone(),
            default_agent: OPERATOR.to_string(),
            token_secret: None,
            messages_per_second: d.messages_per_second,
            chat_messages_per_second: d.chat_messages_per_second,
            files_dir: settings.state_dir().join("files").join("discord"),
            key: core.ops.master_key_arc(),
            guild_ids: d.guild_ids.clone(),
        };
        let bot = match DiscordBot::connect(core.store.clone(), config).await {
            Ok(bot) => bot,
            Err(e @ (DiscordError::BadToken { .. } | DiscordError::Unreachable { .. })) => {
                bail!("[discord] {e}")
            }
            Err(e) => bail!("[discord] {e}"),
        };
        tracing::info!(bot = %bot.id(), username = %bot.username(), "Discord bot connected");
        core.hub.add(bot.clone());
        core.router.close_interrupted(&[bot.id().to_string()]).await;
        let task = tokio::spawn(bot.clone().run(inbound, stop.clone()));
        Ok(Self {
            running: Some((bot, task)),
        })
    }

    /// After the turns drained: lets the outbox send what it holds, within a few seconds.
    pub async fn finish(self) {
        if let Some((bot, task)) = self.running {
            bot.outbox_stop().cancel();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!(bot = %bot.id(), "the outbox did not finish in time; the rest goes out at the next start");
            }
        }
    }
}
