//! Stored agents: name, persona, optional model.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Result, Store, StoreError, not_found};
use crate::domain::{AgentName, Millis, now_millis};

#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: i64,
    pub name: String,
    pub persona: String,
    pub model: Option<String>,
    /// What thinks for it: `builtin` or `claude-code`.
    pub runtime: String,
    /// The base URL its CLI is pointed at (a proxy), if any.
    pub base_url: Option<String>,
    /// For `acp`: the command line that starts its agent in the instance.
    pub command: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A partial update; `None` leaves a field as it is. `model: Some(None)` clears the model.
#[derive(Debug, Clone, Default)]
pub struct AgentPatch {
    pub persona: Option<String>,
    pub model: Option<Option<String>>,
    pub runtime: Option<String>,
    /// `Some(None)` clears it.
    pub base_url: Option<Option<String>>,
    /// `Some(None)` clears it.
    pub command: Option<Option<String>>,
}

fn agent_from_row(row: &SqliteRow) -> Result<Agent> {
    Ok(Agent {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        persona: row.try_get("persona")?,
        model: row.try_get("model")?,
        runtime: row.try_get("runtime")?,
        base_url: row.try_get("base_url")?,
        command: row.try_get("command")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const COLUMNS: &str =
    "id, name, persona, model, runtime, base_url, command, created_at, updated_at";

impl Store {
    pub async fn create_agent(
        &self,
        name: &AgentName,
        persona: &str,
        model: Option<&str>,
    ) -> Result<Agent> {
        let now = now_millis();
        let row = sqlx::query(&format!(
            "INSERT INTO agents (name, persona, model, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) RETURNING {COLUMNS}"
        ))
        .bind(name.as_str())
        .bind(persona)
        .bind(model)
        .bind(now)
        .fetch_one(&self.write)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("agent {name} already exists")),
            other => other,
        })?;
        agent_from_row(&row)
    }

    pub async fn agent(&self, name: &str) -> Result<Agent> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM agents WHERE name = $1"))
            .bind(name)
            .fetch_one(&mut *self.reader().await?)
            .await
            .map_err(StoreError::from)
            .map_err(not_found(format!("agent {name}")))?;
        agent_from_row(&row)
    }

    pub async fn list_agents(&self) -> Result<Vec<Agent>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM agents ORDER BY name"))
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter().map(agent_from_row).collect()
    }

    pub async fn update_agent(&self, name: &str, patch: &AgentPatch) -> Result<Agent> {
        let current = self.agent(name).await?;
        let persona = patch.persona.clone().unwrap_or(current.persona);
        let model = patch.model.clone().unwrap_or(current.model);
        let runtime = patch.runtime.clone().unwrap_or(current.runtime);
        let base_url = patch.base_url.clone().unwrap_or(current.base_url);
        let command = patch.command.clone().unwrap_or(current.command);
        let row = sqlx::query(&format!(
            "UPDATE agents SET persona = $1, model = $2, runtime = $5, base_url = $6, \
             command = $7, updated_at = $3 WHERE name = $4 RETURNING {COLUMNS}"
        ))
        .bind(persona)
        .bind(model)
        .bind(now_millis())
        .bind(name)
        .bind(runtime)
        .bind(base_url)
        .bind(command)
        .fetch_one(&self.write)
        .await
        .map_err(StoreError::from)
        .map_err(not_found(format!("agent {name}")))?;
        agent_from_row(&row)
    }

    /// Deletes the agent and its bindings; its conversations stay as history.
    pub async fn delete_agent(&self, name: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let deleted = sqlx::query("DELETE FROM agents WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("agent {name}")));
        }
        sqlx::query("DELETE FROM bindings WHERE agent = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
