//! Turns in flight, so a restart can tell which were cut short.

use sqlx::Row;

use super::{Result, Store};
use crate::domain::{ChatRef, Millis, now_millis};

/// A turn that started and never ended.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTurn {
    pub id: i64,
    pub conversation_id: i64,
    pub agent: String,
    pub chat: ChatRef,
    pub request: String,
    pub started_at: Millis,
}

impl Store {
    pub async fn begin_turn(
        &self,
        conversation_id: i64,
        agent: &str,
        chat: &ChatRef,
        request: &str,
    ) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO turns (conversation_id, agent, channel, chat_id, thread_id, request, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(conversation_id)
        .bind(agent)
        .bind(&chat.channel)
        .bind(&chat.chat_id)
        .bind(&chat.thread_id)
        .bind(request.chars().take(200).collect::<String>())
        .bind(now_millis())
        .fetch_one(&self.write)
        .await?;
        Ok(id)
    }

    /// Closes a turn; returns false when it was already closed.
    pub async fn end_turn(&self, id: i64, outcome: &str) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE turns SET finished_at = $1, outcome = $2 WHERE id = $3 AND finished_at IS NULL",
        )
        .bind(now_millis())
        .bind(outcome)
        .bind(id)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Turns never closed, on the given channels.
    pub async fn open_turns(&self, channels: &[String]) -> Result<Vec<OpenTurn>> {
        let rows = sqlx::query("SELECT * FROM turns WHERE finished_at IS NULL ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let channel: String = row.try_get("channel")?;
            if !channels.contains(&channel) {
                continue;
            }
            out.push(OpenTurn {
                id: row.try_get("id")?,
                conversation_id: row.try_get("conversation_id")?,
                agent: row.try_get("agent")?,
                chat: ChatRef {
                    channel,
                    chat_id: row.try_get("chat_id")?,
                    thread_id: row.try_get("thread_id")?,
                },
                request: row.try_get("request")?,
                started_at: row.try_get("started_at")?,
            });
        }
        Ok(out)
    }
}
