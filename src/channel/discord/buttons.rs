//! Approve / Deny buttons on Discord: a request is a message with two buttons (message
//! components); a press is acknowledged at once (Discord allows three seconds), stored like any
//! event, and handed to the core as `/approve <id>` or `/deny <id>` from the person who pressed;
//! the answer to the press is an ephemeral follow-up only that person sees, and the request's
//! message is edited to say how it was decided.

use serenity::all::{ButtonStyle, ComponentInteraction, CreateInteractionResponse};
use serenity::builder::{
    CreateActionRow, CreateAllowedMentions, CreateButton, CreateInteractionResponseFollowup,
    CreateMessage, EditMessage,
};
use serenity::model::channel::MessageFlags;
use serenity::model::id::{ApplicationId, ChannelId, MessageId};

use super::DiscordBot;
use crate::channel::outbox::Failure;
use crate::channel::{Inbound, Receipt};
use crate::domain::ChatRef;
use crate::store::{NewOutbox, OutboxRow};

/// Acknowledges a press at once, without a visible change (the answer comes as a follow-up).
pub async fn acknowledge(bot: &DiscordBot, press: &ComponentInteraction) -> Result<(), String> {
    bot.http
        .create_interaction_response(
            press.id,
            &press.token,
            &CreateInteractionResponse::Acknowledge,
            vec![],
        )
        .await
        .map_err(|e| e.to_string())
}

/// A press of an Approve / Deny button as the command it stands for.
pub fn normalize(bot_channel: &str, press: &ComponentInteraction) -> Option<Inbound> {
    let (verb, code) = press.data.custom_id.split_once(':')?;
    if !matches!(verb, "approve" | "deny") || press.user.bot {
        return None;
    }
    Some(Inbound {
        chat: ChatRef::new(bot_channel, press.channel_id.get().to_string()),
        sender_id: press.user.id.get().to_string(),
        sender_name: press.user.name.clone(),
        text: format!("/{verb} {code}"),
        group: press.guild_id.is_some(),
        addressed: true,
        receipt: Some(Receipt(press.id.get() as i64)),
        message_id: None,
        space: press
            .guild_id
            .map(|g| g.get().to_string())
            .unwrap_or_default(),
        attachments: Vec::new(),
    })
}

impl DiscordBot {
    /// The answer to a press goes to the presser alone (an ephemeral follow-up), not to the
    /// channel; a press nobody answered (a stranger's) is told no.
    pub(super) fn answer_presses(
        &self,
        chat: &ChatRef,
        receipts: &[Receipt],
        rows: &mut Vec<NewOutbox>,
    ) {
        let presses: Vec<(u64, String)> = {
            let mut waiting = self.presses.lock().unwrap_or_else(|e| e.into_inner());
            receipts
                .iter()
                .filter_map(|r| waiting.remove(&r.0))
                .collect()
        };
        if presses.is_empty() {
            return;
        }
        let text = crate::channel::durable::press_answer(rows, |row| row.kind == "text");
        for (app, token) in presses {
            rows.push(NewOutbox {
                chat_id: chat.chat_id.clone(),
                thread_id: chat.thread_id.clone(),
                kind: "press",
                text: serde_json::json!({ "app": app, "token": token, "text": text }).to_string(),
            });
        }
    }
}

/// Delivers the rows of approvals: a request with its buttons, its message edited once
/// decided, and the answer to a press.
pub async fn deliver(
    bot: &DiscordBot,
    row: &OutboxRow,
    channel: ChannelId,
    classify: fn(serenity::Error) -> Failure,
) -> Result<Option<String>, Failure> {
    let spec: serde_json::Value = serde_json::from_str(&row.text).unwrap_or_default();
    let field = |key: &str| spec[key].as_str().unwrap_or_default().to_string();
    let http = bot.http.as_ref();
    match row.kind.as_str() {
        "press" => {
            if let Some(app) = spec["app"].as_u64().filter(|a| *a != 0) {
                http.set_application_id(ApplicationId::new(app));
            }
            let follow = CreateInteractionResponseFollowup::new()
                .content(field("text"))
                .ephemeral(true)
                .allowed_mentions(CreateAllowedMentions::new());
            match http
                .create_followup_message(&field("token"), &follow, vec![])
                .await
            {
                Ok(m) => Ok(Some(m.id.get().to_string())),
                // The press is too old to answer (tokens last fifteen minutes).
                Err(e) => match classify(e) {
                    retry @ (Failure::RetryAfter(_) | Failure::Transient(_)) => Err(retry),
                    Failure::Permanent(_) => Ok(None),
                },
            }
        }
        "approval" => {
            let code = field("code");
            let buttons = CreateActionRow::Buttons(vec![
                CreateButton::new(format!("approve:{code}"))
                    .label("Approve")
                    .style(ButtonStyle::Success),
                CreateButton::new(format!("deny:{code}"))
                    .label("Deny")
                    .style(ButtonStyle::Danger),
            ]);
            let message = CreateMessage::new()
                .content(field("text"))
                .allowed_mentions(CreateAllowedMentions::new())
                .flags(MessageFlags::SUPPRESS_EMBEDS)
                .components(vec![buttons]);
            let sent = channel
                .send_message(http, message)
                .await
                .map_err(classify)?;
            let id = sent.id.get().to_string();
            if let Err(e) = bot.store.set_approval_message(&code, &id).await {
                tracing::warn!(bot = %bot.id, "cannot keep the message of approval {code}: {e}");
            }
            Ok(Some(id))
        }
        _ => {
            // The request's message now says how it was decided, without its buttons.
            let shown = bot.store.approval(&field("code")).await.ok().flatten();
            if let Some(id) = shown
                .and_then(|a| a.message_id)
                .and_then(|id| id.parse::<u64>().ok())
                .filter(|id| *id != 0)
            {
                let change = EditMessage::new()
                    .content(field("text"))
                    .components(Vec::new())
                    .allowed_mentions(CreateAllowedMentions::new());
                match channel
                    .edit_message(http, MessageId::new(id), change)
                    .await
                    .map_err(classify)
                {
                    Ok(_) => return Ok(Some(id.to_string())),
                    Err(retry @ (Failure::RetryAfter(_) | Failure::Transient(_))) => {
                        return Err(retry);
                    }
                    Err(Failure::Permanent(_)) => {}
                }
            }
            let message = CreateMessage::new()
                .content(field("text"))
                .allowed_mentions(CreateAllowedMentions::new())
                .flags(MessageFlags::SUPPRESS_EMBEDS);
            let sent = channel
                .send_message(http, message)
                .await
                .map_err(classify)?;
            Ok(Some(sent.id.get().to_string()))
        }
    }
}
