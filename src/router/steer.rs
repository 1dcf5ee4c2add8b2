//! How a turn takes in its messages: the first one (and in `collect` mode every waiting one
//! that may join), stored once each with its receipt; and, in `steer` mode, the `Steering` a
//! running turn asks before its next model call for the messages sent meanwhile.

use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Router;
use super::mentions::Resolved;
use super::queue::{self, Job};
use crate::agent::llm::BoxFuture;
use crate::agent::{Steering, Turn};
use crate::channel::Receipt;
use crate::config::QueueMode;
use crate::domain::{ImagePart, OPERATOR, split_mention};
use crate::store::NewActivity;

impl Router {
    /// Picks the agent and stores the turn's first message (in `collect` mode with every
    /// waiting message that may join it). An error is for the user.
    pub(super) async fn start_turn(
        &self,
        mut first: Job,
        cancel: CancellationToken,
        receipts: &Receipts,
    ) -> Result<Started, String> {
        let key = first.join_key();
        let mut images = Vec::new();
        let resolved = if first.mentions {
            self.resolve_mentions(&first.message, first.agent.as_deref())
                .await?
        } else {
            Resolved::Nothing
        };
        // `None`: the chat's own agent, found with its conversation in one read.
        let (agent, text) = match resolved {
            Resolved::Answer(text) => {
                receipts.push(first.message.receipt.take());
                return Ok(Started::Answered(text));
            }
            Resolved::Files {
                agent,
                notes,
                images: shown,
            } => {
                images = shown;
                let text = [first.message.text.trim(), &notes.join("\n")].join("\n");
                (Some(agent), text)
            }
            Resolved::Nothing => match (&first.agent, split_mention(&first.message.text)) {
                (Some(agent), _) => (Some(agent.clone()), first.message.text.clone()),
                (None, None) => (None, first.message.text.clone()),
                (None, mention) => {
                    let (agent, text) = self.pick_agent(&first.message, mention).await?;
                    (Some(agent), text)
                }
            },
        };
        first.message.text = text;
        let store = &self.inner.store;
        let chat = &first.message.chat;
        let conversation = match &agent {
            None => store.open_bound_conversation(chat, OPERATOR).await,
            Some(agent) => store.open_conversation(chat, agent).await,
        }
        .map_err(|e| format!("could not open the conversation: {e}"))?;
        let agent = conversation.agent.clone();
        let caller = first.caller.clone();
        let mut fresh = self
            .join(&conversation, &agent, first, images, receipts)
            .await?;
        let chat = conversation.chat.clone();
        let mut steer = None;
        if let Some(key) = key {
            match self.inner.queue_mode {
                QueueMode::Collect => {
                    for job in self.inner.queues.take_joining(&chat, &key, &agent) {
                        fresh |= self
                            .join(&conversation, &agent, job, Vec::new(), receipts)
                            .await?;
                    }
                }
                QueueMode::Steer => {
                    steer = Some(Arc::new(ChatSteering {
                        router: self.clone(),
                        conversation: conversation.clone(),
                        agent: agent.clone(),
                        key,
                        receipts: receipts.clone(),
                    }) as Arc<dyn Steering>);
                }
            }
        }
        if !fresh && let Some(last) = receipts.all().last() {
            let stored = self
                .inner
                .store
                .answer_after_receipt(conversation.id, last.0)
                .await
                .map_err(|e| format!("could not read the conversation: {e}"))?;
            if let Some(text) = stored {
                return Ok(Started::Answered(text));
            }
        }
        let reply_rides_with_answer =
            !receipts.all().is_empty() && self.inner.hub.answers_are_stored(&chat.channel);
        Ok(Started::Run(Turn {
            conversation,
            caller,
            cancel,
            steer,
            reply_rides_with_answer,
        }))
    }

    /// Adds one message to a turn: hands its files to the agent's instance, stores it in the
    /// conversation (once: a message handled again after a crash is already there), and keeps
    /// its receipt for the turn's answer. Returns whether it was stored now.
    pub(super) async fn join(
        &self,
        conversation: &crate::store::Conversation,
        agent: &str,
        job: Job,
        mut images: Vec<ImagePart>,
        receipts: &Receipts,
    ) -> Result<bool, String> {
        let mut message = job.message;
        let receipt = message.receipt.take();
        let receipt_id = receipt.as_ref().map(|r| r.0);
        receipts.push(receipt);
        let mut text = match split_mention(&message.text) {
            Some((name, rest)) if name == agent => rest.to_string(),
            _ => message.text.clone(),
        };
        let (voices, attachments): (Vec<_>, Vec<_>) = std::mem::take(&mut message.attachments)
            .into_iter()
            .partition(|a| a.voice);
        if !voices.is_empty() {
            let heard = self.transcribe(&message.chat, voices).await?;
            receipts.set_spoken();
            text = [heard.as_str(), text.trim()].join("\n").trim().to_string();
        }
        if !attachments.is_empty() {
            let (notes, shown) = self
                .take_uploads(&message.chat, &job.caller, agent, attachments)
                .await;
            images.extend(shown);
            text = [text.trim().to_string(), notes.join("\n")]
                .join("\n")
                .trim()
                .to_string();
        }
        let fresh = self
            .inner
            .store
            .append_user_message(conversation.id, &text, receipt_id, &images)
            .await
            .map_err(|e| format!("could not store the message: {e}"))?;
        if fresh {
            self.record(NewActivity {
                kind: "message.in".into(),
                actor: job.caller.label.clone(),
                role: Some(job.caller.role()),
                agent: Some(agent.to_string()),
                instance: None,
                conversation_id: Some(conversation.id),
                summary: text.chars().take(160).collect(),
                detail: Some(
                    json!({ "chat": message.chat.to_string(), "from": message.sender_name }),
                ),
            });
        }
        Ok(fresh)
    }
}

/// What starting a turn came to.
pub(super) enum Started {
    Run(Turn),
    /// Every message was already answered before a crash; this is the stored answer.
    Answered(String),
}

/// The receipts of the messages one turn answers, shared with its steering, and whether one
/// of them was a voice note (its reply may be spoken).
#[derive(Clone, Default)]
pub(super) struct Receipts {
    list: Arc<Mutex<Vec<Receipt>>>,
    spoken: Arc<std::sync::atomic::AtomicBool>,
}

impl Receipts {
    pub(super) fn push(&self, receipt: Option<Receipt>) {
        if let Some(receipt) = receipt {
            self.list
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(receipt);
        }
    }

    pub(super) fn all(&self) -> Vec<Receipt> {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(super) fn set_spoken(&self) {
        self.spoken
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) fn spoken(&self) -> bool {
        self.spoken.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A running turn's way to the messages sent in its chat meanwhile (`steer` mode).
struct ChatSteering {
    router: Router,
    conversation: crate::store::Conversation,
    agent: String,
    key: queue::JoinKey,
    receipts: Receipts,
}

impl Steering for ChatSteering {
    fn take(&self) -> BoxFuture<'_, usize> {
        Box::pin(async move {
            let chat = &self.conversation.chat;
            let jobs = self
                .router
                .inner
                .queues
                .take_joining(chat, &self.key, &self.agent);
            let mut joined = 0;
            for job in jobs {
                match self
                    .router
                    .join(
                        &self.conversation,
                        &self.agent,
                        job,
                        Vec::new(),
                        &self.receipts,
                    )
                    .await
                {
                    Ok(_) => joined += 1,
                    // Its receipt is already with the turn, whose ending answers it.
                    Err(e) => tracing::error!(%chat, "a message could not join the turn: {e}"),
                }
            }
            joined
        })
    }
}
