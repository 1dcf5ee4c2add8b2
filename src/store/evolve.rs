//! Evaluations (an agent's latest) and variants (agents made to be compared with a parent).

use serde_json::Value;
use sqlx::Row;

use super::{Result, Store, StoreError};
use crate::domain::{Millis, now_millis};

/// An agent's latest evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub agent: String,
    pub cases: Value,
    pub results: Value,
    pub passed: i64,
    pub total: i64,
    pub created_at: Millis,
}

/// A variant of an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    pub parent: String,
    pub change: Value,
    pub created_at: Millis,
}

fn json(text: String) -> Result<Value> {
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Conflict(format!("a stored evaluation is unreadable: {e}")))
}

impl Store {
    /// Keeps `evaluation` as its agent's latest.
    pub async fn save_evaluation(&self, e: &Evaluation) -> Result<()> {
        sqlx::query(
            "INSERT INTO evaluations (agent, cases, results, passed, total, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (agent) DO UPDATE SET \
             cases = excluded.cases, results = excluded.results, passed = excluded.passed, \
             total = excluded.total, created_at = excluded.created_at",
        )
        .bind(&e.agent)
        .bind(e.cases.to_string())
        .bind(e.results.to_string())
        .bind(e.passed)
        .bind(e.total)
        .bind(e.created_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn evaluation(&self, agent: &str) -> Result<Option<Evaluation>> {
        let row = sqlx::query("SELECT * FROM evaluations WHERE agent = $1")
            .bind(agent)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        row.map(|r| {
            Ok(Evaluation {
                agent: r.try_get("agent")?,
                cases: json(r.try_get("cases")?)?,
                results: json(r.try_get("results")?)?,
                passed: r.try_get("passed")?,
                total: r.try_get("total")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    pub async fn add_variant(&self, name: &str, parent: &str, change: &Value) -> Result<()> {
        sqlx::query(
            "INSERT INTO variants (name, parent, change, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(parent)
        .bind(change.to_string())
        .bind(now_millis())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn variant(&self, name: &str) -> Result<Variant> {
        let row = sqlx::query("SELECT * FROM variants WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.reader().await?)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("variant {name}")))?;
        variant_from_row(&row)
    }

    pub async fn variants_of(&self, parent: &str) -> Result<Vec<Variant>> {
        let rows = sqlx::query("SELECT * FROM variants WHERE parent = $1 ORDER BY name")
            .bind(parent)
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter().map(variant_from_row).collect()
    }

    /// Forgets a variant and its evaluation.
    pub async fn delete_variant(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM variants WHERE name = $1")
            .bind(name)
            .execute(&self.write)
            .await?;
        sqlx::query("DELETE FROM evaluations WHERE agent = $1")
            .bind(name)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

fn variant_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Variant> {
    Ok(Variant {
        name: r.try_get("name")?,
        parent: r.try_get("parent")?,
        change: json(r.try_get("change")?)?,
        created_at: r.try_get("created_at")?,
    })
}
