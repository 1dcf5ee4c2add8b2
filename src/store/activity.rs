//! The append-only activity feed: every message, tool call, change and error.

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Result, Store};
use crate::domain::{Millis, now_millis};

/// One entry about to be written.
#[derive(Debug, Clone, Default)]
pub struct NewActivity {
    /// What happened, dotted: `message.in`, `tool.call`, `agent.create`, `llm.error`, ...
    pub kind: String,
    /// Who caused it: a caller label, an agent, or `system`.
    pub actor: String,
    pub agent: Option<String>,
    pub conversation_id: Option<i64>,
    /// One line for people.
    pub summary: String,
    /// Structured detail for machines.
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivityEntry {
    pub id: i64,
    pub at: Millis,
    pub kind: String,
    pub actor: String,
    pub agent: Option<String>,
    pub conversation_id: Option<i64>,
    pub summary: String,
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct ActivityFilter {
    /// Only kinds starting with this prefix (`tool.` matches `tool.call` and `tool.result`).
    pub kind_prefix: Option<String>,
    pub agent: Option<String>,
    pub since: Option<Millis>,
    pub limit: u32,
}

fn entry_from_row(row: &SqliteRow) -> Result<ActivityEntry> {
    let detail: Option<String> = row.try_get("detail")?;
    Ok(ActivityEntry {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        kind: row.try_get("kind")?,
        actor: row.try_get("actor")?,
        agent: row.try_get("agent")?,
        conversation_id: row.try_get("conversation_id")?,
        summary: row.try_get("summary")?,
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

impl Store {
    pub async fn record(&self, entry: NewActivity) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO activity (at, kind, actor, agent, conversation_id, summary, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(now_millis())
        .bind(&entry.kind)
        .bind(&entry.actor)
        .bind(&entry.agent)
        .bind(entry.conversation_id)
        .bind(&entry.summary)
        .bind(entry.detail.map(|d| d.to_string()))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// The newest entries matching the filter, newest first.
    pub async fn activity(&self, filter: &ActivityFilter) -> Result<Vec<ActivityEntry>> {
        let limit = i64::from(filter.limit.clamp(1, 1000));
        let prefix = filter
            .kind_prefix
            .as_deref()
            .map(|p| format!("{}%", p.replace('%', "")));
        let rows = sqlx::query(
            "SELECT * FROM activity \
             WHERE ($1 IS NULL OR kind LIKE $1) AND ($2 IS NULL OR agent = $2) AND ($3 IS NULL OR at >= $3) \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(prefix)
        .bind(&filter.agent)
        .bind(filter.since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }
}
