//! MCP servers given to one agent (`mcp_add`).

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Result, Store, StoreError};
use crate::domain::now_millis;

/// A server as stored; exactly one of `url` and `command` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct McpServerRecord {
    pub agent: String,
    pub name: String,
    pub url: Option<String>,
    pub command: Option<String>,
    /// Header values as given, `${secret:NAME}` references unresolved.
    pub headers: BTreeMap<String, String>,
}

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<McpServerRecord> {
    let headers: String = r.try_get("headers")?;
    Ok(McpServerRecord {
        agent: r.try_get("agent")?,
        name: r.try_get("name")?,
        url: r.try_get("url")?,
        command: r.try_get("command")?,
        headers: serde_json::from_str(&headers)
            .map_err(|e| StoreError::Conflict(format!("stored MCP headers are unreadable: {e}")))?,
    })
}

impl Store {
    /// Adds a server; an agent's server names are unique.
    pub async fn add_mcp_server(&self, s: &McpServerRecord) -> Result<()> {
        let headers = serde_json::to_string(&s.headers).unwrap_or_else(|_| "{}".into());
        let done = sqlx::query(
            "INSERT INTO mcp_servers (agent, name, url, command, headers, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (agent, name) DO NOTHING",
        )
        .bind(&s.agent)
        .bind(&s.name)
        .bind(&s.url)
        .bind(&s.command)
        .bind(headers)
        .bind(now_millis())
        .execute(&self.write)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "agent {} already has an MCP server called {}",
                s.agent, s.name
            )));
        }
        Ok(())
    }

    /// One agent's servers by name, or every agent's (`None`).
    pub async fn mcp_servers(&self, agent: Option<&str>) -> Result<Vec<McpServerRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM mcp_servers WHERE $1 IS NULL OR agent = $1 ORDER BY agent, name",
        )
        .bind(agent)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Removes one server (or all of an agent's, with `name` `None`); returns how many.
    pub async fn remove_mcp_servers(&self, agent: &str, name: Option<&str>) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM mcp_servers WHERE agent = $1 AND ($2 IS NULL OR name = $2)")
                .bind(agent)
                .bind(name)
                .execute(&self.write)
                .await?;
        Ok(done.rows_affected())
    }
}
