//! The admin page: server-rendered HTML behind a login. Logging in with the admin token sets an
//! HttpOnly, SameSite=Strict session cookie; login attempts are rate limited; every POST must
//! come from this page's own origin; forwarded-for headers are never consulted. Pages carry a
//! Content-Security-Policy that allows only this origin's script (`/assets/admin.js`: confirm
//! buttons and the live activity feed) and no framing.
//!
//! Submodules: `views` (overview, instances, agents, listings, chat, API keys), `activity`
//! (feed, filters, live stream), `actions` (forms that run operations), `files` (file browser),
//! `backups` (the backup directory's archives, for download), `usage` (cost per day as an SVG
//! chart, by agent and by model).

mod actions;
mod activity;
mod backups;
mod files;
mod usage;
mod views;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::HttpState;
use super::api::{same, token_hash};
use crate::domain::Caller;
use crate::ops::Invocation;

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
        .route("/", get(views::overview))
        .route("/instances", get(views::instances))
        .route("/instances/{name}/files", get(files::browse))
        .route("/instances/{name}/file", get(files::view))
        .route("/activity", get(activity::feed))
        .route("/activity/stream", get(activity::stream))
        .route("/agents", get(views::agents))
        .route("/skills", get(|s| views::listing(s, &views::SKILLS)))
        .route("/secrets", get(|s| views::listing(s, &views::SECRETS)))
        .route(
            "/automations",
            get(|s| views::listing(s, &views::AUTOMATIONS)),
        )
        .route("/webhooks", get(|s| views::listing(s, &views::WEBHOOKS)))
        .route("/keys", get(views::keys))
        .route("/backups", get(backups::listing))
        .route("/usage", get(usage::usage))
        .route("/backups/{name}", get(backups::download))
        .route("/keys/new", post(actions::new_key))
        .route("/keys/{id}/revoke", post(actions::revoke_key))
        .route("/do/{op}", post(actions::run))
        .route("/chat", get(views::chat_page).post(views::chat_send))
        .route("/mentions", get(views::mentions))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(state, require_session));
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/assets/admin.js", get(script))
        .merge(pages)
        .layer(middleware::from_fn(security_headers))
}

/// Every page: only this origin's scripts, no framing, no sniffing, no referrer leaving.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; \
             form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    response
}

/// The page's one script: confirmations for destructive buttons and the live activity feed.
async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("admin.js"),
    )
        .into_response()
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

/// Percent-encodes a query value; `/` stays, so paths remain readable in links.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A page in the admin layout: navigation, title, body.
fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} · operator</title>\
         <style>body{{font:15px system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em}}\
         table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left}}\
         pre{{background:#f6f6f6;padding:.6em;overflow:auto}}nav a{{margin-right:1em}}\
         form.inline{{display:inline;margin-right:.3em}}fieldset{{margin:1em 0;border:1px solid #ddd}}</style><script src=\"/assets/admin.js\" defer></script></head>\
         <body><nav><a href=\"/\">Overview</a><a href=\"/instances\">Instances</a>\
         <a href=\"/agents\">Agents</a><a href=\"/skills\">Skills</a><a href=\"/secrets\">Secrets</a>\
         <a href=\"/automations\">Automations</a><a href=\"/webhooks\">Webhooks</a>\
         <a href=\"/activity\">Activity</a><a href=\"/chat\">Chat</a><a href=\"/keys\">API keys</a><a href=\"/backups\">Backups</a><a href=\"/usage\">Usage</a>\
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
