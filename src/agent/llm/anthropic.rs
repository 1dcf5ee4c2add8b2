//! Anthropic Messages with tool use: `POST {base_url}/v1/messages`.

use serde_json::{Value, json};

use super::http::Client;
use super::{BoxFuture, ChatRequest, ChatResponse, LlmError, LlmMessage, LlmProvider};
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
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect();
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "system": request.system,
        "messages": messages,
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({ "name": t.name, "description": t.description, "input_schema": t.parameters }))
            .collect();
    }
    body
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
            tools: vec![],
            max_tokens: 5,
        };
        let body = request_body(&request);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1]["content"].as_array().unwrap().len(), 3);
        assert_eq!(messages[2]["role"], "user");
        assert_eq!(messages[2]["content"][1]["tool_use_id"], "b");
        assert_eq!(body["system"], "s");
        assert!(body.get("tools").is_none());
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
