//! Stored skills (every version) and their installations.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Result, Store, StoreError, not_found};
use crate::domain::{Millis, now_millis};

#[derive(Debug, Clone, PartialEq)]
pub struct SkillVersion {
    pub name: String,
    pub version: i64,
    pub hash: String,
    pub description: String,
    pub author: String,
    pub files: BTreeMap<String, String>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SkillInstall {
    pub skill: String,
    pub instance: String,
    pub version: i64,
}

fn version_from_row(row: &SqliteRow) -> Result<SkillVersion> {
    let files: String = row.try_get("files")?;
    Ok(SkillVersion {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        hash: row.try_get("hash")?,
        description: row.try_get("description")?,
        author: row.try_get("author")?,
        files: serde_json::from_str(&files)
            .map_err(|e| StoreError::Conflict(format!("stored skill files are unreadable: {e}")))?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Stores a new version (the next number) of a skill.
    pub async fn add_skill_version(
        &self,
        name: &str,
        hash: &str,
        description: &str,
        author: &str,
        files: &BTreeMap<String, String>,
    ) -> Result<SkillVersion> {
        let files =
            serde_json::to_string(files).map_err(|e| StoreError::Conflict(e.to_string()))?;
        let row = sqlx::query(
            "INSERT INTO skills (name, version, hash, description, author, files, created_at) \
             VALUES ($1, (SELECT COALESCE(MAX(version), 0) + 1 FROM skills WHERE name = $1), $2, $3, $4, $5, $6) \
             RETURNING *",
        )
        .bind(name)
        .bind(hash)
        .bind(description)
        .bind(author)
        .bind(files)
        .bind(now_millis())
        .fetch_one(&self.write)
        .await?;
        version_from_row(&row)
    }

    /// The latest version of a skill.
    pub async fn skill(&self, name: &str) -> Result<SkillVersion> {
        let row = sqlx::query("SELECT * FROM skills WHERE name = $1 ORDER BY version DESC LIMIT 1")
            .bind(name)
            .fetch_one(&mut *self.reader().await?)
            .await
            .map_err(StoreError::from)
            .map_err(not_found(format!("skill {name}")))?;
        version_from_row(&row)
    }

    /// The latest version of every skill.
    pub async fn list_skills(&self) -> Result<Vec<SkillVersion>> {
        let rows = sqlx::query(
            "SELECT * FROM skills s WHERE version = (SELECT MAX(version) FROM skills WHERE name = s.name) \
             ORDER BY name",
        )
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    pub async fn set_skill_install(&self, skill: &str, instance: &str, version: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO skill_installs (skill, instance, version, installed_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (skill, instance) DO UPDATE SET version = excluded.version, installed_at = excluded.installed_at",
        )
        .bind(skill)
        .bind(instance)
        .bind(version)
        .bind(now_millis())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn remove_skill_install(&self, skill: &str, instance: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM skill_installs WHERE skill = $1 AND instance = $2")
            .bind(skill)
            .bind(instance)
            .execute(&self.write)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Installations, of one skill or (with `None`) of all; or of one instance's skills.
    pub async fn skill_installs(
        &self,
        skill: Option<&str>,
        instance: Option<&str>,
    ) -> Result<Vec<SkillInstall>> {
        let rows = sqlx::query(
            "SELECT skill, instance, version FROM skill_installs \
             WHERE ($1 IS NULL OR skill = $1) AND ($2 IS NULL OR instance = $2) ORDER BY skill, instance",
        )
        .bind(skill)
        .bind(instance)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SkillInstall {
                    skill: r.try_get("skill")?,
                    instance: r.try_get("instance")?,
                    version: r.try_get("version")?,
                })
            })
            .collect()
    }
}
