//! OpenAI-compatible chat completions with tools: `POST {base_url}/chat/completions`.

use base64::Engine;
use serde_json::{Value, json};

use super::http::{Client, EventReader};
use super::{BoxFuture, ChatRequest, ChatResponse, LlmError, LlmMessage, LlmProvider, OnText};
use crate::domain::ToolCall;

pub struct OpenAi {
    client: Client,
    base_url: String,
    model: String,
}

impl OpenAi {
    pub fn new(client: Client, base_url: String, model: String) -> Self {
        Self {
            client,
            base_url,
            model,
        }
    }
}

impl LlmProvider for OpenAi {
    fn describe(&self) -> String {
        format!("openai-compatible {} at {}", self.model, self.base_url)
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            let body = request_body(request);
            let url = format!("{}/chat/completions", self.base_url);
            let reply = self
                .client
                .send_json(|http| {
                    http.post(&url)
                        .bearer_auth(self.client.key.expose())
                        .json(&body)
                })
                .await?;
            parse_response(&reply)
        })
    }

    fn stream<'a>(
        &'a self,
        request: &'a ChatRequest,
        on_text: OnText<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            let mut body = request_body(request);
            body["stream"] = json!(true);
            body["stream_options"] = json!({ "include_usage": true });
            let url = format!("{}/chat/completions", self.base_url);
            let mut reader = StreamReader {
                on_text,
                response: ChatResponse::default(),
                calls: Vec::new(),
                finished: false,
            };
            self.client
                .send_events(
                    |http| {
                        http.post(&url)
                            .bearer_auth(self.client.key.expose())
                            .json(&body)
                    },
                    &mut reader,
                )
                .await?;
            let mut response = reader.response;
            response.tool_calls = reader.calls;
            Ok(response)
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<String, LlmError>> {
        Box::pin(async move {
            let url = format!("{}/models", self.base_url);
            let reply = self
                .client
                .send_json(|http| http.get(&url).bearer_auth(self.client.key.expose()))
                .await?;
            let models = reply
                .get("data")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            Ok(format!("reachable, key accepted, {models} models listed"))
        })
    }
}

fn request_body(request: &ChatRequest) -> Value {
    let mut messages = vec![json!({ "role": "system", "content": request.system })];
    for message in &request.messages {
        let next = match message {
            LlmMessage::User(text) => json!({ "role": "user", "content": text }),
            LlmMessage::Image(image) => {
                let part = json!({ "type": "image_url", "image_url": { "url": format!(
                    "data:{};base64,{}",
                    image.media_type,
                    base64::engine::general_purpose::STANDARD.encode(&image.data)
                ) } });
                // An image joins the user message before it (its text becomes a text part).
                if let Some(last) = messages.last_mut().filter(|m| m["role"] == "user") {
                    if let Value::String(text) = last["content"].take() {
                        last["content"] = json!([{ "type": "text", "text": text }]);
                    }
                    if let Some(parts) = last["content"].as_array_mut() {
                        parts.push(part);
                    }
                    continue;
                }
                json!({ "role": "user", "content": [part] })
            }
            LlmMessage::Assistant { text, tool_calls } => {
                let mut m = json!({
                    "role": "assistant",
                    "content": if text.is_empty() { Value::Null } else { json!(text) },
                });
                if !tool_calls.is_empty() {
                    m["tool_calls"] = tool_calls
                        .iter()
                        .map(|c| {
                            json!({
                                "id": c.id,
                                "type": "function",
                                "function": { "name": c.name, "arguments": c.arguments },
                            })
                        })
                        .collect();
                }
                m
            }
            LlmMessage::ToolResult {
                call_id, content, ..
            } => json!({ "role": "tool", "tool_call_id": call_id, "content": content }),
        };
        messages.push(next);
    }
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": messages,
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                })
            })
            .collect();
    }
    body
}

/// Assembles a streamed chat completion: text deltas, tool calls by index (their arguments
/// arrive in pieces), and the usage chunk that `include_usage` adds at the end.
struct StreamReader<'a> {
    on_text: OnText<'a>,
    response: ChatResponse,
    calls: Vec<ToolCall>,
    /// A choice said why it finished; some compatible servers end there without `[DONE]`.
    finished: bool,
}

impl EventReader for StreamReader<'_> {
    fn event(&mut self, _event: Option<&str>, data: &str) -> Result<bool, String> {
        if data.trim() == "[DONE]" {
            return Ok(true);
        }
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| format!("an unreadable chunk: {e}"))?;
        if let Some(message) = chunk.pointer("/error/message").and_then(Value::as_str) {
            return Err(message.to_string());
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            usage_into(usage, &mut self.response);
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return Ok(false);
        };
        let delta = &choice["delta"];
        if let Some(text) = delta.get("content").and_then(Value::as_str)
            && !text.is_empty()
        {
            self.response.text.push_str(text);
            (self.on_text)(&self.response.text);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            while self.calls.len() <= index {
                self.calls.push(ToolCall::default());
            }
            let slot = &mut self.calls[index];
            let piece = |pointer: &str| call.pointer(pointer).and_then(Value::as_str);
            if let Some(id) = piece("/id") {
                slot.id = id.to_string();
            }
            if let Some(name) = piece("/function/name") {
                slot.name.push_str(name);
            }
            if let Some(arguments) = piece("/function/arguments") {
                slot.arguments.push_str(arguments);
            }
        }
        if choice.get("finish_reason").is_some_and(|r| !r.is_null()) {
            self.finished = true;
        }
        Ok(false)
    }

    fn reset(&mut self) {
        self.response = ChatResponse::default();
        self.calls.clear();
        self.finished = false;
    }

    fn whole_at_end(&self) -> bool {
        self.finished
    }
}

fn parse_response(reply: &Value) -> Result<ChatResponse, LlmError> {
    let message = reply
        .pointer("/choices/0/message")
        .ok_or_else(|| LlmError::Protocol("no choices[0].message in the reply".into()))?;
    let text = message
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut tool_calls = Vec::new();
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = |pointer: &str| {
            call.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        tool_calls.push(ToolCall {
            id: field("/id").to_string(),
            name: field("/function/name").to_string(),
            arguments: field("/function/arguments").to_string(),
        });
    }
    let mut response = ChatResponse {
        text,
        tool_calls,
        ..ChatResponse::default()
    };
    if let Some(usage) = reply.get("usage") {
        usage_into(usage, &mut response);
    }
    Ok(response)
}

/// Token counts of a `usage` object: `prompt_tokens` includes the cached ones, which are
/// counted apart (`prompt_tokens_details.cached_tokens`).
fn usage_into(usage: &Value, response: &mut ChatResponse) {
    let count = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    let cached = count("/prompt_tokens_details/cached_tokens");
    response.input_tokens = count("/prompt_tokens").saturating_sub(cached);
    response.cache_read_tokens = cached;
    response.output_tokens = count("/completion_tokens");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::llm::ToolSpec;

    #[test]
    fn body_carries_system_history_and_tools() {
        let request = ChatRequest {
            model: "m".into(),
            system: "be brief".into(),
            messages: vec![
                LlmMessage::User("hi".into()),
                LlmMessage::Assistant {
                    text: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "status".into(),
                        arguments: "{}".into(),
                    }],
                },
                LlmMessage::ToolResult {
                    call_id: "c1".into(),
                    name: "status".into(),
                    content: "ok".into(),
                    is_error: false,
                },
            ],
            tools: vec![ToolSpec {
                name: "status".into(),
                description: "d".into(),
                parameters: json!({"type": "object"}),
            }]
            .into(),
            max_tokens: 10,
        };
        let body = request_body(&request);
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][2]["content"], Value::Null);
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["name"],
            "status"
        );
        assert_eq!(body["messages"][3]["tool_call_id"], "c1");
        assert_eq!(body["tools"][0]["function"]["name"], "status");
    }

    #[test]
    fn parses_tool_calls_and_usage() {
        let reply = json!({
            "choices": [{ "message": { "content": null, "tool_calls": [
                { "id": "x", "type": "function", "function": { "name": "agent_list", "arguments": "{}" } }
            ] } }],
            "usage": { "prompt_tokens": 7, "completion_tokens": 3 }
        });
        let r = parse_response(&reply).unwrap();
        assert_eq!(r.tool_calls[0].name, "agent_list");
        assert_eq!((r.input_tokens, r.output_tokens), (7, 3));
        assert!(parse_response(&json!({})).is_err());
    }
}
