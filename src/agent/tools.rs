//! A turn's tool calls: operations through the control surface, and MCP servers' tools.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Runner;
use super::turn::{Profile, Progress, Turn};
use crate::domain::{ImagePart, ToolCall};
use crate::ops::{Invocation, ProgressSink};

impl Runner {
    /// Runs one tool call and returns its result text and whether it failed. Nothing the model
    /// sends can crash the turn: unknown tools and malformed arguments become error results.
    pub(super) async fn call_tool(
        &self,
        turn: &Turn,
        profile: &Profile,
        call: &ToolCall,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> (String, bool, Vec<ImagePart>) {
        if !profile.tools.list.iter().any(|t| t.name == call.name) {
            let msg = format!("error: there is no tool called {:?}", call.name);
            self.note(
                &turn.conversation,
                &profile.name,
                "tool.error",
                msg.clone(),
                None,
            );
            return (msg, true, Vec::new());
        }
        let args: Value = match call.arguments.trim() {
            "" => json!({}),
            raw => match serde_json::from_str(raw) {
                Ok(v) => v,
                Err(e) => {
                    let msg = format!(
                        "error: the arguments are not valid JSON ({e}); send a JSON object"
                    );
                    self.note(
                        &turn.conversation,
                        &profile.name,
                        "tool.error",
                        msg.clone(),
                        None,
                    );
                    return (msg, true, Vec::new());
                }
            },
        };
        if let Some((server, tool)) = profile.mcp.get(&call.name) {
            return self
                .call_mcp(turn, profile, server, tool, args, progress)
                .await;
        }
        // The operation reports long steps into a channel drained here, since the turn's
        // progress callback is borrowed and cannot travel with the operation.
        let (status_tx, mut status_rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = ProgressSink(Arc::new(move |key, text| {
            let _ = status_tx.send((key, text));
        }));
        let invocation = Invocation {
            caller: turn.caller.clone(),
            chat: Some(turn.conversation.chat.clone()),
            conversation_id: Some(turn.conversation.id),
            via_agent: Some(profile.name.clone()),
            progress: Some(sink),
        };
        let invoke = self.inner.ops.invoke(&invocation, &call.name, args);
        tokio::pin!(invoke);
        let result = loop {
            tokio::select! {
                result = &mut invoke => break result,
                Some((key, text)) = status_rx.recv() => progress(Progress::Status { key, text }),
            }
        };
        while let Ok((key, text)) = status_rx.try_recv() {
            progress(Progress::Status { key, text });
        }
        match result {
            Ok(out) => {
                let body = json!({ "ok": true, "result": out.text, "data": out.data });
                (body.to_string(), false, out.images)
            }
            Err(e) => (format!("error: {e}"), true, Vec::new()),
        }
    }

    /// Runs an MCP tool; a failure is the model's error result and a line in the chat.
    async fn call_mcp(
        &self,
        turn: &Turn,
        profile: &Profile,
        server: &str,
        tool: &str,
        args: Value,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> (String, bool, Vec<ImagePart>) {
        let invocation = Invocation {
            caller: turn.caller.clone(),
            chat: Some(turn.conversation.chat.clone()),
            conversation_id: Some(turn.conversation.id),
            via_agent: Some(profile.name.clone()),
            progress: None,
        };
        let ops = &self.inner.ops;
        match ops
            .mcp_call(&invocation, &profile.name, server, tool, args)
            .await
        {
            Ok(r) => (r.text, r.is_error, r.images),
            Err(e) => {
                progress(Progress::Status {
                    key: format!("mcp-{server}"),
                    text: format!("⚠️ MCP server {server}: {e}"),
                });
                (format!("error: {e}"), true, Vec::new())
            }
        }
    }
}
