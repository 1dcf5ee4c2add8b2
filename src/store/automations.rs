//! Stored automations, their runs, and webhooks.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Result, Store, StoreError, chat_columns, chat_from_row, not_found, touched};
use crate::domain::{ChatRef, Millis, now_millis};

#[derive(Debug, Clone, PartialEq)]
pub struct AutomationRecord {
    pub id: i64,
    pub name: String,
    pub prompt: String,
    pub cron: String,
    pub timezone: String,
    pub enabled: bool,
    pub agent: String,
    pub chat: Option<ChatRef>,
    pub created_by: String,
    pub next_run_at: Option<Millis>,
    pub running_run_id: Option<i64>,
}

/// A new or changed automation.
#[derive(Debug, Clone)]
pub struct AutomationSpec {
    pub name: String,
    pub prompt: String,
    pub cron: String,
    pub timezone: String,
    pub enabled: bool,
    pub agent: String,
    pub chat: Option<ChatRef>,
    pub created_by: String,
    pub next_run_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub automation_id: i64,
    pub scheduled_for: Millis,
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
    pub status: String,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRecord {
    pub id: i64,
    pub name: String,
    pub template: String,
    pub enabled: bool,
    pub agent: String,
    pub chat: Option<ChatRef>,
}

fn automation_from_row(row: &SqliteRow) -> Result<AutomationRecord> {
    Ok(AutomationRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prompt: row.try_get("prompt")?,
        cron: row.try_get("cron")?,
        timezone: row.try_get("timezone")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        agent: row.try_get("agent")?,
        chat: chat_from_row(row)?,
        created_by: row.try_get("created_by")?,
        next_run_at: row.try_get("next_run_at")?,
        running_run_id: row.try_get("running_run_id")?,
    })
}

fn run_from_row(row: &SqliteRow) -> Result<RunRecord> {
    Ok(RunRecord {
        id: row.try_get("id")?,
        automation_id: row.try_get("automation_id")?,
        scheduled_for: row.try_get("scheduled_for")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        status: row.try_get("status")?,
        summary: row.try_get("summary")?,
    })
}

fn webhook_from_row(row: &SqliteRow) -> Result<WebhookRecord> {
    Ok(WebhookRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        template: row.try_get("template")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        agent: row.try_get("agent")?,
        chat: chat_from_row(row)?,
    })
}

impl Store {
    pub async fn create_automation(&self, a: &AutomationSpec) -> Result<AutomationRecord> {
        let (channel, chat_id, thread_id) = chat_columns(a.chat.as_ref());
        let row = sqlx::query(
            "INSERT INTO automations (name, prompt, cron, timezone, enabled, agent, channel, chat_id, thread_id, \
             created_by, next_run_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING *",
        )
        .bind(&a.name)
        .bind(&a.prompt)
        .bind(&a.cron)
        .bind(&a.timezone)
        .bind(i64::from(a.enabled))
        .bind(&a.agent)
        .bind(channel)
        .bind(chat_id)
        .bind(thread_id)
        .bind(&a.created_by)
        .bind(a.next_run_at)
        .bind(now_millis())
        .fetch_one(&self.write)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("automation {} already exists", a.name)),
            other => other,
        })?;
        automation_from_row(&row)
    }

    /// Replaces an automation's settings (not its run state).
    pub async fn update_automation(&self, a: &AutomationSpec) -> Result<AutomationRecord> {
        let (channel, chat_id, thread_id) = chat_columns(a.chat.as_ref());
        let row = sqlx::query(
            "UPDATE automations SET prompt = $1, cron = $2, timezone = $3, enabled = $4, agent = $5, \
             channel = $6, chat_id = $7, thread_id = $8, next_run_at = $9, updated_at = $10 \
             WHERE name = $11 RETURNING *",
        )
        .bind(&a.prompt)
        .bind(&a.cron)
        .bind(&a.timezone)
        .bind(i64::from(a.enabled))
        .bind(&a.agent)
        .bind(channel)
        .bind(chat_id)
        .bind(thread_id)
        .bind(a.next_run_at)
        .bind(now_millis())
        .bind(&a.name)
        .fetch_one(&self.write)
        .await
        .map_err(StoreError::from)
        .map_err(not_found(format!("automation {}", a.name)))?;
        automation_from_row(&row)
    }

    pub async fn automation(&self, name: &str) -> Result<AutomationRecord> {
        let row = sqlx::query("SELECT * FROM automations WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *self.reader().await?)
            .await
            .map_err(StoreError::from)
            .map_err(not_found(format!("automation {name}")))?;
        automation_from_row(&row)
    }

    pub async fn list_automations(&self) -> Result<Vec<AutomationRecord>> {
        let rows = sqlx::query("SELECT * FROM automations ORDER BY name")
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter().map(automation_from_row).collect()
    }

    /// Enabled automations due at or before `now`.
    pub async fn due_automations(&self, now: Millis) -> Result<Vec<AutomationRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM automations WHERE enabled = 1 AND next_run_at IS NOT NULL AND next_run_at <= $1 \
             ORDER BY next_run_at",
        )
        .bind(now)
        .fetch_all(&self.write)
        .await?;
        rows.iter().map(automation_from_row).collect()
    }

    /// The earliest next run of any enabled automation.
    pub async fn earliest_next_run(&self) -> Result<Option<Millis>> {
        let next: Option<Millis> =
            sqlx::query_scalar("SELECT MIN(next_run_at) FROM automations WHERE enabled = 1")
                .fetch_one(&mut *self.reader().await?)
                .await?;
        Ok(next)
    }

    /// Moves `next_run_at` from `expected` to `next`, only if nobody else did: the claim that
    /// makes a run fire exactly once, whatever restarts or concurrent schedulers do.
    pub async fn claim_run(&self, id: i64, expected: Millis, next: Option<Millis>) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE automations SET next_run_at = $1 WHERE id = $2 AND next_run_at = $3",
        )
        .bind(next)
        .bind(id)
        .bind(expected)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records a run; a `running` one also marks the automation busy.
    pub async fn start_run(
        &self,
        automation_id: i64,
        scheduled_for: Millis,
        status: &str,
        summary: &str,
    ) -> Result<i64> {
        let mut tx = self.write.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO automation_runs (automation_id, scheduled_for, started_at, status, summary, finished_at) \
             VALUES ($1, $2, $3, $4, $5, CASE WHEN $4 = 'running' THEN NULL ELSE $3 END) RETURNING id",
        )
        .bind(automation_id)
        .bind(scheduled_for)
        .bind(now_millis())
        .bind(status)
        .bind(summary)
        .fetch_one(&mut *tx)
        .await?;
        if status == "running" {
            sqlx::query("UPDATE automations SET running_run_id = $1 WHERE id = $2")
                .bind(id)
                .bind(automation_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Ends a run and frees its automation.
    pub async fn finish_run(&self, run_id: i64, status: &str, summary: &str) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "UPDATE automation_runs SET status = $1, summary = $2, finished_at = $3 WHERE id = $4",
        )
        .bind(status)
        .bind(summary)
        .bind(now_millis())
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE automations SET running_run_id = NULL WHERE running_run_id = $1")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks runs left `running` by a process that stopped as interrupted; returns how many.
    pub async fn interrupt_stale_runs(&self) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        let n = sqlx::query(
            "UPDATE automation_runs SET status = 'interrupted', finished_at = $1 WHERE status = 'running'",
        )
        .bind(now_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("UPDATE automations SET running_run_id = NULL")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    pub async fn runs(&self, automation_id: i64, limit: i64) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM automation_runs WHERE automation_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(automation_id)
        .bind(limit)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    pub async fn delete_automation(&self, name: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM automations WHERE name = $1")
            .bind(name)
            .execute(&self.write)
            .await?
            .rows_affected();
        touched(n, || format!("automation {name}"))
    }

    pub async fn create_webhook(
        &self,
        name: &str,
        template: &str,
        token_hash: &str,
        agent: &str,
        chat: &Option<ChatRef>,
    ) -> Result<WebhookRecord> {
        let (channel, chat_id, thread_id) = chat_columns(chat.as_ref());
        let row = sqlx::query(
            "INSERT INTO webhooks (name, template, token_hash, enabled, agent, channel, chat_id, thread_id, \
             created_at, updated_at) VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $8) RETURNING *",
        )
        .bind(name)
        .bind(template)
        .bind(token_hash)
        .bind(agent)
        .bind(channel)
        .bind(chat_id)
        .bind(thread_id)
        .bind(now_millis())
        .fetch_one(&self.write)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("webhook {name} already exists")),
            other => other,
        })?;
        webhook_from_row(&row)
    }

    pub async fn webhook_by_token_hash(&self, token_hash: &str) -> Result<Option<WebhookRecord>> {
        let row = sqlx::query("SELECT * FROM webhooks WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    pub async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>> {
        let rows = sqlx::query("SELECT * FROM webhooks ORDER BY name")
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// Changes a webhook; `None` leaves a field as it is.
    pub async fn update_webhook(
        &self,
        name: &str,
        enabled: Option<bool>,
        token_hash: Option<&str>,
    ) -> Result<WebhookRecord> {
        let row = sqlx::query(
            "UPDATE webhooks SET enabled = COALESCE($1, enabled), token_hash = COALESCE($2, token_hash), \
             updated_at = $3 WHERE name = $4 RETURNING *",
        )
        .bind(enabled.map(i64::from))
        .bind(token_hash)
        .bind(now_millis())
        .bind(name)
        .fetch_one(&self.write)
        .await
        .map_err(StoreError::from)
        .map_err(not_found(format!("webhook {name}")))?;
        webhook_from_row(&row)
    }

    pub async fn delete_webhook(&self, name: &str) -> Result<()> {
        let n = sqlx::query("DELETE FROM webhooks WHERE name = $1")
            .bind(name)
            .execute(&self.write)
            .await?
            .rows_affected();
        touched(n, || format!("webhook {name}"))
    }
}
