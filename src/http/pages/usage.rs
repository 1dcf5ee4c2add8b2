//! The usage page: what the models cost per day over the last two weeks as a server-rendered
//! SVG bar chart (no script), and the last seven days by agent and by model.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::{esc, page};
use crate::domain::now_millis;
use crate::http::HttpState;
use crate::store::UsageRow;
use crate::usage::day_start;

const DAYS: i64 = 14;

pub(super) async fn usage(State(state): State<HttpState>) -> Response {
    let store = &state.store;
    let now = now_millis();
    let since = day_start(now) - (DAYS - 1) * 86_400_000;
    let week = day_start(now) - 6 * 86_400_000;
    let (days, agents, models) = match (
        store.usage_since(since, "day").await,
        store.usage_since(week, "agent").await,
        store.usage_since(week, "model").await,
    ) {
        (Ok(d), Ok(a), Ok(m)) => (d, a, m),
        _ => {
            return (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read usage",
            )
                .into_response();
        }
    };
    let table = |title: &str, rows: &[UsageRow]| {
        let body: String = rows
            .iter()
            .map(|r| {
                format!(
                    "<tr class=\"usage\"><td>{}</td><td>${:.4}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&r.key),
                    r.cost_usd,
                    if r.estimated { " (estimated)" } else { "" },
                    r.requests,
                    r.input_tokens,
                    r.output_tokens,
                    r.cache_read
                )
            })
            .collect();
        format!(
            "<h2>{title}</h2><table><tr><th></th><th>cost</th><th>requests</th><th>input</th>\
             <th>output</th><th>cached</th></tr>{body}</table>"
        )
    };
    page(
        "Usage",
        &format!(
            "<p>Cost at the configured prices, per UTC day (last {DAYS} days).</p>{}{}{}",
            chart(&days, since),
            table("By agent (7 days)", &agents),
            table("By model (7 days)", &models)
        ),
    )
    .into_response()
}

/// One bar a day, scaled to the most expensive day, with the day and cost as a tooltip.
fn chart(days: &[UsageRow], since: i64) -> String {
    const W: i64 = 28;
    const H: f64 = 120.0;
    let cost = |day: i64| {
        let key = chrono::DateTime::from_timestamp_millis(since + day * 86_400_000)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        let cost = days
            .iter()
            .find(|r| r.key == key)
            .map_or(0.0, |r| r.cost_usd);
        (key, cost)
    };
    let max = (0..DAYS).map(|d| cost(d).1).fold(0.0_f64, f64::max);
    let bars: String = (0..DAYS)
        .map(|d| {
            let (key, usd) = cost(d);
            let height = if max > 0.0 { usd / max * H } else { 0.0 };
            format!(
                "<rect class=\"day\" x=\"{}\" y=\"{:.1}\" width=\"{}\" height=\"{height:.1}\" fill=\"#4a7\">\
                 <title>{key}: ${usd:.4}</title></rect>",
                d * W + 2,
                H - height + 10.0,
                W - 4
            )
        })
        .collect();
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" \
         aria-label=\"cost per day\">{bars}<text x=\"2\" y=\"10\" font-size=\"10\">max ${max:.4}/day</text></svg>",
        DAYS * W,
        H as i64 + 14
    )
}
