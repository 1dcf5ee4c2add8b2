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
    /// messages: the conversation records the interruption, and the chat hears nothing, since
    /// the message is handled again.
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
