//! Automation operations: a prompt on a cron schedule in a time zone, run by Operator or a named
//! agent, its result delivered to the chat it was created from.

use serde::Deserialize;
use serde_json::json;

use super::instances::invalid;
use super::{Access, Invocation, NameArgs, OpError, OpSpec, Ops, Output, name_schema};
use crate::domain::{ChatRef, OPERATOR, format_millis, now_millis};
use crate::scheduler::{Schedule, describe};
use crate::store::{AutomationRecord, AutomationSpec};

pub const CREATE: OpSpec = OpSpec::tool(
    "automation_create",
    "Schedule a prompt: 5-field cron (minute hour day-of-month month day-of-week, or @daily \
                  and friends) in an IANA time zone, run by Operator or a named agent; the result goes \
                  to this chat.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "prompt": { "type": "string", "description": "what to do at each run" },
                "cron": { "type": "string", "description": "e.g. \"0 9 * * 1-5\" for weekdays at 09:00" },
                "timezone": { "type": "string", "description": "IANA name, e.g. Europe/Berlin; default UTC" },
                "agent": { "type": "string", "description": "who runs it; default operator" },
                "deliver_to": { "type": "string", "description": "another bound chat, as channel/chat_id[/thread]; default this chat" }
            },
            "required": ["name", "prompt", "cron"]
        })
    },
);

pub const UPDATE: OpSpec = OpSpec::tool(
    "automation_update",
    "Change an automation's prompt, schedule, time zone or agent.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "prompt": { "type": "string" },
                "cron": { "type": "string" },
                "timezone": { "type": "string" },
                "agent": { "type": "string" }
            },
            "required": ["name"]
        })
    },
);

pub const ENABLE: OpSpec = OpSpec::tool(
    "automation_enable",
    "Turn an automation on; it runs from its next scheduled time.",
    Access::Owner,
    name_schema,
);

pub const DISABLE: OpSpec = OpSpec::tool(
    "automation_disable",
    "Turn an automation off without deleting it.",
    Access::Owner,
    name_schema,
);

pub const DELETE: OpSpec = OpSpec::tool(
    "automation_delete",
    "Delete an automation and its history.",
    Access::Owner,
    name_schema,
);

pub const LIST: OpSpec = OpSpec::tool(
    "automation_list",
    "List automations with their schedule in words and the next run times.",
    Access::Member,
    || json!({ "type": "object", "properties": {} }),
);

pub const RUN: OpSpec = OpSpec::tool(
    "automation_run",
    "Run an automation now, outside its schedule (skipped if a run is still going).",
    Access::Owner,
    name_schema,
);

pub const HISTORY: OpSpec = OpSpec::tool(
    "automation_history",
    "An automation's recent runs: status, duration, summary.",
    Access::Member,
    || {
        json!({
            "type": "object",
            "properties": { "name": { "type": "string" }, "limit": { "type": "integer", "minimum": 1 } },
            "required": ["name"]
        })
    },
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    name: String,
    prompt: String,
    cron: String,
    timezone: Option<String>,
    agent: Option<String>,
    deliver_to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    name: String,
    prompt: Option<String>,
    cron: Option<String>,
    timezone: Option<String>,
    agent: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryArgs {
    name: String,
    limit: Option<i64>,
}

/// The agent that runs it: Operator, or an existing agent.
async fn check_agent(ops: &Ops, agent: Option<String>) -> Result<String, OpError> {
    let agent = agent
        .map(|a| a.trim().trim_start_matches('@').to_ascii_lowercase())
        .filter(|a| !a.is_empty());
    match agent {
        None => Ok(OPERATOR.to_string()),
        Some(a) if a == OPERATOR => Ok(a),
        Some(a) => Ok(ops.store().agent(&a).await?.name),
    }
}

fn schedule(op: &'static str, cron: &str, tz: &str) -> Result<Schedule, OpError> {
    Schedule::parse(cron, tz).map_err(|e| invalid(op, e))
}

fn summary(a: &AutomationRecord) -> (String, serde_json::Value) {
    let upcoming: Vec<String> = match Schedule::parse(&a.cron, &a.timezone) {
        Ok(s) if a.enabled => s
            .upcoming(now_millis(), 3)
            .iter()
            .map(|t| t.format("%a %d %b %H:%M %Z").to_string())
            .collect(),
        _ => Vec::new(),
    };
    let state = if a.enabled { "on" } else { "off" };
    let next = if upcoming.is_empty() {
        String::new()
    } else {
        format!("; next: {}", upcoming.join(", "))
    };
    let text = format!(
        "{} ({state}): {} ({}), by {}{next}",
        a.name,
        describe(&a.cron),
        a.timezone,
        a.agent
    );
    let data = json!({
        "name": a.name,
        "prompt": a.prompt,
        "cron": a.cron,
        "schedule": describe(&a.cron),
        "timezone": a.timezone,
        "enabled": a.enabled,
        "agent": a.agent,
        "chat": a.chat.as_ref().map(ToString::to_string),
        "next_runs": upcoming,
    });
    (text, data)
}

pub async fn create(ops: &Ops, inv: &Invocation, args: CreateArgs) -> Result<Output, OpError> {
    let name = crate::domain::AgentName::parse(&args.name).map_err(|e| invalid(CREATE.name, e))?;
    if args.prompt.trim().is_empty() {
        return Err(invalid(CREATE.name, "the prompt is empty"));
    }
    let timezone = args
        .timezone
        .unwrap_or_else(|| "UTC".into())
        .trim()
        .to_string();
    let schedule = schedule(CREATE.name, &args.cron, &timezone)?;
    let spec = AutomationSpec {
        name: name.to_string(),
        prompt: args.prompt.trim().to_string(),
        cron: args.cron.trim().to_string(),
        timezone,
        enabled: true,
        agent: check_agent(ops, args.agent).await?,
        chat: match args.deliver_to {
            Some(target) => Some(bound_chat(ops, &target).await?),
            None => inv.chat.clone(),
        },
        created_by: inv.caller.label.clone(),
        next_run_at: schedule.next_after(now_millis()),
    };
    let record = ops.store().create_automation(&spec).await?;
    ops.wake_scheduler();
    let (text, data) = summary(&record);
    Ok(Output::new(format!("Scheduled {text}"), data))
}

/// A chat named as `channel/chat_id[/thread]` that is bound to an agent (so it is one the daemon
/// knows and serves).
async fn bound_chat(ops: &Ops, target: &str) -> Result<ChatRef, OpError> {
    let mut parts = target.trim().splitn(3, '/');
    let (Some(channel), Some(chat_id)) = (parts.next(), parts.next()) else {
        return Err(invalid(
            CREATE.name,
            "deliver_to is channel/chat_id, optionally /thread",
        ));
    };
    let chat = ChatRef {
        channel: channel.to_string(),
        chat_id: chat_id.to_string(),
        thread_id: parts.next().unwrap_or_default().to_string(),
    };
    match ops.store().binding(&chat).await? {
        Some(_) => Ok(chat),
        None => Err(invalid(
            CREATE.name,
            format!("{target} is not a bound chat; bind it with /use there first"),
        )),
    }
}

fn spec_of(a: &AutomationRecord) -> AutomationSpec {
    AutomationSpec {
        name: a.name.clone(),
        prompt: a.prompt.clone(),
        cron: a.cron.clone(),
        timezone: a.timezone.clone(),
        enabled: a.enabled,
        agent: a.agent.clone(),
        chat: a.chat.clone(),
        created_by: a.created_by.clone(),
        next_run_at: a.next_run_at,
    }
}

pub async fn update(ops: &Ops, args: UpdateArgs) -> Result<Output, OpError> {
    let current = ops.store().automation(args.name.trim()).await?;
    let mut spec = spec_of(&current);
    if let Some(prompt) = args.prompt.filter(|p| !p.trim().is_empty()) {
        spec.prompt = prompt.trim().to_string();
    }
    if let Some(cron) = args.cron {
        spec.cron = cron.trim().to_string();
    }
    if let Some(tz) = args.timezone {
        spec.timezone = tz.trim().to_string();
    }
    if args.agent.is_some() {
        spec.agent = check_agent(ops, args.agent).await?;
    }
    let schedule = schedule(UPDATE.name, &spec.cron, &spec.timezone)?;
    spec.next_run_at = spec
        .enabled
        .then(|| schedule.next_after(now_millis()))
        .flatten();
    let record = ops.store().update_automation(&spec).await?;
    ops.wake_scheduler();
    let (text, data) = summary(&record);
    Ok(Output::new(format!("Updated {text}"), data))
}

pub async fn set_enabled(ops: &Ops, args: NameArgs, enabled: bool) -> Result<Output, OpError> {
    let current = ops.store().automation(args.name.trim()).await?;
    let mut spec = spec_of(&current);
    spec.enabled = enabled;
    spec.next_run_at = if enabled {
        schedule(ENABLE.name, &spec.cron, &spec.timezone)?.next_after(now_millis())
    } else {
        None
    };
    let record = ops.store().update_automation(&spec).await?;
    ops.wake_scheduler();
    let (text, data) = summary(&record);
    Ok(Output::new(text, data))
}

pub async fn delete(ops: &Ops, args: NameArgs) -> Result<Output, OpError> {
    let name = args.name.trim();
    ops.store().delete_automation(name).await?;
    Ok(Output::new(
        format!("Deleted automation {name}."),
        json!({ "deleted": name }),
    ))
}

pub async fn list(ops: &Ops) -> Result<Output, OpError> {
    let all = ops.store().list_automations().await?;
    let mut text = format!("{} automation(s)", all.len());
    let mut data = Vec::new();
    for a in &all {
        let (line, json) = summary(a);
        text.push_str(&format!("\n• {line}"));
        data.push(json);
    }
    Ok(Output::new(text, json!({ "automations": data })))
}

pub async fn run_now(ops: &Ops, args: NameArgs) -> Result<Output, OpError> {
    let a = ops.store().automation(args.name.trim()).await?;
    if !a.enabled {
        return Err(OpError::Failed(format!(
            "automation {} is off; enable it first",
            a.name
        )));
    }
    // Due now: the scheduler claims it like any run, so it cannot overlap or run twice, and
    // the regular schedule resumes after it.
    let now = now_millis();
    match a.next_run_at {
        Some(next) if ops.store().claim_run(a.id, next, Some(now)).await? => {}
        _ => {
            return Err(OpError::Conflict(format!(
                "automation {} changed meanwhile; try again",
                a.name
            )));
        }
    }
    ops.wake_scheduler();
    Ok(Output::new(
        format!(
            "Running automation {} now; the result comes to its chat.",
            a.name
        ),
        json!({ "name": a.name }),
    ))
}

pub async fn history(ops: &Ops, args: HistoryArgs) -> Result<Output, OpError> {
    let a = ops.store().automation(args.name.trim()).await?;
    let runs = ops
        .store()
        .runs(a.id, args.limit.unwrap_or(10).clamp(1, 100))
        .await?;
    let mut text = format!("{}: last {} run(s)", a.name, runs.len());
    let mut data = Vec::new();
    for r in &runs {
        let took = r
            .finished_at
            .map(|f| format!("{:.1}s", (f - r.started_at) as f64 / 1000.0))
            .unwrap_or_else(|| "running".into());
        text.push_str(&format!(
            "\n• {} {} ({took}) {}",
            format_millis(r.scheduled_for),
            r.status,
            r.summary
        ));
        data.push(json!({
            "scheduled_for": format_millis(r.scheduled_for),
            "status": r.status,
            "duration_ms": r.finished_at.map(|f| f - r.started_at),
            "summary": r.summary,
        }));
    }
    Ok(Output::new(text, json!({ "runs": data })))
}
