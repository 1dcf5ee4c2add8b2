//! Workspace tools: what an agent uses as its own computer. Each acts only in the instance the
//! calling agent lives on; the target is never an argument, so a model cannot reach another
//! instance through them.

use serde::Deserialize;
use serde_json::json;

use super::instance_tools::{self, ExecArgs, FileArgs};
use super::{Access, Invocation, OpError, OpSpec, Ops, Output};
use crate::store::InstanceRecord;

pub const RUN: OpSpec = OpSpec::tool(
    "run_command",
    "Run a shell command on your own computer (as a non-root user, in /workspace). \
                  Returns the exit code and output; long output is cut and says so.",
    Access::Workspace,
    || {
        json!({
            "type": "object",
            "properties": {
                "command": { "type": "string" },
                "timeout_secs": { "type": "integer", "minimum": 1, "description": "default 60; 3600 in the background" },
                "background": { "type": "boolean", "description": "for long work: start it and return at once; you are told the result when it ends" }
            },
            "required": ["command"]
        })
    },
);

pub const READ: OpSpec = OpSpec::tool(
    "read_file",
    "Read a text file on your computer (relative paths are under /workspace).",
    Access::Workspace,
    || json!({ "type": "object", "properties": { "path": { "type": "string" } }, "required": ["path"] }),
);

pub const WRITE: OpSpec = OpSpec::tool(
    "write_file",
    "Write a text file on your computer, creating its directory (relative paths are under /workspace).",
    Access::Workspace,
    || {
        json!({
            "type": "object",
            "properties": { "path": { "type": "string" }, "content": { "type": "string" } },
            "required": ["path", "content"]
        })
    },
);

pub const LIST: OpSpec = OpSpec::tool(
    "list_files",
    "List a directory on your computer (default: /workspace).",
    Access::Workspace,
    || json!({ "type": "object", "properties": { "path": { "type": "string" } } }),
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    command: String,
    timeout_secs: Option<u64>,
    #[serde(default)]
    background: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathArgs {
    #[serde(default)]
    path: String,
    content: Option<String>,
}

/// The instance of the agent making the call.
async fn own_instance(ops: &Ops, inv: &Invocation) -> Result<InstanceRecord, OpError> {
    let agent = inv.via_agent.as_deref().unwrap_or_default();
    ops.store()
        .instance_of_agent(agent)
        .await?
        .ok_or_else(|| OpError::Failed(format!("agent {agent} has no instance to work in")))
}

fn file_args(instance: InstanceRecord, args: PathArgs) -> FileArgs {
    FileArgs {
        instance: instance.name,
        path: args.path,
        content: args.content,
    }
}

pub async fn run(ops: &Ops, inv: &Invocation, args: RunArgs) -> Result<Output, OpError> {
    let instance = own_instance(ops, inv).await?;
    let exec = ExecArgs {
        name: instance.name,
        command: args.command,
        timeout_secs: args.timeout_secs,
        output_cap: None,
        background: args.background,
    };
    instance_tools::exec(ops, inv, exec).await
}

pub async fn read(ops: &Ops, inv: &Invocation, args: PathArgs) -> Result<Output, OpError> {
    let instance = own_instance(ops, inv).await?;
    instance_tools::file_read(ops, file_args(instance, args)).await
}

pub async fn write(ops: &Ops, inv: &Invocation, args: PathArgs) -> Result<Output, OpError> {
    let instance = own_instance(ops, inv).await?;
    instance_tools::file_write(ops, file_args(instance, args)).await
}

pub async fn list(ops: &Ops, inv: &Invocation, args: PathArgs) -> Result<Output, OpError> {
    let instance = own_instance(ops, inv).await?;
    instance_tools::file_list(ops, file_args(instance, args)).await
}
