//! Turns a stopped process left unfinished: reported to their chat once, or closed quietly
//! where the channel handles the stored message again.

use super::Router;
use crate::channel::Outbound;
use crate::domain::Role;
use crate::store::{NewActivity, NewMessage};

impl Router {
    /// Reports turns that a stopped process left unfinished on these channels: the chat is told,
    /// and the conversation records it, once.
    pub async fn report_interrupted(&self, channels: &[String]) {
        self.end_interrupted(channels, true).await;
    }

    /// Closes turns a stopped process left unfinished on channels that replay their stored
    /// messages, where the message will not come again (the daemon's own work): the
    /// conversation records the interruption, and the chat hears nothing. A turn started by a
    /// stored platform message is left as it is: the message is handed over again and the turn
    /// resumes from its stored history, without the person's words being stored twice.
    pub async fn close_interrupted(&self, channels: &[String]) {
        self.end_interrupted(channels, false).await;
    }

    async fn end_interrupted(&self, channels: &[String], tell: bool) {
        let open = match self.inner.store.unanswered(channels).await {
            Ok(open) => open,
            Err(e) => {
                tracing::error!("cannot look for interrupted turns: {e}");
                return;
            }
        };
        for turn in open {
            if !tell && turn.replayed {
                continue;
            }
            let note = "[this turn was interrupted: operator stopped before it finished]";
            let _ = self
                .inner
                .store
                .append_message(
                    turn.conversation_id,
                    Role::Assistant,
                    &NewMessage::text(note),
                )
                .await;
            self.record(NewActivity {
                kind: "turn.interrupted".into(),
                actor: "system".into(),
                role: None,
                agent: Some(turn.agent.clone()),
                instance: None,
                conversation_id: Some(turn.conversation_id),
                summary: format!("interrupted by a stop: {}", turn.request),
                detail: None,
            });
            if !tell {
                continue;
            }
            let text = format!(
                "Your request \"{}\" to {} was interrupted: operator stopped before it finished. Send it again if it still matters.",
                turn.request.chars().take(80).collect::<String>(),
                turn.agent
            );
            self.inner
                .hub
                .deliver(&turn.chat, Outbound::Notice(text))
                .await;
        }
    }
}
