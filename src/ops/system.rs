//! Operations about the daemon itself: help, status and the activity feed.

use serde::Deserialize;
use serde_json::json;

use super::{Access, Invocation, OpError, OpSpec, Ops, Output, SPECS};
use crate::domain::{ActorRole, SESSION_COMMANDS, format_millis};
use crate::store::ActivityFilter;

pub const HELP: OpSpec = OpSpec {
    name: "help",
    description: "Show the chat commands and what Operator can do.",
    access: Access::Member,
    command: Some("help"),
    positional: &[],
    schema: || json!({ "type": "object", "properties": {} }),
};

pub const STATUS: OpSpec = OpSpec {
    name: "status",
    description: "Report the daemon's health: version, uptime, model, channels, agents, conversations.",
    access: Access::Member,
    command: Some("status"),
    positional: &[],
    schema: || json!({ "type": "object", "properties": {} }),
};

pub const ACTIVITY: OpSpec = OpSpec::tool(
    "activity_read",
    "Read the newest entries of the activity feed (messages, tool calls, changes, errors).",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "limit": { "type": "integer", "minimum": 1, "maximum": 200, "description": "default 20" },
                "kind": { "type": "string", "description": "kind prefix, e.g. \"op.\", \"llm.\", \"message.\"" },
                "agent": { "type": "string" },
                "role": { "type": "string", "enum": ["owner", "user", "agent", "system"], "description": "who acted" },
                "instance": { "type": "string", "description": "entries about this instance or by its agent" }
            }
        })
    },
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityArgs {
    limit: Option<u32>,
    kind: Option<String>,
    agent: Option<String>,
    role: Option<String>,
    instance: Option<String>,
}

pub async fn help(_ops: &Ops, inv: &Invocation) -> Result<Output, OpError> {
    let mut text = String::from("Talk to me in plain words, or use a command:");
    let mut commands = Vec::new();
    for c in SESSION_COMMANDS {
        commands.push((c.usage.to_string(), c.description));
    }
    for spec in Ops::available_to(&inv.caller) {
        if let Some(command) = spec.command {
            let usage = match spec.positional {
                [] => format!("/{command}"),
                args => format!("/{command} <{}>", args.join("> <")),
            };
            commands.push((usage, spec.description));
        }
    }
    commands.sort();
    for (usage, description) in &commands {
        text.push_str(&format!("\n{usage} — {description}"));
    }
    let ops: Vec<&str> = Ops::available_to(&inv.caller).map(|s| s.name).collect();
    text.push_str(&format!("\nI can also: {}.", ops.join(", ")));
    Ok(Output::new(
        text,
        json!({
            "commands": commands.iter().map(|(u, d)| json!({ "usage": u, "description": d })).collect::<Vec<_>>(),
            "operations": SPECS.iter().map(|s| s.name).collect::<Vec<_>>(),
        }),
    ))
}

pub async fn status(ops: &Ops) -> Result<Output, OpError> {
    let (agents, conversations, messages) = ops.store().counts().await?;
    let info = ops.info();
    let uptime = info.started.elapsed().as_secs();
    let llm = info
        .llm
        .clone()
        .unwrap_or_else(|| "not configured (set [llm] api_key)".to_string());
    let channels = if info.channels.is_empty() {
        "none".to_string()
    } else {
        info.channels.join(", ")
    };
    let jobs = ops.jobs_summary().await?;
    let bots = ops.running_bots().await?;
    let mut text = format!(
        "operator {} up {}\nmodel: {llm}\nchannels: {channels}\nagents: {agents} · open conversations: {conversations} · messages: {messages}\n{jobs}",
        env!("CARGO_PKG_VERSION"),
        human_duration(uptime),
    );
    for (channel, name, health) in &bots {
        text.push_str(&format!("\nbot @{name} ({channel}): {health}"));
    }
    let hosts = super::hosts::reports(ops).await?;
    for host in &hosts {
        text.push_str(&format!("\n{}", host.status_line()));
    }
    for line in ops.mcp_status_lines().await {
        text.push_str(&format!("\nmcp {line}"));
    }
    // A model request that fell back to another provider in the last day.
    let fallback = ops
        .store()
        .activity(&ActivityFilter {
            kind_prefix: Some("llm.fallback".into()),
            since: Some(crate::domain::now_millis() - 86_400_000),
            limit: 1,
            ..Default::default()
        })
        .await?;
    if let Some(last) = fallback.first() {
        text.push_str(&format!(
            "\nlast model fallback ({}): {}",
            format_millis(last.at),
            last.summary
        ));
    }
    Ok(Output::new(
        text,
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": uptime,
            "llm": info.llm,
            "channels": info.channels,
            "agents": agents,
            "open_conversations": conversations,
            "messages": messages,
            "bots": bots
                .iter()
                .map(|(channel, name, health)| json!({ "channel": channel, "name": name, "health": health }))
                .collect::<Vec<_>>(),
            "docker_hosts": hosts.iter().map(|h| h.json(false)).collect::<Vec<_>>(),
        }),
    ))
}

pub async fn activity(ops: &Ops, args: ActivityArgs) -> Result<Output, OpError> {
    let role = match args.role.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(ActorRole::parse(text).ok_or_else(|| OpError::InvalidArgs {
            op: ACTIVITY.name,
            message: format!("role must be owner, user, agent or system, not {text:?}"),
        })?),
    };
    let filter = ActivityFilter {
        kind_prefix: args.kind,
        agent: args.agent,
        role,
        instance: args.instance.filter(|i| !i.trim().is_empty()),
        since: None,
        after_id: None,
        limit: args.limit.unwrap_or(20).clamp(1, 200),
    };
    let entries = ops.store().activity(&filter).await?;
    let mut text = format!("{} entries, newest first", entries.len());
    for e in &entries {
        text.push_str(&format!(
            "\n{} {} {}: {}",
            format_millis(e.at),
            e.kind,
            e.actor,
            e.summary
        ));
    }
    Ok(Output::new(text, json!({ "entries": entries })))
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}
