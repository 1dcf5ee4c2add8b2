//! Bindings (chat -> agent), conversations and their messages.

use sqlx::Row;

use super::messages::{insert_message, insert_user_message, message_row, user_row};
use super::raw::Columns;
use super::{Result, Store, StoreError};
use crate::domain::{ChatRef, ImagePart, Millis, Role, StoredMessage, ToolCall, now_millis};

#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: i64,
    pub agent: String,
    pub chat: ChatRef,
    pub created_at: Millis,
    pub summary: Option<String>,
    /// Messages with an id up to this one are covered by `summary`.
    pub summary_upto: i64,
}

/// A message about to be appended.
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub tool_call_id: Option<String>,
    pub tool_name: Option<String>,
    pub is_error: bool,
    /// Images the model is shown with this message (a tool result's image).
    pub images: Vec<ImagePart>,
}

impl NewMessage {
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            ..Self::default()
        }
    }
}

fn conversation_from_row(row: &impl Columns) -> Result<Conversation> {
    Ok(Conversation {
        id: row.column("id")?,
        agent: row.column("agent")?,
        chat: ChatRef {
            channel: row.column("channel")?,
            chat_id: row.column("chat_id")?,
            thread_id: row.column("thread_id")?,
        },
        created_at: row.column("created_at")?,
        summary: row.column("summary")?,
        summary_upto: row.column("summary_upto")?,
    })
}

fn message_from_row(row: &impl Columns) -> Result<StoredMessage> {
    let role: String = row.column("role")?;
    let role = Role::parse(&role)
        .ok_or_else(|| StoreError::Conflict(format!("unknown message role {role:?}")))?;
    let tool_calls: Option<String> = row.column("tool_calls")?;
    let tool_calls = parse_tool_calls(tool_calls.as_deref())?;
    Ok(StoredMessage {
        id: row.column("id")?,
        role,
        content: row.column("content")?,
        tool_calls,
        tool_call_id: row.column("tool_call_id")?,
        tool_name: row.column("tool_name")?,
        is_error: row.column::<i64>("is_error")? != 0,
        created_at: row.column("created_at")?,
        images: Vec::new(),
    })
}

pub(super) fn parse_tool_calls(json: Option<&str>) -> Result<Vec<ToolCall>> {
    match json {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| StoreError::Conflict(format!("stored tool calls are unreadable: {e}"))),
        None => Ok(Vec::new()),
    }
}

const CONVERSATION_COLUMNS: &str =
    "id, agent, channel, chat_id, thread_id, created_at, summary, summary_upto";

/// The chat's agent (its binding, else its bot's default, else `$4`) and its open conversation
/// with that agent, if any (`id` NULL when none): built once, read at every turn.
static BOUND_CONVERSATION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH a (bound) AS (SELECT COALESCE(\
           (SELECT agent FROM bindings WHERE channel = ?1 AND chat_id = ?2 AND thread_id = ?3), \
           (SELECT default_agent FROM bots WHERE channel = ?1), ?4)) \
         SELECT a.bound, {} FROM a LEFT JOIN conversations c ON c.id = \
         (SELECT id FROM conversations WHERE channel = ?1 AND chat_id = ?2 AND thread_id = ?3 \
          AND agent = a.bound AND closed_at IS NULL ORDER BY id DESC LIMIT 1)",
        CONVERSATION_COLUMNS
            .split(", ")
            .map(|c| format!("c.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
});

impl Store {
    /// The agent this chat is bound to, if any.
    pub async fn binding(&self, chat: &ChatRef) -> Result<Option<String>> {
        let agent = sqlx::query_scalar(
            "SELECT agent FROM bindings WHERE channel = $1 AND chat_id = $2 AND thread_id = $3",
        )
        .bind(&chat.channel)
        .bind(&chat.chat_id)
        .bind(&chat.thread_id)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        Ok(agent)
    }

    /// The agent a chat talks to: its binding, else its bot's default agent (`None`: neither).
    pub async fn agent_for(&self, chat: &ChatRef) -> Result<Option<String>> {
        let agent: Option<String> = sqlx::query_scalar(
            "SELECT COALESCE(\
               (SELECT agent FROM bindings WHERE channel = $1 AND chat_id = $2 AND thread_id = $3), \
               (SELECT default_agent FROM bots WHERE channel = $1))",
        )
        .bind(&chat.channel)
        .bind(&chat.chat_id)
        .bind(&chat.thread_id)
        .fetch_one(&mut *self.reader().await?)
        .await?;
        Ok(agent)
    }

    /// Every binding: (chat, agent), by agent.
    pub async fn list_bindings(&self) -> Result<Vec<(ChatRef, String)>> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT channel, chat_id, thread_id, agent FROM bindings ORDER BY agent, channel, chat_id",
        )
        .fetch_all(&mut *self.reader().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(channel, chat_id, thread_id, agent)| {
                (
                    ChatRef {
                        channel,
                        chat_id,
                        thread_id,
                    },
                    agent,
                )
            })
            .collect())
    }

    /// Binds the chat to `agent`, replacing an earlier binding.
    pub async fn bind(&self, chat: &ChatRef, agent: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO bindings (channel, chat_id, thread_id, agent, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (channel, chat_id, thread_id) DO UPDATE SET agent = excluded.agent",
        )
        .bind(&chat.channel)
        .bind(&chat.chat_id)
        .bind(&chat.thread_id)
        .bind(agent)
        .bind(now_millis())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Removes the chat's binding; returns whether there was one.
    pub async fn unbind(&self, chat: &ChatRef) -> Result<bool> {
        let n = sqlx::query(
            "DELETE FROM bindings WHERE channel = $1 AND chat_id = $2 AND thread_id = $3",
        )
        .bind(&chat.channel)
        .bind(&chat.chat_id)
        .bind(&chat.thread_id)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// The open conversation of this chat with this agent, created when there is none.
    pub async fn open_conversation(&self, chat: &ChatRef, agent: &str) -> Result<Conversation> {
        let existing = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations \
             WHERE channel = $1 AND chat_id = $2 AND thread_id = $3 AND agent = $4 \
             AND closed_at IS NULL ORDER BY id DESC LIMIT 1"
        ))
        .bind(&chat.channel)
        .bind(&chat.chat_id)
        .bind(&chat.thread_id)
        .bind(agent)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        match existing {
            Some(row) => conversation_from_row(&row),
            None => self.create_conversation(chat, agent).await,
        }
    }

    /// A new open conversation of this chat with this agent.
    async fn create_conversation(&self, chat: &ChatRef, agent: &str) -> Result<Conversation> {
        let now = now_millis();
        let row = sqlx::query(&format!(
            "INSERT INTO conversations (agent, channel, chat_id, thread_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {CONVERSATION_COLUMNS}"
        ))
        .bind(agent)
        .bind(&chat.channel)
        .bind(&chat.chat_id)
        .bind(&chat.thread_id)
        .bind(now)
        .fetch_one(&self.write)
        .await?;
        conversation_from_row(&row)
    }

    /// The open conversation of this chat with the agent it talks to (its binding, else its
    /// bot's default agent, else `fallback`), created when there is none: what
    /// [`Store::agent_for`] and [`Store::open_conversation`] do, in one read.
    pub async fn open_bound_conversation(
        &self,
        chat: &ChatRef,
        fallback: &str,
    ) -> Result<Conversation> {
        let params = [
            (&chat.channel).into(),
            (&chat.chat_id).into(),
            (&chat.thread_id).into(),
            fallback.into(),
        ];
        let found = self.inline.read(|db| {
            db.query_map(BOUND_CONVERSATION.as_str(), &params, |row| {
                Ok(match row.column::<Option<i64>>("id")? {
                    Some(_) => Ok(conversation_from_row(row)?),
                    None => Err(row.column::<String>("bound")?),
                })
            })
        })?;
        match found.into_iter().next() {
            Some(Ok(open)) => Ok(open),
            Some(Err(agent)) => self.create_conversation(chat, &agent).await,
            None => Err(StoreError::NotFound("row".into())),
        }
    }

    /// One conversation by id, open or closed.
    pub async fn conversation(&self, id: i64) -> Result<Conversation> {
        let row = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *self.reader().await?)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("conversation {id}")))?;
        conversation_from_row(&row)
    }

    /// Closes every open conversation of the chat, so the next message starts afresh.
    pub async fn close_conversations(&self, chat: &ChatRef) -> Result<u64> {
        let n = sqlx::query(
            "UPDATE conversations SET closed_at = $1 \
             WHERE channel = $2 AND chat_id = $3 AND thread_id = $4 AND closed_at IS NULL",
        )
        .bind(now_millis())
        .bind(&chat.channel)
        .bind(&chat.chat_id)
        .bind(&chat.thread_id)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n)
    }

    pub async fn append_message(
        &self,
        conversation_id: i64,
        role: Role,
        message: &NewMessage,
    ) -> Result<StoredMessage> {
        let (alone, row) = message_row(conversation_id, role, message)?;
        self.writer.write(alone, row, insert_message).await
    }

    /// Queues a message without waiting for it: a later awaited write (queued after it) makes
    /// it durable too, and a read after that sees it. A failure is logged.
    pub fn queue_message(&self, conversation_id: i64, role: Role, message: &NewMessage) {
        match message_row(conversation_id, role, message) {
            Ok((alone, row)) => {
                self.writer
                    .queue(super::writer::Place::Kept, alone, row, insert_message)
            }
            Err(e) => tracing::error!(conversation_id, "cannot store a message: {e}"),
        }
    }

    /// Stores what a person said, once: a message that carries the platform's receipt and is
    /// already in this conversation (handled again after a crash) is not stored again.
    /// Returns whether it was stored now, once it is visible to every reader.
    ///
    /// Its commit is not synced on its own (unless it shares one with a write that needs it):
    /// nothing is told that the message is stored until the turn's answer, whose synced commit
    /// makes it durable too, and a platform's message is already stored as received (its
    /// receipt) and would be handled again. It costs a turn one fsync fewer.
    pub async fn append_user_message(
        &self,
        conversation_id: i64,
        content: &str,
        receipt: Option<i64>,
        images: &[ImagePart],
    ) -> Result<bool> {
        let (alone, row) = user_row(conversation_id, content, receipt, images);
        self.writer
            .write_visible(alone, row, insert_user_message)
            .await
    }

    /// The final answer stored after the user message with this receipt, if the turn it
    /// started got that far (a crash between storing the answer and settling the receipt).
    pub async fn answer_after_receipt(
        &self,
        conversation_id: i64,
        receipt: i64,
    ) -> Result<Option<String>> {
        let answer = sqlx::query_scalar(
            "SELECT content FROM messages WHERE conversation_id = $1 AND role = 'assistant' \
             AND tool_calls IS NULL AND id > \
             (SELECT id FROM messages WHERE conversation_id = $1 AND receipt = $2) \
             AND id = (SELECT MAX(id) FROM messages WHERE conversation_id = $1)",
        )
        .bind(conversation_id)
        .bind(receipt)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        Ok(answer)
    }

    /// Messages after `after_id`, oldest first.
    pub async fn messages_after(
        &self,
        conversation_id: i64,
        after_id: i64,
    ) -> Result<Vec<StoredMessage>> {
        let params = [conversation_id.into(), after_id.into()];
        self.inline.read(|db| {
            let mut with_images = 0;
            let mut messages = db.query_map(
                "SELECT * FROM messages WHERE conversation_id = ?1 AND id > ?2 ORDER BY id",
                &params,
                |row| {
                    if row.column::<i64>("images")? > 0 {
                        with_images += 1;
                    }
                    message_from_row(row)
                },
            )?;
            if with_images == 0 {
                return Ok(messages);
            }
            let images = db.query_map(
                "SELECT i.message_id, i.media_type, i.label, i.data FROM message_images i \
                 JOIN messages m ON m.id = i.message_id \
                 WHERE m.conversation_id = ?1 AND m.id > ?2 AND m.images > 0 \
                 ORDER BY i.message_id, i.position",
                &params,
                |row| {
                    let image = ImagePart {
                        media_type: row.column("media_type")?,
                        label: row.column("label")?,
                        data: row.column("data")?,
                    };
                    Ok((row.column::<i64>("message_id")?, image))
                },
            )?;
            for (id, image) in images {
                if let Some(m) = messages.iter_mut().find(|m| m.id == id) {
                    m.images.push(image);
                }
            }
            Ok(messages)
        })
    }

    /// The session of the CLI that thinks for this conversation's agent, if one was started.
    pub async fn runtime_session(&self, conversation_id: i64) -> Result<Option<String>> {
        let session = sqlx::query_scalar("SELECT runtime_session FROM conversations WHERE id = $1")
            .bind(conversation_id)
            .fetch_one(&mut *self.reader().await?)
            .await?;
        Ok(session)
    }

    pub async fn set_runtime_session(&self, conversation_id: i64, session: &str) -> Result<()> {
        sqlx::query("UPDATE conversations SET runtime_session = $1 WHERE id = $2")
            .bind(session)
            .bind(conversation_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Records that `summary` now stands for every message up to `upto`.
    pub async fn set_summary(&self, conversation_id: i64, summary: &str, upto: i64) -> Result<()> {
        sqlx::query("UPDATE conversations SET summary = $1, summary_upto = $2 WHERE id = $3")
            .bind(summary)
            .bind(upto)
            .bind(conversation_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Counts for the status report: (agents, open conversations, messages).
    pub async fn counts(&self) -> Result<(i64, i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM agents) AS agents, \
             (SELECT COUNT(*) FROM conversations WHERE closed_at IS NULL) AS conversations, \
             (SELECT COUNT(*) FROM messages) AS messages",
        )
        .fetch_one(&mut *self.reader().await?)
        .await?;
        Ok((
            row.try_get("agents")?,
            row.try_get("conversations")?,
            row.try_get("messages")?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::ChatRef;
    use crate::store::Store;

    /// One read finds what `agent_for` and `open_conversation` found: the binding, else the
    /// fallback; the conversation kept, a new one for a new agent.
    #[tokio::test]
    async fn the_bound_conversation_is_the_one_agent_for_picks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_and_migrate(dir.path()).await.unwrap();
        let chat = ChatRef::new("console", "c1");
        let first = store
            .open_bound_conversation(&chat, "operator")
            .await
            .unwrap();
        assert_eq!(first.agent, "operator");
        let again = store
            .open_bound_conversation(&chat, "operator")
            .await
            .unwrap();
        assert_eq!(again, first);
        store.bind(&chat, "daniel").await.unwrap();
        let bound = store
            .open_bound_conversation(&chat, "operator")
            .await
            .unwrap();
        assert_eq!(bound.agent, "daniel");
        assert_ne!(bound.id, first.id);
        assert_eq!(
            store.agent_for(&chat).await.unwrap().as_deref(),
            Some("daniel")
        );
        assert_eq!(
            store.open_conversation(&chat, "daniel").await.unwrap(),
            bound
        );
        store.close().await;
    }
}
