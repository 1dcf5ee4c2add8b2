//! Agent operations: list, create, update, delete, and bind a chat to an agent.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Access, Invocation, NameArgs, OpError, OpSpec, Ops, Output, instances, name_schema};
use crate::domain::{AgentName, OPERATOR, format_millis};
use crate::instance::files;
use crate::store::{Agent, AgentPatch, StoreError};

pub const LIST: OpSpec = OpSpec {
    name: "agent_list",
    description: "List the agents: name, model and persona.",
    access: Access::Member,
    command: Some("agents"),
    positional: &[],
    schema: || json!({ "type": "object", "properties": {} }),
};

pub const CREATE: OpSpec = OpSpec::tool(
    "agent_create",
    "Create an agent: a persistent identity with a persona and optionally its own model. \
                  It gets its own instance (same name; an existing unowned one is adopted) with \
                  IDENTITY.md and USER.md in its workspace.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "lowercase letters, digits and hyphens, e.g. repo-watch" },
                "persona": { "type": "string", "description": "who the agent is and how it works (its IDENTITY.md)" },
                "role": { "type": "string", "description": "what the agent is for, in a line" },
                "tone": { "type": "string", "description": "how it talks, e.g. terse, friendly" },
                "model": { "type": "string", "description": "model name; omit to use the default model" },
                "runtime": { "type": "string", "enum": ["builtin", "claude-code", "codex", "acp"], "description": "what thinks for it: builtin (default), claude-code (the Claude Code CLI inside its instance; grant it ANTHROPIC_API_KEY), codex (the Codex CLI; grant it OPENAI_API_KEY) or acp (any Agent Client Protocol agent, started with command)" },
                "base_url": { "type": "string", "description": "for a CLI runtime: the vendor base URL it uses (a proxy)" },
                "command": { "type": "string", "description": "for acp: the command line that starts the agent in its instance, e.g. npx @zed-industries/claude-code-acp" }
            },
            "required": ["name"]
        })
    },
);

pub const UPDATE: OpSpec = OpSpec::tool(
    "agent_update",
    "Change an agent's persona, model, runtime, base URL or daily budget. An empty model returns it to the default model; a budget of none removes the agent's limit.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "persona": { "type": "string" },
                "model": { "type": "string", "description": "a model, or provider/model" },
                "runtime": { "type": "string", "enum": ["builtin", "claude-code", "codex", "acp"] },
                "base_url": { "type": "string", "description": "for a CLI runtime; empty clears it" },
                "command": { "type": "string", "description": "for acp: the command line that starts the agent; empty clears it" },
                "budget_daily_usd": { "type": ["number", "string", "null"], "description": "the agent's daily spending limit in USD, or none" }
            },
            "required": ["name"]
        })
    },
);

pub const DELETE: OpSpec = OpSpec::tool(
    "agent_delete",
    "Delete an agent and its chat bindings. Its conversations are kept as history.",
    Access::Owner,
    name_schema,
);

pub const USE: OpSpec = OpSpec {
    name: "agent_use",
    description: "Bind the current chat to an agent, so plain messages here go to it. \
                  Use \"operator\" to return the chat to Operator.",
    access: Access::Owner,
    command: Some("use"),
    positional: &["agent"],
    schema: || {
        json!({
            "type": "object",
            "properties": { "agent": { "type": "string" } },
            "required": ["agent"]
        })
    },
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    name: String,
    #[serde(default)]
    persona: String,
    role: Option<String>,
    tone: Option<String>,
    model: Option<String>,
    runtime: Option<String>,
    base_url: Option<String>,
    command: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    name: String,
    persona: Option<String>,
    model: Option<String>,
    runtime: Option<String>,
    base_url: Option<String>,
    command: Option<String>,
    #[serde(default)]
    budget_daily_usd: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UseArgs {
    agent: String,
}

fn agent_json(a: &Agent) -> Value {
    json!({
        "name": a.name,
        "persona": a.persona,
        "model": a.model,
        "runtime": a.runtime,
        "command": a.command,
        "created_at": format_millis(a.created_at),
    })
}

/// A runtime name, checked: codex and acp are named in the contract but not built yet.
fn runtime_arg(op: &'static str, runtime: Option<&str>) -> Result<Option<String>, OpError> {
    let Some(runtime) = runtime.map(|r| r.trim().to_ascii_lowercase()) else {
        return Ok(None);
    };
    if !crate::agent::runtime::RUNTIMES.contains(&runtime.as_str()) {
        return Err(invalid(
            op,
            format!("unknown runtime {runtime:?}: builtin, claude-code, codex or acp"),
        ));
    }
    Ok(Some(runtime))
}

fn invalid(op: &'static str, message: impl ToString) -> OpError {
    OpError::InvalidArgs {
        op,
        message: message.to_string(),
    }
}

pub async fn list(ops: &Ops) -> Result<Output, OpError> {
    let agents = ops.store().list_agents().await?;
    let (mcp, shared_mcp) = ops.mcp_by_agent().await?;
    let mut text = format!("{} agent(s) besides Operator", agents.len());
    for a in &agents {
        let model = a.model.as_deref().unwrap_or("default model");
        let persona: String = a
            .persona
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        let runtime = if a.runtime == "builtin" {
            String::new()
        } else {
            format!(", {}", a.runtime)
        };
        text.push_str(&format!("\n• {} ({model}{runtime}) {persona}", a.name));
        if let Some(servers) = mcp.get(&a.name) {
            text.push_str(&format!("\n  MCP: {}", servers.join("; ")));
        }
    }
    if !shared_mcp.is_empty() {
        text.push_str(&format!(
            "\nMCP servers of every agent: {}",
            shared_mcp.join("; ")
        ));
    }
    Ok(Output::new(
        text,
        json!({ "agents": agents.iter().map(agent_json).collect::<Vec<_>>() }),
    ))
}

pub async fn create(ops: &Ops, args: CreateArgs) -> Result<Output, OpError> {
    let name = AgentName::parse(&args.name).map_err(|e| invalid(CREATE.name, e))?;
    let model = args
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let mut persona = String::new();
    for (label, value) in [("Role", &args.role), ("Tone", &args.tone)] {
        if let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            persona.push_str(&format!("{label}: {value}\n"));
        }
    }
    if !persona.is_empty() && !args.persona.trim().is_empty() {
        persona.push('\n');
    }
    persona.push_str(args.persona.trim());
    let runtime = runtime_arg(CREATE.name, args.runtime.as_deref())?;
    let base_url = args
        .base_url
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty());
    let command = args
        .command
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    if runtime.as_deref() == Some("acp") && command.is_none() {
        return Err(invalid(
            CREATE.name,
            "the acp runtime needs a command: the line that starts the agent in its instance",
        ));
    }
    let mut agent = ops.store().create_agent(&name, &persona, model).await?;
    if runtime.is_some() || base_url.is_some() || command.is_some() {
        let patch = AgentPatch {
            runtime,
            base_url: Some(base_url),
            command: Some(command),
            ..AgentPatch::default()
        };
        agent = ops.store().update_agent(&agent.name, &patch).await?;
    }
    let mut data = agent_json(&agent);
    let text = match attach_instance(ops, &agent).await {
        Ok(instance) => {
            data["instance"] = json!(instance);
            format!("Created agent {} on instance {instance}.", agent.name)
        }
        Err(e) => {
            data["instance_error"] = json!(e.to_string());
            format!(
                "Created agent {}, but its instance could not be set up: {e}",
                agent.name
            )
        }
    };
    Ok(Output::new(text, data))
}

/// Gives the agent its instance (creating one, or adopting an unowned one of the same name)
/// and seeds the workspace. Returns the instance's name.
async fn attach_instance(ops: &Ops, agent: &Agent) -> Result<String, OpError> {
    let record = match ops.store().instance(&agent.name).await {
        Ok(record) => match record.agent.as_deref() {
            Some(owner) if owner != agent.name => {
                return Err(OpError::Conflict(format!(
                    "instance {} belongs to agent {owner}",
                    record.name
                )));
            }
            _ => record,
        },
        Err(StoreError::NotFound(_)) => {
            instances::create(ops, instances::CreateArgs::named(&agent.name)).await?;
            ops.store().instance(&agent.name).await?
        }
        Err(e) => return Err(e.into()),
    };
    ops.store()
        .set_instance_agent(&record.name, Some(&agent.name))
        .await?;
    let backend = ops.instances().as_ref();
    let identity = identity_md(agent, &record.name);
    files::write(backend, &record.name, "IDENTITY.md", identity.as_bytes()).await?;
    let user = format!(
        "# About the user\n\nWhat {} learns about the person it works for: preferences, context, \
         recurring requests. Keep it short and current.\n",
        agent.name
    );
    files::write_new(backend, &record.name, "USER.md", user.as_bytes()).await?;
    Ok(record.name)
}

fn identity_md(agent: &Agent, instance: &str) -> String {
    let persona = if agent.persona.trim().is_empty() {
        "An AI agent managed by Operator.".to_string()
    } else {
        agent.persona.trim().to_string()
    };
    format!(
        "# {name}\n\n{persona}\n\n- Name: {name}\n- Computer: instance {instance}, files in /workspace\n\
         - Model: {model}\n",
        name = agent.name,
        model = agent.model.as_deref().unwrap_or("the default model"),
    )
}

pub async fn update(ops: &Ops, args: UpdateArgs) -> Result<Output, OpError> {
    let patch = AgentPatch {
        persona: args.persona.map(|p| p.trim().to_string()),
        model: args
            .model
            .map(|m| Some(m.trim().to_string()).filter(|m| !m.is_empty())),
        runtime: runtime_arg(UPDATE.name, args.runtime.as_deref())?,
        base_url: args
            .base_url
            .map(|u| Some(u.trim().to_string()).filter(|u| !u.is_empty())),
        command: args
            .command
            .map(|c| Some(c.trim().to_string()).filter(|c| !c.is_empty())),
    };
    let name = args.name.trim();
    let budget = args.budget_daily_usd;
    let changes = patch.persona.is_some()
        || patch.model.is_some()
        || patch.runtime.is_some()
        || patch.base_url.is_some()
        || patch.command.is_some();
    if !changes && budget.is_none() {
        return Err(invalid(
            UPDATE.name,
            "give a persona, a model, a runtime, a base_url, a command or a budget_daily_usd to change",
        ));
    }
    let mut text = String::new();
    if let Some(usd) = budget {
        let set = ops
            .budget_set(json!({ "scope": format!("agent:{name}"), "usd": usd }))
            .await?;
        text = format!(" {}", set.text);
    }
    let agent = if !changes {
        ops.store().agent(name).await?
    } else {
        ops.store().update_agent(name, &patch).await?
    };
    Ok(Output::new(
        format!("Updated agent {}.{text}", agent.name),
        agent_json(&agent),
    ))
}

pub async fn delete(ops: &Ops, args: NameArgs) -> Result<Output, OpError> {
    let name = args.name.trim().to_ascii_lowercase();
    if name == OPERATOR {
        return Err(invalid(
            DELETE.name,
            "Operator is built in and cannot be deleted",
        ));
    }
    let instance = ops.store().instance_of_agent(&name).await?;
    ops.store().delete_agent(&name).await?;
    ops.store().remove_mcp_servers(&name, None).await?;
    ops.mcp_forget(&name).await;
    // The instance and its files are kept: deleting work is a separate, explicit decision.
    let mut text = format!("Deleted agent {name}.");
    if let Some(instance) = &instance {
        ops.store().set_instance_agent(&instance.name, None).await?;
        text.push_str(&format!(
            " Its instance {} is kept; delete it with instance_delete.",
            instance.name
        ));
    }
    Ok(Output::new(
        text,
        json!({ "deleted": name, "instance_kept": instance.map(|i| i.name) }),
    ))
}

pub async fn use_agent(ops: &Ops, inv: &Invocation, args: UseArgs) -> Result<Output, OpError> {
    let chat = inv
        .chat
        .as_ref()
        .ok_or_else(|| invalid(USE.name, "there is no chat to bind here"))?;
    let wanted = args
        .agent
        .trim()
        .trim_start_matches('@')
        .to_ascii_lowercase();
    if wanted == OPERATOR {
        ops.store().unbind(chat).await?;
        return Ok(Output::new(
            "This chat now talks to Operator.",
            json!({ "chat": chat.to_string(), "agent": OPERATOR }),
        ));
    }
    let agent = ops.store().agent(&wanted).await?;
    ops.store().bind(chat, &agent.name).await?;
    Ok(Output::new(
        format!(
            "This chat now talks to {}. Send /use operator to come back.",
            agent.name
        ),
        json!({ "chat": chat.to_string(), "agent": agent.name }),
    ))
}
