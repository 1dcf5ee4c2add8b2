//! Slash commands: the shared chat commands plus `/ask <prompt> [agent]`, registered per guild
//! (instant) or globally, only when their definitions changed. An interaction is deferred at
//! once (Discord allows three seconds), then answered by editing the deferred response and
//! sending follow-ups through the outbox; agent options autocomplete.

use serenity::all::{
    CommandDataOptionValue, CommandInteraction, CommandOptionType, CommandType,
    CreateAutocompleteResponse, CreateCommand, CreateCommandOption, CreateInteractionResponse,
    CreateInteractionResponseMessage, GuildId,
};
use sha2::Digest;

use super::DiscordBot;
use crate::channel::{Inbound, Receipt};
use crate::domain::ChatRef;

/// (name, description, options as (name, description, required, autocompletes agents)).
type Definition = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str, bool, bool)],
);

const DEFINITIONS: &[Definition] = &[
    (
        "ask",
        "Ask Operator (or an agent) something",
        &[
            ("prompt", "What to ask", true, false),
            (
                "agent",
                "The agent to ask (default: this channel's)",
                false,
                true,
            ),
        ],
    ),
    ("start", "Say hello and show what I can do", &[]),
    ("help", "Show the commands and what Operator can do", &[]),
    ("agents", "List the agents", &[]),
    (
        "use",
        "Bind this channel to an agent",
        &[("agent", "The agent (operator to return)", true, true)],
    ),
    ("new", "Start a fresh conversation in this channel", &[]),
    ("status", "Report the daemon's health", &[]),
    ("stop", "Cancel the work in progress in this channel", &[]),
    ("export", "Send this conversation as a Markdown file", &[]),
    ("backup", "Save the daemon's state now (owners)", &[]),
    (
        "approve",
        "Approve a model's waiting request (owners)",
        &[("id", "The request's id", true, false)],
    ),
    (
        "deny",
        "Deny a model's waiting request (owners)",
        &[("id", "The request's id", true, false)],
    ),
    ("instances", "List the instances", &[]),
    (
        "pair",
        "Approve a pairing code (owners)",
        &[("code", "The code the person was given", false, false)],
    ),
];

fn definitions() -> Vec<CreateCommand> {
    DEFINITIONS
        .iter()
        .map(|(name, description, options)| {
            let mut command = CreateCommand::new(*name).description(*description);
            for (option, text, required, auto) in options.iter() {
                command = command.add_option(
                    CreateCommandOption::new(CommandOptionType::String, *option, *text)
                        .required(*required)
                        .set_autocomplete(*auto),
                );
            }
            command
        })
        .collect()
}

/// Registers the commands when their definitions (or the guilds) changed since last time.
pub async fn register(bot: &DiscordBot) {
    let commands = definitions();
    let hash = {
        let json = serde_json::to_string(&(&commands, &bot.config.guild_ids)).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(json.as_bytes()))
    };
    let known = bot.store.bot(&bot.id).await.map(|b| b.commands_hash);
    if known.as_deref().is_ok_and(|h| *h == hash) {
        return;
    }
    let result = if bot.config.guild_ids.is_empty() {
        bot.http.create_global_commands(&commands).await.map(|_| ())
    } else {
        let mut result = Ok(());
        for guild in &bot.config.guild_ids {
            if let Err(e) = bot
                .http
                .create_guild_commands(GuildId::new(*guild), &commands)
                .await
            {
                result = Err(e);
            }
        }
        result
    };
    match result {
        Ok(()) => {
            if let Err(e) = bot.store.set_bot_commands_hash(&bot.id, &hash).await {
                tracing::warn!(bot = %bot.id, "cannot record the slash commands: {e}");
            }
        }
        Err(e) => tracing::warn!(bot = %bot.id, "registering slash commands failed: {e}"),
    }
}

/// Acknowledges an interaction at once (a "thinking…" response the answer edits later).
pub async fn defer(bot: &DiscordBot, command: &CommandInteraction) -> Result<(), String> {
    let response = CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new());
    bot.http
        .create_interaction_response(command.id, &command.token, &response, vec![])
        .await
        .map_err(|e| e.to_string())
}

/// Offers the agents whose names start with what was typed.
pub async fn autocomplete(bot: &DiscordBot, command: &CommandInteraction) {
    let typed = command
        .data
        .autocomplete()
        .map(|o| o.value.to_lowercase())
        .unwrap_or_default();
    let mut names = vec![crate::domain::OPERATOR.to_string()];
    if let Ok(agents) = bot.store.list_agents().await {
        names.extend(agents.into_iter().map(|a| a.name));
    }
    let mut choices = CreateAutocompleteResponse::new();
    for name in names.iter().filter(|n| n.starts_with(&typed)).take(25) {
        choices = choices.add_string_choice(name, name);
    }
    let response = CreateInteractionResponse::Autocomplete(choices);
    if let Err(e) = bot
        .http
        .create_interaction_response(command.id, &command.token, &response, vec![])
        .await
    {
        tracing::warn!(bot = %bot.id, "autocomplete failed: {e}");
    }
}

/// A slash command as an [`Inbound`]: `/ask` becomes its prompt (with `@agent` first when an
/// agent is named); the others become the chat command they stand for.
pub fn normalize(bot_channel: &str, command: &CommandInteraction) -> Option<Inbound> {
    if command.data.kind != CommandType::ChatInput {
        return None;
    }
    let option = |name: &str| {
        command
            .data
            .options
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| match &o.value {
                CommandDataOptionValue::String(s) => Some(s.trim().to_string()),
                _ => None,
            })
    };
    let text = match command.data.name.as_str() {
        "ask" => {
            let prompt = option("prompt")?;
            match option("agent") {
                Some(agent) if !agent.is_empty() => format!("@{agent} {prompt}"),
                _ => prompt,
            }
        }
        name => {
            let args: Vec<String> = command
                .data
                .options
                .iter()
                .filter_map(|o| match &o.value {
                    CommandDataOptionValue::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            format!("/{name} {}", args.join(" ")).trim().to_string()
        }
    };
    let user = &command.user;
    Some(Inbound {
        chat: ChatRef::new(bot_channel, command.channel_id.get().to_string()),
        sender_id: user.id.get().to_string(),
        sender_name: user
            .global_name
            .clone()
            .unwrap_or_else(|| user.name.clone()),
        text,
        group: command.guild_id.is_some(),
        addressed: true,
        receipt: Some(Receipt(command.id.get() as i64)),
        attachments: Vec::new(),
        message_id: None,
        space: command
            .guild_id
            .map(|g| g.get().to_string())
            .unwrap_or_default(),
    })
}
