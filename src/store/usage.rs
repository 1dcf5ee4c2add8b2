//! Model usage records: one row per request, summed for budgets, `/usage` and metrics.

use sqlx::Row;

use super::{Result, Store};
use crate::domain::Millis;

/// A model request about to be recorded.
#[derive(Debug, Clone, Default)]
pub struct NewUsage {
    pub at: Millis,
    pub agent: String,
    pub conversation_id: Option<i64>,
    pub source: String,
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub cost_usd: f64,
    pub estimated: bool,
}

fn insert_usage(u: &NewUsage, db: &mut super::raw::Db) -> Result<()> {
    db.execute(
        "INSERT INTO usage (at, agent, conversation_id, source, provider, model, input_tokens, \
         output_tokens, cache_read, cache_write, cost_usd, estimated) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        &[
            u.at.into(),
            (&u.agent).into(),
            u.conversation_id.into(),
            (&u.source).into(),
            (&u.provider).into(),
            (&u.model).into(),
            (u.input_tokens as i64).into(),
            (u.output_tokens as i64).into(),
            (u.cache_read as i64).into(),
            (u.cache_write as i64).into(),
            u.cost_usd.into(),
            u.estimated.into(),
        ],
    )?;
    Ok(())
}

/// Usage summed over a group (an agent, a model, a day, or everything).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct UsageRow {
    pub key: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read: i64,
    pub cache_write: i64,
    pub cost_usd: f64,
    /// Some of the cost was counted at the highest price (a model without its own).
    pub estimated: bool,
}

impl Store {
    /// Queues a usage record without waiting for it (see `Writer::queue`): it is committed
    /// with the next synced commit (the turn's next stored message, queued after it), or on its
    /// own within 50 ms; a person's message, whose commit is not synced, does not take it.
    pub fn queue_usage(&self, u: NewUsage) {
        let write = super::writer::Alone::OneStatement;
        self.writer
            .queue(super::writer::Place::Any, write, u, insert_usage);
    }

    pub async fn record_usage(&self, u: &NewUsage) -> Result<()> {
        let write = super::writer::Alone::OneStatement;
        self.writer.write(write, u.clone(), insert_usage).await
    }

    /// USD spent since `since`, by everyone or by one agent.
    pub async fn spent_since(&self, since: Millis, agent: Option<&str>) -> Result<f64> {
        let spent: Option<f64> = match agent {
            Some(agent) => {
                sqlx::query_scalar("SELECT SUM(cost_usd) FROM usage WHERE at >= $1 AND agent = $2")
                    .bind(since)
                    .bind(agent)
                    .fetch_one(&mut *self.reader().await?)
                    .await?
            }
            None => {
                sqlx::query_scalar("SELECT SUM(cost_usd) FROM usage WHERE at >= $1")
                    .bind(since)
                    .fetch_one(&mut *self.reader().await?)
                    .await?
            }
        };
        Ok(spent.unwrap_or(0.0))
    }

    /// Usage since `since`, grouped by `by`: `agent`, `model`, `day` (UTC), or `all`.
    pub async fn usage_since(&self, since: Millis, by: &str) -> Result<Vec<UsageRow>> {
        let key = match by {
            "agent" => "agent",
            "model" => "provider || '/' || model",
            "day" => "strftime('%Y-%m-%d', at / 1000, 'unixepoch')",
            _ => "'all'",
        };
        let rows = sqlx::query(&format!(
            "SELECT {key} AS key, COUNT(*) AS requests, SUM(input_tokens) AS input, \
             SUM(output_tokens) AS output, SUM(cache_read) AS cache_read, \
             SUM(cache_write) AS cache_write, SUM(cost_usd) AS cost, MAX(estimated) AS estimated \
             FROM usage WHERE at >= $1 GROUP BY 1 ORDER BY cost DESC, 1"
        ))
        .bind(since)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageRow {
                    key: r.try_get("key")?,
                    requests: r.try_get("requests")?,
                    input_tokens: r.try_get("input")?,
                    output_tokens: r.try_get("output")?,
                    cache_read: r.try_get("cache_read")?,
                    cache_write: r.try_get("cache_write")?,
                    cost_usd: r.try_get("cost")?,
                    estimated: r.try_get::<i64, _>("estimated")? != 0,
                })
            })
            .collect()
    }

    /// Totals per (agent, model) over all time, for the Prometheus counters.
    pub async fn usage_counters(&self) -> Result<Vec<(String, String, UsageRow)>> {
        let rows = sqlx::query(
            "SELECT agent, model, COUNT(*) AS requests, SUM(input_tokens) AS input, \
             SUM(output_tokens) AS output, SUM(cache_read) AS cache_read, \
             SUM(cache_write) AS cache_write, SUM(cost_usd) AS cost, MAX(estimated) AS estimated \
             FROM usage GROUP BY agent, model ORDER BY agent, model",
        )
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("agent")?,
                    r.try_get("model")?,
                    UsageRow {
                        key: String::new(),
                        requests: r.try_get("requests")?,
                        input_tokens: r.try_get("input")?,
                        output_tokens: r.try_get("output")?,
                        cache_read: r.try_get("cache_read")?,
                        cache_write: r.try_get("cache_write")?,
                        cost_usd: r.try_get("cost")?,
                        estimated: r.try_get::<i64, _>("estimated")? != 0,
                    },
                ))
            })
            .collect()
    }
}
