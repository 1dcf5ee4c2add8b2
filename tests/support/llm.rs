//! Fake OpenAI-compatible and Anthropic servers: real HTTP on 127.0.0.1:0, scripted replies in
//! the vendor's wire format, and a record of every request they got.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    OpenAi,
    Anthropic,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A scripted response: status, extra headers, JSON body, and how long to wait before answering.
type Scripted = (StatusCode, Vec<(&'static str, String)>, Value, Duration);

#[derive(Default)]
struct Shared {
    script: VecDeque<Scripted>,
    /// Standing replies: a request whose body contains the text gets the reply, script untouched.
    rules: Vec<(String, Value)>,
    requests: Vec<Recorded>,
    /// When the script is empty, answer "echo: <the last user message>" (OpenAI format).
    echo: bool,
}

pub struct FakeLlm {
    pub vendor: Vendor,
    /// The value for `[llm] base_url`.
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeLlm {
    pub async fn start(vendor: Vendor) -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/v1/messages", post(complete))
            .route("/v1/models", get(models))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake LLM");
        let addr = listener.local_addr().expect("fake LLM address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let base_url = match vendor {
            Vendor::OpenAi => format!("http://{addr}/v1"),
            Vendor::Anthropic => format!("http://{addr}"),
        };
        Self {
            vendor,
            base_url,
            shared,
            server,
        }
    }

    pub fn provider(&self) -> &'static str {
        match self.vendor {
            Vendor::OpenAi => "openai",
            Vendor::Anthropic => "anthropic",
        }
    }

    fn push(&self, status: u16, headers: Vec<(&'static str, String)>, body: Value) {
        let status = StatusCode::from_u16(status).expect("status");
        let mut shared = self.shared.lock().unwrap();
        shared
            .script
            .push_back((status, headers, body, Duration::ZERO));
    }

    /// Scripts a text answer that arrives only after `delay`.
    pub fn reply_text_after(&self, text: &str, delay: Duration) {
        let body = self.text_body(text);
        let mut shared = self.shared.lock().unwrap();
        shared
            .script
            .push_back((StatusCode::OK, vec![], body, delay));
    }

    /// Waits until the fake has received `n` completion requests; false on timeout.
    pub async fn wait_for_completions(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.completions().len() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Scripts a final text answer.
    pub fn reply_text(&self, text: &str) {
        let body = self.text_body(text);
        self.push(200, vec![], body);
    }

    /// From now on, a request the script does not cover is answered with "echo: " and the
    /// last user message (OpenAI format).
    pub fn echo(&self) {
        assert_eq!(self.vendor, Vendor::OpenAi, "echo speaks the OpenAI format");
        self.shared.lock().unwrap().echo = true;
    }

    /// Answers every request whose body contains `needle` with `text`, outside the script.
    pub fn reply_when(&self, needle: &str, text: &str) {
        let body = self.text_body(text);
        self.shared
            .lock()
            .unwrap()
            .rules
            .push((needle.to_string(), body));
    }

    fn text_body(&self, text: &str) -> Value {
        match self.vendor {
            Vendor::OpenAi => json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": "fake",
                "choices": [{ "index": 0, "finish_reason": "stop",
                              "message": { "role": "assistant", "content": text } }],
                "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
            }),
            Vendor::Anthropic => json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "fake",
                "content": [{ "type": "text", "text": text }],
                "stop_reason": "end_turn",
                "usage": { "input_tokens": 10, "output_tokens": 5 }
            }),
        }
    }

    /// Scripts a reply that calls tools; each call is (id, name, raw JSON arguments).
    pub fn reply_tool_calls(&self, calls: &[(&str, &str, &str)]) {
        let body = match self.vendor {
            Vendor::OpenAi => json!({
                "id": "chatcmpl-2", "object": "chat.completion", "model": "fake",
                "choices": [{ "index": 0, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": null,
                    "tool_calls": calls.iter().map(|(id, name, args)| json!({
                        "id": id, "type": "function", "function": { "name": name, "arguments": args }
                    })).collect::<Vec<_>>()
                } }],
                "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
            }),
            Vendor::Anthropic => json!({
                "id": "msg_2", "type": "message", "role": "assistant", "model": "fake",
                "content": calls.iter().map(|(id, name, args)| json!({
                    "type": "tool_use", "id": id, "name": name,
                    "input": serde_json::from_str::<Value>(args).unwrap_or(json!({}))
                })).collect::<Vec<_>>(),
                "stop_reason": "tool_use",
                "usage": { "input_tokens": 10, "output_tokens": 5 }
            }),
        };
        self.push(200, vec![], body);
    }

    /// Scripts an error status with the vendor's error body.
    pub fn reply_error(&self, status: u16, message: &str) {
        self.reply_error_with_headers(status, message, vec![]);
    }

    pub fn reply_error_with_headers(
        &self,
        status: u16,
        message: &str,
        headers: Vec<(&'static str, String)>,
    ) {
        let body = match self.vendor {
            Vendor::OpenAi => {
                json!({ "error": { "message": message, "type": "error", "code": null } })
            }
            Vendor::Anthropic => {
                json!({ "type": "error", "error": { "type": "error", "message": message } })
            }
        };
        self.push(status, headers, body);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Completion requests only (not model listings).
    pub fn completions(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path != "/v1/models")
            .collect()
    }

    pub fn remaining_script(&self) -> usize {
        self.shared.lock().unwrap().script.len()
    }
}

async fn complete(
    State(shared): State<Arc<Mutex<Shared>>>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let (response, delay) = respond(&shared, uri, headers, body);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response
}

/// Records the request and picks its response (a standing rule first, then the script).
fn respond(
    shared: &Mutex<Shared>,
    uri: Uri,
    headers: HeaderMap,
    raw: String,
) -> (Response, Duration) {
    let mut shared = shared.lock().unwrap();
    let body: Value = serde_json::from_str(&raw).unwrap_or(Value::String(raw.clone()));
    shared.requests.push(Recorded {
        path: uri.path().to_string(),
        headers,
        body,
    });
    if let Some((_, reply)) = shared
        .rules
        .iter()
        .find(|(needle, _)| raw.contains(needle.as_str()))
    {
        return (axum::Json(reply.clone()).into_response(), Duration::ZERO);
    }
    match shared.script.pop_front() {
        Some((status, extra, body, delay)) => {
            let mut response = (status, axum::Json(body)).into_response();
            for (name, value) in extra {
                response
                    .headers_mut()
                    .insert(name, value.parse().expect("header value"));
            }
            (response, delay)
        }
        None if shared.echo => {
            let last = shared
                .requests
                .last()
                .map(|r| r.body.clone())
                .unwrap_or_default();
            let said = last["messages"]
                .as_array()
                .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                .and_then(|m| m["content"].as_str())
                .unwrap_or_default()
                .to_string();
            let body = json!({
                "id": "chatcmpl-echo", "object": "chat.completion", "model": "fake",
                "choices": [{ "index": 0, "finish_reason": "stop",
                              "message": { "role": "assistant", "content": format!("echo: {said}") } }],
                "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
            });
            (axum::Json(body).into_response(), Duration::ZERO)
        }
        None => {
            let body = json!({ "error": { "message": "the fake has no scripted reply left" } });
            (
                (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response(),
                Duration::ZERO,
            )
        }
    }
}

async fn models(
    State(shared): State<Arc<Mutex<Shared>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let ok = headers.contains_key("authorization") || headers.contains_key("x-api-key");
    shared.lock().unwrap().requests.push(Recorded {
        path: uri.path().to_string(),
        headers,
        body: Value::Null,
    });
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "error": { "message": "no key" } })),
        )
            .into_response();
    }
    axum::Json(json!({ "object": "list", "data": [{ "id": "fake-model", "object": "model" }] }))
        .into_response()
}
