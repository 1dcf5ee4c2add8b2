//! Telegram webhook deliveries: `POST /telegram/<bot id>` with the secret token header.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use super::HttpState;
use crate::channel::telegram::Intake;

/// The header Telegram sets to the `secret_token` given to `setWebhook`.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

pub fn router() -> Router<HttpState> {
    Router::new().route("/telegram/{bot}", post(deliver))
}

async fn deliver(
    State(state): State<HttpState>,
    Path(bot): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let Ok(bot) = bot.parse::<u64>() else {
        return (StatusCode::NOT_FOUND, "no such bot\n".into());
    };
    let secret = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok());
    match state.telegram.receive(bot, secret, &body).await {
        Intake::Accepted => (StatusCode::OK, "ok\n".into()),
        Intake::UnknownBot => (StatusCode::NOT_FOUND, "no such bot\n".into()),
        Intake::Forbidden => (
            StatusCode::FORBIDDEN,
            "wrong or missing secret token\n".into(),
        ),
        Intake::BadRequest(why) => (StatusCode::BAD_REQUEST, format!("{why}\n")),
        Intake::Unavailable(why) => {
            tracing::error!("cannot store a Telegram update: {why}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not stored; retry\n".into(),
            )
        }
    }
}
