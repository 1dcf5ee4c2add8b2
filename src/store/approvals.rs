//! Approvals: requests for an owner's yes, decided exactly once by a conditional update.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Result, Store};
use crate::domain::{ChatRef, now_millis};

/// A request for an owner's yes.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRecord {
    pub code: String,
    pub op: String,
    /// What will happen, in words.
    pub summary: String,
    pub chat: Option<ChatRef>,
    pub requested_by: String,
    pub agent: Option<String>,
    /// pending | approved | denied | expired
    pub state: String,
    pub decided_by: Option<String>,
    pub message_id: Option<String>,
}

/// A request about to be stored.
pub struct NewApproval<'a> {
    pub code: &'a str,
    pub op: &'a str,
    pub args: &'a str,
    pub summary: &'a str,
    pub chat: Option<&'a ChatRef>,
    pub requested_by: &'a str,
    pub agent: Option<&'a str>,
    pub expires_at: i64,
}

fn from_row(row: &SqliteRow) -> Result<ApprovalRecord> {
    let channel: String = row.try_get("channel")?;
    Ok(ApprovalRecord {
        code: row.try_get("code")?,
        op: row.try_get("op")?,
        summary: row.try_get("summary")?,
        chat: (!channel.is_empty())
            .then(|| -> Result<ChatRef> {
                Ok(ChatRef {
                    channel,
                    chat_id: row.try_get("chat_id")?,
                    thread_id: row.try_get("thread_id")?,
                })
            })
            .transpose()?,
        requested_by: row.try_get("requested_by")?,
        agent: row.try_get("agent")?,
        state: row.try_get("state")?,
        decided_by: row.try_get("decided_by")?,
        message_id: row.try_get("message_id")?,
    })
}

impl Store {
    pub async fn create_approval(&self, new: &NewApproval<'_>) -> Result<()> {
        let (channel, chat_id, thread_id) = new.chat.map_or(("", "", ""), |c| {
            (c.channel.as_str(), c.chat_id.as_str(), c.thread_id.as_str())
        });
        sqlx::query(
            "INSERT INTO approvals (code, op, args, summary, channel, chat_id, thread_id, \
             requested_by, agent, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(new.code)
        .bind(new.op)
        .bind(new.args)
        .bind(new.summary)
        .bind(channel)
        .bind(chat_id)
        .bind(thread_id)
        .bind(new.requested_by)
        .bind(new.agent)
        .bind(now_millis())
        .bind(new.expires_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn approval(&self, code: &str) -> Result<Option<ApprovalRecord>> {
        let row = sqlx::query("SELECT * FROM approvals WHERE code = $1")
            .bind(code)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Decides a pending request: `state` is approved, denied or expired. Only the first
    /// decision counts; `None` when the request was not pending (any more).
    pub async fn decide_approval(
        &self,
        code: &str,
        state: &str,
        decided_by: &str,
    ) -> Result<Option<ApprovalRecord>> {
        let row = sqlx::query(
            "UPDATE approvals SET state = $2, decided_by = $3, decided_at = $4 \
             WHERE code = $1 AND state = 'pending' RETURNING *",
        )
        .bind(code)
        .bind(state)
        .bind(decided_by)
        .bind(now_millis())
        .fetch_optional(&self.write)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Expires the pending requests of chats on these channels (a stopped process cannot
    /// finish them) and returns them. Requests of other channels belong to another process
    /// sharing the state directory (`operator chat` beside `operator run`).
    pub async fn expire_pending_approvals(
        &self,
        channels: &[String],
    ) -> Result<Vec<ApprovalRecord>> {
        let codes: Vec<(String, String)> =
            sqlx::query_as("SELECT code, channel FROM approvals WHERE state = 'pending'")
                .fetch_all(&mut *self.reader().await?)
                .await?;
        let mut expired = Vec::new();
        for (code, channel) in codes {
            if !channels.contains(&channel) {
                continue;
            }
            if let Some(record) = self.decide_approval(&code, "expired", "restart").await? {
                expired.push(record);
            }
        }
        Ok(expired)
    }

    /// Records the platform message that shows a request.
    pub async fn set_approval_message(&self, code: &str, message_id: &str) -> Result<()> {
        sqlx::query("UPDATE approvals SET message_id = $2 WHERE code = $1")
            .bind(code)
            .bind(message_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}
