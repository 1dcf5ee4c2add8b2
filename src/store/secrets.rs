//! Stored secrets (sealed values only, never plaintext) and their grants.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Result, Store, StoreError, not_found, touched};
use crate::domain::{Millis, now_millis};

#[derive(Debug, Clone, PartialEq)]
pub struct SecretRecord {
    pub name: String,
    pub description: String,
    pub global: bool,
    pub sealed: String,
    pub key_id: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Grants as `instance:NAME` or `tag:TAG`.
    pub grants: Vec<String>,
}

/// Who a grant gives a secret to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantTarget {
    Instance(String),
    Tag(String),
}

impl GrantTarget {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            GrantTarget::Instance(name) => ("instance", name),
            GrantTarget::Tag(tag) => ("tag", tag),
        }
    }
}

fn record_from_row(row: &SqliteRow) -> Result<SecretRecord> {
    let grants: Option<String> = row.try_get("grants")?;
    Ok(SecretRecord {
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        global: row.try_get::<i64, _>("global")? != 0,
        sealed: row.try_get("sealed")?,
        key_id: row.try_get("key_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        grants: grants
            .unwrap_or_default()
            .split('\n')
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

const SELECT: &str = "SELECT s.*, (SELECT group_concat(g.target_kind || ':' || g.target, char(10)) \
     FROM secret_grants g WHERE g.secret = s.name) AS grants FROM secrets s";

impl Store {
    /// Creates a secret, or replaces its value (and description, when given) when it exists.
    /// Returns whether it was created.
    pub async fn put_secret(
        &self,
        name: &str,
        description: Option<&str>,
        global: Option<bool>,
        sealed: &str,
        key_id: &str,
    ) -> Result<bool> {
        let now = now_millis();
        let created = sqlx::query(
            "INSERT INTO secrets (name, description, global, sealed, key_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(description.unwrap_or(""))
        .bind(i64::from(global.unwrap_or(false)))
        .bind(sealed)
        .bind(key_id)
        .bind(now)
        .execute(&self.write)
        .await?
        .rows_affected()
            == 1;
        if !created {
            sqlx::query(
                "UPDATE secrets SET sealed = $1, key_id = $2, updated_at = $3, \
                 description = COALESCE($4, description), global = COALESCE($5, global) WHERE name = $6",
            )
            .bind(sealed)
            .bind(key_id)
            .bind(now)
            .bind(description)
            .bind(global.map(i64::from))
            .bind(name)
            .execute(&self.write)
            .await?;
        }
        Ok(created)
    }

    pub async fn secret(&self, name: &str) -> Result<SecretRecord> {
        let row = sqlx::query(&format!("{SELECT} WHERE s.name = $1"))
            .bind(name)
            .fetch_one(&mut *self.reader().await?)
            .await
            .map_err(StoreError::from)
            .map_err(not_found(format!("secret {name}")))?;
        record_from_row(&row)
    }

    pub async fn list_secrets(&self) -> Result<Vec<SecretRecord>> {
        let rows = sqlx::query(&format!("{SELECT} ORDER BY s.name"))
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// The secrets an instance receives: global ones, and those granted to it or to a tag of it.
    pub async fn secrets_for(&self, instance: &str, tags: &[String]) -> Result<Vec<SecretRecord>> {
        let all = self.list_secrets().await?;
        let mine = format!("instance:{instance}");
        Ok(all
            .into_iter()
            .filter(|s| {
                s.global
                    || s.grants
                        .iter()
                        .any(|g| g == &mine || tags.iter().any(|t| g == &format!("tag:{t}")))
            })
            .collect())
    }

    pub async fn grant_secret(&self, name: &str, target: &GrantTarget) -> Result<()> {
        self.secret(name).await?;
        let (kind, value) = target.parts();
        sqlx::query(
            "INSERT INTO secret_grants (secret, target_kind, target, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (secret, target_kind, target) DO NOTHING",
        )
        .bind(name)
        .bind(kind)
        .bind(value)
        .bind(now_millis())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Removes a grant; returns whether there was one.
    pub async fn revoke_secret(&self, name: &str, target: &GrantTarget) -> Result<bool> {
        let (kind, value) = target.parts();
        let n = sqlx::query(
            "DELETE FROM secret_grants WHERE secret = $1 AND target_kind = $2 AND target = $3",
        )
        .bind(name)
        .bind(kind)
        .bind(value)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    pub async fn delete_secret(&self, name: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&self.write)
            .await?
            .rows_affected();
        touched(n, || format!("secret {name}"))
    }

    /// Replaces every sealed value in one transaction (master key rotation).
    pub async fn reseal_secrets(&self, resealed: &[(String, String)], key_id: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for (name, sealed) in resealed {
            sqlx::query("UPDATE secrets SET sealed = $1, key_id = $2 WHERE name = $3")
                .bind(sealed)
                .bind(key_id)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
