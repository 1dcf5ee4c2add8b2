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
    let (statements, commits) = crate::store::counters::totals();
    let _ = writeln!(
        out,
        "# HELP operator_db_statements_total SQL statements run since start.\n# TYPE operator_db_statements_total counter\noperator_db_statements_total {statements}\n\
         # HELP operator_db_commits_total Write transactions committed since start.\n# TYPE operator_db_commits_total counter\noperator_db_commits_total {commits}"
    );
    let depth = (state.queue_depth)();
    let _ = writeln!(
        out,
        "# HELP operator_queue_depth Messages waiting or running in chat queues.\n# TYPE operator_queue_depth gauge\noperator_queue_depth {depth}"
    );
    out.push_str(&crate::agent::llm::latency::LATENCY.render("operator_llm_request_seconds"));
    usage_counters(&state, &mut out).await;
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

/// Tokens and cost of model requests by agent and model, from the usage records.
async fn usage_counters(state: &HttpState, out: &mut String) {
    let rows = state.store.usage_counters().await.unwrap_or_default();
    let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let _ = writeln!(
        out,
        "# HELP operator_llm_tokens_total Model tokens by agent, model and kind (input, output, cache_read, cache_write).\n# TYPE operator_llm_tokens_total counter"
    );
    for (agent, model, row) in &rows {
        for (kind, n) in [
            ("input", row.input_tokens),
            ("output", row.output_tokens),
            ("cache_read", row.cache_read),
            ("cache_write", row.cache_write),
        ] {
            let _ = writeln!(
                out,
                "operator_llm_tokens_total{{agent=\"{}\",model=\"{}\",kind=\"{kind}\"}} {n}",
                label(agent),
                label(model)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP operator_llm_cost_usd_total What model requests cost in USD at the configured prices, by agent and model.\n# TYPE operator_llm_cost_usd_total counter"
    );
    for (agent, model, row) in &rows {
        let _ = writeln!(
            out,
            "operator_llm_cost_usd_total{{agent=\"{}\",model=\"{}\"}} {}",
            label(agent),
            label(model),
            row.cost_usd
        );
    }
}
