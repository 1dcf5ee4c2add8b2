//! Files between a chat and an agent's instance: uploads people send land under
//! `/workspace/uploads/`, and an agent can send a file from its workspace to the chat.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::json;

use super::{Access, Invocation, OpError, OpSpec, Ops, Output};
use crate::domain::{MAX_FILE_BYTES, safe_name};
use crate::instance::files;

pub const UPLOAD: OpSpec = OpSpec::tool(
    "file_upload",
    "Save a file a person sent into an agent's instance under /workspace/uploads/.",
    Access::Member,
    || {
        json!({
            "type": "object",
            "properties": {
                "agent": { "type": "string" },
                "name": { "type": "string", "description": "the file name" },
                "content_base64": { "type": "string" }
            },
            "required": ["agent", "name", "content_base64"]
        })
    },
);

pub const SEND: OpSpec = OpSpec::tool(
    "send_file",
    "Send a file from your computer to the chat you are talking in (at most 20 MB; relative \
     paths are under /workspace).",
    Access::Workspace,
    || {
        json!({
            "type": "object",
            "properties": { "path": { "type": "string" } },
            "required": ["path"]
        })
    },
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadArgs {
    agent: String,
    name: String,
    content_base64: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendArgs {
    path: String,
}

pub async fn upload(ops: &Ops, args: UploadArgs) -> Result<Output, OpError> {
    let bytes = STANDARD
        .decode(args.content_base64.as_bytes())
        .map_err(|e| OpError::InvalidArgs {
            op: "file_upload",
            message: format!("content_base64: {e}"),
        })?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(OpError::Failed(format!(
            "{} is {} bytes; files up to {MAX_FILE_BYTES} bytes are kept",
            args.name,
            bytes.len()
        )));
    }
    let instance = ops
        .store()
        .instance_of_agent(&args.agent)
        .await?
        .ok_or_else(|| {
            OpError::Failed(format!(
                "agent {} has no instance to keep files in",
                args.agent
            ))
        })?;
    let path = format!("/workspace/uploads/{}", safe_name(&args.name));
    let written = files::write(ops.instances().as_ref(), &instance.name, &path, &bytes)
        .await
        .map_err(|e| OpError::Failed(format!("cannot save {path} on {}: {e}", instance.name)))?;
    Ok(Output::new(
        format!(
            "Saved {written} ({} bytes) on {}.",
            bytes.len(),
            instance.name
        ),
        json!({ "path": written, "bytes": bytes.len(), "instance": instance.name }),
    ))
}

pub async fn send(ops: &Ops, inv: &Invocation, args: SendArgs) -> Result<Output, OpError> {
    let chat = inv
        .chat
        .clone()
        .ok_or_else(|| OpError::Failed("this turn has no chat to send a file to".into()))?;
    let agent = inv.via_agent.as_deref().unwrap_or_default();
    let instance = ops
        .store()
        .instance_of_agent(agent)
        .await?
        .ok_or_else(|| OpError::Failed(format!("agent {agent} has no instance")))?;
    let (path, bytes) = files::read_bytes(
        ops.instances().as_ref(),
        &instance.name,
        &args.path,
        MAX_FILE_BYTES,
    )
    .await
    .map_err(|e| OpError::Failed(format!("cannot read {}: {e}", args.path)))?;
    let name = safe_name(&path);
    let size = bytes.len();
    ops.turn_runner()?
        .deliver_file(chat, name.clone(), bytes)
        .await
        .map_err(OpError::Failed)?;
    Ok(Output::new(
        format!("Sent {name} ({size} bytes) to the chat."),
        json!({ "path": path, "bytes": size }),
    ))
}
