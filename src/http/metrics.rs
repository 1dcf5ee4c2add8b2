//! `GET /metrics` in the Prometheus text format: counters from the activity feed (so they survive
//! restarts), the queue depth, and instances by status.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::HttpState;

pub fn router() -> Router<HttpState> {
    Router::new().route("/metrics", get(metrics))
}

/// (metric, help, activity kind)
const COUNTERS: [(&str, &str, &str); 7] = [
    (
        "operator_messages_in_total",
        "Messages received from chats.",
        "message.in",
    ),
    (
        "operator_messages_out_total",
        "Final answers sent to chats.",
        "message.out",
    ),
    (
        "operator_tool_calls_total",
        "Operations called by agents as tools.",
        "tool.call",
    ),
    (
        "operator_tool_errors_total",
        "Malformed or unknown tool calls.",
        "tool.error",
    ),
    (
        "operator_turns_failed_total",
        "Turns that could not finish.",
        "turn.failed",
    ),
    (
        "operator_llm_errors_total",
        "Model requests that failed for good.",
        "llm.error",
    ),
    (
        "operator_automation_runs_total",
        "Automation runs started.",
        "automation.run",
    ),
];

async fn metrics(State(state): State<HttpState>) -> Response {
    let counts = match state.store.activity_counts().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("metrics: {e}");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response();
        }
    };
    let instances = state
        .store
        .instance_status_counts()
        .await
        .unwrap_or_default();
    let count = |kind: &str| {
        counts
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(0, |(_, n)| *n)
    };
    let mut out = String::new();
    for (name, help, kind) in COUNTERS {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            count(kind)
        );
    }
    let depth = (state.queue_depth)();
    let _ = writeln!(
        out,
        "# HELP operator_queue_depth Messages waiting or running in chat queues.\n# TYPE operator_queue_depth gauge\noperator_queue_depth {depth}"
    );
    out.push_str(&crate::agent::llm::latency::LATENCY.render("operator_llm_request_seconds"));
    let outbox = state.store.outbox_depth().await.unwrap_or(0);
    let _ = writeln!(
        out,
        "# HELP operator_outbox_depth Messages waiting to be delivered to chat platforms.\n# TYPE operator_outbox_depth gauge\noperator_outbox_depth {outbox}"
    );
    let _ = writeln!(
        out,
        "# HELP operator_instances Instances by status.\n# TYPE operator_instances gauge"
    );
    for status in ["provisioning", "active", "stopped", "failed", "missing"] {
        let n = instances
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "operator_instances{{status=\"{status}\"}} {n}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
