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
    /// A streamed reply sends its pieces this far apart.
    stream_pace: Duration,
    /// The next streamed reply breaks off half-way (and is answered whole when asked again).
    break_next_stream: bool,
    /// When each streamed reply sent its first piece of text (for latency benchmarks).
    first_pieces: Arc<Mutex<Vec<std::time::Instant>>>,
    /// When the script is empty, answer "echo: " and the user messages since the model last
    /// spoke, joined with " + " (OpenAI format), after this delay.
    echo: Option<Duration>,
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake LLM");
        Self::serve(vendor, listener)
    }

    /// The fake on 127.0.0.1 inside the network namespace of process `pid` (a container's
    /// init, for a CLI that runs in an instance with network `none`): the listening socket is
    /// made on a thread that joined that namespace, and served from here.
    pub async fn start_in_netns(vendor: Vendor, pid: i64) -> Self {
        let listener = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("the netns");
            // Only this thread moves; the socket stays in that namespace after it ends.
            let joined = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind in the netns")
        })
        .join()
        .expect("the netns thread");
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        Self::serve(vendor, listener)
    }

    fn serve(vendor: Vendor, listener: tokio::net::TcpListener) -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/v1/messages", post(complete))
            .route("/v1/models", get(models))
            .with_state(shared.clone());
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
        self.echo_after(Duration::ZERO);
    }

    /// Like [`FakeLlm::echo`], each answer after `delay` (a slow model).
    pub fn echo_after(&self, delay: Duration) {
        assert_eq!(self.vendor, Vendor::OpenAi, "echo speaks the OpenAI format");
        self.shared.lock().unwrap().echo = Some(delay);
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
        self.reply_tool_calls_after(calls, Duration::ZERO);
    }

    /// Like [`FakeLlm::reply_tool_calls`], answered only after `delay`.
    pub fn reply_tool_calls_after(&self, calls: &[(&str, &str, &str)], delay: Duration) {
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
        self.shared
            .lock()
            .unwrap()
            .script
            .push_back((StatusCode::OK, vec![], body, delay));
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

    /// Streamed replies come in pieces `pace` apart (a slow model writing).
    pub fn stream_slowly(&self, pace: Duration) {
        self.shared.lock().unwrap().stream_pace = pace;
    }

    /// The next streamed reply breaks off half-way, as a dropped connection would.
    pub fn break_next_stream(&self) {
        self.shared.lock().unwrap().break_next_stream = true;
    }

    /// When each streamed reply sent its first piece of text, in order.
    pub fn first_pieces(&self) -> Vec<std::time::Instant> {
        let pieces = self.shared.lock().unwrap().first_pieces.clone();
        pieces.lock().unwrap().clone()
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

/// The tool results in a recorded OpenAI-format request body, in order.
/// The images a request carries, in order, as (media type, bytes), in either vendor's format:
/// OpenAI `image_url` parts with a data URL, Anthropic `image` blocks with a base64 source.
pub fn images_in(body: &Value) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    let decode = |b64: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("image data is base64")
    };
    let mut images = Vec::new();
    for message in body["messages"].as_array().into_iter().flatten() {
        for part in message["content"].as_array().into_iter().flatten() {
            if part["type"] == "image_url" {
                let url = part["image_url"]["url"].as_str().expect("an image url");
                let rest = url.strip_prefix("data:").expect("a data URL, never a link");
                let (media_type, data) = rest.split_once(";base64,").expect("base64 data");
                images.push((media_type.to_string(), decode(data)));
            } else if part["type"] == "image" {
                let source = &part["source"];
                assert_eq!(source["type"], "base64", "{part}");
                images.push((
                    source["media_type"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    decode(source["data"].as_str().unwrap_or_default()),
                ));
            }
        }
    }
    images
}

pub fn tool_results(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["role"] == "tool")
                .map(|m| m["content"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn complete(
    State(shared): State<Arc<Mutex<Shared>>>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let streamed = serde_json::from_str::<Value>(&body)
        .is_ok_and(|b| b.get("stream") == Some(&Value::Bool(true)));
    let anthropic = uri.path() == "/v1/messages";
    let (response, delay) = respond(&shared, uri, headers, body);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if !streamed || !response.status().is_success() {
        return response;
    }
    // A streamed request gets the same reply as server-sent events, in the vendor's format.
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let reply: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let mut events = if anthropic {
        anthropic_events(&reply)
    } else {
        openai_events(&reply)
    };
    // The first event that carries text: after OpenAI's role chunk, after Anthropic's
    // message and block starts.
    let first_text = if anthropic { 2 } else { 1 };
    let (pace, broken, first_pieces) = {
        let mut s = shared.lock().unwrap();
        let broken = std::mem::take(&mut s.break_next_stream);
        if broken {
            // Asked again, the same reply comes whole.
            s.script
                .push_front((StatusCode::OK, vec![], reply.clone(), Duration::ZERO));
        }
        (s.stream_pace, broken, s.first_pieces.clone())
    };
    if broken {
        events.truncate(events.len() / 2);
    }
    let stream = futures_util::stream::unfold(
        (events.into_iter().enumerate(), first_pieces),
        move |(mut events, first_pieces)| async move {
            let (i, event) = events.next()?;
            if i > 0 && !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
            if i == first_text {
                first_pieces.lock().unwrap().push(std::time::Instant::now());
            }
            Some((
                Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(event)),
                (events, first_pieces),
            ))
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(stream))
        .expect("stream response")
}

/// A text cut into pieces of a few words, as a model streams it.
fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for word in text.split_inclusive(' ') {
        current.push_str(word);
        if current.len() >= 6 {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A chat completion as `chat.completion.chunk` events, with the usage chunk and `[DONE]`.
fn openai_events(reply: &Value) -> Vec<String> {
    let message = &reply["choices"][0]["message"];
    let chunk = |delta: Value, finish: Value| {
        let body = json!({
            "id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "fake",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
        });
        format!("data: {body}\n\n")
    };
    let mut events = vec![chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    )];
    for piece in pieces(message["content"].as_str().unwrap_or_default()) {
        events.push(chunk(json!({ "content": piece }), Value::Null));
    }
    for (i, call) in message["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        events.push(chunk(
            json!({ "tool_calls": [{ "index": i, "id": call["id"], "type": "function",
                "function": { "name": call["function"]["name"], "arguments": "" } }] }),
            Value::Null,
        ));
        let arguments = call["function"]["arguments"].as_str().unwrap_or_default();
        let half = arguments
            .char_indices()
            .nth(arguments.chars().count() / 2)
            .map_or(0, |(i, _)| i);
        for part in [&arguments[..half], &arguments[half..]] {
            events.push(chunk(
                json!({ "tool_calls": [{ "index": i, "function": { "arguments": part } }] }),
                Value::Null,
            ));
        }
    }
    events.push(chunk(
        json!({}),
        reply["choices"][0]["finish_reason"].clone(),
    ));
    let usage = json!({ "id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "fake",
                        "choices": [], "usage": reply["usage"] });
    events.push(format!("data: {usage}\n\n"));
    events.push("data: [DONE]\n\n".to_string());
    events
}

/// A Messages reply as its stream of named events.
fn anthropic_events(reply: &Value) -> Vec<String> {
    let event = |name: &str, body: Value| format!("event: {name}\ndata: {body}\n\n");
    let mut start = reply.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    let mut events = vec![event(
        "message_start",
        json!({ "type": "message_start", "message": start }),
    )];
    for (i, block) in reply["content"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if block["type"] == "tool_use" {
            events.push(event(
                "content_block_start",
                json!({ "type": "content_block_start",
                "index": i, "content_block": { "type": "tool_use", "id": block["id"],
                "name": block["name"], "input": {} } }),
            ));
            let input = block["input"].to_string();
            let half = input.len() / 2;
            for part in [&input[..half], &input[half..]] {
                events.push(event(
                    "content_block_delta",
                    json!({ "type": "content_block_delta",
                    "index": i, "delta": { "type": "input_json_delta", "partial_json": part } }),
                ));
            }
        } else {
            events.push(event(
                "content_block_start",
                json!({ "type": "content_block_start",
                "index": i, "content_block": { "type": "text", "text": "" } }),
            ));
            for piece in pieces(block["text"].as_str().unwrap_or_default()) {
                events.push(event(
                    "content_block_delta",
                    json!({ "type": "content_block_delta",
                    "index": i, "delta": { "type": "text_delta", "text": piece } }),
                ));
            }
        }
        events.push(event(
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": i }),
        ));
    }
    events.push(event(
        "message_delta",
        json!({ "type": "message_delta",
        "delta": { "stop_reason": reply["stop_reason"] },
        "usage": { "output_tokens": reply["usage"]["output_tokens"] } }),
    ));
    events.push(event("message_stop", json!({ "type": "message_stop" })));
    events
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
        None if shared.echo.is_some() => {
            let last = shared
                .requests
                .last()
                .map(|r| r.body.clone())
                .unwrap_or_default();
            let messages = last["messages"].as_array().cloned().unwrap_or_default();
            // Since the model last answered (a tool call is not an answer).
            let since = messages
                .iter()
                .rposition(|m| m["role"] == "assistant" && m.get("tool_calls").is_none())
                .map_or(0, |i| i + 1);
            // A message with images has parts: its text, and "(image)" for each image.
            let said = messages[since..]
                .iter()
                .filter(|m| m["role"] == "user")
                .filter_map(|m| match &m["content"] {
                    Value::String(text) => Some(text.clone()),
                    Value::Array(parts) => Some(
                        parts
                            .iter()
                            .map(|p| p["text"].as_str().unwrap_or("(image)").to_string())
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(" + ");
            let body = json!({
                "id": "chatcmpl-echo", "object": "chat.completion", "model": "fake",
                "choices": [{ "index": 0, "finish_reason": "stop",
                              "message": { "role": "assistant", "content": format!("echo: {said}") } }],
                "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
            });
            (
                axum::Json(body).into_response(),
                shared.echo.unwrap_or_default(),
            )
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
