//! Working inside an instance: its logs, running commands, and its files.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::instances::invalid;
use super::{Access, Invocation, OpError, OpSpec, Ops, Output, jobs};
use crate::domain::MAX_FILE_BYTES;
use crate::instance::{ExecRequest, files};

/// Longest a command may run.
const MAX_TIMEOUT_SECS: u64 = 3600;

/// Most output a command may return to the caller.
const MAX_OUTPUT: usize = 256 * 1024;

pub const LOGS: OpSpec = OpSpec::tool(
    "instance_logs",
    "The last lines of an instance's container output.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": { "name": { "type": "string" }, "tail": { "type": "integer", "minimum": 1 } },
            "required": ["name"]
        })
    },
);

pub const EXEC: OpSpec = OpSpec::tool(
    "instance_exec",
    "Run a shell command in an instance (as its non-root user, in /workspace). \
                  Returns the exit code and the output, capped.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "the instance" },
                "command": { "type": "string" },
                "timeout_secs": { "type": "integer", "minimum": 1, "description": "default 60; 3600 in the background" },
                "output_cap": { "type": "integer", "minimum": 1, "description": "bytes, default 16384" },
                "background": { "type": "boolean", "description": "for long work: start it and return at once; progress shows in the chat and the result comes back when it ends" }
            },
            "required": ["name", "command"]
        })
    },
);

pub const FILE_LIST: OpSpec = OpSpec::tool(
    "file_list",
    "List a directory in an instance (relative paths are under /workspace).",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": { "instance": { "type": "string" }, "path": { "type": "string" } },
            "required": ["instance"]
        })
    },
);

pub const FILE_READ: OpSpec = OpSpec::tool(
    "file_read",
    "Read a text file in an instance (relative paths are under /workspace).",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": { "instance": { "type": "string" }, "path": { "type": "string" } },
            "required": ["instance", "path"]
        })
    },
);

pub const FILE_WRITE: OpSpec = OpSpec::tool(
    "file_write",
    "Write a text file in an instance, creating its directory (relative paths are under /workspace).",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "instance": { "type": "string" },
                "path": { "type": "string" },
                "content": { "type": "string" }
            },
            "required": ["instance", "path", "content"]
        })
    },
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsArgs {
    name: String,
    tail: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecArgs {
    pub(super) name: String,
    pub(super) command: String,
    pub(super) timeout_secs: Option<u64>,
    pub(super) output_cap: Option<usize>,
    #[serde(default)]
    pub(super) background: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileArgs {
    pub(super) instance: String,
    #[serde(default)]
    pub(super) path: String,
    pub(super) content: Option<String>,
}

pub async fn logs(ops: &Ops, args: LogsArgs) -> Result<Output, OpError> {
    let record = ops.store().instance(args.name.trim()).await?;
    let tail = args.tail.unwrap_or(50).clamp(1, 1000);
    let text = ops.instances().logs(&record.name, tail).await?;
    let shown = if text.trim().is_empty() {
        "(no output yet)".to_string()
    } else {
        text.clone()
    };
    Ok(Output::new(
        shown,
        json!({ "name": record.name, "logs": text }),
    ))
}

pub async fn exec(ops: &Ops, inv: &Invocation, args: ExecArgs) -> Result<Output, OpError> {
    let record = ops.store().instance(args.name.trim()).await?;
    if args.command.trim().is_empty() {
        return Err(invalid(EXEC.name, "the command is empty"));
    }
    if args.background {
        let timeout = args.timeout_secs.unwrap_or(jobs::DEFAULT_JOB_SECS);
        return jobs::start(ops, inv, &record, &args.command, timeout).await;
    }
    let timeout = args.timeout_secs.unwrap_or(60).clamp(1, MAX_TIMEOUT_SECS);
    let mut request = ExecRequest::new(args.command);
    request.env = ops.secret_env(&record).await?;
    request.timeout = Duration::from_secs(timeout);
    request.output_cap = args
        .output_cap
        .unwrap_or(request.output_cap)
        .clamp(1, MAX_OUTPUT);
    let out = ops.instances().exec(&record.name, request).await?;
    let mut text = match (out.timed_out, out.exit_code) {
        (true, _) => format!("timed out after {timeout}s; the command was killed"),
        (false, Some(code)) => format!("exit {code}"),
        (false, None) => "exit status unknown".to_string(),
    };
    if !out.output.is_empty() {
        text.push('\n');
        text.push_str(out.output.trim_end());
    }
    if out.dropped > 0 {
        text.push_str(&format!(
            "\n[output cut: {} more bytes not shown]",
            out.dropped
        ));
    }
    Ok(Output::new(
        text,
        json!({
            "exit_code": out.exit_code,
            "timed_out": out.timed_out,
            "output": out.output,
            "dropped_bytes": out.dropped,
        }),
    ))
}

pub async fn file_list(ops: &Ops, args: FileArgs) -> Result<Output, OpError> {
    let record = ops.store().instance(args.instance.trim()).await?;
    let listing = files::list(ops.instances().as_ref(), &record.name, &args.path).await?;
    let entries = files::parse_listing(&listing);
    Ok(Output::new(
        listing.clone(),
        json!({ "listing": listing, "path": files::resolve(&args.path)?, "entries": entries }),
    ))
}

pub async fn file_read(ops: &Ops, args: FileArgs) -> Result<Output, OpError> {
    let record = ops.store().instance(args.instance.trim()).await?;
    if crate::media::is_image_name(&args.path) {
        return read_image(ops, &record.name, &args.path).await;
    }
    let (content, dropped) =
        files::read(ops.instances().as_ref(), &record.name, &args.path).await?;
    let mut text = content.clone();
    if dropped > 0 {
        text.push_str(&format!("\n[file cut: {dropped} more bytes not shown]"));
    }
    Ok(Output::new(
        text,
        json!({ "content": content, "dropped_bytes": dropped }),
    ))
}

/// An image file, read whole and prepared for the model, which is shown it with the result.
async fn read_image(ops: &Ops, instance: &str, path: &str) -> Result<Output, OpError> {
    let (path, bytes) =
        files::read_bytes(ops.instances().as_ref(), instance, path, MAX_FILE_BYTES).await?;
    let size = bytes.len();
    let image = crate::media::prepare_async(bytes, path.clone())
        .await
        .map_err(OpError::Failed)?;
    let (width, height) = crate::media::dimensions(&image).unwrap_or_default();
    let mut out = Output::new(
        format!(
            "{path}: an image of {size} bytes, shown to you ({width}x{height} {})",
            image.media_type
        ),
        json!({ "path": path, "bytes": size, "image": true }),
    );
    out.images.push(image);
    Ok(out)
}

pub async fn file_write(ops: &Ops, args: FileArgs) -> Result<Output, OpError> {
    let record = ops.store().instance(args.instance.trim()).await?;
    let content = args
        .content
        .ok_or_else(|| invalid(FILE_WRITE.name, "content is required"))?;
    if args.path.trim().is_empty() {
        return Err(invalid(FILE_WRITE.name, "path is required"));
    }
    let path = files::write(
        ops.instances().as_ref(),
        &record.name,
        &args.path,
        content.as_bytes(),
    )
    .await?;
    Ok(Output::new(
        format!(
            "Wrote {} bytes to {path} on {}.",
            content.len(),
            record.name
        ),
        json!({ "path": path, "bytes": content.len() }),
    ))
}
