//! Background jobs: who started what where, and how it ended.

use super::raw::Columns;
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

fn job_from_row(row: &impl Columns) -> Result<JobRecord> {
    let status: String = row.column("status")?;
    Ok(JobRecord {
        id: row.column("id")?,
        instance: row.column("instance")?,
        agent: row.column("agent")?,
        conversation_id: row.column("conversation_id")?,
        chat: chat_from_row(row)?,
        caller: row.column("caller")?,
        caller_is_owner: row.column::<i64>("caller_is_owner")? != 0,
        command: row.column("command")?,
        timeout_secs: row.column("timeout_secs")?,
        status: JobStatus::parse(&status),
        exit_code: row.column("exit_code")?,
        last_line: row.column("last_line")?,
        started_at: row.column("started_at")?,
        finished_at: row.column("finished_at")?,
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
        // Operator reads it at every turn: a read of the hot path.
        let jobs = self.inline.read(|db| {
            db.query_map(
                "SELECT * FROM jobs WHERE status = 'running' OR id = \
                 (SELECT id FROM jobs WHERE status IN ('failed', 'lost') ORDER BY id DESC LIMIT 1) \
                 ORDER BY id",
                &[],
                |row| job_from_row(row),
            )
        })?;
        let mut running = Vec::new();
        let mut failed = None;
        for job in jobs {
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
