//! Messages in: the serenity gateway client (it reconnects and resumes by itself), each
//! `MESSAGE_CREATE` stored before it is handed on, and the stored, unanswered ones replayed at
//! start.

use std::sync::Arc;
use std::time::Duration;

use serenity::all::{
    ClientBuilder, CommandInteraction, ComponentInteraction, ConnectionStage, Context,
    EventHandler, GatewayIntents, Interaction, Message, Ready, ResumedEvent, ShardStageUpdateEvent,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{DiscordBot, commands, courier};
use crate::channel::{Attachment, Health, Inbound, InboundTx, Receipt, durable};
use crate::domain::ChatRef;

/// Who a bot is, for reading its messages.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `discord:<user id>`.
    pub channel: String,
    pub user_id: u64,
}

/// Reads one message as the gateway sends it (JSON) into what the core sees; `Ok(None)` for a
/// message the bot does not take (its own, another bot's, empty). Used by the fuzz tests.
pub fn read_message(bot: &Identity, json: &str) -> Result<Option<Inbound>, String> {
    let message: Message = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(normalize(bot, &message))
}

/// Runs a bot: the outbox sender, the stored but unanswered messages, then the gateway until
/// shutdown. A client that fails is started again after a pause.
pub async fn run(
    bot: Arc<DiscordBot>,
    inbound: InboundTx,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Partial replies a stopped process left in channels are taken back before anything else.
    match bot.store.retract_live_replies(&bot.id).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(bot = %bot.id, "taking back {n} unfinished partial replies"),
        Err(e) => tracing::error!(bot = %bot.id, "cannot look for unfinished partial replies: {e}"),
    }
    let sender = courier::start(bot.clone());
    replay(&bot, &inbound).await;
    let intents = GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT;
    let (events, ordered) = mpsc::unbounded_channel();
    let ordering = tokio::spawn(order(bot.clone(), inbound.clone(), ordered));
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let handler = Handler {
            bot: bot.clone(),
            events: events.clone(),
        };
        let built = ClientBuilder::new_with_http(super::http_for(&bot.config), intents)
            .event_handler(handler)
            .await;
        let mut client = match built {
            Ok(client) => client,
            Err(e) => {
                bot.set_health(Health::Down(format!(
                    "cannot start the gateway client: {e}"
                )));
                break;
            }
        };
        let manager = client.shard_manager.clone();
        let mut running = tokio::spawn(async move { client.start().await });
        tokio::select! {
            _ = shutdown.cancelled() => {
                manager.shutdown_all().await;
                let _ = running.await;
            }
            result = &mut running => {
                failures += 1;
                let reason = match result {
                    Ok(Ok(())) => "the gateway connection ended".to_string(),
                    Ok(Err(e)) => format!("the gateway failed: {e}"),
                    Err(e) => format!("the gateway task failed: {e}"),
                };
                tracing::warn!(bot = %bot.id, "{reason}; reconnecting");
                bot.set_health(Health::Down(reason));
                let wait = Duration::from_secs(2u64.saturating_pow(failures.min(5)));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
    // The handlers are gone with the client: the ordering task ends when its queue empties.
    drop(events);
    let _ = ordering.await;
    drop(inbound);
    let _ = sender.await;
    Ok(())
}

struct Handler {
    bot: Arc<DiscordBot>,
    /// To the ordering task: serenity runs each event's handler as its own task.
    events: mpsc::UnboundedSender<Event>,
}

/// What the ordering task stores and hands on.
enum Event {
    Message(Box<Message>),
    Command(Box<CommandInteraction>),
    Press(Box<ComponentInteraction>),
}

impl Event {
    fn id(&self) -> u64 {
        match self {
            Event::Message(m) => m.id.get(),
            Event::Command(c) => c.id.get(),
            Event::Press(p) => p.id.get(),
        }
    }
}

/// How long events are gathered before they are put in order: serenity starts a task per event,
/// so two messages that arrived in one read may reach the handler in either order.
const GATHER: Duration = Duration::from_millis(10);

/// Stores and hands on events in Discord's order (snowflake ids grow with time).
async fn order(
    bot: Arc<DiscordBot>,
    inbound: InboundTx,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    while let Some(first) = events.recv().await {
        let mut batch = vec![first];
        while let Ok(Some(next)) = tokio::time::timeout(GATHER, events.recv()).await {
            batch.push(next);
        }
        batch.sort_by_key(Event::id);
        take(&bot, &inbound, batch).await;
    }
}

/// Stores a batch of events (sealed) in one transaction, then hands on the new ones in order;
/// a repeat from a resume is not handed on again.
async fn take(bot: &DiscordBot, inbound: &InboundTx, batch: Vec<Event>) {
    let mut rows = Vec::with_capacity(batch.len());
    for event in &batch {
        let id = event.id() as i64;
        let json = match event {
            Event::Message(m) => serde_json::to_string(m),
            Event::Command(c) => serde_json::to_string(c),
            // Kept tagged, so a replay tells a press from a slash command.
            Event::Press(p) => {
                serde_json::to_value(p).map(|v| serde_json::json!({ "press": v }).to_string())
            }
        };
        match json {
            Ok(json) => rows.push((id, seal(bot, id, &json))),
            Err(e) => tracing::error!(bot = %bot.id, "cannot keep event {id}: {e}"),
        }
    }
    let fresh = match bot.store.store_updates(&bot.id, &rows, None).await {
        Ok(fresh) => fresh,
        Err(e) => {
            tracing::error!(bot = %bot.id, "cannot store {} events: {e}", rows.len());
            return;
        }
    };
    for event in batch {
        let id = event.id() as i64;
        if !fresh.contains(&id) {
            tracing::debug!(bot = %bot.id, "event {id} seen before");
            continue;
        }
        match &event {
            Event::Message(m) => dispatch(bot, inbound, id, m).await,
            Event::Command(c) => dispatch_command(bot, inbound, c).await,
            Event::Press(p) => dispatch_press(bot, inbound, p).await,
        }
    }
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        tracing::info!(bot = %self.bot.id, session = %ready.session_id, "Discord gateway ready");
        self.bot.set_health(Health::Up);
        self.bot.http.set_application_id(ready.application.id);
        commands::register(&self.bot).await;
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        let bot = &self.bot;
        let command = match interaction {
            Interaction::Command(command) => command,
            Interaction::Autocomplete(command) => {
                commands::autocomplete(bot, &command).await;
                return;
            }
            Interaction::Component(press) => {
                bot.http.set_application_id(press.application_id);
                // First of all: Discord allows three seconds to acknowledge.
                if let Err(e) = super::buttons::acknowledge(bot, &press).await {
                    tracing::warn!(bot = %bot.id, "cannot acknowledge a button press: {e}");
                }
                let _ = self.events.send(Event::Press(Box::new(press)));
                return;
            }
            _ => return,
        };
        bot.http.set_application_id(command.application_id);
        // First of all: Discord allows three seconds to acknowledge.
        if let Err(e) = commands::defer(bot, &command).await {
            tracing::warn!(bot = %bot.id, "cannot acknowledge /{}: {e}", command.data.name);
        }
        let _ = self.events.send(Event::Command(Box::new(command)));
    }

    async fn resume(&self, _ctx: Context, _event: ResumedEvent) {
        tracing::info!(bot = %self.bot.id, "Discord gateway resumed");
        self.bot.set_health(Health::Up);
    }

    async fn shard_stage_update(&self, _ctx: Context, event: ShardStageUpdateEvent) {
        if event.new != ConnectionStage::Connected {
            self.bot
                .set_health(Health::Down(format!("gateway {}", event.new)));
        }
    }

    async fn message(&self, _ctx: Context, message: Message) {
        let bot = &self.bot;
        if message.author.id.get() == bot.user_id || message.author.bot {
            return;
        }
        let _ = self.events.send(Event::Message(Box::new(message)));
    }
}

fn seal(bot: &DiscordBot, id: i64, json: &str) -> String {
    durable::seal(&bot.config.key, &bot.id, id, json)
}

fn open(bot: &DiscordBot, id: i64, stored: &str) -> Result<String, String> {
    durable::open(&bot.config.key, &bot.id, id, stored)
}

/// Hands the messages a previous run stored but did not answer to the core, oldest first.
async fn replay(bot: &Arc<DiscordBot>, inbound: &InboundTx) {
    let pending = match bot.store.pending_updates(&bot.id).await {
        Ok(pending) => pending,
        Err(e) => {
            tracing::error!(bot = %bot.id, "cannot read stored messages: {e}");
            return;
        }
    };
    for stored in pending {
        let id = stored.update_id;
        let json = open(bot, id, &stored.payload);
        let press = json.as_ref().ok().and_then(|j| {
            let value: serde_json::Value = serde_json::from_str(j).ok()?;
            serde_json::from_value::<ComponentInteraction>(value.get("press")?.clone()).ok()
        });
        if let Some(press) = press {
            dispatch_press(bot, inbound, &press).await;
            continue;
        }
        if let Ok(command) = json
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|j| serde_json::from_str::<CommandInteraction>(j).map_err(|e| e.to_string()))
        {
            dispatch_command(bot, inbound, &command).await;
            continue;
        }
        let parsed =
            json.and_then(|j| serde_json::from_str::<Message>(&j).map_err(|e| e.to_string()));
        match parsed {
            Ok(message) => dispatch(bot, inbound, id, &message).await,
            Err(e) => {
                tracing::warn!(bot = %bot.id, message = id, "unreadable stored message: {e}");
                settle_ignored(bot, id).await;
            }
        }
    }
}

/// Marks a stored event answered with nothing to say (not for the bot, or unreadable).
async fn settle_ignored(bot: &DiscordBot, id: i64) {
    if let Err(e) = bot.store.settle_update(&bot.id, &[id], &[]).await {
        tracing::error!(bot = %bot.id, "cannot settle event {id}: {e}");
    }
}

/// Hands a button press to the core; its answer goes to the presser alone.
async fn dispatch_press(bot: &DiscordBot, inbound: &InboundTx, press: &ComponentInteraction) {
    let id = press.id.get() as i64;
    bot.presses
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, (press.application_id.get(), press.token.clone()));
    match super::buttons::normalize(&bot.id, press) {
        Some(message) => {
            if inbound.send(message).await.is_err() {
                tracing::debug!(bot = %bot.id, "the core stopped taking messages");
            }
        }
        None => {
            let chat = ChatRef::new(bot.id.clone(), press.channel_id.get().to_string());
            if let Err(e) = bot.queue(&chat, Vec::new(), &[Receipt(id)]).await {
                tracing::error!(bot = %bot.id, "cannot answer button press {id}: {e}");
            }
        }
    }
}

/// Hands a slash command to the core; its answer goes to the deferred response.
async fn dispatch_command(bot: &DiscordBot, inbound: &InboundTx, command: &CommandInteraction) {
    let id = command.id.get() as i64;
    bot.interactions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, (command.application_id.get(), command.token.clone()));
    match commands::normalize(&bot.id, command) {
        Some(message) => {
            if inbound.send(message).await.is_err() {
                tracing::debug!(bot = %bot.id, "the core stopped taking messages");
            }
        }
        None => {
            let chat = ChatRef::new(bot.id.clone(), command.channel_id.get().to_string());
            let reply = crate::channel::Outbound::Notice(format!(
                "I could not read /{}.",
                command.data.name
            ));
            if let Err(e) = bot.queue(&chat, vec![reply], &[Receipt(id)]).await {
                tracing::error!(bot = %bot.id, "cannot answer interaction {id}: {e}");
            }
        }
    }
}

async fn dispatch(bot: &DiscordBot, inbound: &InboundTx, id: i64, message: &Message) {
    let me = Identity {
        channel: bot.id.clone(),
        user_id: bot.user_id,
    };
    match normalize(&me, message) {
        Some(mut inbound_message) => {
            fetch(bot, id, &mut inbound_message.attachments).await;
            if inbound.send(inbound_message).await.is_err() {
                tracing::debug!(bot = %bot.id, "the core stopped taking messages");
            }
        }
        None => {
            settle_ignored(bot, id).await;
        }
    }
}

/// A Discord message as an [`Inbound`]: addressed when it is a DM, mentions the bot, replies
/// to it, or is a command; the mention itself is taken out of the text.
fn normalize(bot: &Identity, message: &Message) -> Option<Inbound> {
    if message.author.bot || message.author.id.get() == bot.user_id {
        return None;
    }
    let group = message.guild_id.is_some();
    let mut text = message.content.clone();
    let mut addressed = !group;
    for form in [
        format!("<@{}>", bot.user_id),
        format!("<@!{}>", bot.user_id),
    ] {
        if text.contains(&form) {
            text = text.replace(&form, "").trim().to_string();
            addressed = true;
        }
    }
    if message.mentions.iter().any(|u| u.id.get() == bot.user_id) {
        addressed = true;
    }
    if message
        .referenced_message
        .as_ref()
        .is_some_and(|m| m.author.id.get() == bot.user_id)
    {
        addressed = true;
    }
    if text.trim_start().starts_with('/') {
        addressed = true;
    }
    let attachments: Vec<Attachment> = message
        .attachments
        .iter()
        .map(|a| Attachment {
            name: a.filename.clone(),
            size: u64::from(a.size),
            local: None,
            problem: Some(format!("discord-file:{}", a.url)),
            // Voice messages carry a duration (and the voice-message flag).
            voice: a.duration_secs.is_some(),
        })
        .collect();
    if text.trim().is_empty() && attachments.is_empty() {
        return None;
    }
    let sender_name = message
        .author
        .global_name
        .clone()
        .unwrap_or_else(|| message.author.name.clone());
    Some(Inbound {
        chat: ChatRef::new(bot.channel.clone(), message.channel_id.get().to_string()),
        sender_id: message.author.id.get().to_string(),
        sender_name,
        text,
        group,
        addressed,
        receipt: Some(Receipt(message.id.get() as i64)),
        attachments,
        message_id: Some(message.id.get().to_string()),
        space: message
            .guild_id
            .map(|g| g.get().to_string())
            .unwrap_or_default(),
    })
}

/// Downloads a message's files (each up to the size limit) into the bot's files directory.
async fn fetch(bot: &DiscordBot, id: i64, attachments: &mut [Attachment]) {
    let dir = bot.config.files_dir.clone();
    durable::fetch_files(
        attachments,
        "discord-file",
        &dir,
        id,
        |url, path| async move {
            let response = reqwest::get(&url).await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            let bytes = response.bytes().await.map_err(|e| e.to_string())?;
            if bytes.len() > crate::domain::MAX_FILE_BYTES {
                return Err("larger than 20 MB".into());
            }
            tokio::fs::write(&path, &bytes)
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await;
}
