//! Chat bots added at runtime: "connect the bot whose token is in secret TG_DANIEL to agent
//! daniel". The token comes from a stored secret (people send it with `/secret`), so the model
//! never sees it; the app's [`BotConnector`] checks it and starts the bot without a restart.

use serde::Deserialize;
use serde_json::json;

use super::{Access, OpError, OpSpec, Ops, Output};
use crate::agent::llm::BoxFuture;
use crate::domain::{AgentName, OPERATOR};

/// The running daemon's way to start and stop bots; absent in `operator chat`.
pub trait BotConnector: Send + Sync {
    /// Checks the token and starts the bot; returns its channel id and `@username`.
    fn connect(
        &self,
        platform: String,
        token: String,
        agent: String,
        secret: String,
    ) -> BoxFuture<'static, Result<(String, String), String>>;
    /// Stops a running bot (by channel id).
    fn disconnect(&self, channel: String) -> BoxFuture<'static, Result<(), String>>;
    /// A running bot's health, `None` when it is not running here.
    fn health(&self, channel: &str) -> Option<String>;
}

pub const CONNECT: OpSpec = OpSpec::tool(
    "bot_connect",
    "Connect a Telegram or Discord bot to an agent: its token must already be stored as a secret \
     (ask the owner to send /secret NAME and then the token). Chats with the bot that are not \
     bound otherwise talk to that agent.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "secret": { "type": "string", "description": "the secret holding the bot token" },
                "agent": { "type": "string", "description": "default agent for the bot's chats" },
                "platform": { "type": "string", "enum": ["telegram", "discord"],
                              "description": "default: told by the token's shape" }
            },
            "required": ["secret", "agent"]
        })
    },
);

pub const LIST: OpSpec = OpSpec::tool(
    "bot_list",
    "List the chat bots: platform, @username, default agent, whether it runs and its health.",
    Access::Owner,
    || json!({ "type": "object", "properties": {} }),
);

pub const DISCONNECT: OpSpec = OpSpec::tool(
    "bot_disconnect",
    "Stop a bot added with bot_connect and forget it (its secret stays).",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": { "bot": { "type": "string", "description": "@username or telegram:<id>" } },
            "required": ["bot"]
        })
    },
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectArgs {
    secret: String,
    agent: String,
    platform: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisconnectArgs {
    bot: String,
}

impl Ops {
    /// The running bots with their health, as (channel, @name, health), for status reports.
    pub async fn running_bots(&self) -> Result<Vec<(String, String, String)>, OpError> {
        let Some(connector) = self.inner.bots.get() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for platform in ["telegram", "discord"] {
            for bot in self.store().list_bots(platform).await? {
                if let Some(health) = connector.health(&bot.channel) {
                    out.push((bot.channel, bot.username, health));
                }
            }
        }
        Ok(out)
    }
}

fn connector(ops: &Ops) -> Result<std::sync::Arc<dyn BotConnector>, OpError> {
    ops.inner.bots.get().cloned().ok_or_else(|| {
        OpError::Failed(
            "bots are connected by the daemon (operator run), not in this process".into(),
        )
    })
}

pub async fn connect(ops: &Ops, args: ConnectArgs) -> Result<Output, OpError> {
    let agent = if args.agent == OPERATOR {
        OPERATOR.to_string()
    } else {
        let name = AgentName::parse(&args.agent).map_err(|e| OpError::InvalidArgs {
            op: "bot_connect",
            message: e.to_string(),
        })?;
        ops.store().agent(name.as_str()).await?.name
    };
    let secret = ops.store().secret(&args.secret).await.map_err(|_| {
        OpError::NotFound(format!(
            "no secret {} (store the token first: /secret {} and then the token)",
            args.secret, args.secret
        ))
    })?;
    let token = ops
        .master_key()
        .open(&secret.name, &secret.sealed, &secret.key_id)
        .map_err(|e| OpError::Failed(e.to_string()))?;
    let token = String::from_utf8(token)
        .map_err(|_| OpError::Failed(format!("secret {} is not text", secret.name)))?;
    let token = token.trim().to_string();
    // Telegram tokens are `<bot id>:<secret>`; Discord's are three dotted parts.
    let platform = args.platform.unwrap_or_else(|| {
        if token.contains(':') {
            "telegram"
        } else {
            "discord"
        }
        .to_string()
    });
    let (channel, username) = connector(ops)?
        .connect(platform, token, agent.clone(), secret.name.clone())
        .await
        .map_err(OpError::Failed)?;
    Ok(Output::new(
        format!(
            "Connected @{username} ({channel}); its chats talk to {agent} unless bound with /use."
        ),
        json!({ "channel": channel, "username": username, "agent": agent }),
    ))
}

pub async fn list(ops: &Ops) -> Result<Output, OpError> {
    let mut bots = ops.store().list_bots("telegram").await?;
    bots.extend(ops.store().list_bots("discord").await?);
    if bots.is_empty() {
        return Ok(Output::new("No bots yet.", json!([])));
    }
    let running = ops.inner.bots.get();
    let mut text = String::from("Bots:");
    let mut data = Vec::new();
    for b in &bots {
        let health = running
            .and_then(|c| c.health(&b.channel))
            .unwrap_or_else(|| "not running".into());
        let source = match &b.token_secret {
            Some(s) => format!("token in secret {s}"),
            None => "from the config file".into(),
        };
        text.push_str(&format!(
            "\n- @{} ({}): talks to {}; {health}; {source}",
            b.username, b.channel, b.default_agent
        ));
        data.push(json!({
            "channel": b.channel, "username": b.username, "agent": b.default_agent,
            "health": health, "token_secret": b.token_secret
        }));
    }
    Ok(Output::new(text, json!(data)))
}

pub async fn disconnect(ops: &Ops, args: DisconnectArgs) -> Result<Output, OpError> {
    let wanted = args.bot.trim().trim_start_matches('@');
    let mut bots = ops.store().list_bots("telegram").await?;
    bots.extend(ops.store().list_bots("discord").await?);
    let bot = bots
        .iter()
        .find(|b| b.channel == wanted || b.username.eq_ignore_ascii_case(wanted))
        .ok_or_else(|| OpError::NotFound(format!("no bot {}", args.bot)))?;
    if bot.token_secret.is_none() {
        return Err(OpError::Failed(format!(
            "@{} comes from the config file; set [telegram] enabled = false to stop it",
            bot.username
        )));
    }
    connector(ops)?
        .disconnect(bot.channel.clone())
        .await
        .map_err(OpError::Failed)?;
    ops.store().delete_bot(&bot.channel).await?;
    Ok(Output::new(
        format!("Stopped and forgot @{} ({}).", bot.username, bot.channel),
        json!({ "channel": bot.channel }),
    ))
}
