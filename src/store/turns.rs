//! Conversations whose last word is not an answer: a turn cut short by a crash (or a message
//! accepted and never run). Every turn that ends writes an assistant message (the reply, or a
//! note that it failed or was cancelled), so nothing else is needed on the hot path: a trigger
//! keeps `conversations.awaiting` in the statement that stores each message (migration 19).

use sqlx::Row;

use super::{Result, Store};
use crate::domain::ChatRef;

/// An open conversation waiting for an answer that no running process will give.
#[derive(Debug, Clone, PartialEq)]
pub struct Unanswered {
    pub conversation_id: i64,
    pub agent: String,
    pub chat: ChatRef,
    /// The last message from the person (or the daemon) that started the turn.
    pub request: String,
    /// Whether that message came with a platform receipt: its channel hands it over again,
    /// and the turn resumes where it stopped.
    pub replayed: bool,
}

impl Store {
    /// Open conversations on these channels whose last message is not a final assistant answer.
    pub async fn unanswered(&self, channels: &[String]) -> Result<Vec<Unanswered>> {
        let rows = sqlx::query(
            "SELECT c.id, c.agent, c.channel, c.chat_id, c.thread_id, \
             (SELECT content FROM messages WHERE conversation_id = c.id AND role = 'user' ORDER BY id DESC LIMIT 1) \
             AS request, \
             (SELECT receipt IS NOT NULL FROM messages WHERE conversation_id = c.id AND role = 'user' ORDER BY id DESC LIMIT 1) \
             AS replayed \
             FROM conversations c WHERE c.awaiting = 1 AND c.closed_at IS NULL ORDER BY c.id",
        )
        .fetch_all(&mut *self.reader().await?)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let channel: String = row.try_get("channel")?;
            if !channels.contains(&channel) {
                continue;
            }
            out.push(Unanswered {
                conversation_id: row.try_get("id")?,
                agent: row.try_get("agent")?,
                chat: ChatRef {
                    channel,
                    chat_id: row.try_get("chat_id")?,
                    thread_id: row.try_get("thread_id")?,
                },
                request: row
                    .try_get::<Option<String>, _>("request")?
                    .unwrap_or_default(),
                replayed: row.try_get::<Option<bool>, _>("replayed")?.unwrap_or(false),
            });
        }
        Ok(out)
    }
}
