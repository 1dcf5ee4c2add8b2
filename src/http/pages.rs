//! The admin page: server-rendered HTML behind a login. Logging in with the admin token sets an
//! HttpOnly, SameSite=Strict session cookie; login attempts are rate limited; every POST must
//! come from this page's own origin; forwarded-for headers are never consulted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::HttpState;
use super::api::{same, token_hash};
use crate::domain::{Caller, format_millis};
use crate::ops::Invocation;
use crate::store::ActivityFilter;

const COOKIE: &str = "operator_session";
/// A session lasts this long.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Login attempts allowed per window, over all clients (the listener is loopback).
const LOGIN_ATTEMPTS: usize = 5;
const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Open sessions and recent login attempts, in memory (a restart logs everyone out).
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Instant>>,
    attempts: Mutex<Vec<Instant>>,
}

impl Sessions {
    fn valid(&self, id: &str) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|_, expires| *expires > Instant::now());
        open.keys().any(|k| same(k, id))
    }

    fn create(&self) -> String {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.insert(id.clone(), Instant::now() + SESSION_TTL);
        id
    }

    fn end(&self, id: &str) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Counts an attempt; false when too many came in the window.
    fn attempt(&self) -> bool {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        attempts.retain(|t| now.duration_since(*t) < LOGIN_WINDOW);
        if attempts.len() >= LOGIN_ATTEMPTS {
            return false;
        }
        attempts.push(now);
        true
    }
}

pub fn router(state: HttpState) -> Router<HttpState> {
    let pages = Router::new()
        .route("/", get(overview))
        .route("/instances", get(instances))
        .route("/activity", get(activity))
        .route("/agents", get(agents))
        .route("/skills", get(|s| listing(s, "Skills", "skill_list")))
        .route("/secrets", get(|s| listing(s, "Secrets", "secret_list")))
        .route(
            "/automations",
            get(|s| listing(s, "Automations", "automation_list")),
        )
        .route("/webhooks", get(|s| listing(s, "Webhooks", "webhook_list")))
        .route("/chat", get(chat_page).post(chat_send))
        .route("/logout", axum::routing::post(logout))
        .route_layer(middleware::from_fn_with_state(state, require_session));
    Router::new()
        .route("/login", get(login_form).post(login))
        .merge(pages)
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// A POST must carry an Origin equal to this server's own (the Host it was asked for).
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        _ => false,
    }
}

async fn require_session(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let ok = session_of(request.headers()).is_some_and(|id| state.sessions.valid(&id));
    if !ok {
        return Redirect::to("/login").into_response();
    }
    if request.method() == Method::POST && !same_origin(request.headers()) {
        return (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response();
    }
    next.run(request).await
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Html<String> {
    page_with(title, "", body)
}

/// A page with extra `<head>` content (a refresh for live views).
fn page_with(title: &str, head: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">{head}<title>{t} · operator</title>\
         <style>body{{font:15px system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em}}\
         table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left}}\
         pre{{background:#f6f6f6;padding:.6em;overflow:auto}}nav a{{margin-right:1em}}</style></head>\
         <body><nav><a href=\"/\">Overview</a><a href=\"/instances\">Instances</a>\
         <a href=\"/agents\">Agents</a><a href=\"/skills\">Skills</a><a href=\"/secrets\">Secrets</a>\
         <a href=\"/automations\">Automations</a><a href=\"/webhooks\">Webhooks</a>\
         <a href=\"/activity\">Activity</a><a href=\"/chat\">Chat</a>\
         <form method=\"post\" action=\"/logout\" style=\"display:inline\"><button>Log out</button></form></nav><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    ))
}

async fn login_form() -> Html<String> {
    Html(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Log in · operator</title></head>\
         <body><h1>operator</h1><form method=\"post\" action=\"/login\">\
         <label>Admin token <input type=\"password\" name=\"token\" id=\"token\" autofocus></label>\
         <button type=\"submit\" id=\"login\">Log in</button></form></body></html>"
            .to_string(),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response();
    }
    if !state.sessions.attempt() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many login attempts; wait a minute\n",
        )
            .into_response();
    }
    let ok = state
        .admin_token_hash
        .as_deref()
        .is_some_and(|expected| same(&token_hash(form.token.trim()), expected));
    if !ok {
        return (StatusCode::UNAUTHORIZED, "the admin token is not valid\n").into_response();
    }
    let id = state.sessions.create();
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn logout(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_of(&headers) {
        state.sessions.end(&id);
    }
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

fn owner() -> Invocation {
    Invocation::new(Caller::owner("admin page"))
}

async fn overview(State(state): State<HttpState>) -> Html<String> {
    let status = state.ops.invoke(&owner(), "status", json!({})).await;
    let status = status.map(|o| o.text).unwrap_or_else(|e| e.to_string());
    let outbox = state.store.outbox_depth().await.unwrap_or(-1);
    let queue = (state.queue_depth)();
    let filter = ActivityFilter {
        kind_prefix: None,
        agent: None,
        since: None,
        limit: 200,
    };
    let errors: Vec<String> = state
        .store
        .activity(&filter)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.kind.contains("error")
                || e.kind.contains("failed")
                || e.kind.contains("undeliverable")
        })
        .take(10)
        .map(|e| {
            format!(
                "<li>{} {} — {}</li>",
                esc(&format_millis(e.at)),
                esc(&e.kind),
                esc(&e.summary)
            )
        })
        .collect();
    let errors = if errors.is_empty() {
        "<p>None.</p>".to_string()
    } else {
        format!("<ul>{}</ul>", errors.concat())
    };
    page(
        "Overview",
        &format!(
            "<pre id=\"status\">{}</pre><p>Queued messages: {queue} · outbox: {outbox}</p>\
             <h2>Recent errors</h2>{errors}",
            esc(&status)
        ),
    )
}

async fn instances(State(state): State<HttpState>) -> Html<String> {
    let list = state.store.list_instances().await.unwrap_or_default();
    let mut body = String::from(
        "<table><tr><th>name</th><th>status</th><th>image</th><th>agent</th>\
         <th>memory</th><th>cpus</th><th>processes</th><th>network</th></tr>",
    );
    let mut logs = String::new();
    for i in &list {
        body.push_str(&format!(
            "<tr class=\"instance\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{} MB</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&i.name),
            esc(i.status.as_str()),
            esc(&i.image),
            esc(i.agent.as_deref().unwrap_or("")),
            i.memory_mb,
            i.cpus,
            i.pids_limit,
            esc(&i.network),
        ));
        let tail = state
            .ops
            .invoke(
                &owner(),
                "instance_logs",
                json!({ "name": i.name, "tail": 20 }),
            )
            .await
            .map(|o| o.text)
            .unwrap_or_else(|e| e.to_string());
        logs.push_str(&format!(
            "<h3>{}</h3><pre class=\"logs\">{}</pre>",
            esc(&i.name),
            esc(&tail)
        ));
    }
    body.push_str("</table>");
    if list.is_empty() {
        body = "<p>No instances yet.</p>".into();
    }
    page("Instances", &format!("{body}<h2>Log tails</h2>{logs}"))
}

#[derive(Deserialize)]
struct ActivityQuery {
    kind: Option<String>,
    agent: Option<String>,
    /// Only the last this many minutes.
    minutes: Option<u64>,
    /// Reload every few seconds.
    live: Option<String>,
    format: Option<String>,
    limit: Option<u32>,
}

async fn activity(State(state): State<HttpState>, Query(q): Query<ActivityQuery>) -> Response {
    let filter = ActivityFilter {
        kind_prefix: q.kind.clone().filter(|k| !k.is_empty()),
        agent: q.agent.clone().filter(|a| !a.is_empty()),
        since: q
            .minutes
            .filter(|m| *m > 0)
            .map(|m| crate::domain::now_millis() - (m as i64) * 60_000),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let entries = state.store.activity(&filter).await.unwrap_or_default();
    if q.format.as_deref() == Some("jsonl") {
        let lines: String = entries
            .iter()
            .map(|e| {
                json!({ "at": e.at, "kind": e.kind, "actor": e.actor, "agent": e.agent, "summary": e.summary })
                    .to_string()
                    + "\n"
            })
            .collect();
        return ([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response();
    }
    let rows: String = entries
        .iter()
        .map(|e| {
            format!(
                "<tr class=\"entry\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&format_millis(e.at)),
                esc(&e.kind),
                esc(&e.actor),
                esc(e.agent.as_deref().unwrap_or("")),
                esc(&e.summary)
            )
        })
        .collect();
    let live = q.live.is_some();
    let form = format!(
        "<form method=\"get\"><input name=\"kind\" placeholder=\"kind prefix (op., message., llm.)\" value=\"{}\">\
         <input name=\"agent\" placeholder=\"agent\" value=\"{}\">\
         <input name=\"minutes\" placeholder=\"last N minutes\" size=\"12\" value=\"{}\">\
         <label><input type=\"checkbox\" name=\"live\" value=\"1\"{}> live</label>\
         <button>Filter</button> <a href=\"/activity?format=jsonl\">export as JSON lines</a></form>",
        esc(q.kind.as_deref().unwrap_or("")),
        esc(q.agent.as_deref().unwrap_or("")),
        q.minutes.map(|m| m.to_string()).unwrap_or_default(),
        if live { " checked" } else { "" }
    );
    let head = if live {
        "<meta http-equiv=\"refresh\" content=\"5\">"
    } else {
        ""
    };
    page_with(
        "Activity",
        head,
        &format!("{form}<table><tr><th>at</th><th>kind</th><th>actor</th><th>agent</th><th>summary</th></tr>{rows}</table>"),
    )
    .into_response()
}

/// A page that shows what a listing operation says (secrets: names and grants only).
async fn listing(
    State(state): State<HttpState>,
    title: &'static str,
    op: &'static str,
) -> Html<String> {
    let text = match state.ops.invoke(&owner(), op, json!({})).await {
        Ok(out) => out.text,
        Err(e) => e.to_string(),
    };
    page(title, &format!("<pre>{}</pre>", esc(&text)))
}

/// The admin page's own conversation with Operator.
fn chat_ref() -> crate::domain::ChatRef {
    crate::domain::ChatRef::new("http", "admin-page")
}

async fn chat_page(State(state): State<HttpState>) -> Html<String> {
    use crate::domain::{OPERATOR, Role};
    let mut log = String::new();
    if let Ok(conversation) = state.store.open_conversation(&chat_ref(), OPERATOR).await
        && let Ok(messages) = state.store.messages_after(conversation.id, 0).await
    {
        for m in messages {
            let who = match m.role {
                Role::User => "you",
                Role::Assistant if m.tool_calls.is_empty() => "Operator",
                _ => continue,
            };
            log.push_str(&format!(
                "<p class=\"message\"><b>{who}:</b> {}</p>",
                esc(&m.content).replace('\n', "<br>")
            ));
        }
    }
    page(
        "Chat with Operator",
        &format!(
            "{log}<form method=\"post\" action=\"/chat\"><input name=\"message\" id=\"message\" \
             size=\"60\" autofocus> <button id=\"send\">Send</button></form>"
        ),
    )
}

#[derive(Deserialize)]
struct ChatForm {
    message: String,
}

async fn chat_send(State(state): State<HttpState>, Form(form): Form<ChatForm>) -> Response {
    let message = form.message.trim().to_string();
    if !message.is_empty() {
        match state.ops.turn_runner() {
            Ok(runner) => {
                let caller = Caller::owner("admin page");
                let _ = runner
                    .run_turn(chat_ref(), crate::domain::OPERATOR.into(), caller, message)
                    .await;
            }
            Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        }
    }
    Redirect::to("/chat").into_response()
}

/// The agents, and which chats are bound to which.
async fn agents(State(state): State<HttpState>) -> Html<String> {
    let text = match state.ops.invoke(&owner(), "agent_list", json!({})).await {
        Ok(out) => out.text,
        Err(e) => e.to_string(),
    };
    let bindings = state.store.list_bindings().await.unwrap_or_default();
    let rows: String = bindings
        .iter()
        .map(|(chat, agent)| {
            format!(
                "<tr class=\"binding\"><td>{}</td><td>{}</td></tr>",
                esc(&chat.to_string()),
                esc(agent)
            )
        })
        .collect();
    let bindings = if rows.is_empty() {
        "<p>No chat is bound; every chat talks to its bot's default agent (Operator unless set).</p>"
            .to_string()
    } else {
        format!("<table><tr><th>chat</th><th>agent</th></tr>{rows}</table>")
    };
    page(
        "Agents",
        &format!("<pre>{}</pre><h2>Bindings</h2>{bindings}", esc(&text)),
    )
}
