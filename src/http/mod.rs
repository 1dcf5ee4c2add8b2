//! The admin listener: health endpoints now; the admin page and JSON API grow here.
//!
//! One axum `Router` per HTTP area, merged here. Handlers reach the daemon only through the
//! store and the control surface; they never call a channel adapter or an agent directly.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::store::Store;

pub mod api;
mod hooks;
mod metrics;
pub mod pages;
mod telegram;

use std::sync::Arc;

use crate::store::WebhookRecord;

/// Where a webhook call goes: the app runs the filled prompt as a turn.
pub trait WebhookSink: Send + Sync {
    fn trigger(&self, hook: WebhookRecord, prompt: String);
}

#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    pub webhooks: Arc<dyn WebhookSink>,
    /// Messages waiting or running in the chats' queues.
    pub queue_depth: Arc<dyn Fn() -> usize + Send + Sync>,
    pub ops: crate::ops::Ops,
    /// Hash of the admin token (`api::token_hash`); `None` refuses every API request.
    pub admin_token_hash: Option<String>,
    /// Telegram bots in webhook mode.
    pub telegram: crate::channel::telegram::WebhookIntake,
    /// Logged-in admin page sessions.
    pub sessions: Arc<pages::Sessions>,
    /// Listeners of conversations started over HTTP (server-sent events).
    pub http_chat: Arc<crate::channel::http_chat::HttpChat>,
    /// Set once the daemon's channels have started (`/readyz` waits for it).
    pub channels_started: Arc<std::sync::atomic::AtomicBool>,
    /// Where backups are written (listed on the admin page).
    pub backups_dir: std::path::PathBuf,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(hooks::router())
        .merge(metrics::router())
        .merge(telegram::router())
        .merge(api::router(state.clone()))
        .merge(pages::router(state.clone()))
        .with_state(state)
}

/// Ready when the channels have started and the database answers.
async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if !state
        .channels_started
        .load(std::sync::atomic::Ordering::Acquire)
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "channels starting\n");
    }
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n"),
        Err(e) => {
            tracing::error!("readiness: database does not answer: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    }
}
