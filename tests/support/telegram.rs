//! A fake Telegram Bot API server: real HTTP on 127.0.0.1:0 at `/bot<token>/<method>`, the
//! real JSON wire format (so teloxide parses what it would parse from Telegram), long polling
//! with offsets, and a record of every call. Tests inject updates, script failures (429 with
//! `retry_after`, rejected markup, 409), and can hold deliveries to crash the daemon mid-way.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const BOT_ID: u64 = 700_000_001;
pub const USERNAME: &str = "op_test_bot";

/// One API call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    /// Refused by a scripted failure.
    pub refused: bool,
    /// When it arrived.
    pub at: std::time::Instant,
}

#[derive(Default)]
struct Shared {
    token: String,
    /// Updates not yet confirmed by an offset.
    updates: VecDeque<Value>,
    next_update_id: i64,
    next_message_id: i64,
    calls: Vec<Call>,
    /// Scripted failures by method: status and body, used once each.
    failures: HashMap<String, VecDeque<(u16, Value)>>,
    /// After this many accepted sendMessage calls, further ones hang unanswered and unrecorded.
    hold_sends_after: Option<usize>,
    sends: usize,
    /// Files the bot may download, by file id: (path, bytes).
    files: HashMap<String, (String, Vec<u8>)>,
    /// What each chat shows: (chat, message id, text) of the bot's messages, edits applied,
    /// deleted ones gone.
    shown: Vec<(i64, i64, String)>,
    /// `sendMessageDraft` answers 404, as a Bot API server from before drafts.
    no_drafts: bool,
}

pub struct FakeTelegram {
    pub token: String,
    /// The value for `[telegram] api_url`.
    pub api_url: String,
    shared: Arc<Mutex<Shared>>,
    arrived: Arc<Notify>,
    sent: Arc<Notify>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The shared state, the signal that updates arrived, and the signal that a message was sent.
type AppState = (Arc<Mutex<Shared>>, Arc<Notify>, Arc<Notify>);

impl FakeTelegram {
    pub async fn start() -> Self {
        let token = format!("{BOT_ID}:AAE-fake-token-for-tests_0123456789");
        let shared = Arc::new(Mutex::new(Shared {
            token: token.clone(),
            next_update_id: 1000,
            next_message_id: 1,
            ..Shared::default()
        }));
        let arrived = Arc::new(Notify::new());
        let sent = Arc::new(Notify::new());
        let app = Router::new()
            .route("/{bot}/{method}", post(api).get(api))
            .route("/file/{bot}/{*path}", get(file))
            .with_state((shared.clone(), arrived.clone(), sent.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Telegram");
        let addr = listener.local_addr().expect("fake Telegram address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            token,
            api_url: format!("http://{addr}"),
            shared,
            arrived,
            sent,
            server,
        }
    }

    /// The `[telegram]` section for this fake, plus `extra` keys.
    pub fn config(&self, extra: &str) -> String {
        format!(
            "[telegram]\nenabled = true\ntoken = {:?}\napi_url = {:?}\n{extra}\n",
            self.token, self.api_url
        )
    }

    /// Queues a text message from `user` in a direct chat; returns its update id.
    pub fn direct(&self, user: u64, text: &str) -> i64 {
        let chat = json!({ "id": user, "type": "private", "first_name": format!("User{user}") });
        self.message(chat, user, text, json!({}))
    }

    /// Queues a text message from `user` in the group `chat`; returns its update id.
    pub fn group(&self, chat: i64, user: u64, text: &str) -> i64 {
        let chat = json!({ "id": chat, "type": "supergroup", "title": "Test group" });
        self.message(chat, user, text, json!({}))
    }

    /// Queues a message with extra fields (a document, a caption, ...).
    pub fn message(&self, chat: Value, user: u64, text: &str, extra: Value) -> i64 {
        let mut shared = self.shared.lock().unwrap();
        let update_id = shared.next_update_id;
        shared.next_update_id += 1;
        let message_id = shared.next_message_id;
        shared.next_message_id += 1;
        let mut message = json!({
            "message_id": message_id,
            "date": 1_780_000_000,
            "chat": chat,
            "from": { "id": user, "is_bot": false, "first_name": format!("User{user}") },
        });
        if !text.is_empty() {
            message["text"] = json!(text);
        }
        if let (Some(m), Some(e)) = (message.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                m.insert(k.clone(), v.clone());
            }
        }
        shared
            .updates
            .push_back(json!({ "update_id": update_id, "message": message }));
        drop(shared);
        self.arrived.notify_waiters();
        update_id
    }

    /// A press of an inline button by `user` on the bot's message `message_id` in `chat`;
    /// returns the update id.
    pub fn press(&self, chat: i64, user: u64, message_id: i64, data: &str) -> i64 {
        let mut shared = self.shared.lock().unwrap();
        let update_id = shared.next_update_id;
        shared.next_update_id += 1;
        let chat = if chat < 0 {
            json!({ "id": chat, "type": "supergroup", "title": "Test group" })
        } else {
            json!({ "id": chat, "type": "private", "first_name": format!("User{chat}") })
        };
        let query = json!({
            "id": format!("cb-{update_id}"),
            "from": { "id": user, "is_bot": false, "first_name": format!("User{user}") },
            "message": {
                "message_id": message_id, "date": 1_780_000_000, "chat": chat,
                "from": { "id": BOT_ID, "is_bot": true, "first_name": "Operator Test", "username": USERNAME },
                "text": "approval"
            },
            "chat_instance": "ci-1",
            "data": data,
        });
        shared
            .updates
            .push_back(json!({ "update_id": update_id, "callback_query": query }));
        drop(shared);
        self.arrived.notify_waiters();
        update_id
    }

    /// The bot's messages that carry inline buttons: (chat, message id, body), in order.
    pub fn with_buttons(&self) -> Vec<(i64, i64, Value)> {
        let s = self.shared.lock().unwrap();
        s.calls
            .iter()
            .filter(|c| {
                c.method == "sendMessage" && !c.refused && !c.body["reply_markup"].is_null()
            })
            .filter_map(|c| {
                let chat = c.body["chat_id"].as_i64()?;
                let text = c.body["text"].as_str()?;
                let id = s
                    .shown
                    .iter()
                    .find(|(sc, _, t)| *sc == chat && t == text)
                    .map(|(_, id, _)| *id)?;
                Some((chat, id, c.body.clone()))
            })
            .collect()
    }

    /// A file the bot can fetch with getFile and download.
    pub fn add_file(&self, file_id: &str, path: &str, bytes: &[u8]) {
        self.shared
            .lock()
            .unwrap()
            .files
            .insert(file_id.into(), (path.into(), bytes.to_vec()));
    }

    /// The next call of `method` fails with this status and description (and parameters).
    pub fn fail_next(&self, method: &str, status: u16, description: &str, parameters: Value) {
        let mut body = json!({ "ok": false, "error_code": status, "description": description });
        if !parameters.is_null() {
            body["parameters"] = parameters;
        }
        self.shared
            .lock()
            .unwrap()
            .failures
            .entry(method.into())
            .or_default()
            .push_back((status, body));
    }

    /// After `n` accepted messages, deliveries hang without being recorded (a crash point
    /// where Telegram has not taken the message).
    pub fn hold_sends_after(&self, n: usize) {
        self.shared.lock().unwrap().hold_sends_after = Some(n);
    }

    /// Deliveries are accepted again.
    pub fn unhold(&self) {
        self.shared.lock().unwrap().hold_sends_after = None;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().unwrap().calls.clone()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .map(|c| c.body)
            .collect()
    }

    /// Texts of the bot's messages that `chat` shows, in order: edits applied, deleted ones
    /// gone (what the person sees).
    pub fn sent_to(&self, chat: i64) -> Vec<String> {
        self.shared
            .lock()
            .unwrap()
            .shown
            .iter()
            .filter(|(c, _, _)| *c == chat)
            .map(|(_, _, text)| text.clone())
            .collect()
    }

    /// `sendMessageDraft` answers 404 from now on (a Bot API server that predates drafts).
    pub fn refuse_drafts(&self) {
        self.shared.lock().unwrap().no_drafts = true;
    }

    /// Waits until `check` holds over the calls, or the timeout passes; returns whether it held.
    pub async fn wait_until(&self, timeout: Duration, check: impl Fn(&[Call]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if check(&self.calls()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 30 s) until the bot under test has polled once; panics if it never does.
    pub async fn expect_polling(&self) {
        let polled = self
            .wait_until(Duration::from_secs(30), |calls| {
                calls.iter().any(|c| c.method == "getUpdates")
            })
            .await;
        assert!(polled, "the bot never polled");
    }

    /// Waits until `n` messages were sent to `chat`.
    pub async fn wait_sent(&self, chat: i64, n: usize, timeout: Duration) -> Vec<String> {
        self.wait_until(timeout, |_| self.sent_to(chat).len() >= n)
            .await;
        self.sent_to(chat)
    }

    /// Messages accepted so far.
    pub fn accepted_sends(&self) -> usize {
        self.shared.lock().unwrap().sends
    }

    /// Waits until `n` messages were accepted in all; false on timeout.
    pub async fn wait_sends(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.sent.notified();
            if self.accepted_sends() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.accepted_sends() >= n;
            }
        }
    }

    /// Updates not yet confirmed.
    pub fn unconfirmed(&self) -> usize {
        self.shared.lock().unwrap().updates.len()
    }
}

fn ok(result: Value) -> Response {
    axum::Json(json!({ "ok": true, "result": result })).into_response()
}

fn error(status: u16, description: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({ "ok": false, "error_code": status, "description": description });
    (code, axum::Json(body)).into_response()
}

/// The body as JSON: teloxide sends JSON, or multipart for files (then the text fields).
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Value {
    let kind = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if kind.starts_with("multipart/form-data") {
        return multipart_fields(kind, body);
    }
    serde_json::from_slice(body).unwrap_or(json!({}))
}

/// The fields of a multipart body; file parts become `{"filename", "size"}`.
fn multipart_fields(kind: &str, body: &Bytes) -> Value {
    let boundary = kind
        .split("boundary=")
        .nth(1)
        .unwrap_or_default()
        .trim_matches('"');
    let marker = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    let mut fields = serde_json::Map::new();
    for part in text.split(marker.as_str()) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        match head
            .split("filename=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        {
            Some(file) => {
                fields.insert(
                    name.into(),
                    json!({ "filename": file, "size": value.len(), "content": value }),
                );
            }
            None => {
                let parsed = serde_json::from_str(value).unwrap_or(json!(value));
                fields.insert(name.into(), parsed);
            }
        }
    }
    // `attach://name` refers to another part: resolve it, as Telegram does.
    let parts = fields.clone();
    for value in fields.values_mut() {
        if let Some(name) = value.as_str().and_then(|v| v.strip_prefix("attach://"))
            && let Some(part) = parts.get(name)
        {
            *value = part.clone();
        }
    }
    Value::Object(fields)
}

/// Checks Telegram HTML: known tags, balanced, entities well formed.
fn html_ok(text: &str) -> Result<(), String> {
    const TAGS: [&str; 9] = [
        "b",
        "i",
        "u",
        "s",
        "code",
        "pre",
        "a",
        "tg-spoiler",
        "blockquote",
    ];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['<', '&']) {
        let after = &rest[i..];
        if after.starts_with('&') {
            let end = after.find(';').ok_or("unterminated entity")?;
            let name = &after[1..end];
            let known = ["lt", "gt", "amp", "quot"].contains(&name) || name.starts_with('#');
            if !known {
                return Err(format!("unsupported entity &{name};"));
            }
            rest = &after[end + 1..];
            continue;
        }
        let end = after.find('>').ok_or("unclosed tag")?;
        let tag = &after[1..end];
        if let Some(name) = tag.strip_prefix('/') {
            if stack.pop().as_deref() != Some(name) {
                return Err(format!("unexpected end tag {name}"));
            }
        } else {
            let name = tag.split_whitespace().next().unwrap_or_default();
            if !TAGS.contains(&name) {
                return Err(format!("unsupported start tag \"{name}\""));
            }
            stack.push(name.to_string());
        }
        rest = &after[end + 1..];
    }
    match stack.pop() {
        Some(open) => Err(format!(
            "can't find end tag corresponding to start tag {open}"
        )),
        None => Ok(()),
    }
}

fn visible_len(text: &str, html: bool) -> usize {
    if !html {
        return text.encode_utf16().count();
    }
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .encode_utf16()
        .count()
}

async fn api(
    State((shared, arrived, sent)): State<AppState>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = parse_body(&headers, &body);
    // Telegram's method names are case-insensitive (teloxide sends `SendMessage`).
    let method = {
        let lower = method.to_ascii_lowercase();
        [
            "getMe",
            "getUpdates",
            "sendMessage",
            "sendMessageDraft",
            "sendDocument",
            "sendVoice",
            "sendPhoto",
            "editMessageText",
            "getFile",
            "sendChatAction",
            "setMyCommands",
            "setWebhook",
            "deleteWebhook",
            "getMyCommands",
            "deleteMessage",
            "answerCallbackQuery",
        ]
        .into_iter()
        .find(|m| m.to_ascii_lowercase() == lower)
        .map_or(method, str::to_string)
    };
    let held = {
        let s = shared.lock().unwrap();
        method == "sendMessage" && s.hold_sends_after.is_some_and(|n| s.sends >= n)
    };
    if held {
        // Held: never answered, never recorded, as if the daemon died before Telegram read
        // the request.
        std::future::pending::<()>().await;
    }
    {
        let mut s = shared.lock().unwrap();
        if bot != format!("bot{}", s.token) {
            return error(401, "Unauthorized");
        }
        let failure = s.failures.get_mut(&method).and_then(VecDeque::pop_front);
        s.calls.push(Call {
            method: method.clone(),
            body: body.clone(),
            refused: failure.is_some(),
            at: std::time::Instant::now(),
        });
        if let Some((status, failure)) = failure {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return (code, axum::Json(failure)).into_response();
        }
    }
    match method.as_str() {
        "getMe" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Operator Test", "username": USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false
        })),
        "getUpdates" => get_updates(&shared, &arrived, &body).await,
        "sendMessage" | "sendDocument" | "sendVoice" | "sendPhoto" => {
            let html = body["parse_mode"].as_str() == Some("HTML");
            let text = body["text"].as_str().unwrap_or_default().to_string();
            if method == "sendMessage" {
                if text.is_empty() {
                    return error(400, "Bad Request: message text is empty");
                }
                if html && let Err(why) = html_ok(&text) {
                    return error(400, &format!("Bad Request: can't parse entities: {why}"));
                }
                if visible_len(&text, html) > 4096 {
                    return error(400, "Bad Request: message is too long");
                }
            }
            let message_id = {
                let mut s = shared.lock().unwrap();
                s.sends += 1;
                s.next_message_id += 1;
                let id = s.next_message_id - 1;
                if method == "sendMessage" {
                    let chat = body["chat_id"].as_i64().unwrap_or(0);
                    s.shown.push((chat, id, text.clone()));
                }
                id
            };
            sent.notify_waiters();
            ok(sent_message(message_id, &body))
        }
        "editMessageText" => {
            let message_id = body["message_id"].as_i64().unwrap_or(0);
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            let text = body["text"].as_str().unwrap_or_default().to_string();
            let mut s = shared.lock().unwrap();
            match s
                .shown
                .iter_mut()
                .find(|(c, id, _)| *c == chat && *id == message_id)
            {
                Some(shown) => shown.2 = text,
                None => return error(400, "Bad Request: message to edit not found"),
            }
            ok(sent_message(message_id, &body))
        }
        "sendMessageDraft" => {
            if shared.lock().unwrap().no_drafts {
                return error(404, "Not Found: method not found");
            }
            if body["draft_id"].as_i64().unwrap_or(0) == 0 {
                return error(400, "Bad Request: draft_id must be non-zero");
            }
            ok(json!(true))
        }
        "deleteMessage" => {
            let message_id = body["message_id"].as_i64().unwrap_or(0);
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            shared
                .lock()
                .unwrap()
                .shown
                .retain(|(c, id, _)| !(*c == chat && *id == message_id));
            ok(json!(true))
        }
        "getFile" => {
            let id = body["file_id"].as_str().unwrap_or_default();
            let s = shared.lock().unwrap();
            match s.files.get(id) {
                Some((path, bytes)) => ok(json!({
                    "file_id": id, "file_unique_id": format!("u{id}"),
                    "file_size": bytes.len(), "file_path": path
                })),
                None => error(400, "Bad Request: invalid file_id"),
            }
        }
        "sendChatAction"
        | "setMyCommands"
        | "setWebhook"
        | "deleteWebhook"
        | "answerCallbackQuery" => ok(json!(true)),
        "getMyCommands" => ok(json!([])),
        other => error(404, &format!("Not Found: method {other}")),
    }
}

fn sent_message(message_id: i64, body: &Value) -> Value {
    let chat_id = body["chat_id"].as_i64().unwrap_or(0);
    let chat = if chat_id < 0 {
        json!({ "id": chat_id, "type": "supergroup", "title": "Test group" })
    } else {
        json!({ "id": chat_id, "type": "private", "first_name": "User" })
    };
    json!({
        "message_id": message_id,
        "date": 1_780_000_000,
        "chat": chat,
        "from": { "id": BOT_ID, "is_bot": true, "first_name": "Operator Test", "username": USERNAME },
        "text": body["text"].as_str().unwrap_or("file"),
    })
}

async fn get_updates(shared: &Mutex<Shared>, arrived: &Notify, body: &Value) -> Response {
    let offset = body["offset"].as_i64().unwrap_or(0);
    let limit = body["limit"].as_u64().unwrap_or(100).clamp(1, 100) as usize;
    let timeout = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0).min(25));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = arrived.notified();
        {
            let mut s = shared.lock().unwrap();
            // An offset confirms every update below it.
            while s
                .updates
                .front()
                .is_some_and(|u| u["update_id"].as_i64().unwrap_or(0) < offset)
            {
                s.updates.pop_front();
            }
            if !s.updates.is_empty() {
                let batch: Vec<Value> = s.updates.iter().take(limit).cloned().collect();
                return ok(json!(batch));
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return ok(json!([]));
        }
    }
}

async fn file(
    State((shared, _, _)): State<AppState>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    let s = shared.lock().unwrap();
    if bot != format!("bot{}", s.token) {
        return error(401, "Unauthorized");
    }
    match s.files.values().find(|(p, _)| *p == path) {
        Some((_, bytes)) => bytes.clone().into_response(),
        None => error(404, "Not Found"),
    }
}
