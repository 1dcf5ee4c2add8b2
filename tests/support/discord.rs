//! A fake Discord: the REST API under `/api/v10` (reached through serenity's proxy setting) and
//! a gateway WebSocket that speaks HELLO, IDENTIFY, READY, heartbeats, RESUME and dispatches.
//! Tests inject messages as `MESSAGE_CREATE` events, read what the bot sent, and can drop the
//! connection to make the bot resume.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message as Ws;

pub const BOT_ID: u64 = 800_000_000_000_000_001;
pub const BOT_NAME: &str = "op-discord-bot";

/// One REST call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
    pub at: std::time::Instant,
}

#[derive(Default)]
struct Shared {
    token: String,
    calls: Vec<Call>,
    /// Every dispatch sent, with its sequence number, for RESUME.
    events: Vec<Value>,
    next_id: u64,
    identifies: usize,
    resumes: usize,
    /// Bumped to make the live connection drop.
    drops: u64,
    /// Messages posted to channels.
    posts: usize,
    /// What each channel shows: (channel, message id, content), edits applied, deleted gone.
    shown: Vec<(String, u64, String)>,
}

pub struct FakeDiscord {
    pub token: String,
    /// The value for `[discord] api_url`.
    pub api_url: String,
    shared: Arc<Mutex<Shared>>,
    events: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

type AppState = (Arc<Mutex<Shared>>, String);

impl FakeDiscord {
    pub async fn start() -> Self {
        let token = "MTIzNDU2.fake-discord-token.for-tests".to_string();
        let shared = Arc::new(Mutex::new(Shared {
            token: token.clone(),
            next_id: 900_000_000_000_000_000,
            ..Shared::default()
        }));
        let events = Arc::new(Notify::new());
        let gateway = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake gateway");
        let ws_url = format!("ws://{}", gateway.local_addr().unwrap());
        let rest = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Discord REST");
        let api_url = format!("http://{}", rest.local_addr().unwrap());
        let app = Router::new()
            .route("/api/v10/{*path}", any(api))
            .route(
                "/attachments/{name}",
                any(|Path(name): Path<String>| async move { format!("contents of {name}") }),
            )
            .with_state((shared.clone(), ws_url.clone()));
        let rest_task = tokio::spawn(async move {
            let _ = axum::serve(rest, app).await;
        });
        let (gw_shared, gw_events, gw_url) = (shared.clone(), events.clone(), ws_url.clone());
        let gateway_task = tokio::spawn(async move {
            while let Ok((socket, _)) = gateway.accept().await {
                let (shared, events, url) = (gw_shared.clone(), gw_events.clone(), gw_url.clone());
                tokio::spawn(async move {
                    if let Ok(ws) = tokio_tungstenite::accept_async(socket).await {
                        connection(ws, shared, events, url).await;
                    }
                });
            }
        });
        Self {
            token,
            api_url,
            shared,
            events,
            tasks: vec![rest_task, gateway_task],
        }
    }

    /// The `[discord]` section for this fake, plus `extra` keys.
    pub fn config(&self, extra: &str) -> String {
        format!(
            "[discord]\nenabled = true\ntoken = {:?}\napi_url = {:?}\n{extra}\n",
            self.token, self.api_url
        )
    }

    fn id(&self) -> u64 {
        let mut s = self.shared.lock().unwrap();
        s.next_id += 1;
        s.next_id
    }

    /// Sends a `MESSAGE_CREATE`; `guild` is `None` for a direct message. Returns its id.
    pub fn message(&self, channel: u64, guild: Option<u64>, author: u64, content: &str) -> u64 {
        let id = self.id();
        let mut mentions = Vec::new();
        if content.contains(&format!("<@{BOT_ID}>")) {
            mentions.push(user(BOT_ID, BOT_NAME, true));
        }
        let mut message = json!({
            "id": id.to_string(), "channel_id": channel.to_string(),
            "author": user(author, &format!("user{author}"), false),
            "content": content, "timestamp": "2026-11-29T12:00:00.000000+00:00",
            "edited_timestamp": null, "tts": false, "mention_everyone": false,
            "mentions": mentions, "mention_roles": [], "attachments": [], "embeds": [],
            "pinned": false, "type": 0, "flags": 0
        });
        if let Some(guild) = guild {
            message["guild_id"] = json!(guild.to_string());
        }
        self.dispatch("MESSAGE_CREATE", message);
        id
    }

    /// Sends an `INTERACTION_CREATE` for a slash command in a DM channel (string options).
    /// Returns the interaction id.
    pub fn slash(&self, channel: u64, user_id: u64, name: &str, options: &[(&str, &str)]) -> u64 {
        let id = self.id();
        let options: Vec<Value> = options
            .iter()
            .map(|(n, v)| json!({ "name": n, "type": 3, "value": v }))
            .collect();
        let interaction = json!({
            "id": id.to_string(), "application_id": BOT_ID.to_string(), "type": 2,
            "data": { "id": "1", "name": name, "type": 1, "options": options },
            "channel_id": channel.to_string(),
            "user": user(user_id, &format!("user{user_id}"), false),
            "token": format!("itoken-{id}"), "version": 1, "locale": "en-US",
            "entitlements": [], "attachment_size_limit": 26214400
        });
        self.dispatch("INTERACTION_CREATE", interaction);
        id
    }

    /// Sends an `INTERACTION_CREATE` for a press of the button `custom_id` on the bot's message
    /// `message` in `channel` (of `guild`, if any) by `user_id`. Returns the interaction id.
    pub fn press(
        &self,
        channel: u64,
        guild: Option<u64>,
        user_id: u64,
        message: u64,
        custom_id: &str,
    ) -> u64 {
        let id = self.id();
        let mut interaction = json!({
            "id": id.to_string(), "application_id": BOT_ID.to_string(), "type": 3,
            "data": { "custom_id": custom_id, "component_type": 2 },
            "channel_id": channel.to_string(),
            "user": user(user_id, &format!("user{user_id}"), false),
            "message": message_json(message, &channel.to_string(), "approval"),
            "token": format!("itoken-{id}"), "version": 1, "locale": "en-US",
            "entitlements": [], "attachment_size_limit": 26214400
        });
        if let Some(guild) = guild {
            interaction["guild_id"] = json!(guild.to_string());
        }
        self.dispatch("INTERACTION_CREATE", interaction);
        id
    }

    /// The bot's messages in `channel` that carry buttons: (message id, body of the post).
    pub fn with_buttons(&self, channel: u64) -> Vec<(u64, Value)> {
        let s = self.shared.lock().unwrap();
        let path = format!("/api/v10/channels/{channel}/messages");
        // The message a post made is found by its content (the fake keeps no post ids).
        s.calls
            .iter()
            .filter(|c| c.method == "POST" && c.path == path && !c.body["components"].is_null())
            .filter_map(|c| {
                let content = c.body["content"].as_str()?;
                let id = s
                    .shown
                    .iter()
                    .find(|(sc, _, t)| *sc == channel.to_string() && t == content)
                    .map(|(_, id, _)| *id)?;
                Some((id, c.body.clone()))
            })
            .collect()
    }

    /// A direct message with one file attached (served by the fake at `/attachments/<name>`).
    pub fn message_with_file(&self, channel: u64, author: u64, content: &str, file: &str) -> u64 {
        let id = self.id();
        let size = format!("contents of {file}").len();
        let message = json!({
            "id": id.to_string(), "channel_id": channel.to_string(),
            "author": user(author, &format!("user{author}"), false),
            "content": content, "timestamp": "2026-11-29T12:00:00.000000+00:00",
            "edited_timestamp": null, "tts": false, "mention_everyone": false,
            "mentions": [], "mention_roles": [], "embeds": [], "pinned": false, "type": 0,
            "attachments": [{
                "id": (id + 1).to_string(), "filename": file, "size": size,
                "url": format!("{}/attachments/{file}", self.api_url),
                "proxy_url": format!("{}/attachments/{file}", self.api_url)
            }]
        });
        self.dispatch("MESSAGE_CREATE", message);
        id
    }

    /// A voice message (the voice-message flag, an Ogg attachment with a duration) in `channel`.
    pub fn voice_message(&self, channel: u64, author: u64) -> u64 {
        let id = self.id();
        let file = "voice-message.ogg";
        let size = format!("contents of {file}").len();
        let message = json!({
            "id": id.to_string(), "channel_id": channel.to_string(),
            "author": user(author, &format!("user{author}"), false),
            "content": "", "timestamp": "2026-11-29T12:00:00.000000+00:00",
            "edited_timestamp": null, "tts": false, "mention_everyone": false,
            "mentions": [], "mention_roles": [], "embeds": [], "pinned": false, "type": 0,
            "flags": 8192,
            "attachments": [{
                "id": (id + 1).to_string(), "filename": file, "size": size,
                "content_type": "audio/ogg", "duration_secs": 2.5, "waveform": "AAAA",
                "url": format!("{}/attachments/{file}", self.api_url),
                "proxy_url": format!("{}/attachments/{file}", self.api_url)
            }]
        });
        self.dispatch("MESSAGE_CREATE", message);
        id
    }

    fn dispatch(&self, kind: &str, data: Value) {
        let mut s = self.shared.lock().unwrap();
        let seq = s.events.len() as u64 + 2; // READY is 1
        s.events
            .push(json!({ "op": 0, "t": kind, "s": seq, "d": data }));
        drop(s);
        self.events.notify_waiters();
    }

    /// Closes the live gateway connection abruptly; the bot is expected to resume.
    pub fn drop_connection(&self) {
        self.shared.lock().unwrap().drops += 1;
        self.events.notify_waiters();
    }

    /// Messages posted to any channel so far.
    pub fn posts(&self) -> usize {
        self.shared.lock().unwrap().posts
    }

    /// When the interaction's deferral arrived, if it did.
    pub fn deferred_at(&self, id: u64) -> Option<std::time::Instant> {
        let path = format!("/itoken-{id}/callback");
        let s = self.shared.lock().unwrap();
        s.calls
            .iter()
            .rev()
            .find(|c| c.path.ends_with(&path))
            .map(|c| c.at)
    }

    pub fn identifies(&self) -> usize {
        self.shared.lock().unwrap().identifies
    }

    pub fn resumes(&self) -> usize {
        self.shared.lock().unwrap().resumes
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().unwrap().calls.clone()
    }

    /// Bodies of the messages the bot posted to `channel`, in order.
    pub fn posted(&self, channel: u64) -> Vec<Value> {
        let path = format!("/api/v10/channels/{channel}/messages");
        self.calls()
            .into_iter()
            .filter(|c| c.method == "POST" && c.path == path)
            .map(|c| c.body)
            .collect()
    }

    /// The calls about one interaction (its callback, response edits and follow-ups), in order,
    /// as (method, path kind, body).
    pub fn interaction_calls(&self, id: u64) -> Vec<(String, String, Value)> {
        let token = format!("itoken-{id}");
        self.calls()
            .into_iter()
            .filter(|c| c.path.contains(&token))
            .map(|c| {
                let kind = if c.path.ends_with("/callback") {
                    "callback"
                } else if c.path.ends_with("@original") {
                    "original"
                } else {
                    "followup"
                };
                (c.method, kind.to_string(), c.body)
            })
            .collect()
    }

    /// Texts of the bot's messages `channel` shows, in order: edits applied, deleted ones
    /// gone (what the person sees).
    pub fn texts(&self, channel: u64) -> Vec<String> {
        let channel = channel.to_string();
        self.shared
            .lock()
            .unwrap()
            .shown
            .iter()
            .filter(|(c, _, _)| *c == channel)
            .map(|(_, _, text)| text.clone())
            .collect()
    }

    /// Edits of messages in `channel` (bodies), in order.
    pub fn edits(&self, channel: u64) -> Vec<Value> {
        let prefix = format!("/api/v10/channels/{channel}/messages/");
        self.calls()
            .into_iter()
            .filter(|c| c.method == "PATCH" && c.path.starts_with(&prefix))
            .map(|c| c.body)
            .collect()
    }

    pub async fn wait_until(&self, timeout: Duration, check: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if check() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `n` messages were posted to `channel`.
    pub async fn wait_texts(&self, channel: u64, n: usize, timeout: Duration) -> Vec<String> {
        self.wait_until(timeout, || self.texts(channel).len() >= n)
            .await;
        self.texts(channel)
    }
}

fn user(id: u64, name: &str, bot: bool) -> Value {
    json!({ "id": id.to_string(), "username": name, "discriminator": "0",
            "global_name": null, "avatar": null, "bot": bot })
}

/// One gateway session: HELLO, then IDENTIFY -> READY or RESUME -> replay + RESUMED, heartbeat
/// ACKs, and every dispatch as it is queued, until the test drops the connection.
async fn connection(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    shared: Arc<Mutex<Shared>>,
    events: Arc<Notify>,
    url: String,
) {
    let (mut tx, mut rx) = ws.split();
    let hello = json!({ "op": 10, "d": { "heartbeat_interval": 41250 } });
    if tx.send(Ws::Text(hello.to_string())).await.is_err() {
        return;
    }
    let drops_at_start = shared.lock().unwrap().drops;
    // Sent so far, as an index into the event log; None until the session is set up.
    let mut cursor: Option<usize> = None;
    loop {
        let wake = events.notified();
        // Deliver what is queued.
        if let Some(sent) = cursor.as_mut() {
            let pending: Vec<Value> = shared.lock().unwrap().events[*sent..].to_vec();
            for event in pending {
                if tx.send(Ws::Text(event.to_string())).await.is_err() {
                    return;
                }
                *sent += 1;
            }
        }
        if shared.lock().unwrap().drops != drops_at_start {
            // Abrupt: no close frame, as when a network path dies.
            return;
        }
        tokio::select! {
            _ = wake => {}
            frame = rx.next() => {
                let Some(Ok(frame)) = frame else { return };
                let Ws::Text(text) = frame else { continue };
                let payload: Value = serde_json::from_str(&text).unwrap_or_default();
                match payload["op"].as_u64() {
                    Some(1) => {
                        let ack = json!({ "op": 11 });
                        if tx.send(Ws::Text(ack.to_string())).await.is_err() {
                            return;
                        }
                    }
                    Some(2) => {
                        let ok = payload["d"]["token"].as_str().map(|t| t.trim_start_matches("Bot "))
                            == Some(shared.lock().unwrap().token.as_str());
                        if !ok {
                            let _ = tx.send(Ws::Close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                                code: 4004.into(),
                                reason: "Authentication failed.".into(),
                            }))).await;
                            return;
                        }
                        let ready = {
                            let mut s = shared.lock().unwrap();
                            s.identifies += 1;
                            json!({ "op": 0, "t": "READY", "s": 1, "d": {
                                "v": 10, "user": user(BOT_ID, BOT_NAME, true), "guilds": [],
                                "session_id": format!("session-{}", s.identifies),
                                "resume_gateway_url": url, "shard": [0, 1],
                                "application": { "id": BOT_ID.to_string(), "flags": 0 }
                            }})
                        };
                        if tx.send(Ws::Text(ready.to_string())).await.is_err() {
                            return;
                        }
                        // A new session starts with what is queued from now on.
                        cursor = Some(shared.lock().unwrap().events.len());
                    }
                    Some(6) => {
                        let seq = payload["d"]["seq"].as_u64().unwrap_or(0);
                        shared.lock().unwrap().resumes += 1;
                        // Replay every dispatch after the client's last sequence number.
                        cursor = Some(seq.saturating_sub(1) as usize);
                        let resumed = json!({ "op": 0, "t": "RESUMED", "s": null, "d": {} });
                        if tx.send(Ws::Text(resumed.to_string())).await.is_err() {
                            return;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn message_json(id: u64, channel: &str, content: &str) -> Value {
    json!({
        "id": id.to_string(), "channel_id": channel,
        "author": user(BOT_ID, BOT_NAME, true), "content": content,
        "timestamp": "2026-11-29T12:00:00.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
        "attachments": [], "embeds": [], "pinned": false, "type": 0, "flags": 0
    })
}

async fn api(
    State((shared, ws_url)): State<AppState>,
    method: Method,
    uri: Uri,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = shared.lock().unwrap();
    if auth != format!("Bot {}", s.token) {
        let error = json!({ "message": "401: Unauthorized", "code": 0 });
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    s.calls.push(Call {
        method: method.to_string(),
        path: uri.path().to_string(),
        body: body.clone(),
        at: std::time::Instant::now(),
    });
    if method == Method::POST && uri.path().ends_with("/messages") {
        s.posts += 1;
    }
    let parts: Vec<&str> = path.split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["users", "@me"]) => axum::Json(user(BOT_ID, BOT_NAME, true)).into_response(),
        ("GET", ["gateway", "bot"]) => axum::Json(json!({
            "url": ws_url, "shards": 1,
            "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1 }
        }))
        .into_response(),
        ("GET", ["gateway"]) => axum::Json(json!({ "url": ws_url })).into_response(),
        ("POST", ["channels", channel, "messages"]) => {
            s.next_id += 1;
            let id = s.next_id;
            let content = body["content"].as_str().unwrap_or_default();
            s.shown.push((channel.to_string(), id, content.to_string()));
            axum::Json(message_json(id, channel, content)).into_response()
        }
        ("PATCH", ["channels", channel, "messages", id]) => {
            let content = body["content"].as_str().unwrap_or_default();
            let id = id.parse().unwrap_or(1);
            match s
                .shown
                .iter_mut()
                .find(|(c, m, _)| c == channel && *m == id)
            {
                Some(shown) => shown.2 = content.to_string(),
                None => {
                    let error = json!({ "message": "Unknown Message", "code": 10008 });
                    return (StatusCode::NOT_FOUND, axum::Json(error)).into_response();
                }
            }
            axum::Json(message_json(id, channel, content)).into_response()
        }
        ("DELETE", ["channels", channel, "messages", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            s.shown.retain(|(c, m, _)| !(c == channel && *m == id));
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", ["channels", _, "typing"])
        | ("POST", ["interactions", _, _, "callback"]) => StatusCode::NO_CONTENT.into_response(),
        ("PUT", ["applications", _, "commands"])
        | ("PUT", ["applications", _, "guilds", _, "commands"]) => {
            axum::Json(json!([])).into_response()
        }
        ("PATCH", ["webhooks", _, token, "messages", "@original"])
        | ("POST", ["webhooks", _, token]) => {
            // The message is in the interaction's channel, as Discord answers it.
            let channel = s
                .events
                .iter()
                .map(|event| &event["d"])
                .find(|d| d["token"] == *token)
                .and_then(|d| d["channel_id"].as_str())
                .unwrap_or("1")
                .to_string();
            s.next_id += 1;
            let id = s.next_id;
            let content = body["content"].as_str().unwrap_or_default();
            axum::Json(message_json(id, &channel, content)).into_response()
        }
        _ => {
            let error = json!({ "message": "404: Not Found", "code": 0 });
            (StatusCode::NOT_FOUND, axum::Json(error)).into_response()
        }
    }
}
