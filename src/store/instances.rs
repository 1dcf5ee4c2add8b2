//! Stored instances: the settings each container is created from, and its last known status.

use sqlx::Row;

use super::raw::Columns;
use super::{Result, Store, StoreError, not_found, touched};
use crate::domain::{Millis, now_millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStatus {
    Provisioning,
    Active,
    Stopped,
    Failed,
    Missing,
    /// Its Docker host does not answer; the container and workspace are presumed intact.
    Unreachable,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Missing => "missing",
            Self::Unreachable => "unreachable",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "provisioning" => Self::Provisioning,
            "active" => Self::Active,
            "stopped" => Self::Stopped,
            "missing" => Self::Missing,
            "unreachable" => Self::Unreachable,
            _ => Self::Failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRecord {
    pub id: i64,
    pub name: String,
    pub image: String,
    pub memory_mb: i64,
    pub cpus: f64,
    pub pids_limit: i64,
    pub network: String,
    pub tags: Vec<String>,
    pub project: String,
    pub agent: Option<String>,
    pub status: InstanceStatus,
    pub last_error: Option<String>,
    pub created_at: Millis,
    /// The Docker host it lives on.
    pub host: String,
}

fn record_from_row(row: &impl Columns) -> Result<InstanceRecord> {
    let tags: String = row.column("tags")?;
    let status: String = row.column("status")?;
    Ok(InstanceRecord {
        id: row.column("id")?,
        name: row.column("name")?,
        image: row.column("image")?,
        memory_mb: row.column("memory_mb")?,
        cpus: row.column("cpus")?,
        pids_limit: row.column("pids_limit")?,
        network: row.column("network")?,
        tags: split_tags(&tags),
        project: row.column("project")?,
        agent: row.column("agent")?,
        status: InstanceStatus::parse(&status),
        last_error: row.column("last_error")?,
        created_at: row.column("created_at")?,
        host: row.column("host")?,
    })
}

/// Normalizes tags: lowercase, trimmed, no empties, sorted, unique.
pub fn normalize_tags(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = tags
        .iter()
        .map(|t| t.trim().to_ascii_lowercase().replace(',', "-"))
        .filter(|t| !t.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn split_tags(tags: &str) -> Vec<String> {
    tags.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

impl Store {
    /// Records a new instance in `provisioning`.
    pub async fn create_instance(&self, r: &InstanceRecord) -> Result<InstanceRecord> {
        let now = now_millis();
        let row = sqlx::query(
            "INSERT INTO instances (name, image, memory_mb, cpus, pids_limit, network, tags, project, agent, \
             status, created_at, updated_at, host) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12) RETURNING *",
        )
        .bind(&r.name)
        .bind(&r.image)
        .bind(r.memory_mb)
        .bind(r.cpus)
        .bind(r.pids_limit)
        .bind(&r.network)
        .bind(normalize_tags(&r.tags).join(","))
        .bind(&r.project)
        .bind(&r.agent)
        .bind(InstanceStatus::Provisioning.as_str())
        .bind(now)
        .bind(&r.host)
        .fetch_one(&self.write)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("instance {} already exists", r.name)),
            other => other,
        })?;
        record_from_row(&row)
    }

    pub async fn instance(&self, name: &str) -> Result<InstanceRecord> {
        let row = sqlx::query("SELECT * FROM instances WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *self.reader().await?)
            .await
            .map_err(StoreError::from)
            .map_err(not_found(format!("instance {name}")))?;
        record_from_row(&row)
    }

    pub async fn list_instances(&self) -> Result<Vec<InstanceRecord>> {
        // Operator reads it at every turn: a read of the hot path.
        self.inline.read(|db| {
            db.query_map("SELECT * FROM instances ORDER BY name", &[], |row| {
                record_from_row(row)
            })
        })
    }

    /// Sets the status; `error` replaces the last error (None clears it).
    pub async fn set_instance_status(
        &self,
        name: &str,
        status: InstanceStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let n = sqlx::query(
            "UPDATE instances SET status = $1, last_error = $2, updated_at = $3 WHERE name = $4",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(now_millis())
        .bind(name)
        .execute(&self.write)
        .await?
        .rows_affected();
        touched(n, || format!("instance {name}"))
    }

    pub async fn delete_instance(&self, name: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM instances WHERE name = $1")
            .bind(name)
            .execute(&self.write)
            .await?
            .rows_affected();
        touched(n, || format!("instance {name}"))
    }
}

impl Store {
    /// Records which agent lives on the instance (`None`: nobody).
    pub async fn set_instance_agent(&self, name: &str, agent: Option<&str>) -> Result<()> {
        let n = sqlx::query("UPDATE instances SET agent = $1, updated_at = $2 WHERE name = $3")
            .bind(agent)
            .bind(now_millis())
            .bind(name)
            .execute(&self.write)
            .await?
            .rows_affected();
        touched(n, || format!("instance {name}"))
    }

    /// Records the Docker host an instance lives on.
    pub async fn set_instance_host(&self, name: &str, host: &str) -> Result<()> {
        let n = sqlx::query("UPDATE instances SET host = $1, updated_at = $2 WHERE name = $3")
            .bind(host)
            .bind(now_millis())
            .bind(name)
            .execute(&self.write)
            .await?
            .rows_affected();
        touched(n, || format!("instance {name}"))
    }

    /// Gives instances recorded without a host (before several hosts existed) this one.
    pub async fn adopt_hostless_instances(&self, host: &str) -> Result<u64> {
        Ok(
            sqlx::query("UPDATE instances SET host = $1 WHERE host = ''")
                .bind(host)
                .execute(&self.write)
                .await?
                .rows_affected(),
        )
    }

    /// The instance an agent lives on, if it has one.
    pub async fn instance_of_agent(&self, agent: &str) -> Result<Option<InstanceRecord>> {
        let row = sqlx::query("SELECT * FROM instances WHERE agent = $1 ORDER BY id LIMIT 1")
            .bind(agent)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }
}

impl Store {
    /// Saves an instance's settings (image, limits, network, tags, project).
    pub async fn update_instance_settings(&self, r: &InstanceRecord) -> Result<InstanceRecord> {
        let row = sqlx::query(
            "UPDATE instances SET image = $1, memory_mb = $2, cpus = $3, network = $4, tags = $5, project = $6, \
             updated_at = $7 WHERE name = $8 RETURNING *",
        )
        .bind(&r.image)
        .bind(r.memory_mb)
        .bind(r.cpus)
        .bind(&r.network)
        .bind(normalize_tags(&r.tags).join(","))
        .bind(&r.project)
        .bind(now_millis())
        .bind(&r.name)
        .fetch_one(&self.write)
        .await
        .map_err(StoreError::from)
        .map_err(not_found(format!("instance {}", r.name)))?;
        record_from_row(&row)
    }
}

impl Store {
    /// Instances per status, for metrics.
    pub async fn instance_status_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM instances GROUP BY status")
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }
}
