//! Anthropic Messages with tool use: `POST {base_url}/v1/messages`.

use base64::Engine;
use serde_json::{Value, json};

use super::http::{Client, EventReader};
use super::{BoxFuture, ChatRequest, ChatResponse, LlmError, LlmMessage, LlmProvider, OnText};
use crate::domain::ToolCall;

const API_VERSION: &str = "2023-06-01";

pub struct Anthropic {
    client: Client,
    base_url: String,
    model: String,
}

impl Anthropic {
    pub fn new(client: Client, base_url: String, model: String) -> Self {
        Self {
            client,
            base_url,
            model,
        }
    }

    fn post(&self, http: &reqwest::Client, url: &str, body: &Value) -> reqwest::RequestBuilder {
        http.post(url)
            .header("x-api-key", self.client.key.expose())
            .header("anthropic-version", API_VERSION)
            .json(body)
    }
}

impl LlmProvider for Anthropic {
    fn describe(&self) -> String {
        format!("anthropic {} at {}", self.model, self.base_url)
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<ChatResponse, LlmError>> {
        Box::pin(async move {
            let body = request_body(request);
            let url = format!("{}/v1/messages", self.base_url);
            let reply = self
                .client
                .send_json(|http| self.post(http, &url, &body))
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
            let url = format!("{}/v1/messages", self.base_url);
            let mut reader = StreamReader {
                on_text,
                response: ChatResponse::default(),
                blocks: Vec::new(),
            };
            self.client
                .send_events(|http| self.post(http, &url, &body), &mut reader)
                .await?;
            Ok(reader.finish())
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<String, LlmError>> {
        Box::pin(async move {
            let url = format!("{}/v1/models", self.base_url);
            let reply = self
                .client
                .send_json(|http| {
                    http.get(&url)
                        .header("x-api-key", self.client.key.expose())
                        .header("anthropic-version", API_VERSION)
                })
                .await?;
            let models = reply
                .get("data")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            Ok(format!("reachable, key accepted, {models} models listed"))
        })
    }
}

/// Anthropic wants strictly alternating user and assistant turns, with tool results as blocks
/// of a user turn; consecutive user-side messages are therefore merged into one turn.
fn request_body(request: &ChatRequest) -> Value {
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    let mut push = |role: &'static str, block: Value| match turns.last_mut() {
        Some((last, blocks)) if *last == role => blocks.push(block),
        _ => turns.push((role, vec![block])),
    };
    for message in &request.messages {
        match message {
            LlmMessage::User(text) => push("user", json!({ "type": "text", "text": text })),
            LlmMessage::Image(image) => push(
                "user",
                json!({ "type": "image", "source": {
                    "type": "base64",
                    "media_type": image.media_type,
                    "data": base64::engine::general_purpose::STANDARD.encode(&image.data),
                } }),
            ),
            LlmMessage::Assistant { text, tool_calls } => {
                if !text.is_empty() {
                    push("assistant", json!({ "type": "text", "text": text }));
                }
                for call in tool_calls {
                    // The model's arguments must be an object here; a malformed one was already
                    // answered with an error, so an empty object stands in for it.
                    let input = serde_json::from_str::<Value>(&call.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    push(
                        "assistant",
                        json!({ "type": "tool_use", "id": call.id, "name": call.name, "input": input }),
                    );
                }
            }
            LlmMessage::ToolResult {
                call_id,
                content,
                is_error,
                ..
            } => push(
                "user",
                json!({ "type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": is_error }),
            ),
        }
    }
    let mut messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect();
    // Prompt caching: breakpoints after the system prompt, after the tools, and after the
    // history so far, so the next request re-sends mostly cached tokens (three of the four
    // breakpoints allowed).
    let cache = json!({ "type": "ephemeral" });
    if let Some(block) = messages
        .last_mut()
        .and_then(|m| m["content"].as_array_mut())
        .and_then(|blocks| blocks.last_mut())
    {
        block["cache_control"] = cache.clone();
    }
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "system": [{ "type": "text", "text": request.system, "cache_control": cache }],
        "messages": messages,
    });
    if !request.tools.is_empty() {
        let mut tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({ "name": t.name, "description": t.description, "input_schema": t.parameters }))
            .collect();
        if let Some(last) = tools.last_mut() {
            last["cache_control"] = cache;
        }
        body["tools"] = Value::Array(tools);
    }
    body
}

/// One content block of a streamed message as it is assembled.
enum Block {
    Text,
    Tool {
        id: String,
        name: String,
        json: String,
    },
}

/// Assembles a streamed message from its events: `message_start` (input usage),
/// `content_block_start` / `_delta` (text and tool input JSON in pieces), `message_delta`
/// (output usage), `message_stop`. An `error` event breaks the stream off.
struct StreamReader<'a> {
    on_text: OnText<'a>,
    response: ChatResponse,
    blocks: Vec<Block>,
}

impl StreamReader<'_> {
    fn finish(mut self) -> ChatResponse {
        for block in self.blocks {
            if let Block::Tool { id, name, json } = block {
                let arguments = if json.trim().is_empty() {
                    "{}".to_string()
                } else {
                    json
                };
                self.response.tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments,
                });
            }
        }
        self.response
    }
}

impl EventReader for StreamReader<'_> {
    fn event(&mut self, event: Option<&str>, data: &str) -> Result<bool, String> {
        let value: Value =
            serde_json::from_str(data).map_err(|e| format!("an unreadable event: {e}"))?;
        let kind = event
            .map(str::to_string)
            .or_else(|| {
                value
                    .get("type")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let count = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).unwrap_or(0);
        match kind.as_str() {
            "message_start" => {
                let usage = &value["message"]["usage"];
                self.response.input_tokens = count(usage, "input_tokens");
                self.response.cache_read_tokens = count(usage, "cache_read_input_tokens");
                self.response.cache_write_tokens = count(usage, "cache_creation_input_tokens");
            }
            "content_block_start" => {
                let block = &value["content_block"];
                self.blocks.push(match block["type"].as_str() {
                    Some("tool_use") => Block::Tool {
                        id: block["id"].as_str().unwrap_or_default().to_string(),
                        name: block["name"].as_str().unwrap_or_default().to_string(),
                        json: String::new(),
                    },
                    _ => {
                        if !self.response.text.is_empty() {
                            self.response.text.push('\n');
                        }
                        Block::Text
                    }
                });
            }
            "content_block_delta" => {
                let delta = &value["delta"];
                match (delta["type"].as_str(), self.blocks.last_mut()) {
                    (Some("text_delta"), _) => {
                        self.response
                            .text
                            .push_str(delta["text"].as_str().unwrap_or_default());
                        (self.on_text)(&self.response.text);
                    }
                    (Some("input_json_delta"), Some(Block::Tool { json, .. })) => {
                        json.push_str(delta["partial_json"].as_str().unwrap_or_default());
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                self.response.output_tokens = count(&value["usage"], "output_tokens");
            }
            "message_stop" => return Ok(true),
            "error" => {
                let message = value
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("the provider reported an error");
                return Err(message.to_string());
            }
            _ => {}
        }
        Ok(false)
    }

    fn reset(&mut self) {
        self.response = ChatResponse::default();
        self.blocks.clear();
    }
}

fn parse_response(reply: &Value) -> Result<ChatResponse, LlmError> {
    let blocks = reply
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| LlmError::Protocol("no content array in the reply".into()))?;
    let mut response = ChatResponse::default();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if !response.text.is_empty() {
                    response.text.push('\n');
                }
                response.text.push_str(
                    block
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                );
            }
            Some("tool_use") => response.tool_calls.push(ToolCall {
                id: block
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                name: block
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                arguments: block
                    .get("input")
                    .map_or_else(|| "{}".to_string(), Value::to_string),
            }),
            _ => {}
        }
    }
    let usage = |key: &str| {
        reply
            .pointer(&format!("/usage/{key}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    response.input_tokens = usage("input_tokens");
    response.output_tokens = usage("output_tokens");
    response.cache_read_tokens = usage("cache_read_input_tokens");
    response.cache_write_tokens = usage("cache_creation_input_tokens");
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_results_merge_into_one_user_turn() {
        let call = |id: &str| ToolCall {
            id: id.into(),
            name: "status".into(),
            arguments: "{}".into(),
        };
        let result = |id: &str| LlmMessage::ToolResult {
            call_id: id.into(),
            name: "status".into(),
            content: "ok".into(),
            is_error: false,
        };
        let request = ChatRequest {
            model: "m".into(),
            system: "s".into(),
            messages: vec![
                LlmMessage::User("hi".into()),
                LlmMessage::Assistant {
                    text: "checking".into(),
                    tool_calls: vec![call("a"), call("b")],
                },
                result("a"),
                result("b"),
            ],
            tools: std::sync::Arc::from([]),
            max_tokens: 5,
        };
        let body = request_body(&request);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1]["content"].as_array().unwrap().len(), 3);
        assert_eq!(messages[2]["role"], "user");
        assert_eq!(messages[2]["content"][1]["tool_use_id"], "b");
        assert_eq!(body["system"][0]["text"], "s");
        assert!(body.get("tools").is_none());
        // Cache breakpoints: the system prompt and the end of the history.
        assert_eq!(body["system"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(
            messages[2]["content"][1]["cache_control"]["type"],
            "ephemeral"
        );
        assert!(messages[2]["content"][0].get("cache_control").is_none());
    }

    #[test]
    fn parses_text_and_tool_use() {
        let reply = json!({
            "content": [
                { "type": "text", "text": "on it" },
                { "type": "tool_use", "id": "t1", "name": "agent_create", "input": { "name": "x" } }
            ],
            "usage": { "input_tokens": 11, "output_tokens": 4 }
        });
        let r = parse_response(&reply).unwrap();
        assert_eq!(r.text, "on it");
        assert_eq!(r.tool_calls[0].arguments, r#"{"name":"x"}"#);
        assert_eq!(r.input_tokens, 11);
    }
}
