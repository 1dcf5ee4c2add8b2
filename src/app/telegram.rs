//! Starting the Telegram bots: the one in `[telegram]`, with its access rules and command menu.

use std::sync::Arc;

use anyhow::bail;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Core;
use crate::channel::telegram::{BotConfig, TelegramBot, TelegramError, Webhook, WebhookIntake};
use crate::channel::{Channel, InboundTx};
use crate::config::{Settings, TelegramMode};
use crate::domain::{OPERATOR, SESSION_COMMANDS};
use crate::ops::SPECS;
use crate::router::AccessRules;

/// The chat commands in the bot's menu, in this order.
const MENU: [&str; 10] = [
    "start",
    "help",
    "agents",
    "use",
    "new",
    "status",
    "stop",
    "instances",
    "pair",
    "secret",
];

/// A running bot and its task.
pub struct RunningBot {
    pub task: JoinHandle<anyhow::Result<()>>,
    /// Stops its outbox sender, once the turns have drained.
    pub finish: CancellationToken,
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

/// Starts the configured bot, if enabled. A rejected or malformed token stops the daemon with
/// a clear error; an unreachable Bot API does not (the poller keeps trying and reports it).
pub async fn start(
    settings: &Settings,
    core: &Core,
    intake: &WebhookIntake,
    inbound: InboundTx,
    stop: &CancellationToken,
) -> anyhow::Result<Option<RunningBot>> {
    let t = &settings.telegram;
    if !t.enabled {
        return Ok(None);
    }
    if t.token.is_empty() {
        bail!("[telegram] enabled = true, but [telegram] token is empty (get one from @BotFather)");
    }
    core.router.set_access(
        "telegram",
        AccessRules {
            owners: t.owners.iter().map(u64::to_string).collect(),
            dm: t.dm_policy,
            group: t.group_policy,
            require_mention: t.require_mention,
            allow_users: t.allow_users.iter().map(u64::to_string).collect(),
            allow_groups: t.allow_groups.iter().map(i64::to_string).collect(),
        },
    );
    let webhook = match t.mode {
        TelegramMode::Polling => None,
        TelegramMode::Webhook => Some(Webhook {
            base_url: t.webhook_url.clone(),
            secret: webhook_secret(settings, core).await?,
        }),
    };
    let config = BotConfig {
        token: t.token.expose().to_string(),
        api_url: t.api_url.clone(),
        default_agent: OPERATOR.to_string(),
        token_secret: None,
        messages_per_second: t.messages_per_second,
        chat_messages_per_second: t.chat_messages_per_second,
        commands: command_menu(),
        webhook,
        intake: Some(intake.clone()),
        files_dir: settings.state_dir().join("files").join("telegram"),
    };
    let bot = match TelegramBot::connect(core.store.clone(), config.clone()).await {
        Ok(bot) => bot,
        Err(e @ TelegramError::Unreachable { .. }) => {
            tracing::warn!("{e}; starting anyway and retrying");
            let bot = Arc::new(TelegramBot::offline(core.store.clone(), config)?);
            bot.remember().await?;
            bot
        }
        Err(e) => bail!("[telegram] {e}"),
    };
    tracing::info!(bot = %bot.id(), username = %bot.username(), "Telegram bot connected");
    core.hub.add(bot.clone());
    // Turns a crash cut short are handled again from the stored update; close the old ones.
    core.router.close_interrupted(&[bot.id().to_string()]).await;
    let finish = bot.outbox_stop();
    let task = tokio::spawn(bot.clone().run(inbound, stop.clone()));
    Ok(Some(RunningBot { task, finish }))
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
