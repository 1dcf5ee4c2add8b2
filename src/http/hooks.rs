//! Webhooks: `POST /hooks/<token>` (GET triggers with an empty payload). The body is at most
//! 10 KB (larger: 413); an unknown or rotated token is 404; a disabled webhook is 403. Nothing
//! is triggered in any of those cases.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::HttpState;
use crate::ops::webhooks::{fill, token_hash};
use crate::store::NewActivity;

/// Largest accepted body.
pub const BODY_LIMIT: usize = 10 * 1024;

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/hooks/{token}", post(trigger).get(trigger))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

fn status(code: StatusCode, message: &str) -> Response {
    (code, axum::Json(json!({ "error": message }))).into_response()
}

async fn trigger(
    State(state): State<HttpState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let hook = match state.store.webhook_by_token_hash(&token_hash(&token)).await {
        Ok(Some(hook)) => hook,
        Ok(None) => return status(StatusCode::NOT_FOUND, "no such webhook"),
        Err(e) => {
            tracing::error!("webhook lookup failed: {e}");
            return status(StatusCode::SERVICE_UNAVAILABLE, "try again later");
        }
    };
    if !hook.enabled {
        return status(StatusCode::FORBIDDEN, "this webhook is disabled");
    }
    let payload = String::from_utf8_lossy(&body);
    let prompt = fill(&hook.template, &payload);
    state.store.record(NewActivity {
        kind: "webhook.call".into(),
        actor: format!("webhook:{}", hook.name),
        agent: Some(hook.agent.clone()),
        summary: format!("webhook {} called with {} bytes", hook.name, body.len()),
        ..NewActivity::default()
    });
    let name = hook.name.clone();
    state.webhooks.trigger(hook, prompt);
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "accepted": true, "webhook": name })),
    )
        .into_response()
}
