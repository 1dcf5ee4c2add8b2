//! The append-only activity feed: every message, tool call, change and error.
//!
//! Entries are written by one background task in batches, so recording never puts a database
//! round trip (or an fsync) on a turn's path. Reads and `Store::close` flush the queue first,
//! so a reader always sees what was recorded before it asked.

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{Result, Store};
use crate::domain::{Millis, now_millis};
use crate::secrets::Redactor;

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

/// What the writer task is asked to do.
#[derive(Debug)]
pub(super) enum Command {
    Write(NewActivity, Millis),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// Largest batch written in one transaction.
const BATCH: usize = 256;

/// Starts the writer task; it ends when every sender is gone.
pub(super) fn spawn_writer(pool: SqlitePool) -> mpsc::UnboundedSender<Command> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut batch = Vec::new();
        let mut waiters = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Write(entry, at) => batch.push((entry, at)),
                    Command::Flush(waiter) => waiters.push(waiter),
                }
                if batch.len() < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                if let Err(e) = write_batch(&pool, &batch).await {
                    tracing::error!(entries = batch.len(), "cannot write the activity feed: {e}");
                }
                batch.clear();
            }
            for waiter in waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    });
    tx
}

async fn write_batch(pool: &SqlitePool, batch: &[(NewActivity, Millis)]) -> Result<()> {
    // Secret values never reach the feed on disk.
    let redactor = Redactor::global();
    let mut tx = pool.begin().await?;
    for (entry, at) in batch {
        sqlx::query(
            "INSERT INTO activity (at, kind, actor, agent, conversation_id, summary, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(at)
        .bind(&entry.kind)
        .bind(&entry.actor)
        .bind(&entry.agent)
        .bind(entry.conversation_id)
        .bind(redactor.redact(&entry.summary).as_ref())
        .bind(
            entry
                .detail
                .as_ref()
                .map(|d| redactor.redact(&d.to_string()).into_owned()),
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

impl Store {
    /// Queues an entry for the feed. Never waits on the database.
    pub fn record(&self, entry: NewActivity) {
        if self
            .activity
            .send(Command::Write(entry, now_millis()))
            .is_err()
        {
            tracing::error!("the activity writer has stopped; an entry was lost");
        }
    }

    /// Waits until every entry recorded so far is in the database.
    pub async fn flush_activity(&self) {
        let (done, wait) = oneshot::channel();
        if self.activity.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// The newest entries matching the filter, newest first.
    pub async fn activity(&self, filter: &ActivityFilter) -> Result<Vec<ActivityEntry>> {
        self.flush_activity().await;
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
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }
}

impl Store {
    /// How many entries of each kind the feed holds (flushed first), for metrics.
    pub async fn activity_counts(&self) -> Result<Vec<(String, i64)>> {
        self.flush_activity().await;
        let rows = sqlx::query(
            "SELECT CASE WHEN kind LIKE 'op.%' AND agent IS NOT NULL THEN 'tool.call' ELSE kind END AS k, \
             COUNT(*) AS n FROM activity GROUP BY k",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("k")?, r.try_get("n")?)))
            .collect()
    }
}
