//! The JSON API under `/api/`: bearer-token auth (the admin token; compared by hash in constant
//! time; forwarded-for headers are never consulted), the control surface as
//! `POST /api/ops/<name>`, list routes for the main areas, and `POST /api/chat`.
//! Errors are JSON with a stable code and a readable message.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::HttpState;
use crate::domain::{Caller, ChatRef, OPERATOR, Role};
use crate::ops::{Invocation, OpError};

/// The stored form of an admin token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(
        format!("operator admin token\0{token}").as_bytes(),
    ))
}

pub fn router(state: HttpState) -> Router<HttpState> {
    Router::new()
        .route("/api/ops/{name}", post(op))
        .route("/api/agents", get(list("agent_list")))
        .route("/api/instances", get(list("instance_list")))
        .route("/api/hosts", get(list("host_list")))
        .route("/api/secrets", get(list("secret_list")))
        .route("/api/skills", get(list("skill_list")))
        .route("/api/automations", get(list("automation_list")))
        .route("/api/webhooks", get(list("webhook_list")))
        .route("/api/activity", get(activity))
        .route("/api/chat", post(chat))
        .route("/api/approvals/{id}", post(decide))
        .route("/api/usage", get(usage))
        .route("/api/mentions", get(mentions))
        .route("/api/conversations/{id}/export", get(export))
        .route("/api/keys", get(list_keys).post(create_key))
        .route("/api/keys/{id}", axum::routing::delete(revoke_key))
        .route_layer(middleware::from_fn_with_state(state, authenticate))
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message.into() } })),
    )
        .into_response()
}

/// Constant-time comparison, so the answer time says nothing about the token.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn authenticate(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match (presented, state.admin_token_hash.as_deref()) {
        (Some(token), Some(expected)) if same(&token_hash(token), expected) => {
            next.run(request).await
        }
        // An API key for scripts: never for managing keys themselves.
        (Some(token), Some(_))
            if !request.uri().path().starts_with("/api/keys")
                && state
                    .store
                    .api_key_valid(&key_hash(token))
                    .await
                    .unwrap_or(false) =>
        {
            next.run(request).await
        }
        (None, _) => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <admin token>",
        ),
        _ => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin token is not valid",
        ),
    }
}

/// The stored form of an API key.
fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(
        format!("operator api key\0{key}").as_bytes(),
    ))
}

#[derive(Deserialize)]
struct NewKey {
    name: String,
}

/// Creates an API key; the key itself is shown in this answer only.
async fn create_key(State(state): State<HttpState>, Json(new): Json<NewKey>) -> Response {
    let name = new.name.trim();
    if name.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_arguments",
            "name must not be empty",
        );
    }
    match issue_key(&state.store, name, "admin-api").await {
        Ok((id, key)) => Json(json!({ "id": id, "name": name, "key": key })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
    }
}

/// Creates an API key named `name`; returns its id and the key (only its hash is kept).
pub(super) async fn issue_key(
    store: &crate::store::Store,
    name: &str,
    actor: &str,
) -> crate::store::Result<(i64, String)> {
    let key = format!("opk_{}", hex::encode(rand::random::<[u8; 24]>()));
    let id = store.create_api_key(name, &key_hash(&key)).await?;
    store.record(crate::store::NewActivity {
        kind: "api_key.created".into(),
        actor: actor.into(),
        role: Some(crate::domain::ActorRole::Owner),
        summary: format!("API key {id} ({name}) created"),
        ..Default::default()
    });
    Ok((id, key))
}

/// Revokes a live key; false when there is no live key with that id.
pub(super) async fn revoke(
    store: &crate::store::Store,
    id: i64,
    actor: &str,
) -> crate::store::Result<bool> {
    let revoked = store.revoke_api_key(id).await?;
    if revoked {
        store.record(crate::store::NewActivity {
            kind: "api_key.revoked".into(),
            actor: actor.into(),
            role: Some(crate::domain::ActorRole::Owner),
            summary: format!("API key {id} revoked"),
            ..Default::default()
        });
    }
    Ok(revoked)
}

async fn list_keys(State(state): State<HttpState>) -> Response {
    match state.store.api_keys().await {
        Ok(keys) => Json(json!({ "keys": keys
            .iter()
            .map(|(id, name, created, revoked)| json!({
                "id": id, "name": name, "created_at": created, "revoked_at": revoked
            }))
            .collect::<Vec<_>>() }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
    }
}

async fn revoke_key(State(state): State<HttpState>, Path(id): Path<i64>) -> Response {
    match revoke(&state.store, id, "admin-api").await {
        Ok(true) => Json(json!({ "id": id, "revoked": true })).into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no live API key {id}"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
    }
}

/// Runs the turn and streams what happens as server-sent events: `typing`, `progress`, `delta`
/// (the reply's text so far, while the model writes it), then `reply` (or `error`,
/// `cancelled`), and a last `done` with the conversation id.
fn stream_turn(
    state: &HttpState,
    runner: std::sync::Arc<dyn crate::ops::TurnRunner>,
    chat: ChatRef,
    message: String,
) -> Response {
    use crate::channel::Outbound;
    use axum::response::sse::{Event, KeepAlive, Sse};
    let events = state.http_chat.listen(&chat.chat_id);
    let id = chat.chat_id.clone();
    tokio::spawn(async move {
        runner
            .person_turn(chat, OPERATOR.into(), Caller::owner("admin-api"), message)
            .await
    });
    let stream = futures_util::stream::unfold((events, false), move |(mut events, ended)| {
        let id = id.clone();
        async move {
            if ended {
                return None;
            }
            let (name, data) = match events.recv().await {
                Some(Outbound::Typing) => ("typing", String::new()),
                Some(Outbound::Progress(text)) | Some(Outbound::Status { text, .. }) => {
                    ("progress", text)
                }
                Some(Outbound::Notice(text)) => ("notice", text),
                Some(Outbound::Partial(text)) => (
                    "delta",
                    json!({ "conversation": id, "text": text }).to_string(),
                ),
                // Decided with `POST /api/approvals/<id>` and `{"approve": true|false}`.
                Some(Outbound::Approval { code, text }) => (
                    "approval",
                    json!({ "conversation": id, "id": code, "text": text }).to_string(),
                ),
                Some(Outbound::Decided { code, text }) => (
                    "decided",
                    json!({ "conversation": id, "id": code, "text": text }).to_string(),
                ),
                Some(Outbound::Reply(text)) => (
                    "reply",
                    json!({ "conversation": id, "ok": true, "reply": text }).to_string(),
                ),
                Some(Outbound::Failed(reason)) => (
                    "error",
                    json!({ "conversation": id, "ok": false, "error": reason }).to_string(),
                ),
                Some(Outbound::Cancelled) => ("cancelled", id.clone()),
                Some(Outbound::File { name, .. }) => ("file", name),
                Some(Outbound::Voice(bytes)) => ("voice", bytes.len().to_string()),
                Some(Outbound::Retract(_)) => {
                    return Some((Ok(Event::default().comment("")), (events, false)));
                }
                None => return None,
            };
            let ends = matches!(name, "reply" | "error" | "cancelled");
            let event = Event::default().event(name).data(data);
            Some((Ok::<_, std::convert::Infallible>(event), (events, ends)))
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn admin() -> Invocation {
    Invocation::new(Caller::owner("admin-api"))
}

fn op_error(e: OpError) -> Response {
    let (status, code) = status_of(&e);
    error(status, code, e.to_string())
}

/// The HTTP status and stable code of an operation's error.
pub(super) fn status_of(e: &OpError) -> (StatusCode, &'static str) {
    match e {
        OpError::Unknown(_) => (StatusCode::NOT_FOUND, "unknown_operation"),
        OpError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
        OpError::Refused(_) => (StatusCode::FORBIDDEN, "refused"),
        OpError::InvalidArgs { .. } => (StatusCode::BAD_REQUEST, "invalid_arguments"),
        OpError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        OpError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        OpError::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "failed"),
    }
}

async fn run_op(state: &HttpState, name: &str, args: Value) -> Response {
    match state.ops.invoke(&admin(), name, args).await {
        Ok(out) => Json(json!({ "text": out.text, "data": out.data })).into_response(),
        Err(e) => op_error(e),
    }
}

async fn op(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let args = body.map(|Json(v)| v).unwrap_or_else(|| json!({}));
    run_op(&state, &name, args).await
}

#[derive(Deserialize)]
struct UsageQuery {
    since: Option<String>,
    by: Option<String>,
}

/// `GET /api/usage?since=&by=`: usage since a time (milliseconds since the epoch, `today`, or
/// `<n>d`; default 7d) grouped by `agent`, `model`, `day` or `all` (default).
async fn usage(State(state): State<HttpState>, Query(query): Query<UsageQuery>) -> Response {
    use crate::usage::day_start;
    let now = crate::domain::now_millis();
    let since = match query.since.as_deref().map(str::trim) {
        None | Some("") => Some(day_start(now) - 6 * 86_400_000),
        Some("today") => Some(day_start(now)),
        Some(days) if days.ends_with('d') => days
            .trim_end_matches('d')
            .parse::<i64>()
            .ok()
            .map(|n| day_start(now) - (n.max(1) - 1) * 86_400_000),
        Some(ms) => ms.parse::<i64>().ok(),
    };
    let Some(since) = since else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_arguments",
            "since is milliseconds since the epoch, today, or <n>d",
        );
    };
    let by = query.by.unwrap_or_else(|| "all".into());
    if !["agent", "model", "day", "all"].contains(&by.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_arguments",
            "by is agent, model, day or all",
        );
    }
    match state.store.usage_since(since, &by).await {
        Ok(rows) => {
            let total: f64 = rows.iter().map(|r| r.cost_usd).sum();
            Json(json!({ "since": since, "by": by, "rows": rows, "cost_usd": total }))
                .into_response()
        }
        Err(e) => {
            tracing::error!("cannot read usage: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed",
                "cannot read usage",
            )
        }
    }
}

#[derive(Deserialize)]
struct MentionQuery {
    #[serde(default)]
    q: String,
}

/// `GET /api/mentions?q=`: agents and files (across every running instance) that `@q` could
/// mean, for the chat box's popover.
async fn mentions(State(state): State<HttpState>, Query(query): Query<MentionQuery>) -> Response {
    match state.ops.mention_suggestions(&query.q).await {
        Ok(found) => Json(found).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
    }
}

#[derive(Deserialize)]
struct ExportQuery {
    format: Option<String>,
}

/// `GET /api/conversations/<id>/export?format=md|jsonl`: one conversation as a file.
async fn export(
    State(state): State<HttpState>,
    Path(id): Path<i64>,
    Query(query): Query<ExportQuery>,
) -> Response {
    use crate::backup::export::{Format, render};
    let name = query.format.as_deref().unwrap_or("md");
    let Some(format) = Format::parse(name) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_arguments",
            format!("format {name:?} is not one of md, jsonl"),
        );
    };
    let conversation = match state.store.conversation(id).await {
        Ok(c) => c,
        Err(crate::store::StoreError::NotFound(what)) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            );
        }
        Err(e) => {
            tracing::error!("cannot read conversation {id}: {e}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed",
                "cannot read the conversation",
            );
        }
    };
    let messages = match state.store.messages_after(id, 0).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("cannot read conversation {id}: {e}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed",
                "cannot read the conversation",
            );
        }
    };
    let body = render(&conversation, &messages, format);
    let disposition = format!(
        "attachment; filename=\"{}\"",
        format.file_name(&conversation)
    );
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                format.content_type().to_string(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    approve: bool,
}

/// `POST /api/approvals/<id>` with `{"approve": true|false}`: decides a waiting request as the
/// owner holding the admin token (or an API key).
async fn decide(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    body: Option<Json<DecideBody>>,
) -> Response {
    let Some(Json(DecideBody { approve })) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_arguments",
            r#"send {"approve": true} or {"approve": false}"#,
        );
    };
    let op = if approve { "approve" } else { "deny" };
    run_op(&state, op, json!({ "id": id })).await
}

fn list(
    name: &'static str,
) -> impl Fn(State<HttpState>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>
+ Clone {
    move |State(state): State<HttpState>| {
        Box::pin(async move { run_op(&state, name, json!({})).await })
    }
}

#[derive(Deserialize)]
struct ActivityQuery {
    limit: Option<u32>,
    kind: Option<String>,
    agent: Option<String>,
    role: Option<String>,
    instance: Option<String>,
}

async fn activity(State(state): State<HttpState>, Query(q): Query<ActivityQuery>) -> Response {
    let args = json!({ "limit": q.limit.unwrap_or(50).min(200), "kind": q.kind, "agent": q.agent,
                      "role": q.role, "instance": q.instance });
    let args = Value::Object(
        args.as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .collect(),
    );
    run_op(&state, "activity_read", args).await
}

#[derive(Deserialize)]
struct ChatRequest {
    message: String,
    /// Continue this conversation; a new one starts when absent.
    conversation: Option<String>,
}

/// Runs one turn with Operator and answers with the reply (plain JSON).
async fn chat(
    State(state): State<HttpState>,
    headers: axum::http::HeaderMap,
    Json(req): Json<ChatRequest>,
) -> Response {
    if req.message.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_arguments",
            "message is empty",
        );
    }
    let id = req
        .conversation
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_arguments",
            "conversation is 1-64 letters, digits, - or _",
        );
    }
    let runner = match state.ops.turn_runner() {
        Ok(r) => r,
        Err(e) => return op_error(e),
    };
    let chat = ChatRef::new("http", &id);
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_stream {
        return stream_turn(&state, runner, chat, req.message);
    }
    let (ok, summary) = runner
        .person_turn(
            chat.clone(),
            OPERATOR.into(),
            Caller::owner("admin-api"),
            req.message,
        )
        .await;
    // The full reply is the conversation's last assistant message.
    let reply = match state.store.open_conversation(&chat, OPERATOR).await {
        Ok(conversation) => state
            .store
            .messages_after(conversation.id, conversation.summary_upto)
            .await
            .ok()
            .and_then(|m| {
                m.into_iter()
                    .rev()
                    .find(|m| m.role == Role::Assistant && m.tool_calls.is_empty())
            })
            .map(|m| m.content),
        Err(_) => None,
    };
    let reply = crate::secrets::Redactor::global()
        .redact(&reply.unwrap_or(summary))
        .into_owned();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    (
        status,
        Json(json!({ "conversation": id, "ok": ok, "reply": reply })),
    )
        .into_response()
}
