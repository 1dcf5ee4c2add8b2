//! Long-running work: commands started in the background of an instance, followed until they
//! end, with progress for the chat and the result handed back to the agent's conversation.
//!
//! A job runs detached inside its container and writes `.jobs/<id>.pid`, `.log` and `.exit` in
//! the workspace, so it outlives a daemon restart: the watcher picks up every row still
//! `running`. Ending a job is a conditional update, so its result is reported exactly once.
//! This module never talks to a channel; it reports through [`JobEvents`].

use std::time::Duration;

use serde_json::json;

use super::{Invocation, OpError, Ops, Output};
use crate::domain::{CallerKind, format_millis, now_millis};
use crate::instance::files::shell_quote;
use crate::instance::{ExecRequest, InstanceError, RunState};
use crate::store::{InstanceRecord, JobRecord, JobStatus, NewJob};

/// Longest a background job may run.
pub const MAX_JOB_SECS: u64 = 24 * 3600;
/// How long a background job may run when the caller does not say.
pub const DEFAULT_JOB_SECS: u64 = 3600;

/// Where job progress and endings go (the app wires this to the chats).
pub trait JobEvents: Send + Sync {
    /// The job is still running; `text` is a one-line status to show in place.
    fn progress(&self, job: &JobRecord, text: String);
    /// The job ended; `report` is what the agent is told in its conversation.
    fn finished(&self, job: &JobRecord, report: String);
}

/// Starts `command` in the background of `instance`.
pub async fn start(
    ops: &Ops,
    inv: &Invocation,
    record: &InstanceRecord,
    command: &str,
    timeout_secs: u64,
) -> Result<Output, OpError> {
    let timeout = timeout_secs.clamp(1, MAX_JOB_SECS);
    let instance = record.name.as_str();
    let env = ops.secret_env(record).await?;
    let job = NewJob {
        instance: instance.to_string(),
        agent: inv
            .via_agent
            .clone()
            .unwrap_or_else(|| crate::domain::OPERATOR.to_string()),
        conversation_id: inv.conversation_id,
        chat: inv.chat.clone(),
        caller: inv.caller.label.clone(),
        caller_is_owner: inv.caller.kind == CallerKind::Owner,
        command: command.to_string(),
        timeout_secs: i64::try_from(timeout).unwrap_or(i64::MAX),
    };
    let job = ops.store().create_job(&job).await?;
    let id = job.id;
    let script = format!(
        "mkdir -p /workspace/.jobs && cd /workspace && echo $$ > .jobs/{id}.pid && \
         timeout -s KILL {timeout} sh -c {} > .jobs/{id}.log 2>&1; echo $? > .jobs/{id}.exit",
        shell_quote(command)
    );
    if let Err(e) = ops.instances().spawn(instance, script, env).await {
        let message = e.to_string();
        ops.store()
            .finish_job(id, JobStatus::Failed, None, &message)
            .await?;
        return Err(e.into());
    }
    Ok(Output::new(
        format!(
            "Started job #{id} on {instance} in the background (limit {timeout}s). Its progress shows \
             in the chat, and you will be told the result when it ends."
        ),
        json!({ "job": id, "instance": instance, "status": "running" }),
    ))
}

/// What a probe of a running job found.
enum Probe {
    Running(String),
    Exited(i64, String),
    Gone(String),
}

async fn probe(ops: &Ops, job: &JobRecord) -> Result<Probe, InstanceError> {
    let id = job.id;
    // The exit file is checked again after the pid, so a job that ends between the two checks
    // is not taken for lost.
    let script = format!(
        "cd /workspace/.jobs 2>/dev/null || {{ echo gone; exit 0; }}; \
         if [ -f {id}.exit ]; then echo \"exit=$(cat {id}.exit)\"; \
         elif kill -0 \"$(cat {id}.pid 2>/dev/null)\" 2>/dev/null; then echo running; \
         elif [ -f {id}.exit ]; then echo \"exit=$(cat {id}.exit)\"; \
         else echo gone; fi; tail -c 400 {id}.log 2>/dev/null | tail -n 1"
    );
    let mut request = ExecRequest::new(script);
    request.timeout = Duration::from_secs(20);
    let out = ops.instances().exec(&job.instance, request).await?;
    let mut lines = out.output.lines();
    let state = lines.next().unwrap_or_default().trim().to_string();
    let last: String = lines
        .next()
        .unwrap_or_default()
        .trim()
        .chars()
        .take(200)
        .collect();
    Ok(match state.strip_prefix("exit=") {
        Some(code) => Probe::Exited(code.trim().parse().unwrap_or(-1), last),
        None if state == "running" => Probe::Running(last),
        None => Probe::Gone(last),
    })
}

fn elapsed(job: &JobRecord) -> String {
    let secs = (now_millis() - job.started_at).max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Follows every running job once: progress for those still running, a report for those that
/// ended (a job whose container is not running any more is lost). An engine that does not
/// answer is skipped until the next round.
pub async fn poll(ops: &Ops, events: &dyn JobEvents) -> Result<(), OpError> {
    for job in ops.store().running_jobs().await? {
        let (status, code, last) = match probe(ops, &job).await {
            Ok(Probe::Running(last)) => {
                if last != job.last_line {
                    ops.store().set_job_line(job.id, &last).await?;
                }
                let line = if last.is_empty() {
                    String::new()
                } else {
                    format!(" · {last}")
                };
                events.progress(
                    &job,
                    format!(
                        "job #{} on {}: running {}{line}",
                        job.id,
                        job.instance,
                        elapsed(&job)
                    ),
                );
                continue;
            }
            Ok(Probe::Exited(0, last)) => (JobStatus::Succeeded, Some(0), last),
            Ok(Probe::Exited(code, last)) => (JobStatus::Failed, Some(code), last),
            Ok(Probe::Gone(last)) => (JobStatus::Lost, None, last),
            Err(InstanceError::Missing(_)) => (JobStatus::Lost, None, job.last_line.clone()),
            // A container that is not running has no process left: the job ended with it.
            Err(e) => match ops.instances().state(&job.instance).await {
                Ok(RunState::Stopped | RunState::Missing) => {
                    (JobStatus::Lost, None, job.last_line.clone())
                }
                _ => {
                    tracing::debug!(job = job.id, "job probe failed, trying again later: {e}");
                    continue;
                }
            },
        };
        if !ops.store().finish_job(job.id, status, code, &last).await? {
            continue;
        }
        let outcome = match (status, code) {
            (JobStatus::Lost, _) => {
                "was lost: its process is gone without an exit code (was the instance restarted?)"
                    .to_string()
            }
            (_, Some(137)) if elapsed_secs(&job) >= job.timeout_secs => {
                format!("was killed at its {}s limit", job.timeout_secs)
            }
            (_, Some(code)) => format!("finished with exit {code}"),
            (_, None) => "ended".to_string(),
        };
        let report = format!(
            "[background job #{} on {} {outcome} after {}. Command: {}. Last output line: {}. \
             Full output: /workspace/.jobs/{}.log. Report the result to the user.]",
            job.id,
            job.instance,
            elapsed(&job),
            job.command,
            if last.is_empty() { "(none)" } else { &last },
            job.id,
        );
        ops.store().record(crate::store::NewActivity {
            kind: format!("job.{}", status.as_str()),
            actor: job.agent.clone(),
            role: Some(crate::domain::ActorRole::Agent),
            agent: Some(job.agent.clone()),
            instance: Some(job.instance.clone()),
            conversation_id: job.conversation_id,
            summary: format!("job #{} on {} {outcome}", job.id, job.instance),
            detail: Some(json!({ "command": job.command, "exit_code": code })),
        });
        events.finished(&job, report);
    }
    Ok(())
}

fn elapsed_secs(job: &JobRecord) -> i64 {
    (now_millis() - job.started_at).max(0) / 1000
}

/// One line per running job and the last failure, for `/status` and Operator's prompt.
pub async fn summary(ops: &Ops) -> Result<String, OpError> {
    let (running, failed) = ops.store().running_and_last_failed_jobs().await?;
    let mut text = format!("background jobs running: {}", running.len());
    for job in running.iter().take(10) {
        text.push_str(&format!(
            "\n- job #{} on {} ({}): {}",
            job.id,
            job.instance,
            elapsed(job),
            job.command
        ));
    }
    if let Some(job) = &failed {
        let when = job.finished_at.map(format_millis).unwrap_or_default();
        text.push_str(&format!(
            "\nlast failed job: #{} on {} ({}, exit {}) at {when}: {}",
            job.id,
            job.instance,
            job.status.as_str(),
            job.exit_code.map_or("none".to_string(), |c| c.to_string()),
            job.command
        ));
    }
    Ok(text)
}
