//! Background jobs: who started what where, and how it ended.

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Result, Store, chat_columns, chat_from_row};
use crate::domain::{ChatRef, Millis, now_millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    Succeeded,
    Failed,
    /// The process vanished without an exit code (its container was restarted or removed).
    Lost,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Lost => "lost",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => Self::Lost,
        }
    }
}

/// A job about to be recorded.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub instance: String,
    pub agent: String,
    pub conversation_id: Option<i64>,
    pub chat: Option<ChatRef>,
    pub caller: String,
    pub caller_is_owner: bool,
    pub command: String,
    pub timeout_secs: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: i64,
    pub instance: String,
    pub agent: String,
    pub conversation_id: Option<i64>,
    pub chat: Option<ChatRef>,
    pub caller: String,
    pub caller_is_owner: bool,
    pub command: String,
    pub timeout_secs: i64,
    pub status: JobStatus,
    pub exit_code: Option<i64>,
    pub last_line: String,
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
}

fn job_from_row(row: &SqliteRow) -> Result<JobRecord> {
    let status: String = row.try_get("status")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        instance: row.try_get("instance")?,
        agent: row.try_get("agent")?,
        conversation_id: row.try_get("conversation_id")?,
        chat: chat_from_row(row)?,
        caller: row.try_get("caller")?,
        caller_is_owner: row.try_get::<i64, _>("caller_is_owner")? != 0,
        command: row.try_get("command")?,
        timeout_secs: row.try_get("timeout_secs")?,
        status: JobStatus::parse(&status),
        exit_code: row.try_get("exit_code")?,
        last_line: row.try_get("last_line")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

impl Store {
    pub async fn create_job(&self, job: &NewJob) -> Result<JobRecord> {
        let (channel, chat_id, thread_id) = chat_columns(job.chat.as_ref());
        let row = sqlx::query(
            "INSERT INTO jobs (instance, agent, conversation_id, channel, chat_id, thread_id, caller, \
             caller_is_owner, command, timeout_secs, status, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running', $11) RETURNING *",
        )
        .bind(&job.instance)
        .bind(&job.agent)
        .bind(job.conversation_id)
        .bind(channel)
        .bind(chat_id)
        .bind(thread_id)
        .bind(&job.caller)
        .bind(i64::from(job.caller_is_owner))
        .bind(&job.command)
        .bind(job.timeout_secs)
        .bind(now_millis())
        .fetch_one(&self.write)
        .await?;
        job_from_row(&row)
    }

    /// The running jobs and the newest failed (or lost) one, in one read.
    pub async fn running_and_last_failed_jobs(
        &self,
    ) -> Result<(Vec<JobRecord>, Option<JobRecord>)> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE status = 'running' OR id = \
             (SELECT id FROM jobs WHERE status IN ('failed', 'lost') ORDER BY id DESC LIMIT 1) \
             ORDER BY id",
        )
        .fetch_all(&mut *self.reader().await?)
        .await?;
        let mut running = Vec::new();
        let mut failed = None;
        for row in &rows {
            let job = job_from_row(row)?;
            if job.status == JobStatus::Running {
                running.push(job);
            } else {
                failed = Some(job);
            }
        }
        Ok((running, failed))
    }

    pub async fn running_jobs(&self) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query("SELECT * FROM jobs WHERE status = 'running' ORDER BY id")
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    pub async fn set_job_line(&self, id: i64, line: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET last_line = $1 WHERE id = $2 AND status = 'running'")
            .bind(line)
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Ends a running job. Returns false when it had already ended (another process claimed it),
    /// so each ending is acted on exactly once.
    pub async fn finish_job(
        &self,
        id: i64,
        status: JobStatus,
        exit_code: Option<i64>,
        line: &str,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE jobs SET status = $1, exit_code = $2, last_line = $3, finished_at = $4 \
             WHERE id = $5 AND status = 'running'",
        )
        .bind(status.as_str())
        .bind(exit_code)
        .bind(line)
        .bind(now_millis())
        .bind(id)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
